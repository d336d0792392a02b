"""Processors (drop_columns, rename, schema_transform): config, validation, runs end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import dump_config, load_config, structure_pipeline
from gridloom.generators import TemplateLimits
from gridloom.run._processors import ProcessorChain, compile_processors
from gridloom.run._transform import compile_transform

CHAT = {
    "messages": [
        {"role": "user", "content": "{{ prompt }}"},
        {"role": "assistant", "content": "{{ answer }}"},
    ],
    "n": "{{ n }}",
    "vector": "{{ vector }}",
    "first": "{{ vector[0] }}",
    "label": "{{ topic | upper }}-{{ n }}",
    "constant": 7,
}

PIPELINE_YAML = """
providers: [{name: sim, type: simulated, simulation: {default: {latency: {fixed: 0.01}}}}]
models:
  - {alias: writer, provider: sim, model: writer-8b}
  - {alias: embedder, provider: sim, model: embed-small}
columns:
  - {name: topic, category: {values: [rivers, volcanoes, deserts]}}
  - {name: n, uniform: {low: 1, high: 6, convert_to: int}}
  - {name: question, expression: "Tell me about {{ topic }}"}
  - {name: answer, llm_text: {model: writer, prompt: "{{ question }}"}}
  - {name: vector, embedding: {model: embedder, input: "{{ topic }}"}}
  - {name: scratch, expression: "scratch {{ n }}"}
processors:
  - {drop_columns: [scratch]}
  - {rename: {question: prompt}}
  - schema_transform:
      template: CHAT_JSON
run: {seed: 5, row_group_size: 4, progress: "off"}
""".replace("CHAT_JSON", json.dumps(CHAT))


def pipeline() -> gl.PipelineConfig:
    return structure_pipeline(yaml.safe_load(PIPELINE_YAML))


def built() -> gl.PipelineConfig:
    return (
        gl.PipelineBuilder(seed=5)
        .provider(pipeline().providers[0])
        .model("writer", provider="sim", model="writer-8b")
        .model("embedder", provider="sim", model="embed-small")
        .category("topic", ["rivers", "volcanoes", "deserts"])
        .uniform("n", 1, 6, convert_to="int")
        .expression("question", "Tell me about {{ topic }}")
        .llm_text("answer", "writer", "{{ question }}")
        .embedding("vector", "embedder", "{{ topic }}")
        .expression("scratch", "scratch {{ n }}")
        .processors({"drop_columns": ["scratch"]}, {"rename": {"question": "prompt"}})
        .processors({"schema_transform": {"template": CHAT}})
        .run(row_group_size=4, progress="off")
        .build()
    )


def test_yaml_and_builder_give_the_same_pipeline_and_it_round_trips() -> None:
    """The YAML form and the builder's processors() give equal configs; dump → load is lossless."""
    cfg = pipeline()
    assert built() == cfg
    assert load_config(yaml.safe_load(dump_config(cfg))) == cfg
    assert dump_config(cfg).index("processors:") > dump_config(cfg).index("columns:")


def test_processors_change_the_config_hash() -> None:
    """Processors decide the output, so they are part of the hash checked on resume."""
    cfg = pipeline()
    other = gl.PipelineConfig(
        columns=cfg.columns, providers=cfg.providers, models=cfg.models, run=cfg.run
    )
    assert gl.config.config_hash(cfg) != gl.config.config_hash(other)


