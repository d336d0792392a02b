"""Native values in the dataset: Arrow types derived from JSON Schemas, structured columns
stored as structs (or as marked JSON text), read back as dicts, exported with real features,
kept across resume, and read by downstream templates and transforms."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import LLMStructuredColumn, ModelConfig, structure_pipeline
from gridloom.errors import StorageError
from gridloom.generators._json_arrow import (
    JsonArrowError,
    arrow_type_for_schema,
    storage_for_schema,
    to_arrow_value,
)
from gridloom.generators.llm import LLMStructuredGenerator
from gridloom.simulated._schema_values import value_for_schema
from gridloom.storage import open_run
from gridloom.storage._convert import JSON_TEXT_METADATA, is_json_text

from .strategies import json_schemas

RECORD = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "year": {"type": "integer", "minimum": 1800, "maximum": 2024},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "score": {"type": ["number", "null"]},
        "meta": {
            "type": "object",
            "properties": {"draft": {"type": "boolean"}, "kind": {"enum": ["a", "b"]}},
            "required": ["draft"],
        },
    },
    "required": ["title", "year", "tags", "score", "meta"],
    "additionalProperties": False,
}
RECORD_TYPE = pa.struct(
    [
        pa.field("title", pa.string(), nullable=False),
        pa.field("year", pa.int64(), nullable=False),
        pa.field("tags", pa.list_(pa.field("item", pa.string(), nullable=False)), nullable=False),
        pa.field("score", pa.float64()),
        pa.field(
            "meta",
            pa.struct(
                [pa.field("draft", pa.bool_(), nullable=False), pa.field("kind", pa.string())]
            ),
            nullable=False,
        ),
    ]
)
OPEN = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True}
ROWS = 8


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDLOOM_TEST_KEY", "sk-test")


# ---------------------------------------------------------------------- deriving types


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (RECORD, RECORD_TYPE),
        ({"type": "string"}, pa.string()),
        ({"type": "integer"}, pa.int64()),
        ({"type": ["integer", "number"]}, pa.float64()),
        ({"type": "boolean"}, pa.bool_()),
        ({"type": "null"}, pa.null()),
        ({"enum": [1, 2, None]}, pa.int64()),
        ({"enum": [1, 2.5]}, pa.float64()),
        ({"const": "x"}, pa.string()),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, pa.string()),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, pa.float64()),
        (
            {"type": "array", "items": {"type": ["integer", "null"]}},
            pa.list_(pa.field("item", pa.int64())),
        ),
        (
            {
                "type": "object",
                "properties": {"p": {"$ref": "#/$defs/point"}},
                "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}}},
            },
            pa.struct([pa.field("p", pa.struct([pa.field("x", pa.float64())]))]),
        ),
        (  # a required field whose schema allows null stays nullable
            {
                "type": "object",
                "properties": {"x": {"type": ["string", "null"]}},
                "required": ["x"],
            },
            pa.struct([pa.field("x", pa.string())]),
        ),
    ],
)
def test_closed_schemas_derive_their_arrow_type(schema: dict[str, Any], expected: Any) -> None:
    """A schema that pins its value's shape down derives the matching Arrow type, nullable
    exactly where the schema lets null (or a missing field) in."""
    derived = arrow_type_for_schema(schema)
    assert derived is not None
    assert derived.equals(expected, check_metadata=True), derived


@pytest.mark.parametrize(
    "schema",
    [
        OPEN,
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {}},
        {"type": "object"},
        {"type": "object", "properties": {}},
        {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
        {"type": "array"},
        {"type": "array", "items": [{"type": "string"}]},
        {"type": "array", "prefixItems": [{"type": "string"}]},
        {"type": ["string", "integer"]},
        {"enum": ["a", 1]},
        {"enum": [{"a": 1}]},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"allOf": [{"type": "string"}]},
        {"type": "object", "properties": {"a": {"type": "string"}}, "anyOf": [{"required": ["a"]}]},
        {"not": {"type": "string"}},
        {},
        {"$ref": "https://example.com/schema.json"},
        {"$ref": "#/$defs/missing"},
        {  # recursive
            "$ref": "#/$defs/node",
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {"next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
                }
            },
        },
    ],
)
def test_open_schemas_derive_nothing(schema: dict[str, Any]) -> None:
    """Open objects, tuples, mixed types, combinators other than a nullable anyOf/oneOf,
    outside or recursive references: no type, so the value is kept as JSON text."""
    assert arrow_type_for_schema(schema) is None
    stored, encode, metadata = storage_for_schema(schema, "c")
    assert stored == pa.string()
    assert metadata == JSON_TEXT_METADATA
    assert json.loads(encode({"a": [1, None]})) == {"a": [1, None]}


def _same(value: Any, stored: Any) -> bool:
    """``stored`` holds ``value`` (a missing object key as None, an int as a float)."""
    if isinstance(stored, dict):
        return (
            isinstance(value, dict)
            and set(value) <= set(stored)
            and all(_same(value.get(key), item) for key, item in stored.items())
        )
    if isinstance(stored, list):
        return (
            isinstance(value, list)
            and len(value) == len(stored)
            and all(_same(v, s) for v, s in zip(value, stored, strict=True))
        )
    if isinstance(stored, float) and not isinstance(value, bool):
        return isinstance(value, int | float) and (
            value == stored or (math.isnan(stored) and math.isnan(value))
        )
    return type(value) is type(stored) and value == stored


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=json_schemas(), seed=st.integers(0, 2**16))
def test_values_valid_for_a_schema_round_trip_through_its_type(
    schema: dict[str, Any], seed: int
) -> None:
    """Whenever a type derives from a schema, every value valid for the schema maps onto it,
    Arrow stores it, and it reads back equal (an int in a float field as that float)."""
    value = value_for_schema(schema, random.Random(seed))
    jsonschema.validate(value, schema)
    derived = arrow_type_for_schema(schema)
    if derived is None:
        return
    converted = to_arrow_value(value, derived)
    array = pa.array([converted], type=derived)
    array.validate(full=True)
    assert array.to_pylist()[0] == converted
    assert _same(value, converted)


def test_a_value_that_does_not_fit_names_its_field_path() -> None:
    """A value outside its type (here beyond 64-bit integers) fails with the field's path."""
    type_ = arrow_type_for_schema(
        {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "integer"}}}}
    )
    assert type_ is not None
    with pytest.raises(JsonArrowError, match=r"answer\.xs\[1\]: cannot store .* int64"):
        to_arrow_value({"xs": [1, 2**70]}, type_, "answer")
    with pytest.raises(JsonArrowError, match=r"value\.xs\[1\]: cannot store None .*null item"):
        to_arrow_value({"xs": [1, None]}, type_)
    assert to_arrow_value({"xs": [1.0, 2], "extra": 1}, type_) == {"xs": [1, 2]}
    assert to_arrow_value({}, type_) == {"xs": None}


