"""Sampler generators: distributions, determinism, conversions and build-time checks."""

from __future__ import annotations

import collections
import datetime as dt
import math
import re
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pytest

from gridloom.config import ColumnConfig, PipelineConfig
from gridloom.engine.graph import compile_pipeline
from gridloom.errors import ConfigError, GenerationError
from gridloom.generators import (
    BatchContext,
    BuildContext,
    ColumnGenerator,
    RowFailure,
    build_generator,
)
from gridloom.kinds import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    DatetimeColumn,
    GaussianColumn,
    PoissonColumn,
    SubcategoryColumn,
    TimedeltaColumn,
    UniformColumn,
    UUIDColumn,
)
from gridloom.kinds.timedelta import TimedeltaSampler

DRAWS = 20_000


def batch(
    name: str,
    n: int,
    *,
    seed: int = 7,
    row_group: int = 0,
    columns: dict[str, Sequence[Any]] | None = None,
) -> BatchContext:
    return BatchContext(
        row_ids=range(row_group * n, (row_group + 1) * n),
        columns=columns or {},
        row_group=row_group,
        column=name,
        seed=seed,
    )


def build(column: ColumnConfig, **ctx: Any) -> ColumnGenerator:
    return build_generator(column, BuildContext(**ctx))


def draw(column: ColumnConfig, n: int = DRAWS, **kwargs: Any) -> list[Any]:
    generator = build(column)
    values = generator.generate(batch(column.name, n, **kwargs))
    assert len(values) == n
    return list(values)


def chi_square_ok(samples: Sequence[int], pmf: Callable[[int], float], support: range) -> bool:
    """Pearson's test against ``pmf``, pooling sparse bins; a far-out threshold (df + 6 sd)."""
    counts = collections.Counter(samples)
    n = len(samples)
    assert all(k in support for k in counts)
    bins: list[tuple[float, int]] = []
    expected, observed = 0.0, 0
    for k in support:
        expected += n * pmf(k)
        observed += counts.get(k, 0)
        if expected >= 5:
            bins.append((expected, observed))
            expected, observed = 0.0, 0
    last_e, last_o = bins.pop()
    bins.append((last_e + expected, last_o + observed))
    stat = sum((o - e) ** 2 / e for e, o in bins)
    df = len(bins) - 1
    return stat < df + 6 * math.sqrt(2 * df)


def poisson_pmf(mean: float) -> Callable[[int], float]:
    return lambda k: math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1))


def binomial_pmf(n: int, p: float) -> Callable[[int], float]:
    def pmf(k: int) -> float:
        log_choose = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        return math.exp(log_choose + k * math.log(p) + (n - k) * math.log1p(-p))

    return pmf


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "column",
    [
        CategoryColumn(name="c", values=("a", "b", "c")),
        UniformColumn(name="u", low=0, high=1),
        GaussianColumn(name="g"),
        PoissonColumn(name="p", mean=4),
        BernoulliColumn(name="b", p=0.5),
        BinomialColumn(name="n", n=20, p=0.4),
        UUIDColumn(name="id"),
        DatetimeColumn(name="d", start=dt.datetime(2020, 1, 1), end=dt.datetime(2021, 1, 1)),
        TimedeltaColumn(name="t", min=0, max=1000),
    ],
    ids=lambda c: c.kind,
)
def test_samplers_are_deterministic_per_seed_and_row_group(column: ColumnConfig) -> None:
    """Same (seed, column, row group) → same values; another row group or seed → others."""
    first = draw(column, 200)
    assert draw(column, 200) == first
    assert build(column).generate(batch(column.name, 200)) == first
    assert draw(column, 200, row_group=1) != first
    assert draw(column, 200, seed=8) != first


def test_samplers_are_inline_batch_generators_with_declared_outputs() -> None:
    """Samplers run inline, per batch, synchronously, and declare their column's type."""
    generator = build(PoissonColumn(name="visits", mean=2))
    assert generator.granularity == "batch"
    assert generator.inline
    assert not generator.is_async
    assert generator.outputs == {"visits": pa.int64()}