async def test_a_run_writes_chat_records_with_native_types(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """Over real sockets, each row becomes a chat record; single-expression paths keep types."""
    result = await gl.acreate(pipeline(), num_records=10, output_dir=tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "data")
    assert table.schema.names == ["messages", "n", "vector", "first", "label", "constant"]
    assert table.schema.field("messages").type == pa.list_(
        pa.struct([("role", pa.string()), ("content", pa.string())])
    )
    assert table.schema.field("n").type == pa.int64()
    assert table.schema.field("vector").type == pa.list_(pa.float32())
    assert table.schema.field("first").type == pa.float32()
    assert table.schema.field("constant").type == pa.int64()
    rows = table.to_pylist()
    assert len(rows) == 10 == result.num_rows
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user"
        assert user["content"].startswith("Tell me about ")
        assert assistant["role"] == "assistant"
        assert assistant["content"]
        assert isinstance(row["n"], int)
        assert 1 <= row["n"] <= 6
        assert len(row["vector"]) == 32
        assert row["first"] == row["vector"][0]
        assert row["label"] == f"{user['content'].rsplit(' ', 1)[1].upper()}-{row['n']}"
        assert row["constant"] == 7
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert list(meta["schema"]) == table.schema.names


async def test_preview_applies_processors(autojump_clock: Any) -> None:
    """A preview (in memory) gives the processed rows too."""
    result = await gl.apreview(pipeline(), num_records=3)
    assert result.table.schema.names[0] == "messages"
    assert result.table.num_rows == 3


async def test_resume_gives_an_identical_table(tmp_path: Path, autojump_clock: Any) -> None:
    """A row group lost and regenerated on resume goes through the processors like the others."""
    out = tmp_path / "out"
    full = await gl.acreate(pipeline(), num_records=10, output_dir=out)
    meta_path = out / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta["row_groups"]["1"]
    meta["status"] = "interrupted"
    meta_path.write_text(json.dumps(meta))
    (out / "data" / "part-00001.parquet").unlink()
    resumed = await gl.acreate(pipeline(), num_records=10, output_dir=out, resume=True)
    assert resumed.table.equals(full.table)


async def test_processors_see_one_row_group_at_a_time(
    tmp_path: Path, autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain is called once per row group, with only that group's rows."""
    calls: list[tuple[int, list[int]]] = []
    apply = ProcessorChain.apply

    def spy(self: ProcessorChain, data: Any) -> Any:
        calls.append((data.index, list(data.row_ids)))
        return apply(self, data)

    monkeypatch.setattr(ProcessorChain, "apply", spy)
    await gl.acreate(pipeline(), num_records=10, output_dir=tmp_path / "out")
    assert sorted(index for index, _ in calls) == [0, 1, 2]
    for index, row_ids in calls:
        assert row_ids == list(range(index * 4, min(index * 4 + 4, 10)))


async def test_rows_a_template_fails_are_dropped_with_the_reason(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """A row whose transform fails is dropped and recorded under the processor; counts agree."""
    cfg = (
        gl.PipelineBuilder(seed=1)
        .uniform("n", 1, 4, convert_to="int")
        .processors({"schema_transform": {"template": {"q": "{{ 12 // (n - 2) }}"}}})
        .run(row_group_size=5, progress="off")
        .build()
    )
    out = tmp_path / "out"
    result = await gl.acreate(cfg, num_records=20, output_dir=out)
    dropped = result.dropped.to_pylist()
    assert dropped
    assert all(d["column"] == "processors[0].schema_transform" for d in dropped)
    assert {d["error_type"] for d in dropped} == {"ZeroDivisionError"}
    assert result.num_rows + result.num_dropped == 20
    assert result.table.num_rows == result.num_rows
    assert result.drop_reasons == {
        "processors[0].schema_transform": {"ZeroDivisionError": len(dropped)}
    }
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["rows_dropped"] == len(dropped)
    assert pq.read_table(out / "dropped").num_rows == len(dropped)
    assert all(int(q) in (-12, 12, 6) for q in result.table.column("q").to_pylist())


def test_a_record_that_does_not_fit_its_type_is_a_row_failure() -> None:
    """A value that does not fit the derived type fails its row, not the row group."""
    compiled = compile_transform(
        {"x": "{{ x }}", "t": "{{ x }}!"},
        pa.schema([("x", pa.int64())]),
        where="processors[0].schema_transform",
        limits=TemplateLimits(),
    )
    columns, failures = compiled.apply({"x": [1, "two", 3]}, 3)
    assert list(failures) == [1]
    assert failures[1][0] == "ValueTypeError"
    assert "processors[0].schema_transform.template.x" in failures[1][1]
    assert columns["x"][0] == 1
    assert columns["t"][2] == "3!"


BASE: dict[str, Any] = {
    "columns": [
        {"name": "topic", "category": {"values": ["a", "b"]}},
        {"name": "n", "uniform": {"low": 1, "high": 3, "convert_to": "int"}},
    ]
}


@pytest.mark.parametrize(
    ("processors", "field", "message"),
    [
        ([{"drop_columns": ["topc"]}], "processors[0].drop_columns", "did you mean 'topic'"),
        ([{"drop_columns": ["topic", "n"]}], "processors[0].drop_columns", "every column"),
        ([{"rename": {"nn": "m"}}], "processors[0].rename.nn", "unknown column 'nn'"),
        ([{"rename": {"n": "topic"}}], "processors[0].rename.n", "already a column"),
        (
            [{"rename": {"n": "m"}}, {"schema_transform": {"template": {"a": "{{ n }}"}}}],
            "processors[1].schema_transform.template.a",
            "unknown column 'n'",
        ),
        (
            [{"schema_transform": {"template": {"m": [{"c": "{{ topic"}]}}}],
            "processors[0].schema_transform.template.m[0].c",
            "does not parse",
        ),
        (
            [{"schema_transform": {"template": {"m": ["{{ topic }}", "{{ n }}"]}}}],
            "processors[0].schema_transform.template.m[1]",
            "share one type",
        ),
        (
            [{"schema_transform": {"template": {"m": "{{ topic.__class__ }}"}}}],
            "processors[0].schema_transform.template.m",
            "private",
        ),
    ],
)
def test_bad_processors_fail_validate_in_one_line(
    processors: list[dict[str, Any]], field: str, message: str
) -> None:
    """Each bad processor fails validation before any request, one line naming it."""
    with pytest.raises(gl.ConfigError) as info:
        gl.validate({**BASE, "processors": processors})
    assert info.value.field == field
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("processors", "field", "message"),
    [
        ([{"drop_colums": ["n"]}], "processors[0]", "did you mean 'drop_columns'"),
        ([{"drop_columns": "n"}], "processors[0].drop_columns", "expected a list"),
        ([{"rename": {"a": "x", "b": "x"}}], "processors[0].rename", "two columns"),
        (
            [{"schema_transform": {"template": []}}],
            "processors[0].schema_transform.template",
            "mapping",
        ),
        ([{"drop_columns": ["n"], "rename": {}}], "processors[0]", "one key"),
    ],
)
def test_malformed_processors_fail_at_load(
    processors: list[dict[str, Any]], field: str, message: str
) -> None:
    """A processor of the wrong shape fails while loading, naming it."""
    with pytest.raises(gl.ConfigError) as info:
        structure_pipeline({**BASE, "processors": processors})
    assert info.value.field == field
    assert message in str(info.value)


NAMES = st.lists(st.text("abcdefgh", min_size=1, max_size=4), min_size=1, max_size=6, unique=True)


@settings(max_examples=60, deadline=None)
@given(names=NAMES, data=st.data())
def test_drop_and_rename_over_random_column_sets(names: list[str], data: st.DataObject) -> None:
    """Dropping then renaming gives exactly the expected columns, values following their names."""
    dropped = data.draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names) - 1))
    kept = [n for n in names if n not in dropped]
    targets = data.draw(
        st.lists(
            st.text("xyz", min_size=1, max_size=3),
            min_size=len(kept),
            max_size=len(kept),
            unique=True,
        )
    )
    renames = {old: new for old, new in zip(kept, targets, strict=True) if data.draw(st.booleans())}
    processors: list[Any] = []
    if dropped:
        processors.append({"drop_columns": dropped})
    if renames:
        processors.append({"rename": renames})
    cfg = structure_pipeline(
        {"columns": [{"name": n, "expression": n} for n in names], "processors": processors}
    )
    schema = pa.schema([(n, pa.string()) for n in names])
    chain = compile_processors(cfg, schema)
    if not processors:
        assert chain is None
        return
    assert chain is not None
    expected = [renames.get(n, n) for n in kept]
    assert chain.schema.names == expected
    data_in = gl.storage.RowGroupData(
        index=0,
        first_row_id=0,
        num_rows=2,
        row_ids=[0, 1],
        columns={n: [n, n + "!"] for n in names},
    )
    out = chain.apply(data_in)
    assert list(out.columns) == expected
    for old in kept:
        assert out.columns[renames.get(old, old)] == [old, old + "!"]