def test_a_structured_cell_whose_value_cannot_be_stored_fails_naming_the_field() -> None:
    """The generator checks the parsed answer against its stored type in the cell, so a
    misfit is an unusable answer of that cell (ValueError naming the field: sent back to the
    model for correction), not a failure of the row group."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    column = LLMStructuredColumn(name="f", model="m", prompt="p", schema=schema)
    model = ModelConfig(alias="m", provider="sim", model="x")
    generator = LLMStructuredGenerator(column, model, schema=schema, max_corrections=0)
    assert generator.outputs["f"] == pa.struct([pa.field("n", pa.int64(), nullable=False)])
    assert generator.answer_value({"n": 3}) == {"n": 3}
    with pytest.raises(ValueError, match=r"^f\.n: cannot store"):
        generator.answer_value({"n": 2**64})


class _Part(LLMStructuredGenerator):
    def answer_value(self, answer: Any) -> Any:
        return answer["n"]


def test_a_subclass_keeping_part_of_the_answer_keeps_a_plain_string_column() -> None:
    """A generator that overrides ``answer_value`` (as plugins do) keeps the string column of
    JSON text it had before native values, unmarked, so its own encoders still fit."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    column = LLMStructuredColumn(name="f", model="m", prompt="p", schema=schema)
    model = ModelConfig(alias="m", provider="sim", model="x")
    part = _Part(column, model, schema=schema, max_corrections=0)
    assert part.outputs["f"] == pa.string()
    assert part.field_metadata == {}
    assert part.encoders["f"](3) == "3"


# ---------------------------------------------------------------------- end to end


def year_and_key(row: dict[str, Any], ctx: Any) -> str:
    """A custom column's function: reads a struct column's and a ``dtype: json`` column's
    parsed values (a type error here fails the row, and the test's counts see it)."""
    return f"{row['as_json']['year']}:{row['blob']['k'][0]}"


