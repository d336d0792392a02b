"""Hostile and edge inputs to ``conditional_params`` and ``constraints``: one-line errors naming
the field, no work that grows out of bounds on the event loop, and every row's variant chosen
from its own values."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import ColumnConfig, structure_pipeline
from gridloom.config import _variants as variants_module
from gridloom.config._converter import converter
from gridloom.errors import ConfigError, UnknownReferenceError
from gridloom.generators import _shaped
from gridloom.generators._shaped import INLINE_VARIANTS, ShapedSampler


def pipeline(
    columns: list[dict[str, Any]], constraints: list[dict[str, Any]] | None = None
) -> gl.PipelineConfig:
    return structure_pipeline(
        {"columns": columns, "constraints": constraints or [], "run": {"seed": 5}}
    )


def config_error(config: gl.PipelineConfig) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        gl.validate(config)
    assert "\n" not in str(info.value)
    return info.value


def uniform(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "uniform": {"low": 0, "high": 10}, **extra}


def threads_of_shaped_columns(
    monkeypatch: pytest.MonkeyPatch, config: gl.PipelineConfig
) -> set[bool]:
    """Whether each call of a shaped sampler ran on the main (event loop) thread."""
    on_main: set[bool] = set()
    generate = ShapedSampler.generate

    def spy(self: ShapedSampler, ctx: Any) -> list[Any]:
        on_main.add(threading.current_thread() is threading.main_thread())
        return generate(self, ctx)

    monkeypatch.setattr(ShapedSampler, "generate", spy)
    gl.preview(config, 20)
    return on_main


def test_a_constrained_column_is_drawn_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejection sampling may redraw whole row groups up to max_attempts times, so a column
    with constraints never runs on the event loop."""
    config = pipeline(
        [uniform("lo"), uniform("hi")],
        [{"column": "hi", "op": ">", "other": "lo", "max_attempts": 100_000}],
    )
    assert threads_of_shaped_columns(monkeypatch, config) == {False}


def test_many_conditions_run_in_a_worker_thread_few_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Up to INLINE_VARIANTS simple conditions evaluate on the loop (a few ms for a batch);
    more go to a worker thread."""
    few = {f"i > {k}": {"low": 5} for k in range(INLINE_VARIANTS)}
    many = {f"i > {k}": {"low": 5} for k in range(INLINE_VARIANTS + 1)}
    config = pipeline([uniform("i"), uniform("a", conditional_params=few)])
    assert threads_of_shaped_columns(monkeypatch, config) == {True}
    config = pipeline([uniform("i"), uniform("a", conditional_params=many)])
    assert threads_of_shaped_columns(monkeypatch, config) == {False}


def test_more_than_a_thousand_conditions_are_refused_on_load() -> None:
    """A column's conditional_params is bounded: 1,001 conditions fail naming the field."""
    conditions = {f"i > {k}": {"low": 5} for k in range(1_001)}
    with pytest.raises(ConfigError) as info:
        pipeline([uniform("i"), uniform("a", conditional_params=conditions)])
    assert info.value.column == "a"
    assert info.value.field == "conditional_params"
    assert "at most 1000" in str(info.value)


def test_building_a_variant_does_not_copy_the_other_conditions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each variant is made from the column without its conditions, so building N variants
    is linear in N (unstructuring every condition for each one was quadratic)."""
    seen: list[int] = []
    real = converter

    class Spy:
        structure = staticmethod(real.structure)

        @staticmethod
        def unstructure(obj: Any, unstructure_as: Any = None) -> Any:
            if isinstance(obj, ColumnConfig):
                seen.append(len(obj.conditional_params or {}))
            return real.unstructure(obj, unstructure_as=unstructure_as)

    monkeypatch.setattr(variants_module, "converter", Spy())
    conditions = {f"i > {k}": {"low": 5} for k in range(50)}
    gl.validate(pipeline([uniform("i"), uniform("a", conditional_params=conditions)]))
    assert seen
    assert set(seen) == {0}


@pytest.mark.parametrize(
    ("column", "field"),
    [
        (
            {
                "name": "s",
                "scipy": {"distribution": "norm", "params": {"loc": 0, "scale": 1}},
                "conditional_params": {"c == 'x'": {"distribution": "no_such"}},
            },
            "conditional_params[\"c == 'x'\"].distribution",
        ),
        (
            {
                "name": "s",
                "subcategory": {"parent": "c", "values": {"x": ["x1"], "y": ["y1"]}},
                "conditional_params": {"c == 'x'": {"parent": "s2"}},
            },
            "conditional_params[\"c == 'x'\"].parent",
        ),
    ],
)
def test_a_variant_failing_to_build_names_its_condition(column: dict[str, Any], field: str) -> None:
    """An error found building a variant (not only loading its parameters) names the field
    under conditional_params[<condition>], not the column's own field."""
    s2 = {"name": "s2", "uniform": {"low": 0, "high": 1}}
    error = config_error(pipeline([{"name": "c", "category": {"values": ["x", "y"]}}, s2, column]))
    assert error.column == "s"
    assert error.field == field


