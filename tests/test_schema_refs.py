"""JSON Schemas a user or a client gives follow only local ``$ref``: a remote or ``file://``
reference is refused when the config is loaded (naming the column and field), before any
request; a loop of references that never reaches the value, or a pointer to nothing, too; and
the validators gridloom builds fetch nothing even when handed such a schema."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gridloom as gl
from gridloom.clients._types import ToolSpec
from gridloom.config import structure_pipeline
from gridloom.config._schema_refs import local_validator, ref_problem, remote_ref
from gridloom.errors import ConfigError
from gridloom.generators._structured_formats import AnswerFormat
from gridloom.simulated._schema_values import InvalidSchema, check_schema
from gridloom.tools._base import argument_validator
from gridloom.tools._mcp import schema_problem

from .strategies import json_schemas
from .test_simulated_limits import CHAT, MESSAGES, anthropic, chat, refused, schema_chat
from .test_validators import bad, run_preview, verdicts

SRC = str(Path(__file__).resolve().parent.parent / "src")

REMOTE = [
    "http://127.0.0.1:8765/x.json",
    "https://example.com/schema.json#/$defs/a",
    "file:///etc/passwd",
    "other.json",
    "//example.com/x.json",
    "urn:example:x",
]


def _placed(ref: str) -> Iterator[dict[str, Any]]:
    """Schemas holding the reference ``ref`` in each kind of place."""
    yield {"$ref": ref}
    yield {"type": "object", "properties": {"a": {"$ref": ref}}}
    yield {"type": "array", "items": {"$ref": ref}}
    yield {"anyOf": [{"type": "string"}, {"$ref": ref}]}
    yield {"$defs": {"a": {"$ref": ref}}, "$ref": "#/$defs/a"}
    yield {"type": "object", "$dynamicRef": ref}


CASES = [(ref, schema) for ref in REMOTE for schema in _placed(ref)]


@pytest.fixture
def no_fetch(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """urlopen (how jsonschema's default registry fetches, http and file alike) records its
    calls instead of opening anything."""
    calls: list[str] = []

    def urlopen(request: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(request, "full_url", str(request)))
        raise AssertionError(f"fetched {calls[-1]}")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(("ref", "schema"), CASES)
def test_remote_refs_are_named(ref: str, schema: dict[str, Any]) -> None:
    """A reference that does not start with '#' is refused wherever it sits, quoting it."""
    problem = ref_problem(schema)
    assert problem is not None
    assert repr(ref) in problem
    assert "only a local $ref" in problem


@given(json_schemas())
def test_local_schemas_pass(schema: dict[str, Any]) -> None:
    """Schemas whose references all point into their own $defs pass the check."""
    assert ref_problem(schema) is None


@given(json_schemas(), st.sampled_from(REMOTE), st.data())
def test_a_remote_ref_anywhere_is_found(schema: dict[str, Any], ref: str, data: Any) -> None:
    """Putting a remote reference in place of any subschema (or beside the root) is found."""
    # A copy: the strategy's leaves are shared objects, and other tests draw them after this.
    schema = copy.deepcopy(schema)
    holders: list[dict[str, Any]] = []
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            holders.append(node)
            stack.extend(v for k, v in node.items() if k not in ("const", "enum"))
        elif isinstance(node, list):
            stack.extend(node)
    holder = data.draw(st.sampled_from(holders))
    holder["$ref"] = ref
    assert remote_ref(schema) is not None
    assert ref_problem(schema) is not None


@pytest.mark.parametrize(
    "schema",
    [
        {"const": {"$ref": "http://example.com/x"}},
        {"enum": [{"$ref": "file:///etc/passwd"}]},
        {"default": {"$ref": "http://example.com/x"}},
        {"type": "object", "properties": {"$ref": {"type": "string"}}},
        {"$defs": {"a": {"$anchor": "item", "type": "string"}}, "items": {"$ref": "#item"}},
        {  # a tree: each level descends into the value
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                }
            },
            "$ref": "#/$defs/node",
        },
        {"$defs": {"unused": {"$ref": "#/$defs/unused"}}, "type": "string"},
    ],
)
def test_data_and_trees_are_fine(schema: dict[str, Any]) -> None:
    """Data that looks like a reference, a property named $ref, anchors, recursion through the
    value, and a loop nothing reaches pass."""
    assert ref_problem(schema) is None


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"$ref": "#"}, "schema.$ref leads back to itself"),
        ({"allOf": [{"$ref": "#"}]}, "loop"),
        ({"anyOf": [{"type": "string"}, {"$ref": "#"}]}, "loop"),
        ({"if": {"type": "string"}, "then": {"$ref": "#"}}, "loop"),
        (
            {
                "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"not": {"$ref": "#/$defs/a"}}},
                "properties": {"x": {"$ref": "#/$defs/a"}},
            },
            "loop",
        ),
        ({"$ref": "#/$defs/missing"}, "schema.$ref is '#/$defs/missing', which points to nothing"),
        ({"items": {"$ref": "#/$defs/a%20b"}}, "points to nothing"),
        ({"$ref": "#/type", "type": "string"}, "which is not a schema"),
        ({"$ref": "#item"}, "no $anchor has that name"),
    ],
)
def test_loops_and_dangling_refs_are_named(schema: dict[str, Any], words: str) -> None:
    """A loop of references that never descends into the value (validation would recurse for
    ever) and a reference to nothing are refused, naming where."""
    problem = ref_problem(schema)
    assert problem is not None
    assert words in problem


def test_escaped_pointers_resolve() -> None:
    """Pointers with ~0, ~1 and percent escapes resolve like jsonschema's."""
    schema = {"$defs": {"a/b": {"type": "string"}, "c d~": {"type": "integer"}}}
    schema["anyOf"] = [{"$ref": "#/$defs/a~1b"}, {"$ref": "#/$defs/c%20d~0"}]
    assert ref_problem(schema) is None
    assert local_validator(schema).is_valid(3)
    assert not local_validator(schema).is_valid(None)


@pytest.mark.parametrize("ref", REMOTE)
def test_validators_fetch_nothing(ref: str, no_fetch: list[str]) -> None:
    """Even handed a remote reference, the validators gridloom builds resolve nothing outside
    the schema: the reference is unresolvable, and nothing was opened."""
    from referencing.exceptions import Unresolvable

    with pytest.raises(Unresolvable):
        local_validator({"$ref": ref}).is_valid(1)
    assert no_fetch == []


# --------------------------------------------------------------------------- at load


@pytest.mark.parametrize(("ref", "schema"), CASES[:: len(REMOTE) - 1])
def test_json_schema_validator_refuses_at_load(
    ref: str, schema: dict[str, Any], no_fetch: list[str]
) -> None:
    """A json_schema validator's remote reference is a ConfigError naming the column and
    field."""
    check = {"kind": "json_schema", "target": "value", "schema": schema}
    with pytest.raises(ConfigError) as info:
        run_preview([1], {"name": "chk", "validate": check})
    assert str(info.value).startswith("column 'chk', field 'validate.schema': schema.")
    assert repr(ref) in str(info.value)
    assert no_fetch == []


@pytest.mark.parametrize("schema", [{"$ref": "#"}, {"$ref": "#/$defs/x"}])
def test_json_schema_validator_refuses_loops_at_load(schema: dict[str, Any]) -> None:
    """A reference loop or a pointer to nothing is found at load too."""
    check = {"kind": "json_schema", "target": "value", "schema": schema}
    with pytest.raises(ConfigError, match=r"^column 'chk', field 'validate.schema': schema.\$ref"):
        run_preview([1], {"name": "chk", "validate": check})


def test_an_unresolvable_ref_gives_a_clear_verdict() -> None:
    """A reference the load check cannot judge (a subschema with its own $id) that does not
    resolve gives each value a verdict saying so, not an internal class name."""
    schema = {"$defs": {"x": {"$id": "urn:x", "type": "string"}}, "$ref": "#/$defs/nothing"}
    check = {"kind": "json_schema", "target": "value", "schema": schema}
    result = run_preview([1, {"n": 2}], {"name": "v", "validate": check})
    reason = "the schema cannot be used: a $ref does not resolve: '/$defs/nothing'"
    assert verdicts(result) == [bad(reason), bad(reason)]


SIM = {
    "providers": [{"name": "sim", "type": "simulated"}],
    "models": [{"alias": "m", "provider": "sim", "model": "sim-1"}],
}


@pytest.mark.parametrize(("ref", "schema"), CASES[:: len(REMOTE) - 1])
def test_structured_column_refuses_at_load(ref: str, schema: dict[str, Any]) -> None:
    """An llm_structured column's remote reference is a ConfigError naming its field."""
    column = {"name": "s", "llm_structured": {"model": "m", "prompt": "Hi.", "schema": schema}}
    with pytest.raises(ConfigError) as info:
        structure_pipeline({**SIM, "columns": [column]})
    assert str(info.value).startswith("column 's', field 'llm_structured.schema': schema.")
    assert repr(ref) in str(info.value)


def test_structured_answers_are_checked_without_fetching(no_fetch: list[str]) -> None:
    """An answer format handed a remote reference fails the answer with a clear reason (not a
    correction for the model) and fetches nothing."""
    fmt = AnswerFormat("json", {"$ref": "http://127.0.0.1:8765/x.json"})
    with pytest.raises(gl.GenerationError, match="a \\$ref does not resolve"):
        fmt.parse('{"n": 1}')
    assert no_fetch == []


def test_tool_parameters_refuse_remote_refs(no_fetch: list[str]) -> None:
    """A tool's parameter schema (a python tool's given schema, any tool's spec, an MCP
    server's input schema) with a remote reference is refused."""
    params = {"type": "object", "properties": {"q": {"$ref": "file:///etc/passwd"}}}
    column = {
        "name": "a",
        "llm_agent": {
            "model": "m",
            "prompt": "Hi.",
            "tools": [{"python": {"function": "os:getcwd", "parameters": params}}],
        },
    }
    with pytest.raises(ConfigError) as info:
        structure_pipeline({**SIM, "columns": [column]})
    message = str(info.value)
    assert message.startswith("column 'a', field 'llm_agent.tools[0].python.parameters': ")
    assert "'file:///etc/passwd'" in message
    with pytest.raises(ValueError, match="only a local \\$ref"):
        argument_validator(ToolSpec(name="t", description="", parameters=params))
    assert "only a local $ref" in (schema_problem(params) or "")
    assert no_fetch == []


# --------------------------------------------------------------------------- simulated endpoint


@pytest.mark.parametrize("ref", REMOTE)
def test_simulated_endpoint_refuses_remote_refs(ref: str, no_fetch: list[str]) -> None:
    """The simulated endpoint answers 400 to a request schema with a remote reference, through
    response_format, output_format and a tool, fetching nothing."""
    schema = {"type": "object", "properties": {"a": {"$ref": ref}}}
    with pytest.raises(InvalidSchema, match="only a local \\$ref"):
        check_schema(schema)
    assert "only a local $ref" in refused(CHAT, schema_chat(schema))
    output_format = {"type": "json_schema", "schema": schema}
    assert "only a local $ref" in refused(MESSAGES, anthropic(output_format=output_format))
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    body = chat(tools=[tool], tool_choice={"type": "function", "function": {"name": "f"}})
    assert "only a local $ref" in refused(CHAT, body)
    assert no_fetch == []


# --------------------------------------------------------------------------- the command line


def test_cli_refuses_before_any_request(tmp_path: Path) -> None:
    """`gridloom validate` and `preview` refuse a schema pointing at a listening server that
    never answers: exit 2 naming the column and field, and the server sees no connection (a
    fetch would hang: the timeout only guards the test)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        port = server.getsockname()[1]
        config = {
            "run": {"seed": 1, "row_group_size": 5},
            "columns": [
                {"name": "t", "expression": {"template": '{"n": 1}', "dtype": "json"}},
                {
                    "name": "chk",
                    "validate": {
                        "kind": "json_schema",
                        "target": "t",
                        "schema": {"$ref": f"http://127.0.0.1:{port}/x.json"},
                    },
                },
            ],
        }
        path = tmp_path / "f1.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "PYTHONPATH": SRC}
        for args in (["validate", str(path)], ["preview", str(path), "-n", "2", "--json"]):
            out = subprocess.run(
                [sys.executable, "-m", "gridloom", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert out.returncode == 2, out
            assert "column 'chk', field 'validate.schema'" in out.stdout + out.stderr
            with pytest.raises(BlockingIOError):
                server.accept()