def _pipeline(**extra_columns: Any) -> gl.PipelineConfig:
    """A structured column per format with a closed schema, one with an open schema, a
    ``dtype: json`` expression, and templates reading each."""
    columns: list[dict[str, Any]] = [{"name": "topic", "category": {"values": ["a", "b"]}}]
    for fmt in ("json", "yaml", "xml"):
        spec = {"model": "m", "prompt": "About {{ topic }}.", "format": fmt, "schema": RECORD}
        columns.append({"name": f"as_{fmt}", "llm_structured": spec})
    columns += [
        {"name": "loose", "llm_structured": {"model": "m", "prompt": "x", "schema": OPEN}},
        {"name": "blob", "expression": {"template": '{"k": [{{ 1 }}, 2]}', "dtype": "json"}},
        {
            "name": "by_code",
            "custom": {"function": "tests.test_native_values:year_and_key"},
            "depends_on": ["as_json", "blob"],
        },
        {
            "name": "reads",
            "expression": {
                "template": "{{ as_json.title }}|{{ as_yaml.meta.draft }}|{{ as_xml.tags[0] }}"
                "|{{ loose.a }}|{{ blob.k[1] }}"
            },
        },
    ]
    return structure_pipeline(
        {
            "providers": [{"name": "sim", "type": "simulated", "simulation": {"seed": 3}}],
            "models": [{"alias": "m", "provider": "sim", "model": "sim-model"}],
            "columns": columns,
            "run": {"seed": 5, "row_group_size": 4, "progress": "off"},
            **extra_columns,
        }
    )


def _check_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        for fmt in ("json", "yaml", "xml"):
            value = row[f"as_{fmt}"]
            assert isinstance(value, dict)
            jsonschema.validate(value, RECORD)
        loose = json.loads(row["loose"])
        blob = json.loads(row["blob"])
        assert blob == {"k": [1, 2]}
        parts = [
            row["as_json"]["title"],
            str(row["as_yaml"]["meta"]["draft"]),
            row["as_xml"]["tags"][0],
            str(loose.get("a", "")),
            "2",
        ]
        assert row["reads"] == "|".join(parts)
        assert row["by_code"] == f"{row['as_json']['year']}:1"


async def test_structured_columns_of_each_format_are_stored_as_structs(
    tmp_path: Path,
) -> None:
    """Over real sockets, JSON, YAML and XML columns with a closed schema are stored as the
    derived struct in the parquet files; an open schema and ``dtype: json`` as JSON text
    marked in the field metadata; templates downstream read the parsed values."""
    out = tmp_path / "out"
    result = await gl.acreate(_pipeline(), num_records=ROWS, output_dir=out)
    assert result.num_rows == ROWS
    on_disk = pq.read_table(out / "data")
    for fmt in ("json", "yaml", "xml"):
        assert on_disk.schema.field(f"as_{fmt}").type.equals(RECORD_TYPE)
        assert not is_json_text(on_disk.schema.field(f"as_{fmt}"))
    for name in ("loose", "blob"):
        field = on_disk.schema.field(name)
        assert field.type == pa.string()
        assert field.metadata == JSON_TEXT_METADATA
    _check_rows(on_disk.to_pylist())
    _check_rows(result.table.to_pylist())


async def test_to_pandas_gives_dicts_and_hf_gets_real_features(tmp_path: Path) -> None:
    """``to_pandas()`` gives dicts for struct columns and parses marked JSON text (unless
    ``parse_json=False``); the Hugging Face dataset has nested features, not strings."""
    pytest.importorskip("pandas")
    datasets = pytest.importorskip("datasets")
    result = await gl.acreate(_pipeline(), num_records=ROWS, output_dir=tmp_path / "out")
    frame = result.to_pandas()
    first = frame.iloc[0]
    assert isinstance(first["as_json"], dict)
    assert isinstance(first["as_json"]["year"], int)
    assert list(first["as_yaml"]["tags"]) == list(result.table.to_pylist()[0]["as_yaml"]["tags"])
    assert first["blob"] == {"k": [1, 2]}
    assert isinstance(first["loose"], dict)
    assert isinstance(result.to_pandas(parse_json=False).iloc[0]["blob"], str)
    dataset = result.to_hf_dataset()
    features = dataset.features
    assert features["as_json"]["year"] == datasets.Value("int64")
    assert features["as_json"]["meta"]["draft"] == datasets.Value("bool")
    assert features["blob"] == datasets.Value("string")
    assert dataset[0]["as_json"]["title"] == result.table.to_pylist()[0]["as_json"]["title"]
    saved = result.to_hf_dataset(tmp_path / "hf")
    assert saved.features == features


