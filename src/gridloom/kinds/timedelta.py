"""``timedelta``: a whole number of time units, or a datetime column plus that duration."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, ClassVar

import attrs
import pyarrow as pa

from .._attrs import frozen
from ..config._columns import ColumnConfig, TimeUnit
from ..config._kind import ColumnKind
from ..config._validators import INT64_MAX, int64
from ..errors import ConfigError, GenerationError
from ..generators._dtypes import short_repr, to_naive_utc
from ..generators._factory import BuildContext
from ..generators.base import BatchContext, RowFailure
from ..generators.sampling import UNIT_STEPS, Sampler, check_unit
from .datetime import DatetimeColumn

__all__ = ["DATETIME_SPAN", "DURATION_MAX", "KIND", "TimedeltaColumn", "TimedeltaSampler"]

#: The longest duration an Arrow ``duration[us]`` column holds (a 64-bit count of microseconds).
DURATION_MAX = dt.timedelta(microseconds=INT64_MAX)
#: The span of Python's datetimes (years 1 to 9999), all of which ``timestamp[us]`` holds.
DATETIME_SPAN = dt.datetime.max - dt.datetime.min


@frozen(kw_only=True)
class TimedeltaColumn(ColumnConfig):
    """A whole number of ``unit`` drawn from ``[min, max]``.

    Without ``reference`` the value is a duration; with ``reference`` naming a datetime column the
    value is that datetime plus the drawn duration.

    Attributes:
        min, max: bounds of the whole number of units drawn: at most what a duration holds
            (about 106 million days), or with ``reference`` what separates two datetimes
            (years 1 to 9999: about 3.65 million days).
        unit: the unit of ``min`` and ``max``.
        reference: a datetime column to add the duration to.
    """

    kind: ClassVar[str] = "timedelta"
    min: int = attrs.field(validator=int64)
    max: int = attrs.field(validator=int64)
    unit: TimeUnit = "days"
    reference: str | None = None

    @min.validator
    @max.validator
    def _check_span(self, attribute: attrs.Attribute[Any], value: int) -> None:
        step = UNIT_STEPS.get(self.unit)
        if step is None or not isinstance(value, int):
            return
        if self.reference is None:
            limit, what = DURATION_MAX // step, "the longest duration a column holds"
        else:
            limit, what = DATETIME_SPAN // step, "the span of datetimes, years 1 to 9999"
        if abs(value) > limit:
            raise ValueError(
                f"{attribute.name} must be between -{limit} and {limit} {self.unit} ({what}),"
                f" got {value}"
            )

    @max.validator
    def _check_max(self, _attribute: attrs.Attribute[Any], value: int) -> None:
        if value < self.min:
            raise ValueError(f"max ({value}) must be >= min ({self.min})")

    def direct_references(self) -> dict[str, tuple[str, ...]]:
        refs = super().direct_references()
        if self.reference is not None:
            refs["reference"] = (self.reference,)
        return refs


class TimedeltaSampler(Sampler):
    """A whole number of ``unit`` in ``[min, max]``: a duration, or — with ``reference`` —
    the reference column's datetime plus that duration (null where the reference is null).

    Args:
        config: the column.
        reference_type: the Arrow type of the ``reference`` column (a timestamp type); the
            output keeps its time zone. Required when ``config.reference`` is set.
        reference_bounds: the earliest and latest datetime the reference column can hold,
            when known (a ``datetime`` column's ``start`` and ``end``): a sum that would leave
            years 1 to 9999 is then refused here rather than failing rows.

    Raises:
        ConfigError: an unknown unit, a reference that is not a datetime column, or
            ``reference_bounds`` plus ``[min, max]`` leaving the datetime range.
    """

    def __init__(
        self,
        config: TimedeltaColumn,
        *,
        reference_type: pa.DataType | None = None,
        reference_bounds: tuple[dt.datetime, dt.datetime] | None = None,
    ):
        self._step = check_unit(config.name, config.unit)
        kind: pa.DataType = pa.duration("us")
        if config.reference is not None:
            if reference_type is None or not pa.types.is_timestamp(reference_type):
                raise ConfigError(
                    f"reference {config.reference!r} must be a datetime (timestamp) column,"
                    f" not {reference_type}",
                    column=config.name,
                    field="reference",
                )
            kind = pa.timestamp("us", tz=reference_type.tz)
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config
        if config.reference is not None and reference_bounds is not None:
            self._check_sums(*reference_bounds)

    def _check_sums(self, earliest: dt.datetime, latest: dt.datetime) -> None:
        cfg = self.config
        for field, moment, units in (("min", earliest, cfg.min), ("max", latest, cfg.max)):
            try:
                to_naive_utc(moment) + self._step * units
            except OverflowError:
                raise ConfigError(
                    f"reference {cfg.reference!r} ({earliest.isoformat()} to"
                    f" {latest.isoformat()}) plus {cfg.min} to {cfg.max} {cfg.unit} leaves the"
                    " datetime range (years 1 to 9999)",
                    column=cfg.name,
                    field=field,
                ) from None

    def _draw(self, rng: random.Random) -> dt.timedelta:
        return self._step * rng.randint(self.config.min, self.config.max)

    def generate(self, ctx: BatchContext) -> list[Any]:
        """One duration per row, added to the reference datetime when there is one (a sum
        past year 9999 or before year 1 fails that row alone)."""
        deltas = super().generate(ctx)
        reference = self.config.reference
        if reference is None:
            return deltas
        try:
            bases = ctx.columns[reference]
        except KeyError:
            raise GenerationError(
                f"column {self.name!r}: reference column {reference!r} is not in the batch"
            ) from None
        return [self._add(base, delta) for base, delta in zip(bases, deltas, strict=True)]

    def _add(self, base: Any, delta: dt.timedelta) -> Any:
        if base is None:
            return None
        try:
            return base + delta
        except OverflowError:
            return RowFailure(
                GenerationError(
                    f"column {self.name!r}: {short_repr(base)} + {delta} leaves the datetime"
                    " range (years 1 to 9999)"
                )
            )


def _build(column: TimedeltaColumn, ctx: BuildContext) -> TimedeltaSampler:
    reference_type = None
    if column.reference is not None:
        reference_type = ctx.upstream_types.get(column.reference)
        if reference_type is None:
            raise ConfigError(
                f"reference {column.reference!r} is not a column built before this one",
                column=column.name,
                field="reference",
            )
    bounds = None
    reference = ctx.columns.get(column.reference) if column.reference is not None else None
    if isinstance(reference, DatetimeColumn) and reference.format is None:
        bounds = (reference.start, reference.end)  # so a sum past year 9999 is refused here
    return TimedeltaSampler(column, reference_type=reference_type, reference_bounds=bounds)


KIND = ColumnKind(config=TimedeltaColumn, build=_build, positional=("min", "max"))