# --------------------------------------------------------------------------- category


def test_category_weights_set_frequencies() -> None:
    """Weighted category draws occur in proportion to their weights."""
    values = draw(CategoryColumn(name="c", values=("a", "b", "c"), weights=(5, 3, 2)))
    counts = collections.Counter(values)
    for value, share in {"a": 0.5, "b": 0.3, "c": 0.2}.items():
        assert counts[value] / DRAWS == pytest.approx(share, abs=0.015)


def test_category_without_weights_is_uniform() -> None:
    """Unweighted category values are equally likely."""
    counts = collections.Counter(draw(CategoryColumn(name="c", values=(1, 2, 3, 4))))
    assert set(counts) == {1, 2, 3, 4}
    assert all(count / DRAWS == pytest.approx(0.25, abs=0.015) for count in counts.values())


@pytest.mark.parametrize(
    ("values", "arrow", "converted"),
    [
        ((True, False), pa.bool_(), {True, False}),
        ((1, 2), pa.int64(), {1, 2}),
        ((1, 2.5), pa.float64(), {1.0, 2.5}),
        (("x", "y"), pa.string(), {"x", "y"}),
        (("x", 2, True), pa.string(), {"x", "2", "True"}),
    ],
)
def test_category_output_type_is_inferred(
    values: tuple[Any, ...], arrow: pa.DataType, converted: set[Any]
) -> None:
    """The category column's type follows its values; mixed values become text."""
    column = CategoryColumn(name="c", values=values)
    generator = build(column)
    assert generator.outputs == {"c": arrow}
    drawn = generator.generate(batch("c", 300))
    assert set(drawn) == converted
    assert all(type(v) is type(next(iter(converted))) for v in drawn)
    pa.array(drawn, type=arrow)


# --------------------------------------------------------------------------- subcategory


def _subcategory_columns() -> dict[str, ColumnConfig]:
    return {
        "animal": CategoryColumn(name="animal", values=("cat", "dog")),
        "breed": SubcategoryColumn(
            name="breed",
            parent="animal",
            values={"cat": ("siamese", "persian"), "dog": ("beagle", "poodle", "pug")},
        ),
    }


def test_subcategory_draws_from_the_parent_values_list() -> None:
    """Each subcategory value belongs to the list of its row's parent value."""
    columns = _subcategory_columns()
    generator = build(columns["breed"], columns=columns)
    parents = ["cat", "dog"] * 500
    breeds = generator.generate(batch("breed", 1000, columns={"animal": parents}))
    options = columns["breed"].values  # type: ignore[attr-defined]
    assert all(b in options[p] for p, b in zip(parents, breeds, strict=True))
    assert set(breeds) == {"siamese", "persian", "beagle", "poodle", "pug"}


def test_subcategory_unknown_parent_value_fails_only_that_row() -> None:
    """A parent value without an entry fails that row (naming column and value), not the batch."""
    columns = _subcategory_columns()
    generator = build(columns["breed"], columns=columns)
    cat, hamster = generator.generate(batch("breed", 2, columns={"animal": ["cat", "hamster"]}))
    assert cat in columns["breed"].values["cat"]  # type: ignore[attr-defined]
    assert isinstance(hamster, RowFailure)
    assert isinstance(hamster.error, GenerationError)
    assert re.search(r"'breed'.*'animal'.*'hamster'", str(hamster.error))


def test_subcategory_parent_must_be_a_category_column() -> None:
    """Building a subcategory whose parent is not a category column is a ConfigError."""
    columns = _subcategory_columns()
    columns["animal"] = UniformColumn(name="animal", low=0, high=1)
    with pytest.raises(ConfigError, match="category column") as info:
        build(columns["breed"], columns=columns)
    assert (info.value.column, info.value.field) == ("breed", "parent")


def test_subcategory_must_cover_every_parent_value() -> None:
    """A parent value missing from the subcategory's values is caught at build time."""
    columns = _subcategory_columns()
    columns["animal"] = CategoryColumn(name="animal", values=("cat", "dog", "fish"))
    with pytest.raises(ConfigError, match="'fish'") as info:
        build(columns["breed"], columns=columns)
    assert info.value.field == "values"