async def test_jsonl_export_writes_structured_values_as_json_objects(tmp_path: Path) -> None:
    """JSON Lines holds structs and marked JSON text alike as JSON objects, not strings."""
    result = await gl.acreate(_pipeline(), num_records=ROWS, output_dir=tmp_path / "out")
    info = result.to_jsonl(tmp_path / "rows.jsonl")
    assert info.rows == ROWS
    lines = (tmp_path / "rows.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["as_json"] for r in records] == [r["as_json"] for r in result.table.to_pylist()]
    assert all(r["blob"] == {"k": [1, 2]} for r in records)
    assert all(isinstance(r["loose"], dict) for r in records)


async def test_json_text_marks_survive_write_read_and_resume(tmp_path: Path) -> None:
    """The JSON-text mark is in every data file, in the table read back, after a resume that
    adds row groups, and in a run directory opened from disk."""
    out = tmp_path / "out"
    await gl.acreate(_pipeline(), num_records=4, output_dir=out)
    resumed = await gl.acreate(_pipeline(), num_records=ROWS, output_dir=out, resume=True)
    assert resumed.num_rows == ROWS
    files = sorted((out / "data").glob("part-*.parquet"))
    assert len(files) == 2
    for path in files:
        assert pq.read_schema(path).field("blob").metadata == JSON_TEXT_METADATA
    for table in (resumed.table, open_run(out).table):
        assert table.schema.field("loose").metadata == JSON_TEXT_METADATA
        assert table.schema.field("as_json").type.equals(RECORD_TYPE)
        _check_rows(table.to_pylist())


async def test_a_run_stored_as_json_text_is_not_resumed_with_structs(tmp_path: Path) -> None:
    """A run whose structured column was stored as JSON text (as before native values) is not
    resumed into structs: the refusal names the column and both types, and nothing is
    written."""
    out = tmp_path / "out"
    await gl.acreate(_pipeline(), num_records=4, output_dir=out)
    meta_path = out / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["schema"]["as_yaml"] = "string"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StorageError) as caught:
        await gl.acreate(_pipeline(), num_records=ROWS, output_dir=out, resume=True)
    message = str(caught.value)
    assert "column 'as_yaml' was stored as string, now as struct<" in message
    assert "column 'as_json'" not in message
    assert "--overwrite" in message
    assert len(list((out / "data").glob("part-*.parquet"))) == 1


def test_old_files_without_the_mark_read_back_with_it(tmp_path: Path) -> None:
    """A data file written before the mark existed reads back with the declared schema's
    field metadata, so the old and new row groups of a resumed run agree."""
    from gridloom.storage._parts import read_parquet

    declared = pa.schema([pa.field("blob", pa.string(), metadata=JSON_TEXT_METADATA)])
    path = tmp_path / "old.parquet"
    pq.write_table(pa.table({"blob": ['{"a": 1}']}), path)
    table = read_parquet(path, declared)
    assert table.schema.field("blob").metadata == JSON_TEXT_METADATA
    assert table.column("blob").to_pylist() == ['{"a": 1}']


async def test_a_transform_reads_fields_of_structured_columns(tmp_path: Path) -> None:
    """A ``schema_transform`` path into a struct column keeps the field's type
    (``{{ as_json.year }}`` is int64), and a template reading a JSON-text column sees the
    parsed value (``{{ blob.k[0] }}``)."""
    processors = [
        {
            "schema_transform": {
                "template": {
                    "year": "{{ as_json.year }}",
                    "tags": "{{ as_yaml.tags }}",
                    "text": "{{ as_xml.title }} / {{ blob.k[0] }}",
                }
            }
        }
    ]
    out = tmp_path / "out"
    result = await gl.acreate(_pipeline(processors=processors), num_records=ROWS, output_dir=out)
    table = pq.read_table(out / "data")
    assert table.schema.field("year").type == pa.int64()
    assert table.schema.field("tags").type == pa.list_(
        pa.field("item", pa.string(), nullable=False)
    )
    rows = table.to_pylist()
    assert len(rows) == ROWS == result.num_rows
    for row in rows:
        assert 1800 <= row["year"] <= 2024
        assert 1 <= len(row["tags"]) <= 3
        assert row["text"].endswith(" / 1")
        assert len(row["text"]) > len(" / 1")
