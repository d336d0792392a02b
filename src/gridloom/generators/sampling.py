"""What sampler kinds share: the :class:`Sampler` base, numeric conversions and time units.

Samplers are cheap, deterministic batch generators: one call per row group. Every sampler
draws only from ``ctx.rng`` (derived from the run seed, the column and the row group), so its
values depend on nothing but ``(seed, column, row group)`` and the rows' order.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ..config._columns import ConvertTo
from ..errors import ConfigError
from ._dtypes import arrow_type
from .base import BatchContext, ColumnGenerator, Granularity

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "UNIT_STEPS",
    "NumericSampler",
    "Sampler",
    "check_unit",
    "floor_to_unit",
    "numeric_output",
]

#: Each time unit, as a duration.
UNIT_STEPS: dict[str, dt.timedelta] = {
    "days": dt.timedelta(days=1),
    "hours": dt.timedelta(hours=1),
    "minutes": dt.timedelta(minutes=1),
    "seconds": dt.timedelta(seconds=1),
}
#: What a numeric sampler may store: int64, float64 or string.
_NUMERIC_TYPES = frozenset({"int", "float", "string"})


class Sampler(ColumnGenerator[BatchContext]):
    """A batch generator drawing one value per row from the row group's stream: subclasses
    implement :meth:`_draw` (one value) or :meth:`_draw_many` (``count`` values)."""

    granularity: Granularity = "batch"
    inline = True

    def generate(self, ctx: BatchContext) -> list[Any]:
        """One drawn value per row of ``ctx``.

        Values are drawn for every row of the row group (``ctx.group_row_ids``) and the live
        rows' values picked, so a row's value does not depend on which rows were dropped.
        """
        count = len(ctx.group_row_ids) if ctx.group_row_ids is not None else len(ctx.row_ids)
        drawn = self._draw_many(ctx.rng, count)
        positions = ctx.positions()
        return drawn if positions is None else [drawn[i] for i in positions]

    def _draw_many(self, rng: random.Random, count: int) -> list[Any]:
        return [self._draw(rng) for _ in range(count)]

    def _draw(self, rng: random.Random) -> Any:
        raise NotImplementedError

    def support(self) -> tuple[Any, Any] | None:
        """The smallest and largest value this sampler can give (either ``None`` when
        unbounded on that side), or ``None`` when unknown or not ordered; what ``validate``
        uses to find constraints that can never hold."""
        return None


def numeric_output(
    column: str,
    convert_to: ConvertTo | None,
    natural: Literal["int", "float"],
    decimals: int | None = None,
) -> tuple[pa.DataType, Callable[[Any], Any]]:
    """The output type and the per-value conversion for a numeric sampler."""
    target = convert_to or natural
    if target not in _NUMERIC_TYPES:
        raise ConfigError(
            f"convert_to must be int, float or string, got {convert_to!r}",
            column=column,
            field="convert_to",
        )

    def rounded(value: Any) -> Any:
        if natural == "float" and decimals is not None:
            return round(value, decimals)
        return value

    def to_int(value: Any) -> int:
        if isinstance(value, int):  # already whole: through a float it could pass 2**63 - 1
            return value
        return round(float(value))

    def to_float(value: Any) -> float:
        return float(rounded(value))

    def to_string(value: Any) -> str:
        return str(rounded(value))

    convert = {"int": to_int, "float": to_float, "string": to_string}[target]
    return arrow_type(target), convert


class NumericSampler(Sampler):
    """A sampler of numbers, stored as ``convert_to`` says: :meth:`_draw` returns the number,
    :attr:`convert` turns it into the stored value.

    Args:
        name: the column.
        convert_to: ``int``, ``float``, ``string`` or ``None`` (the ``natural`` type).
        natural: what the sampler draws: ``int`` or ``float``.
        decimals: round floats to this many decimal places.
    """

    def __init__(
        self,
        name: str,
        convert_to: ConvertTo | None,
        natural: Literal["int", "float"],
        decimals: int | None = None,
    ):
        kind, self.convert = numeric_output(name, convert_to, natural, decimals)
        super().__init__(name=name, outputs={name: kind})


def check_unit(column: str, unit: str) -> dt.timedelta:
    """The duration of ``unit``, or a ConfigError on the column's ``unit`` field."""
    if unit not in UNIT_STEPS:
        raise ConfigError(
            f"unit must be one of {', '.join(UNIT_STEPS)}, got {unit!r}",
            column=column,
            field="unit",
        )
    return UNIT_STEPS[unit]


def floor_to_unit(moment: dt.datetime, unit: str) -> dt.datetime:
    """``moment`` rounded down to a whole ``unit`` (every unit divides a day)."""
    moment = moment.replace(microsecond=0)
    if unit in ("minutes", "hours", "days"):
        moment = moment.replace(second=0)
    if unit in ("hours", "days"):
        moment = moment.replace(minute=0)
    if unit == "days":
        moment = moment.replace(hour=0)
    return moment