# --------------------------------------------------------------------------- uniform, gaussian


def test_uniform_floats_stay_in_bounds_with_uniform_spread() -> None:
    """Uniform floats lie in [low, high] with the uniform mean and variance."""
    values = draw(UniformColumn(name="u", low=-2, high=6))
    assert all(-2 <= v <= 6 for v in values)
    assert statistics.fmean(values) == pytest.approx(2, abs=0.1)
    assert statistics.variance(values) == pytest.approx(64 / 12, rel=0.05)


def test_uniform_convert_to_int_covers_ceil_low_to_floor_high() -> None:
    """convert_to int draws every integer in [ceil(low), floor(high)], nothing else."""
    generator = build(UniformColumn(name="u", low=0.5, high=4.5, convert_to="int"))
    assert generator.outputs == {"u": pa.int64()}
    values = generator.generate(batch("u", 2000))
    assert set(values) == {1, 2, 3, 4}
    assert all(type(v) is int for v in values)


def test_uniform_convert_to_int_without_an_integer_is_a_config_error() -> None:
    """An integer uniform over a range without integers is refused at build time."""
    with pytest.raises(ConfigError, match="no integer"):
        build(UniformColumn(name="u", low=0.2, high=0.8, convert_to="int"))


def test_uniform_decimals_round_and_convert_to_string() -> None:
    """decimals rounds floats; convert_to string stores the rounded number as text."""
    values = draw(UniformColumn(name="u", low=0, high=10, decimals=2), 500)
    assert all(round(v, 2) == v for v in values)
    generator = build(UniformColumn(name="u", low=0, high=10, decimals=1, convert_to="string"))
    assert generator.outputs == {"u": pa.string()}
    texts = generator.generate(batch("u", 500))
    assert all(re.fullmatch(r"\d+\.\d", t) for t in texts)


def test_gaussian_mean_and_stddev() -> None:
    """Gaussian draws have the configured mean and standard deviation."""
    values = draw(GaussianColumn(name="g", mean=10, stddev=3))
    assert statistics.fmean(values) == pytest.approx(10, abs=0.1)
    assert statistics.stdev(values) == pytest.approx(3, rel=0.03)


def test_gaussian_convert_to_int_rounds() -> None:
    """convert_to int rounds gaussian draws to the nearest integer, typed int64."""
    generator = build(GaussianColumn(name="g", mean=0, stddev=2, convert_to="int"))
    assert generator.outputs == {"g": pa.int64()}
    values = generator.generate(batch("g", 2000))
    assert all(type(v) is int for v in values)
    assert statistics.fmean(values) == pytest.approx(0, abs=0.2)


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize("mean", [0.7, 3, 12, 500])
def test_poisson_matches_its_distribution(mean: float) -> None:
    """Poisson draws (Knuth for small means, PTRS for large) fit the exact pmf."""
    values = draw(PoissonColumn(name="p", mean=mean))
    assert all(type(v) is int and v >= 0 for v in values)
    sd = math.sqrt(mean / DRAWS)
    assert statistics.fmean(values) == pytest.approx(mean, abs=5 * sd)
    assert statistics.variance(values) == pytest.approx(mean, rel=0.06)
    assert chi_square_ok(values, poisson_pmf(mean), range(int(mean + 20 * math.sqrt(mean) + 20)))


@pytest.mark.parametrize(("n", "p"), [(10, 0.3), (1000, 0.3), (1000, 0.004), (200, 0.9)])
def test_binomial_matches_its_distribution(n: int, p: float) -> None:
    """Binomial draws (inversion for small n·p, BTRS for large) fit the exact pmf."""
    values = draw(BinomialColumn(name="b", n=n, p=p))
    assert all(0 <= v <= n for v in values)
    mean, var = n * p, n * p * (1 - p)
    assert statistics.fmean(values) == pytest.approx(mean, abs=5 * math.sqrt(var / DRAWS))
    assert statistics.variance(values) == pytest.approx(var, rel=0.06)
    assert chi_square_ok(values, binomial_pmf(n, p), range(n + 1))


