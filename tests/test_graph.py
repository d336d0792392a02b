"""Compiling pipelines into execution graphs, and every compile-time error."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.engine import compile_pipeline


def pipeline(*columns: dict[str, object], **extra: object) -> gl.PipelineConfig:
    return structure_pipeline({"columns": list(columns), **extra})


def test_topological_order_follows_references_and_config_order() -> None:
    """Nodes come upstream first; independent columns keep their config order."""
    graph = compile_pipeline(
        pipeline(
            {"name": "c", "expression": "{{ b }}!"},
            {"name": "a", "category": {"values": ["x", "y"]}},
            {"name": "b", "expression": "{{ a }}?"},
            {"name": "z", "uniform": {"low": 0, "high": 1}},
        )
    )
    assert [n.name for n in graph.nodes] == ["a", "b", "c", "z"]
    by_name = {n.name: n for n in graph.nodes}
    assert by_name["c"].upstream == (by_name["b"].index,)
    assert by_name["a"].downstream == (by_name["b"].index,)
    assert by_name["c"].inputs == ("a", "b")
    assert graph.depth() == 3


def test_expression_is_batch_after_batches_and_cell_after_cells() -> None:
    """An expression over samplers runs per row group; over a per-cell column, per cell."""
    graph = compile_pipeline(
        pipeline(
            {"name": "a", "category": {"values": ["x"]}},
            {"name": "e1", "expression": "{{ a }}"},
            {
                "name": "f",
                "custom": {"function": "json:dumps", "mode": "cell"},
                "depends_on": ["a"],
            },
            {"name": "e2", "expression": "{{ f }}"},
        )
    )
    kinds = {n.name: n.granularity for n in graph.nodes}
    assert kinds == {"a": "batch", "e1": "batch", "f": "cell", "e2": "cell"}


def test_cycle_is_rejected_and_spelled_out() -> None:
    """A loop of references fails compilation with the loop in the message."""
    with pytest.raises(gl.CycleError) as info:
        compile_pipeline(
            pipeline(
                {"name": "a", "expression": "{{ c }}"},
                {"name": "b", "expression": "{{ a }}"},
                {"name": "c", "expression": "{{ b }}"},
                {"name": "free", "category": {"values": [1]}},
            )
        )
    assert "a -> b -> c -> a" in str(info.value)
    assert info.value.cycle == ["a", "b", "c", "a"]


def test_self_reference_is_a_cycle() -> None:
    """A column whose template names itself is a cycle of one."""
    with pytest.raises(gl.CycleError, match="a -> a"):
        compile_pipeline(pipeline({"name": "a", "expression": "{{ a }}"}))


def test_cycle_through_depends_on() -> None:
    """Explicit depends_on edges take part in cycle detection."""
    with pytest.raises(gl.CycleError, match="a -> b -> a"):
        compile_pipeline(
            pipeline(
                {"name": "a", "expression": "x", "depends_on": ["b"]},
                {"name": "b", "expression": "{{ a }}"},
            )
        )


def test_unknown_reference_names_column_field_and_suggests() -> None:
    """A template naming a missing column fails with the column, the field and a suggestion."""
    with pytest.raises(gl.UnknownReferenceError) as info:
        compile_pipeline(
            pipeline(
                {"name": "topic", "category": {"values": ["x"]}},
                {"name": "summary", "expression": "About {{ topik }}"},
            )
        )
    message = str(info.value)
    assert info.value.column == "summary"
    assert info.value.field == "expression.template"
    assert "'topik'" in message
    assert "did you mean 'topic'" in message


def test_unknown_depends_on_and_subcategory_parent() -> None:
    """Direct references (depends_on, parent) are checked like template ones."""
    with pytest.raises(gl.UnknownReferenceError) as info:
        compile_pipeline(pipeline({"name": "a", "expression": "x", "depends_on": ["nope"]}))
    assert (info.value.column, info.value.field) == ("a", "depends_on")
    with pytest.raises(gl.UnknownReferenceError) as info:
        compile_pipeline(
            pipeline({"name": "city", "subcategory": {"parent": "country", "values": {"a": [1]}}})
        )
    assert (info.value.column, info.value.field) == ("city", "subcategory.parent")


def test_bad_template_syntax_names_column_and_field() -> None:
    """A template that does not parse fails at compile time, not at run time."""
    with pytest.raises(gl.TemplateError) as info:
        compile_pipeline(
            pipeline(
                {"name": "a", "category": {"values": ["x"]}},
                {"name": "b", "expression": "{{ a "},
            )
        )
    assert (info.value.column, info.value.field) == ("b", "expression.template")
    assert "does not parse" in str(info.value)


def test_unknown_model_alias_is_rejected() -> None:
    """A column naming a model alias that is not configured fails before anything runs."""
    with pytest.raises(gl.ConfigError) as info:
        pipeline(
            {"name": "a", "custom": {"function": "json:dumps", "model": "writer"}},
            providers=[{"name": "local", "endpoint": "http://127.0.0.1:9/v1"}],
            models=[{"alias": "judge", "provider": "local", "model": "m"}],
        )
    assert (info.value.column, info.value.field) == ("a", "custom.model")
    assert "'writer'" in str(info.value)
    assert "judge" in str(info.value)


def test_duplicate_column_name_is_rejected() -> None:
    """Two columns with one name fail with that name."""
    with pytest.raises(gl.ConfigError) as info:
        pipeline(
            {"name": "a", "category": {"values": ["x"]}},
            {"name": "a", "uniform": {"low": 0, "high": 1}},
        )
    assert (info.value.column, info.value.field) == ("a", "name")


def test_schema_omits_dropped_columns_and_uses_declared_types() -> None:
    """The output schema has every kept column with its declared Arrow type."""
    graph = compile_pipeline(
        pipeline(
            {"name": "n", "uniform": {"low": 1, "high": 9, "convert_to": "int"}, "drop": True},
            {"name": "twice", "expression": {"template": "{{ n * 2 }}", "dtype": "int"}},
            {"name": "flag", "bernoulli": {"p": 0.5}},
        )
    )
    assert graph.schema == pa.schema([("twice", pa.int64()), ("flag", pa.int64())])
    assert graph.columns == ("n", "twice", "flag")


def test_seed_dataset_columns_are_referenceable_and_cannot_be_shadowed(tmp_path: Path) -> None:
    """Seed columns feed templates; a generated column may not reuse a seed column's name."""
    pq.write_table(pa.table({"city": ["Oslo", "Lima"], "pop": [1, 2]}), tmp_path / "s.parquet")
    seed = {"path": str(tmp_path / "s.parquet")}
    graph = compile_pipeline(
        pipeline({"name": "label", "expression": "{{ city }} ({{ pop }})"}, seed_dataset=seed)
    )
    assert graph.nodes[0].name == "seed_dataset"
    assert graph.nodes[0].outputs == ("city", "pop")
    assert graph.schema.names == ["city", "pop", "label"]
    with pytest.raises(gl.ConfigError) as info:
        compile_pipeline(
            pipeline({"name": "city", "category": {"values": ["x"]}}, seed_dataset=seed)
        )
    assert (info.value.column, info.value.field) == ("city", "name")


