"""Custom generators: function resolution, sync/async, cell/batch, coercion and errors."""

from __future__ import annotations

import functools
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.errors import ConfigError, GenerationError, ValueTypeError
from gridloom.generators import (
    BatchContext,
    BuildContext,
    CellContext,
    ColumnGenerator,
    build_generator,
)
from gridloom.kinds.custom import AsyncCustomGenerator, CustomColumn, CustomGenerator

from .test_dtypes import RETURNED as RETURNED_VALUES

MODULE = "gridloom_test_custom_functions"


def build(function: Any, **fields: Any) -> ColumnGenerator:
    column = CustomColumn(name="out", function=function, **fields)
    return build_generator(column, BuildContext())


def cell(row: Mapping[str, Any]) -> CellContext:
    return CellContext(row=row, row_id=3, column="out", seed=1)


def batch(columns: Mapping[str, list[Any]]) -> BatchContext:
    size = len(next(iter(columns.values())))
    return BatchContext(row_ids=range(size), columns=columns, row_group=0, column="out", seed=1)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module on sys.path holding user functions, removed again afterwards."""
    source = """
        def shout(row, ctx):
            return row["word"].upper() + ctx.params.get("suffix", "")

        class Tools:
            class Nested:
                @staticmethod
                def length(row, ctx):
                    return len(row["word"])

        NOT_CALLABLE = 3
    """
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield MODULE
    sys.modules.pop(MODULE, None)


def test_sync_cell_function_gets_row_and_ctx() -> None:
    """A sync cell function receives the row and the context, with the column params."""
    seen: dict[str, Any] = {}

    def greet(row: Mapping[str, Any], ctx: CellContext) -> str:
        seen.update(row_id=ctx.row_id, params=dict(ctx.params))
        return f"{ctx.params['greeting']}, {row['name']}"

    generator = build(greet, params={"greeting": "Hi"})
    assert isinstance(generator, CustomGenerator)
    assert (generator.granularity, generator.inline, generator.is_async) == ("cell", False, False)
    assert generator.outputs == {"out": pa.string()}
    assert generator.generate(cell({"name": "Ada"})) == "Hi, Ada"
    assert seen == {"row_id": 3, "params": {"greeting": "Hi"}}


def test_values_are_coerced_to_the_dtype() -> None:
    """What the function returns is converted to the column dtype."""
    generator = build(lambda row, ctx: str(row["n"] * 2), dtype="int")
    assert generator.outputs == {"out": pa.int64()}
    assert generator.generate(cell({"n": 21})) == 42
    bad = build(lambda row, ctx: "many", dtype="int")
    with pytest.raises(ValueTypeError, match="column 'out'"):
        bad.generate(cell({}))


def test_sync_batch_function_gets_columns() -> None:
    """A batch function receives each upstream column as a list and returns one value per row."""

    def total(columns: Mapping[str, list[int]], ctx: BatchContext) -> list[int]:
        return [a + b for a, b in zip(columns["a"], columns["b"], strict=True)]

    generator = build(total, mode="batch", dtype="float")
    assert generator.granularity == "batch"
    assert generator.generate(batch({"a": [1, 2, 3], "b": [10, 20, 30]})) == [11.0, 22.0, 33.0]


@pytest.mark.parametrize("returned", [[1], [1, 2, 3, 4]])
def test_batch_of_the_wrong_length_fails(returned: list[int]) -> None:
    """A batch function returning the wrong number of values fails, saying got N for M rows."""
    generator = build(lambda columns, ctx: returned, mode="batch", dtype="int")
    with pytest.raises(GenerationError, match=rf"got {len(returned)} values for 3 rows"):
        generator.generate(batch({"a": [1, 2, 3]}))


def test_batch_must_return_a_list() -> None:
    """A batch function returning a non-list (here a string) fails clearly."""
    generator = build(lambda columns, ctx: "abc", mode="batch")
    with pytest.raises(GenerationError, match="must return a list"):
        generator.generate(batch({"a": [1, 2, 3]}))


async def test_async_cell_function_is_awaited() -> None:
    """An async function becomes an async generator whose agenerate awaits it."""

    async def slow_double(row: Mapping[str, Any], ctx: CellContext) -> int:
        await trio.sleep(0.001)
        return int(row["n"]) * 2

    generator = build(slow_double, dtype="int")
    assert isinstance(generator, AsyncCustomGenerator)
    assert generator.is_async
    assert await generator.agenerate(cell({"n": 4})) == 8


async def test_async_batch_function_checks_length() -> None:
    """An async batch function's values are coerced and its length checked."""

    async def halves(columns: Mapping[str, list[Any]], ctx: BatchContext) -> list[Any]:
        await trio.sleep(0.001)
        return [v / 2 for v in columns["n"]]

    generator = build(halves, mode="batch", dtype="float")
    assert generator.granularity == "batch"
    assert await generator.agenerate(batch({"n": [2, 5]})) == [1.0, 2.5]

    async def short(columns: Mapping[str, list[Any]], ctx: BatchContext) -> list[Any]:
        return []

    with pytest.raises(GenerationError, match="got 0 values for 2 rows"):
        await build(short, mode="batch").agenerate(batch({"n": [2, 5]}))