@pytest.mark.parametrize(("n", "p", "expected"), [(0, 0.5, 0), (7, 0.0, 0), (7, 1.0, 7)])
def test_binomial_degenerate_cases(n: int, p: float, expected: int) -> None:
    """n = 0, p = 0 and p = 1 give constant counts."""
    assert set(draw(BinomialColumn(name="b", n=n, p=p), 50)) == {expected}


def test_bernoulli_frequency_and_conversion() -> None:
    """Bernoulli gives 0/1 int64 with frequency p; convert_to float gives 0.0/1.0."""
    generator = build(BernoulliColumn(name="b", p=0.3))
    assert generator.outputs == {"b": pa.int64()}
    values = generator.generate(batch("b", DRAWS))
    assert set(values) == {0, 1}
    assert statistics.fmean(values) == pytest.approx(0.3, abs=0.015)
    floats = draw(BernoulliColumn(name="b", p=0.3, convert_to="float"), 100)
    assert set(floats) <= {0.0, 1.0}
    assert all(type(v) is float for v in floats)


def test_count_samplers_convert_to_string() -> None:
    """convert_to string stores counts as decimal text, typed string."""
    generator = build(PoissonColumn(name="p", mean=5, convert_to="string"))
    assert generator.outputs == {"p": pa.string()}
    assert all(v.isdigit() for v in generator.generate(batch("p", 100)))


# --------------------------------------------------------------------------- uuid


def test_uuid_values_are_unique_version_4() -> None:
    """UUIDs are canonical lowercase version-4 text and distinct."""
    values = draw(UUIDColumn(name="id"), 1000)
    pattern = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert all(re.fullmatch(pattern, v) for v in values)
    assert len(set(values)) == 1000


def test_uuid_prefix_short_uppercase() -> None:
    """prefix is prepended; short keeps 8 hex digits; uppercase upper-cases the UUID."""
    values = draw(UUIDColumn(name="id", prefix="usr_", short=True, uppercase=True), 100)
    assert all(re.fullmatch(r"usr_[0-9A-F]{8}", v) for v in values)


# --------------------------------------------------------------------------- datetime


def test_datetime_in_bounds_floored_to_unit() -> None:
    """Datetimes lie in [start, end] and are whole minutes; both ends are reachable."""
    start, end = dt.datetime(2024, 1, 1, 10, 0, 30), dt.datetime(2024, 1, 1, 10, 5, 10)
    column = DatetimeColumn(name="d", start=start, end=end, unit="minutes")
    generator = build(column)
    assert generator.outputs == {"d": pa.timestamp("us")}
    values = generator.generate(batch("d", 500))
    assert all(start <= v <= end for v in values)
    assert {v.minute for v in values} == {1, 2, 3, 4, 5}
    assert all(v.second == 0 and v.microsecond == 0 for v in values)


def test_datetime_days_unit_is_uniform_over_days() -> None:
    """With unit days every day of the range is drawn about equally often, at midnight."""
    column = DatetimeColumn(
        name="d", start=dt.datetime(2024, 3, 1), end=dt.datetime(2024, 3, 10, 23), unit="days"
    )
    counts = collections.Counter(draw(column))
    assert sorted(counts) == [dt.datetime(2024, 3, day) for day in range(1, 11)]
    assert all(c / DRAWS == pytest.approx(0.1, abs=0.012) for c in counts.values())


def test_datetime_format_gives_text() -> None:
    """format stores strftime text in a string column."""
    column = DatetimeColumn(
        name="d",
        start=dt.datetime(2024, 1, 1),
        end=dt.datetime(2024, 12, 31),
        unit="days",
        format="%Y/%m/%d",
    )
    generator = build(column)
    assert generator.outputs == {"d": pa.string()}
    assert all(re.fullmatch(r"2024/\d\d/\d\d", v) for v in generator.generate(batch("d", 50)))


