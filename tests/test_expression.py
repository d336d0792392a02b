"""Expression generator: rendering, casting, granularity choice and errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import gridloom as gl
from gridloom.errors import (
    ConfigError,
    GenerationError,
    TemplateError,
    UnknownReferenceError,
    ValueTypeError,
)
from gridloom.generators import (
    BatchContext,
    BuildContext,
    CellContext,
    ColumnGenerator,
    Granularity,
    build_generator,
)
from gridloom.kinds import ExpressionColumn


def build(
    template: str, dtype: str = "string", granularity: dict[str, Granularity] | None = None
) -> ColumnGenerator:
    column = ExpressionColumn(name="out", template=template, dtype=dtype)  # type: ignore[arg-type]
    return build_generator(column, BuildContext(upstream_granularity=granularity or {}))


def cell(row: dict[str, Any]) -> CellContext:
    return CellContext(row=row, row_id=0, column="out", seed=1)


def test_renders_the_row_and_strips_whitespace() -> None:
    """A cell renders the template against its row, without surrounding whitespace."""
    generator = build("  Hello {{ name | title }}!\n", granularity={"name": "cell"})
    assert generator.generate(cell({"name": "ada lovelace"})) == "Hello Ada Lovelace!"


@pytest.mark.parametrize(
    ("template", "dtype", "expected", "arrow"),
    [
        ("{{ a + b }}", "int", 5, pa.int64()),
        ("{{ a / b }}", "float", 2 / 3, pa.float64()),
        ("{{ a < b }}", "bool", True, pa.bool_()),
        ("2024-01-0{{ a }}T08:00", "datetime", dt.datetime(2024, 1, 2, 8), pa.timestamp("us")),
        ("P{{ b }}D", "timedelta", dt.timedelta(days=3), pa.duration("us")),
        ('{"sum": {{ a + b }}}', "json", {"sum": 5}, pa.string()),
    ],
)
def test_rendered_text_is_cast_to_the_dtype(
    template: str, dtype: str, expected: Any, arrow: pa.DataType
) -> None:
    """The rendered text is converted to the column's dtype, which sets its Arrow type."""
    generator = build(template, dtype, {"a": "cell", "b": "cell"})
    assert generator.outputs == {"out": arrow}
    assert generator.generate(cell({"a": 2, "b": 3})) == expected


def test_empty_rendering_is_null_for_non_string_dtypes() -> None:
    """A template rendering nothing gives null for typed columns and '' for strings."""
    template = "{% if a %}{{ a }}{% endif %}"
    assert build(template, "int", {"a": "cell"}).generate(cell({"a": 0})) is None
    assert build(template, "string", {"a": "cell"}).generate(cell({"a": 0})) == ""


def test_value_that_does_not_fit_the_dtype_fails() -> None:
    """Rendered text that is not a valid value of the dtype raises ValueTypeError."""
    generator = build("{{ a }} apples", "int", {"a": "cell"})
    with pytest.raises(ValueTypeError, match=r"column 'out'.*'3 apples'.*as int"):
        generator.generate(cell({"a": 3}))


def test_render_error_names_the_column() -> None:
    """An undefined variable at render time raises GenerationError naming the column."""
    generator = build("{{ a.missing_attribute }}", granularity={"a": "cell"})
    with pytest.raises(GenerationError, match=r"column 'out'.*render"):
        generator.generate(cell({"a": 1}))


def test_sandbox_blocks_unsafe_access() -> None:
    """Attribute access to internals is refused when the template is compiled (before any
    row), the error naming the column and the field."""
    with pytest.raises(TemplateError) as caught:
        build("{{ a.__class__.__mro__ }}", granularity={"a": "cell"})
    assert (caught.value.column, caught.value.field) == ("out", "template")


def test_batch_when_every_reference_is_produced_by_a_batch_generator() -> None:
    """With only batch-produced references the generator renders a whole row group."""
    generator = build("{{ x }}-{{ y }}", granularity={"x": "batch", "y": "batch"})
    assert generator.granularity == "batch"
    assert generator.inline
    assert not generator.is_async
    ctx = BatchContext(
        row_ids=[4, 5, 6],
        columns={"x": [1, 2, 3], "y": ["a", "b", "c"]},
        row_group=0,
        column="out",
        seed=1,
    )
    assert generator.generate(ctx) == ["1-a", "2-b", "3-c"]


def test_cell_when_any_reference_is_produced_per_cell() -> None:
    """One cell-produced reference makes the expression a cell generator."""
    generator = build("{{ x }}-{{ y }}", granularity={"x": "batch", "y": "cell"})
    assert generator.granularity == "cell"
    assert generator.inline


def test_constant_template_is_batch() -> None:
    """A template without references renders per batch."""
    generator = build("constant")
    assert generator.granularity == "batch"
    ctx = BatchContext(row_ids=[0, 1], columns={}, row_group=0, column="out", seed=1)
    assert generator.generate(ctx) == ["constant", "constant"]


def test_template_syntax_error_is_a_template_error() -> None:
    """A template that does not parse is a TemplateError on field template."""
    with pytest.raises(TemplateError) as info:
        build("{{ a ")
    assert (info.value.column, info.value.field) == ("out", "template")


def test_unknown_reference_is_a_config_error() -> None:
    """A template naming a column not built before it is refused at build time."""
    with pytest.raises(UnknownReferenceError, match="'ghost'"):
        build("{{ ghost }}", granularity={"a": "batch"})


def test_unknown_dtype_is_a_config_error() -> None:
    """An unknown dtype is refused at build time on field dtype."""
    with pytest.raises(ConfigError) as info:
        build("{{ 1 }}", dtype="number")
    assert (info.value.column, info.value.field) == ("out", "dtype")


@pytest.mark.parametrize("mode", ["cell", "batch"])
def test_json_expressions_reach_downstream_templates_as_values(tmp_path: Path, mode: str) -> None:
    """An expression with dtype json is a value, not text, to the columns after it
    (`{{ e.a }}`, `{{ e.b[1] }}`), in cell and batch mode alike; it is stored as JSON text.
    Custom columns with dtype json behave the same."""
    config = gl.PipelineConfig(
        columns=[
            gl.UniformColumn(name="n", low=1, high=9, convert_to="int"),
            gl.ExpressionColumn(
                name="e", template='{"a": {{ n }}, "b": [1, {{ n * 2 }}]}', dtype="json"
            ),
            gl.ExpressionColumn(name="f", template="{{ e.a }}-{{ e.b[1] }}"),
            gl.CustomColumn(name="c", function=_as_json, dtype="json", mode=mode, depends_on=["n"]),
            gl.ExpressionColumn(name="g", template="{{ c.n }}"),
        ],
        run=gl.RunConfig(seed=3, progress="off"),
    )
    result = gl.create(config, num_records=6, output_dir=tmp_path / "o")
    assert result.status == "complete"
    for row in result.table.to_pylist():
        assert row["f"] == f"{row['n']}-{row['n'] * 2}"
        assert json.loads(row["e"]) == {"a": row["n"], "b": [1, row["n"] * 2]}
        assert json.loads(row["c"]) == {"n": row["n"]}
        assert row["g"] == str(row["n"])


def _as_json(values: dict[str, Any], ctx: Any) -> Any:
    if isinstance(ctx, BatchContext):
        return [{"n": n} for n in values["n"]]
    return {"n": values["n"]}