def test_a_variants_parent_is_a_dependency() -> None:
    """A subcategory variant whose parent is another column waits for that column (declared
    after it here), and draws from it: no row fails for want of it."""
    config = pipeline(
        [
            {"name": "c", "category": {"values": ["x", "y"]}},
            {
                "name": "s",
                "subcategory": {"parent": "c", "values": {"x": ["x1"], "y": ["y1"]}},
                "conditional_params": {"c == 'x'": {"parent": "e"}},
            },
            {"name": "e", "category": {"values": ["y"]}},
        ]
    )
    graph = gl.validate(config)
    assert {e["node"]: e for e in graph.describe()}["s"]["depends_on"] == ["c", "e"]
    result = gl.preview(config, 40)
    assert result.num_dropped == 0
    rows = result.table.to_pylist()
    assert {r["c"] for r in rows} == {"x", "y"}
    assert all(r["s"] == ("y1" if r["c"] == "x" else f"{r['c']}1") for r in rows)


def test_a_variants_unknown_parent_is_an_unknown_reference() -> None:
    """A variant naming a column that does not exist is an unknown reference of its field."""
    config = pipeline(
        [
            {"name": "c", "category": {"values": ["x", "y"]}},
            {
                "name": "s",
                "subcategory": {"parent": "c", "values": {"x": ["x1"], "y": ["y1"]}},
                "conditional_params": {"c == 'x'": {"parent": "nowhere"}},
            },
        ]
    )
    error = config_error(config)
    assert isinstance(error, UnknownReferenceError)
    assert error.field == "conditional_params[\"c == 'x'\"].parent"


def test_negative_zero_picks_its_own_variant() -> None:
    """Rows are memoised by their values' types and representations: -0.0 and 0.0 (equal,
    but rendered differently) each choose by their own condition, whatever row came first."""
    config = pipeline(
        [
            {"name": "x", "gaussian": {"mean": 0, "stddev": 0.2, "decimals": 0}},
            uniform("y", conditional_params={"(x|string) == '-0.0'": {"low": 100, "high": 101}}),
        ]
    )
    rows = gl.preview(config, 200).table.to_pylist()
    signs = {str(r["x"]) for r in rows}
    assert {"0.0", "-0.0"} <= signs
    assert all((r["y"] >= 100) == (str(r["x"]) == "-0.0") for r in rows)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.sampled_from([0.0, -0.0, 1, 1.0, True, 0, False]), st.floats()), max_size=12
    )
)
def test_the_variant_memo_never_conflates_values_that_render_differently(
    values: list[Any],
) -> None:
    """For any values, a row's variant is the one its own value's text selects, never one
    memoised for an equal value of another type or sign."""
    config = pipeline(
        [uniform("x"), uniform("y", conditional_params={"(x|string) == '-0.0'": {"low": 5}})]
    )
    graph = gl.validate(config)
    sampler = graph.nodes[graph.producer["y"]].generator
    assert isinstance(sampler, ShapedSampler)
    choices = sampler._choose([{"x": value} for value in values])
    assert choices == [1 if str(value) == "-0.0" else 0 for value in values]


@settings(max_examples=40, deadline=None)
@given(
    seconds=st.one_of(
        st.floats(min_value=1e9, max_value=1e308), st.integers(min_value=10**9, max_value=2**63)
    )
)
def test_any_duration_constant_is_accepted_or_a_config_error(seconds: float) -> None:
    """A duration constraint's constant of any size is a value, or (past the longest
    duration, ~8.6e13 s) a one-line ConfigError naming constraints[0].value, never an
    OverflowError."""
    assume(not 8e13 < seconds < 1e14)
    config = pipeline(
        [{"name": "t", "timedelta": {"min": 0, "max": 100, "unit": "seconds"}}],
        [{"column": "t", "op": "<", "value": seconds}],
    )
    if seconds < 8e13:
        gl.validate(config)
        return
    error = config_error(config)
    assert (error.column, error.field) == ("t", "constraints[0].value")
    assert "longest duration" in str(error)