def test_datetime_aware_bounds_become_naive_utc() -> None:
    """Aware bounds are converted to naive UTC values."""
    tz = dt.timezone(dt.timedelta(hours=2))
    column = DatetimeColumn(
        name="d",
        start=dt.datetime(2024, 1, 1, 2, tzinfo=tz),
        end=dt.datetime(2024, 1, 1, 2, 30, tzinfo=tz),
    )
    values = draw(column, 50)
    assert all(v.tzinfo is None and v.hour == 0 for v in values)


def test_datetime_without_a_whole_unit_in_range_is_a_config_error() -> None:
    """A range holding no whole unit is refused at build time."""
    column = DatetimeColumn(
        name="d", start=dt.datetime(2024, 1, 1, 1), end=dt.datetime(2024, 1, 1, 5), unit="days"
    )
    with pytest.raises(ConfigError, match="no whole day"):
        build(column)


# --------------------------------------------------------------------------- timedelta


def test_timedelta_without_reference_is_a_duration() -> None:
    """Without reference, values are whole-unit durations in [min, max]."""
    generator = build(TimedeltaColumn(name="t", min=-2, max=3, unit="hours"))
    assert generator.outputs == {"t": pa.duration("us")}
    values = generator.generate(batch("t", 1000))
    assert {v // dt.timedelta(hours=1) for v in values} == set(range(-2, 4))
    assert all(v % dt.timedelta(hours=1) == dt.timedelta(0) for v in values)
    pa.array(values, type=pa.duration("us"))


def test_timedelta_with_reference_adds_to_the_datetime() -> None:
    """With reference, values are the reference datetime plus [min, max] days; null stays."""
    column = TimedeltaColumn(name="due", min=1, max=3, reference="created")
    generator = build(column, upstream_types={"created": pa.timestamp("us")})
    assert generator.outputs == {"due": pa.timestamp("us")}
    created = [dt.datetime(2024, 1, 1) + dt.timedelta(hours=h) for h in range(99)] + [None]
    due = generator.generate(batch("due", 100, columns={"created": created}))
    assert due[-1] is None
    assert {(d - c).days for c, d in zip(created[:-1], due[:-1], strict=True)} == {1, 2, 3}


@pytest.mark.parametrize("reference_type", [pa.string(), None])
def test_timedelta_reference_must_be_a_timestamp_column(reference_type: pa.DataType) -> None:
    """A reference that is not a built timestamp column is a ConfigError on 'reference'."""
    types = {} if reference_type is None else {"created": reference_type}
    column = TimedeltaColumn(name="due", min=1, max=3, reference="created")
    with pytest.raises(ConfigError) as info:
        build(column, upstream_types=types)
    assert (info.value.column, info.value.field) == ("due", "reference")


def test_unknown_column_class_is_a_config_error() -> None:
    """build_generator refuses a config class without a registered builder."""
    with pytest.raises(ConfigError, match="no generator") as info:
        build(ColumnConfig(name="odd"))
    assert info.value.column == "odd"


def test_generators_package_exports_a_sorted_public_face() -> None:
    """gridloom.generators lists its public names sorted, and each one exists."""
    import gridloom.generators as package

    assert package.__all__ == sorted(set(package.__all__))
    assert all(hasattr(package, name) for name in package.__all__)


# --------------------------------------------------------------------------- hostile parameters

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        (UniformColumn, {"low": NAN, "high": 1}, "finite"),
        (UniformColumn, {"low": 0, "high": INF}, "finite"),
        (UniformColumn, {"low": 0, "high": 10**400}, "too large"),
        (UniformColumn, {"low": -1.7e308, "high": 1.7e308}, "too wide"),
        (UniformColumn, {"low": 0, "high": 1e19, "convert_to": "int"}, "64-bit"),
        (UniformColumn, {"low": 0, "high": 1, "decimals": 10**20}, "64-bit"),
        (UniformColumn, {"low": True, "high": 2}, "must be a number"),
        (GaussianColumn, {"mean": NAN}, "finite"),
        (GaussianColumn, {"stddev": NAN}, "finite"),
        (GaussianColumn, {"stddev": INF}, "finite"),
        (GaussianColumn, {"mean": 1e308, "stddev": 1e307}, "overflow"),
        (GaussianColumn, {"stddev": 2e18, "convert_to": "int"}, "64-bit"),
        (PoissonColumn, {"mean": NAN}, "finite"),
        (PoissonColumn, {"mean": INF}, "finite"),
        (PoissonColumn, {"mean": 1e16}, "must be <="),
        (BernoulliColumn, {"p": True}, "must be a number"),
        (BernoulliColumn, {"p": NAN}, "finite"),
        (BinomialColumn, {"n": 2**63, "p": 0.5}, "64-bit"),
        (BinomialColumn, {"n": -1, "p": 0.5}, ">= 0"),
        (BinomialColumn, {"n": 10, "p": 1.5}, "between 0 and 1"),
        (CategoryColumn, {"values": ("a", "b"), "weights": (NAN, 1)}, "finite"),
        (CategoryColumn, {"values": ("a", "b"), "weights": (INF, 1)}, "finite"),
        (CategoryColumn, {"values": ("a", "b"), "weights": (1e308, 1e308)}, "sum"),
        (CategoryColumn, {"values": ("a", "b"), "weights": (-1, 2)}, ">= 0"),
        (CategoryColumn, {"values": (NAN, 1.0)}, "finite"),
        (CategoryColumn, {"values": (10**20, 1)}, "64-bit"),
        (CategoryColumn, {"values": ([1, 2], "a")}, "not text, a number"),
        (CategoryColumn, {"values": ("\ud800",)}, "UTF-8"),
        (SubcategoryColumn, {"parent": "p", "values": {NAN: ("a",)}}, "finite"),
        (SubcategoryColumn, {"parent": "p", "values": {"a": (INF,)}}, "finite"),
        (TimedeltaColumn, {"min": 0, "max": 10**12}, "106751991 days"),
        (TimedeltaColumn, {"min": -(10**13), "max": 0, "unit": "seconds"}, "seconds"),
        (TimedeltaColumn, {"min": 0, "max": 2**63}, "64-bit"),
        (TimedeltaColumn, {"min": 0, "max": 4_000_000, "reference": "d"}, "3652058 days"),
        (UUIDColumn, {"prefix": "\udcff"}, "UTF-8"),
        (
            DatetimeColumn,
            {
                "start": dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
                "end": dt.datetime(2, 1, 1),
            },
            "leaves the datetime range",
        ),
        (
            DatetimeColumn,
            {"start": dt.datetime(2020, 1, 1), "end": dt.datetime(2021, 1, 1), "format": "%Y\x00"},
            "NUL",
        ),
    ],
)
def test_hostile_parameters_are_refused_when_the_column_is_made(
    kind: type[ColumnConfig], fields: dict[str, Any], message: str
) -> None:
    """NaN, infinities, non-numbers, values past 64 bits or past what a draw can hold are
    refused by the column's own validators (so Python-built configs are checked too)."""
    with pytest.raises((ValueError, TypeError), match=message):
        kind(name="x", **fields)


