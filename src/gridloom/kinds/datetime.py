"""``datetime``: a datetime drawn uniformly from a range, to a whole unit."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, ClassVar

import attrs
import pyarrow as pa

from .._attrs import frozen
from ..config._columns import ColumnConfig, TimeUnit
from ..config._kind import ColumnKind
from ..config._validators import text_problem
from ..errors import ConfigError
from ..generators._dtypes import to_naive_utc
from ..generators.sampling import Sampler, check_unit, floor_to_unit

__all__ = ["KIND", "DatetimeColumn", "DatetimeSampler", "naive_utc"]


def naive_utc(value: Any) -> dt.datetime | None:
    """``value`` as naive UTC (``None`` when it is not a datetime or leaves the range)."""
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        return value
    try:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError:
        return None


def _utc_moment(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A datetime that stays within years 1 to 9999 once converted to UTC."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{attribute.name} must be a datetime, got {type(value).__name__}")
    if naive_utc(value) is None:
        raise ValueError(
            f"{attribute.name} ({value.isoformat()}) leaves the datetime range (years 1 to"
            " 9999) once converted to UTC"
        )


@frozen(kw_only=True)
class DatetimeColumn(ColumnConfig):
    """A datetime drawn uniformly from ``[start, end]``, rounded down to ``unit``.

    With ``format`` set, the value is stored as text formatted with ``strftime``.

    Attributes:
        start, end: the bounds (ISO 8601 text in YAML); bounds with a UTC offset are compared
            (and drawn between) in UTC, and must stay within years 1 to 9999 there.
        unit: granularity of the drawn values.
        format: a ``strftime`` format; the value is then stored as text.
    """

    kind: ClassVar[str] = "datetime"
    start: dt.datetime = attrs.field(validator=_utc_moment)
    end: dt.datetime = attrs.field(validator=_utc_moment)
    unit: TimeUnit = "seconds"
    format: str | None = attrs.field(default=None)

    @end.validator
    def _check_end(self, _attribute: attrs.Attribute[Any], value: dt.datetime) -> None:
        start, end = naive_utc(self.start), naive_utc(value)
        if start is not None and end is not None and end < start:
            raise ValueError(f"end ({value}) must not be before start ({self.start})")

    @format.validator
    def _check_format(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            raise TypeError(f"format must be text, got {type(value).__name__}")
        problem = text_problem(value)
        if problem is None and "\x00" in value:
            problem = "holds a NUL character, which strftime stops at"
        if problem is not None:
            raise ValueError(f"format {problem}")
        try:
            dt.datetime(2000, 1, 1).strftime(value)
        except ValueError as exc:
            raise ValueError(f"format is not a strftime format: {exc}") from None


class DatetimeSampler(Sampler):
    """Datetimes drawn uniformly among the whole ``unit`` instants in ``[start, end]``.

    Aware bounds are converted to naive UTC. With ``format`` the value is ``strftime`` text.
    """

    def __init__(self, config: DatetimeColumn):
        self._step = check_unit(config.name, config.unit)
        kind = pa.string() if config.format is not None else pa.timestamp("us")
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config
        no_instant = ConfigError(
            f"no whole {config.unit.rstrip('s')} lies between start and end",
            column=config.name,
            field="unit",
        )
        try:
            start, end = to_naive_utc(config.start), to_naive_utc(config.end)
            first = floor_to_unit(start, config.unit)
            if first < start:
                first += self._step
        except OverflowError:  # start is past the last whole unit of year 9999
            raise no_instant from None
        last = floor_to_unit(end, config.unit)
        if first > last:
            raise no_instant
        self._first = first
        self._steps = (last - first) // self._step

    def support(self) -> tuple[Any, Any] | None:
        """The first and last whole instant drawn (``None`` with ``format``: text)."""
        if self.config.format is not None:
            return None
        return (self._first, self._first + self._step * self._steps)

    def _draw(self, rng: random.Random) -> Any:
        moment = self._first + self._step * rng.randint(0, self._steps)
        if self.config.format is not None:
            return moment.strftime(self.config.format)
        return moment


KIND = ColumnKind(
    config=DatetimeColumn,
    build=lambda column, _ctx: DatetimeSampler(column),
    positional=("start", "end"),
)
