"""A name a closed object schema requires but does not declare in ``properties`` is refused when
the config is loaded, naming the column, where in the schema, and the name (with the declared
name it is probably a typo of); an object ``additionalProperties`` opens is left alone."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.config import structure_pipeline
from gridloom.config._schema_required import required_problem
from gridloom.errors import ConfigError
from gridloom.generators._json_arrow import arrow_type_for_schema

from .strategies import identifiers, json_schemas

SRC = str(Path(__file__).resolve().parent.parent / "src")
SIM = {
    "providers": [{"name": "sim", "type": "simulated"}],
    "models": [{"alias": "m", "provider": "sim", "model": "sim-1"}],
}
FACTS = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["fact"],
}
#: The review's repro (a required name that is a typo of the declared one).
REPRO = """\
providers: [{name: sim, type: simulated}]
models: [{alias: writer, provider: sim, model: w, max_parallel_requests: 16}]
columns:
  - {name: topic, category: {values: [rivers, deserts]}}
  - name: facts
    llm_structured:
      model: writer
      prompt: "About {{ topic }}"
      schema: {type: object, properties: {facts: {type: array, items: {type: string}}},
               required: [fact]}
      keep_raw: true
run: {row_group_size: 100}
"""


def _load(schema: dict[str, Any]) -> None:
    column = {"name": "s", "llm_structured": {"model": "m", "prompt": "Hi.", "schema": schema}}
    structure_pipeline({**SIM, "columns": [column]})


def test_the_repro_fails_validate_naming_column_place_and_name(tmp_path: Path) -> None:
    """`gridloom validate` on the review's config exits 2 with one line naming the column, the
    schema place, the missing name and the declared one it resembles."""
    config = tmp_path / "t3.yaml"
    config.write_text(REPRO)
    proc = subprocess.run(
        [sys.executable, "-m", "gridloom", "validate", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "column 'facts', field 'llm_structured.schema': schema.required names 'fact'" in (
        proc.stderr
    )
    assert "did you mean 'facts'?" in proc.stderr
    assert "additionalProperties: true" in proc.stderr


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        (FACTS, "schema.required"),
        ({"type": "object", "properties": {"x": FACTS}, "required": ["x"]}, "schema.properties.x"),
        ({"type": "array", "items": FACTS}, "schema.items"),
        ({"anyOf": [{"type": "null"}, FACTS]}, "schema.anyOf[1]"),
        ({"oneOf": [FACTS, {"type": "string"}]}, "schema.oneOf[0]"),
        ({"$ref": "#/$defs/f", "$defs": {"f": FACTS}}, "schema.$defs.f"),
        ({"$ref": "#/definitions/f", "definitions": {"f": FACTS}}, "schema.definitions.f"),
        ({**FACTS, "type": ["object", "null"]}, "schema.required"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "dependentRequired": {"a": ["bb"]},
            },
            "schema.dependentRequired.a",
        ),
    ],
)
def test_refused_at_every_place_a_value_is_read_through(schema: dict[str, Any], where: str) -> None:
    """Nested objects, array items, anyOf/oneOf branches, $defs a $ref reads, a nullable
    object and dependentRequired lists: each is a ConfigError naming the column and place."""
    with pytest.raises(ConfigError) as info:
        _load(schema)
    message = str(info.value)
    assert message.startswith(f"column 's', field 'llm_structured.schema': {where}")
    assert "which the object's properties" in message


@pytest.mark.parametrize(
    "schema",
    [
        {**FACTS, "additionalProperties": True},
        {**FACTS, "additionalProperties": {"type": "string"}},
        {**FACTS, "patternProperties": {"^f": {"type": "string"}}},
        {**FACTS, "allOf": [{"properties": {"fact": {"type": "string"}}}]},
        {**FACTS, "anyOf": [{"properties": {"fact": {"type": "string"}}}]},
        {**FACTS, "unevaluatedProperties": True},
        {"type": "object", "required": ["fact"]},  # no properties: open, stored as text
        {"properties": {"a": {"type": "string"}}, "required": ["b"]},  # not typed an object
        {"type": ["object", "string"], "properties": {"a": {}}, "required": ["b"]},
        {"not": FACTS},  # gridloom reads nothing through `not`
    ],
)
def test_open_objects_keep_working(schema: dict[str, Any]) -> None:
    """An object gridloom reads as open (additionalProperties true or a schema, pattern
    properties, combinators beside properties, no properties) may require other names."""
    assert required_problem(schema) is None
    _load(schema)


def test_explicitly_closed_says_no_answer_can_be_valid() -> None:
    """With additionalProperties: false, the message says every answer fails, not that the
    field is dropped, and does not suggest opening a schema the user closed on purpose."""
    problem = required_problem({**FACTS, "additionalProperties": False})
    assert problem is not None
    assert "no answer can be valid" in problem
    assert "did you mean 'facts'?" in problem
    assert "set additionalProperties: true" not in problem


def test_no_close_name_says_declare_it() -> None:
    """Without a close declared name, the message says to declare the missing one."""
    problem = required_problem({**FACTS, "required": ["zzz"]})
    assert problem is not None
    assert "declare 'zzz' in properties" in problem


def _objects(schema: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """The object schemas with properties in ``schema`` that gridloom reads a value through
    (properties, items, anyOf/oneOf, $defs), with their places as a message names them."""
    found: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(schema, dict):
        return found
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if "object" in kinds and isinstance(schema.get("properties"), dict):
        place = "schema" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        found.append((place, schema))
    for name, sub in (schema.get("properties") or {}).items():
        found += _objects(sub, (*path, "properties", name))
    if isinstance(schema.get("items"), dict):
        found += _objects(schema["items"], (*path, "items"))
    for key in ("anyOf", "oneOf"):
        for index, sub in enumerate(schema.get(key) or []):
            found += _objects(sub, (*path, key, index))
    for name, sub in (schema.get("$defs") or {}).items():
        found += _objects(sub, (*path, "$defs", name))
    return found


@st.composite
def _schemas_with_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A generated schema (a copy: the strategy's leaves are shared) with at least one
    object."""
    schema = copy.deepcopy(draw(json_schemas()))
    if not _objects(schema):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@given(json_schemas())