def test_datetime_bounds_with_and_without_offsets_compare_in_utc() -> None:
    """A naive start and an aware end are compared (and drawn between) in UTC."""
    plus_two = dt.timezone(dt.timedelta(hours=2))
    column = DatetimeColumn(
        name="d", start=dt.datetime(2024, 1, 1), end=dt.datetime(2024, 1, 1, 3, tzinfo=plus_two)
    )
    values = draw(column, 200)
    assert min(values) >= dt.datetime(2024, 1, 1)
    assert max(values) <= dt.datetime(2024, 1, 1, 1)
    with pytest.raises(ValueError, match="must not be before start"):
        DatetimeColumn(
            name="d",
            start=dt.datetime(2024, 1, 1, 1),
            end=dt.datetime(2024, 1, 1, 2, tzinfo=plus_two),
        )


def test_datetime_start_past_the_last_whole_unit_is_a_config_error() -> None:
    """A start after the last midnight of year 9999 (unit days) is a ConfigError, not an
    OverflowError."""
    column = DatetimeColumn(
        name="d",
        start=dt.datetime(9999, 12, 31, 12),
        end=dt.datetime(9999, 12, 31, 23),
        unit="days",
    )
    with pytest.raises(ConfigError, match="no whole day") as info:
        build(column)
    assert (info.value.column, info.value.field) == ("d", "unit")


