"""Sampler generators: cheap, deterministic, one batch per row group.

Every sampler draws only from ``ctx.rng`` (derived from the run seed, the column and the row
group), so its values depend on nothing but ``(seed, column, row group)`` and the rows' order.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import uuid
from collections.abc import Callable, Hashable
from typing import Any, Literal

import pyarrow as pa

from ..config._columns import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    ConvertTo,
    DatetimeColumn,
    GaussianColumn,
    PoissonColumn,
    SubcategoryColumn,
    TimedeltaColumn,
    UniformColumn,
    UUIDColumn,
)
from ..errors import ConfigError, GenerationError
from ._distributions import binomial_sampler, poisson_sampler
from ._dtypes import normalize_values, short_repr, to_naive_utc
from .base import BatchContext, ColumnGenerator, Granularity, RowFailure

__all__ = [
    "BernoulliSampler",
    "BinomialSampler",
    "CategorySampler",
    "DatetimeSampler",
    "GaussianSampler",
    "PoissonSampler",
    "SubcategorySampler",
    "TimedeltaSampler",
    "UUIDSampler",
    "UniformSampler",
]

_UNITS: dict[str, dt.timedelta] = {
    "days": dt.timedelta(days=1),
    "hours": dt.timedelta(hours=1),
    "minutes": dt.timedelta(minutes=1),
    "seconds": dt.timedelta(seconds=1),
}
_NUMERIC_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
}


class _Sampler(ColumnGenerator):
    """A batch generator drawing one value per row from the row group's stream."""

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