def test_validate_accepts_a_yaml_path_and_resolves_relative_paths(tmp_path: Path) -> None:
    """gl.validate loads a config file; relative seed paths resolve against its folder."""
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "seed.parquet")
    (tmp_path / "p.yaml").write_text(
        "seed_dataset: {path: seed.parquet}\n"
        "columns:\n  - {name: y, expression: {template: '{{ x + 1 }}', dtype: int}}\n"
    )
    graph = gl.validate(tmp_path / "p.yaml")
    assert graph.schema.names == ["x", "y"]


def test_every_compile_error_is_listed() -> None:
    """Compiling goes on past a bad column: template errors, unknown references, a cycle and a
    generator that cannot be built are all listed, in one error of the first one's type."""
    with pytest.raises(gl.ConfigError) as info:
        compile_pipeline(
            pipeline(
                {"name": "a", "category": {"values": ["x"]}},
                {"name": "b", "expression": "{{ a "},
                {"name": "c", "expression": "{{ topik }} {{ a }}"},
                {"name": "d", "expression": "{{ e }}"},
                {"name": "e", "expression": "{{ d }}"},
                {"name": "f", "custom": {"function": "no_such_module_xyz:f"}},
                {"name": "g", "expression": "{{ b }} {{ c }} fine"},
            )
        )
    err = info.value
    assert isinstance(err, gl.TemplateError)
    assert [(i.column, i.field) for i in err.issues] == [
        ("b", "expression.template"),
        ("c", "expression.template"),
        ("d", None),
        ("f", "custom.function"),
    ]
    assert "references unknown column 'topik'" in err.issues[1].message
    assert "d -> e -> d" in err.issues[2].message
    lines = str(err).splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("column 'b', field 'expression.template': template does not parse")
    assert lines[1].startswith("  column 'c', field 'expression.template': references unknown")


def test_one_compile_error_is_raised_as_before() -> None:
    """With one problem the error is exactly the one raised before errors were collected."""
    with pytest.raises(gl.UnknownReferenceError) as info:
        compile_pipeline(pipeline({"name": "a", "expression": "{{ b }}"}))
    assert len(info.value.issues) == 1
    assert (
        str(info.value) == "column 'a', field 'expression.template': references unknown column 'b'"
    )