def test_category_dates_are_kept_as_their_text() -> None:
    """A date among category values (YAML's unquoted 2024-01-31) is kept as its text, which
    is what the column stores and what a config file can hold."""
    column = CategoryColumn(name="c", values=(dt.date(2024, 1, 31), "x"))
    assert column.values == ("2024-01-31", "x")
    assert set(draw(column, 100)) == {"2024-01-31", "x"}


def test_timedelta_reference_bounds_that_overflow_are_a_config_error() -> None:
    """Given the reference column's range, a duration that takes it past year 9999 is
    refused when the generator is built."""
    column = TimedeltaColumn(name="due", min=0, max=400, reference="created")
    start, kind = dt.datetime(2020, 1, 1), pa.timestamp("us")
    TimedeltaSampler(column, reference_type=kind, reference_bounds=(start, dt.datetime(2021, 1, 1)))
    with pytest.raises(ConfigError, match="leaves the datetime range") as info:
        TimedeltaSampler(
            column, reference_type=kind, reference_bounds=(start, dt.datetime(9999, 6, 1))
        )
    assert (info.value.column, info.value.field) == ("due", "max")


def test_timedelta_past_year_9999_is_refused_when_compiled() -> None:
    """validate refuses a timedelta whose datetime reference's range plus [min, max] leaves
    years 1 to 9999, instead of a run that drops every row."""
    cfg = PipelineConfig(
        columns=[
            DatetimeColumn(
                name="created", start=dt.datetime(9999, 1, 1), end=dt.datetime(9999, 6, 1)
            ),
            TimedeltaColumn(name="due", min=0, max=400, reference="created"),
        ]
    )
    with pytest.raises(ConfigError, match="leaves the datetime range"):
        compile_pipeline(cfg)


def test_timedelta_sum_past_year_9999_fails_that_row_only() -> None:
    """At run time, a reference datetime plus its duration past year 9999 fails its row
    alone (a RowFailure), not the whole batch."""
    column = TimedeltaColumn(name="due", min=30, max=30, reference="created")
    generator = build(column, upstream_types={"created": pa.timestamp("us")})
    created = [dt.datetime(2024, 1, 1), dt.datetime(9999, 12, 30), None]
    due = generator.generate(batch("due", 3, columns={"created": created}))
    assert due[0] == dt.datetime(2024, 1, 31)
    assert isinstance(due[1], RowFailure)
    assert "years 1 to 9999" in str(due[1].error)
    assert due[2] is None


def test_binomial_with_tiny_p_and_huge_n_has_mean_n_p() -> None:
    """n = 2**62, p = 2e-18: 1 - p rounds to 1.0, yet the counts average n·p ≈ 9.2 (they
    were all 0)."""
    values = draw(BinomialColumn(name="b", n=2**62, p=2e-18), 5_000)
    assert statistics.mean(values) == pytest.approx(2**62 * 2e-18, rel=0.05)


@pytest.mark.parametrize(
    "column",
    [
        BinomialColumn(name="b", n=2**63 - 1, p=0.5),
        BinomialColumn(name="b", n=2**63 - 1, p=1.0),
        PoissonColumn(name="p", mean=1e15),
        UniformColumn(name="u", low=-(2**62), high=2**62, convert_to="int"),
        GaussianColumn(name="g", mean=0, stddev=1e18, convert_to="int"),
        TimedeltaColumn(name="t", min=-106_751_991, max=106_751_991),
    ],
    ids=lambda c: c.kind,
)
def test_largest_accepted_parameters_give_values_arrow_stores(column: ColumnConfig) -> None:
    """At the edge of what is accepted, every value still fits the declared Arrow type."""
    generator = build(column)
    values = generator.generate(batch(column.name, 500))
    pa.array(values, type=generator.outputs[column.name])