def _numeric_output(
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
    return _NUMERIC_TYPES[target], convert


class CategorySampler(_Sampler):
    """Draws from a :class:`~gridloom.config.CategoryColumn`'s values, optionally weighted.

    The output type is inferred from the values (see :func:`infer_arrow_type`).
    """

    def __init__(self, config: CategoryColumn):
        kind, self.values = normalize_values(config.values)
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config
        self._cum_weights = (
            list(itertools.accumulate(config.weights)) if config.weights is not None else None
        )

    def _draw_many(self, rng: random.Random, count: int) -> list[Any]:
        return rng.choices(self.values, cum_weights=self._cum_weights, k=count)


class SubcategorySampler(_Sampler):
    """Draws from the list that :class:`~gridloom.config.SubcategoryColumn` maps the row's
    parent value to; reads the parent column from ``ctx.columns``."""

    def __init__(self, config: SubcategoryColumn):
        keys = list(config.values)
        flat = [option for key in keys for option in config.values[key]]
        kind, normalized = normalize_values(flat)
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config
        self.options: dict[Hashable, tuple[Any, ...]] = {}
        start = 0
        for key in keys:
            stop = start + len(config.values[key])
            self.options[key] = normalized[start:stop]
            start = stop

    def generate(self, ctx: BatchContext) -> list[Any]:
        """One draw per row from the options of that row's parent value."""
        parent = self.config.parent
        try:
            parents = ctx.columns[parent]
        except KeyError:
            raise GenerationError(
                f"column {self.name!r}: parent column {parent!r} is not in the batch"
            ) from None
        # One uniform draw per row of the row group, mapped onto that row's options: a row's
        # value depends on its position only, never on which other rows are live.
        count = len(ctx.group_row_ids) if ctx.group_row_ids is not None else len(ctx.row_ids)
        rng = ctx.rng
        draws = [rng.random() for _ in range(count)]
        positions = ctx.positions() or range(len(ctx.row_ids))
        out: list[Any] = []
        for value, position in zip(parents, positions, strict=True):
            try:
                options = self.options[value]
            except (KeyError, TypeError):
                out.append(
                    RowFailure(
                        GenerationError(
                            f"column {self.name!r}: parent {parent!r} value {short_repr(value)}"
                            " has no entry in values (known: "
                            f"{', '.join(map(short_repr, self.options))})"
                        )
                    )
                )
                continue
            out.append(options[min(int(draws[position] * len(options)), len(options) - 1)])
        return out


class UniformSampler(_Sampler):
    """Uniform numbers in ``[low, high]``; with ``convert_to: int``, uniform integers in
    ``[ceil(low), floor(high)]``; ``decimals`` rounds floats."""

    def __init__(self, config: UniformColumn):
        kind, self._convert = _numeric_output(
            config.name, config.convert_to, "float", config.decimals
        )
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config
        self._int_range: tuple[int, int] | None = None
        if config.convert_to == "int":
            low, high = math.ceil(config.low), math.floor(config.high)
            if low > high:
                raise ConfigError(
                    f"no integer lies in [{config.low}, {config.high}]",
                    column=config.name,
                    field="convert_to",
                )
            self._int_range = (low, high)

    def _draw(self, rng: random.Random) -> Any:
        if self._int_range is not None:
            return rng.randint(*self._int_range)
        return self._convert(rng.uniform(self.config.low, self.config.high))


class GaussianSampler(_Sampler):
    """Normal draws; ``convert_to: int`` rounds to the nearest integer."""

    def __init__(self, config: GaussianColumn):
        kind, self._convert = _numeric_output(
            config.name, config.convert_to, "float", config.decimals
        )
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config

    def _draw(self, rng: random.Random) -> Any:
        return self._convert(rng.gauss(self.config.mean, self.config.stddev))


class PoissonSampler(_Sampler):
    """Poisson counts (exact for any mean)."""

    def __init__(self, config: PoissonColumn):
        kind, self._convert = _numeric_output(config.name, config.convert_to, "int")
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config
        self._sample = poisson_sampler(config.mean)

    def _draw(self, rng: random.Random) -> Any:
        return self._convert(self._sample(rng))


class BernoulliSampler(_Sampler):
    """1 with probability ``p``, else 0."""

    def __init__(self, config: BernoulliColumn):
        kind, self._convert = _numeric_output(config.name, config.convert_to, "int")
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config

    def _draw(self, rng: random.Random) -> Any:
        return self._convert(1 if rng.random() < self.config.p else 0)


class BinomialSampler(_Sampler):
    """Binomial counts (exact for any ``n``)."""

    def __init__(self, config: BinomialColumn):
        kind, self._convert = _numeric_output(config.name, config.convert_to, "int")
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config
        self._sample = binomial_sampler(config.n, config.p)

    def _draw(self, rng: random.Random) -> Any:
        return self._convert(self._sample(rng))


class UUIDSampler(_Sampler):
    """Version-4 UUIDs built from the stream's bits: ``prefix`` + the canonical 36-character
    form, or its first 8 hex digits when ``short``; ``uppercase`` applies to the UUID part."""

    def __init__(self, config: UUIDColumn):
        super().__init__(name=config.name, outputs={config.name: pa.string()})
        self.config = config

    def _draw(self, rng: random.Random) -> str:
        text = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if self.config.short:
            text = text[:8]
        if self.config.uppercase:
            text = text.upper()
        return self.config.prefix + text


def _floor(moment: dt.datetime, unit: str) -> dt.datetime:
    """``moment`` rounded down to a whole ``unit`` (every unit divides a day)."""
    moment = moment.replace(microsecond=0)
    if unit in ("minutes", "hours", "days"):
        moment = moment.replace(second=0)
    if unit in ("hours", "days"):
        moment = moment.replace(minute=0)
    if unit == "days":
        moment = moment.replace(hour=0)
    return moment


class DatetimeSampler(_Sampler):
    """Datetimes drawn uniformly among the whole ``unit`` instants in ``[start, end]``.

    Aware bounds are converted to naive UTC. With ``format`` the value is ``strftime`` text.
    """

    def __init__(self, config: DatetimeColumn):
        if config.unit not in _UNITS:
            raise ConfigError(
                f"unit must be one of {', '.join(_UNITS)}, got {config.unit!r}",
                column=config.name,
                field="unit",
            )
        kind = pa.string() if config.format is not None else pa.timestamp("us")
        super().__init__(name=config.name, outputs={config.name: kind})
        self.config = config
        self._step = _UNITS[config.unit]
        no_instant = ConfigError(
            f"no whole {config.unit.rstrip('s')} lies between start and end",
            column=config.name,
            field="unit",
        )
        try:
            start, end = to_naive_utc(config.start), to_naive_utc(config.end)
            first = _floor(start, config.unit)
            if first < start:
                first += self._step
        except OverflowError:  # start is past the last whole unit of year 9999
            raise no_instant from None
        last = _floor(end, config.unit)
        if first > last:
            raise ConfigError(
                f"no whole {config.unit.rstrip('s')} lies between start and end",
                column=config.name,
                field="unit",
            )
        self._first = first
        self._steps = (last - first) // self._step

    def _draw(self, rng: random.Random) -> Any:
        moment = self._first + self._step * rng.randint(0, self._steps)
        if self.config.format is not None:
            return moment.strftime(self.config.format)
        return moment


class TimedeltaSampler(_Sampler):
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
        if config.unit not in _UNITS:
            raise ConfigError(
                f"unit must be one of {', '.join(_UNITS)}, got {config.unit!r}",
                column=config.name,
                field="unit",
            )
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
        self._step = _UNITS[config.unit]
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