@pytest.mark.parametrize(
    "text", ["2024-06-01T13:00:00", "2024-06-01T00:00:00+02:00", "2024-06-01T00:00:01"]
)
def test_a_date_column_refuses_a_constant_with_a_time(text: str) -> None:
    """A date's constraint constant is a date: a time of day or zone would be silently cut
    off (making ``<=`` and ``>=`` wrong), so it is refused."""
    with pytest.raises(ValueError, match="give value as a date"):
        _shaped._constant(text, "date", pa.date32())
    assert _shaped._constant("2024-06-01", "date", pa.date32()) == dt.date(2024, 6, 1)
    assert _shaped._constant("2024-06-01T00:00:00", "date", pa.date32()) == dt.date(2024, 6, 1)


@pytest.mark.parametrize(
    ("attempts", "group", "refused"),
    [(100_000, 1_000, False), (100_000, 1_001, True), (1, 100_000_001, True), (100, 500, False)],
)
def test_max_attempts_times_the_row_group_is_bounded(
    attempts: int, group: int, refused: bool
) -> None:
    """Each attempt redraws a whole row group: max_attempts times run.row_group_size over
    100,000,000 (hours of CPU for a constraint that rarely holds) fails validation, naming
    the constraint's max_attempts; up to it is accepted."""
    config = structure_pipeline(
        {
            "columns": [uniform("lo"), uniform("hi")],
            "constraints": [{"column": "hi", "op": ">", "other": "lo", "max_attempts": attempts}],
            "run": {"seed": 5, "row_group_size": group},
        }
    )
    if not refused:
        gl.validate(config)
        return
    error = config_error(config)
    assert (error.column, error.field) == ("hi", "constraints[0].max_attempts")
    assert "100,000,000" in str(error)


@settings(max_examples=60, deadline=None)
@given(
    low=st.floats(min_value=-1e6, max_value=1e6),
    width=st.floats(min_value=0, max_value=1e6),
    decimals=st.integers(min_value=0, max_value=3),
)
def test_rounded_bounds_are_reachable(low: float, width: float, decimals: int) -> None:
    """A sampler with ``decimals`` stores its bounds rounded, possibly past the drawn range:
    constraints asking for the rounded extremes are never refused as impossible."""
    high = low + width
    params = {"low": low, "high": high, "decimals": decimals}
    config = pipeline(
        [{"name": "a", "uniform": params}, {"name": "b", "uniform": params}],
        [
            {"column": "a", "op": ">=", "value": round(high, decimals)},
            {"column": "b", "op": "<=", "value": round(low, decimals)},
        ],
    )
    gl.validate(config)


def test_a_value_reached_only_by_rounding_is_drawn() -> None:
    """``uniform: [0, 9.96]`` with ``decimals: 1`` stores 10.0 now and then: ``>= 9.97``
    is accepted, and the rows kept hold exactly that value."""
    config = pipeline(
        [{"name": "a", "uniform": {"low": 0, "high": 9.96, "decimals": 1}}],
        [{"column": "a", "op": ">=", "value": 9.97, "max_attempts": 1000}],
    )
    rows = gl.preview(config, 20).table.to_pylist()
    assert rows
    assert {r["a"] for r in rows} == {10.0}


def test_a_numpy_whole_number_constant_is_kept_as_an_int() -> None:
    """A constant given as a numpy integer (what a DataFrame hands out) is accepted by the
    constraint and by its column, kept as a plain int (dumpable, hashable)."""
    np = pytest.importorskip("numpy")
    config = (
        gl.PipelineBuilder(seed=1)
        .uniform("d", 0, 10)
        .constraint("d", ">", value=np.int64(5))
        .build()
    )
    assert type(config.constraints[0].value) is int
    rows = gl.preview(config, 20).table.to_pylist()
    assert rows
    assert all(r["d"] > 5 for r in rows)


@pytest.mark.parametrize("condition", ["y > 0.5", "c == 'x'", "y.real"])
@pytest.mark.parametrize("bad", [float("nan"), [[1]], True, "text"])
def test_a_bad_conditional_value_names_one_field_however_it_is_found(
    condition: str, bad: Any
) -> None:
    """Whether a bad parameter is caught loading the file (nan, nesting) or building the
    variant (a boolean, text), the field is written the same: conditional_params[<cond>].low."""
    columns = [
        {"name": "c", "category": {"values": ["x"]}},
        uniform("y"),
        uniform("a", conditional_params={condition: {"low": bad}}),
    ]
    with pytest.raises(ConfigError) as info:
        gl.validate(pipeline(columns))
    assert info.value.column == "a"
    assert info.value.field == f"conditional_params[{condition!r}].low"