def test_generated_schemas_whose_required_names_are_declared_pass(schema: dict[str, Any]) -> None:
    """Every generated schema (required names drawn from its properties) passes, and a struct
    derived from it has a field for every name its root requires."""
    assert required_problem(schema) is None
    type_ = arrow_type_for_schema(schema)
    if type_ is not None and pa.types.is_struct(type_):
        names = {field.name for field in type_}
        assert set(schema.get("required", [])) <= names


@given(_schemas_with_objects(), st.data())
def test_an_undeclared_required_name_is_refused_unless_open(
    schema: dict[str, Any], data: st.DataObject
) -> None:
    """Adding a name that an object's properties lack to its required list, anywhere in a
    generated schema, is refused naming that place and name, unless the object is opened by
    additionalProperties (true or a schema)."""
    place, target = data.draw(st.sampled_from(_objects(schema)))
    name = data.draw(identifiers.filter(lambda n: n not in target["properties"]))
    target["required"] = [*target.get("required", []), name]
    opening = data.draw(st.sampled_from(["unmentioned", False, True, {"type": "string"}]))
    target.pop("additionalProperties", None)
    if opening != "unmentioned":
        target["additionalProperties"] = opening
    jsonschema.Draft202012Validator.check_schema(schema)
    problem = required_problem(schema)
    if opening is True or isinstance(opening, dict):
        assert problem is None
        return
    assert problem is not None
    assert problem.startswith(f"{place}.required names {name!r}, ")
    for declared in target["properties"]:
        assert repr(declared)[1:-1] in problem
    with pytest.raises(ConfigError, match=r"^column 's', field 'llm_structured\.schema': "):
        _load(schema)