class AsyncCallable:
    async def __call__(self, row: Mapping[str, Any], ctx: CellContext) -> str:
        return "called"


async def test_objects_with_async_call_and_partials_are_async() -> None:
    """Callables with an async __call__, and partials of async functions, are awaited."""
    generator = build(AsyncCallable())
    assert generator.is_async
    assert await generator.agenerate(cell({})) == "called"

    async def tagged(tag: str, row: Mapping[str, Any], ctx: CellContext) -> str:
        return tag

    partial = build(functools.partial(tagged, "p"))
    assert partial.is_async
    assert await partial.agenerate(cell({})) == "p"


def test_sync_function_returning_a_coroutine_fails_clearly() -> None:
    """A sync callable that hands back an awaitable is refused with a hint."""

    async def inner() -> str:
        return "x"

    generator = build(lambda row, ctx: inner())
    with pytest.raises(GenerationError, match="async def"):
        generator.generate(cell({}))


def test_import_path_resolves_functions_and_dotted_attributes(user_module: str) -> None:
    """'pkg.mod:attr' and 'pkg.mod:Class.attr' resolve at build time."""
    shout = build(f"{user_module}:shout", params={"suffix": "!"})
    assert shout.generate(cell({"word": "hey"})) == "HEY!"
    length = build(f"{user_module}:Tools.Nested.length", dtype="int")
    assert length.generate(cell({"word": "four"})) == 4


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("gridloom_no_such_module_xyz:f", "cannot import"),
        ("{module}:missing", "no attribute 'missing'"),
        ("{module}:Tools.Nested.missing", "no attribute 'missing'"),
        ("{module}:NOT_CALLABLE", "not callable"),
    ],
)
def test_unresolvable_import_path_is_a_config_error(
    user_module: str, path: str, message: str
) -> None:
    """An import path that cannot be resolved is a ConfigError on field custom.function (the
    kind's key first, as every field of a column is named)."""
    with pytest.raises(ConfigError, match=message) as info:
        build(path.format(module=user_module))
    assert (info.value.column, info.value.field) == ("out", "custom.function")


def test_params_are_read_only() -> None:
    """ctx.params is a read-only view of the column params."""

    def mutate(row: Mapping[str, Any], ctx: CellContext) -> str:
        ctx.params["k"] = "changed"  # type: ignore[index]
        return "unreachable"

    generator = build(mutate, params={"k": "v"})
    with pytest.raises(TypeError):
        generator.generate(cell({}))


#: What :func:`hostile_cell` returns, by row id (set by the test).
RETURNED: list[Any] = []


def hostile_cell(row: Mapping[str, Any], ctx: CellContext) -> Any:
    """Returns the value :data:`RETURNED` holds for the row (used by an import path)."""
    return RETURNED[ctx.row_id]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(RETURNED_VALUES, min_size=6, max_size=6),
    st.sampled_from(["string", "json", "int", "timedelta"]),
)
def test_a_value_that_cannot_be_stored_drops_its_row_not_the_run(
    values: list[Any], dtype: str
) -> None:
    """Whatever a custom function returns for a row (a lone surrogate at any depth, an object,
    bytes, NaN in JSON text...), the run writes every row group: a value its column cannot
    store drops that row (ValueTypeError), never the whole run."""
    import gridloom as gl

    RETURNED[:] = values
    pipeline = {
        "columns": [
            {"name": "u", "uniform": {"low": 0, "high": 1}},
            {
                "name": "s",
                "custom": {"function": "tests.test_custom:hostile_cell", "dtype": dtype},
                "depends_on": ["u"],
            },
        ],
        "run": {
            "seed": 1,
            "row_group_size": 4,
            "progress": "off",
            "allow_drops": 1.0,
            "generator_first_rows": 0,  # a column failing every row is not stopped here
            "generator_error_rate": None,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        result = gl.create(pipeline, num_records=len(values), output_dir=Path(tmp) / "out")
        assert result.status == "complete"
        assert result.num_rows + result.num_dropped == len(values)
        assert set(result.drop_reasons.get("s", {})) <= {"ValueTypeError"}
        assert gl.open_run(Path(tmp) / "out").table.num_rows == result.num_rows


def test_a_lone_surrogate_drops_its_row(tmp_path: Path) -> None:
    """The reported case: a function returning "\\ud800" for some rows drops those rows as
    ValueTypeError; the others are written."""
    import gridloom as gl

    RETURNED[:] = ["fine", "\ud800", "fine", {"k": ["\udc00"]}, "fine"]
    pipeline = {
        "columns": [
            {"name": "u", "uniform": {"low": 0, "high": 1}},
            {
                "name": "s",
                "custom": {"function": "tests.test_custom:hostile_cell"},
                "depends_on": ["u"],
            },
        ],
        "run": {"seed": 1, "row_group_size": 4, "progress": "off"},
    }
    result = gl.create(pipeline, num_records=5, output_dir=tmp_path / "out")
    assert result.status == "incomplete"  # more drops than run.allow_drops lets go
    assert result.num_rows == 3
    assert result.drop_reasons == {"s": {"ValueTypeError": 2}}
    assert result.table.column("s").to_pylist() == ["fine"] * 3
