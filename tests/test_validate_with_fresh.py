"""An LLM column's ``validate_with`` in a fresh interpreter, through the Python API.

The validators' config hook belongs to the ``validate`` column kind, which loads on demand.
A pipeline whose only validators are ``validate_with`` entries (no ``validate`` column) must
load it too, whatever the program imported before: so each case runs in a new interpreter
that imports nothing but ``gridloom`` (within this test process the kind is long loaded).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.test_cli_preview import python

BASE: dict[str, Any] = {
    "providers": [{"name": "p", "type": "simulated"}],
    "models": [{"alias": "m", "provider": "p", "model": "m-1"}],
}
RECORD = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
#: Each LLM kind's parameters, ``validate_with`` left out.
LLM_KINDS: dict[str, dict[str, Any]] = {
    "llm_text": {"model": "m", "prompt": "Write."},
    "llm_code": {"model": "m", "prompt": "Code.", "language": "python"},
    "llm_structured": {"model": "m", "prompt": "A record.", "schema": RECORD},
    "llm_judge": {
        "model": "m",
        "prompt": "Judge.",
        "rubrics": [{"name": "r", "description": "d", "scores": {1: "bad", 5: "good"}}],
    },
    "llm_agent": {
        "model": "m",
        "prompt": "Go.",
        "tools": [{"python": {"function": "json:dumps", "parameters": {"type": "object"}}}],
    },
}
#: A validator that accepts every value: ``operator.is_not(value, ctx)`` is always true.
ACCEPT_ALL = {"kind": "callable", "function": "operator:is_not"}


def fresh(code: str) -> list[Any]:
    """Run ``code`` in a new interpreter (this checkout's gridloom first on the path); each
    line it prints is read as JSON."""
    done = python(code, GRIDLOOM_PROGRESS="off")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def column(kind: str, validators: list[Any]) -> dict[str, Any]:
    return {"name": "c", kind: {**LLM_KINDS[kind], "validate_with": validators}}


@pytest.mark.parametrize("kind", sorted(LLM_KINDS))
def test_validate_with_loads_in_a_fresh_interpreter(kind: str) -> None:
    """The first thing the program does is load a config whose only validators are one LLM
    column's ``validate_with``: each entry becomes its validator's class, the config writes
    back to the same document, and its JSON Schema describes the validators."""
    validators = [{"kind": "regex", "pattern": "^x"}, {"kind": "python", "rules": ["F"]}]
    config = {**BASE, "columns": [column(kind, validators)]}
    (loaded, written, described) = fresh(
        f"""
        import json
        import gridloom as gl
        cfg = gl.load_config({config!r})
        checks = cfg.columns[0].validate_with
        print(json.dumps([[type(c).__name__, c.kind] for c in checks]))
        again = gl.load_config(json.loads(gl.dump_config(cfg, format="json")))
        print(json.dumps(again == cfg))
        from gridloom.config import config_json_schema
        spec = config_json_schema()["$defs"]["ValidatorConfig"]
        print(json.dumps(sorted(spec["properties"]["kind"]["enum"])))
        """
    )
    assert loaded == [["RegexCheck", "regex"], ["PythonCheck", "python"]]
    assert written is True
    assert {"regex", "python", "callable", "json_schema", "sql", "http"} <= set(described)


@pytest.mark.parametrize(
    ("validator", "field", "message"),
    [
        ({"kind": "regx", "pattern": "a"}, "validate_with[0].kind", "did you mean 'regex'?"),
        ({"pattern": "a"}, "validate_with[0].kind", "required: the validator kind"),
        ({"kind": "regex"}, "validate_with[0].pattern", "required field is missing"),
        ({"kind": "regex", "pattern": "a", "flags": 1}, "validate_with[0].flags", "unknown key"),
        ("regex", "validate_with[0]", "expected a mapping"),
    ],
)
def test_a_bad_validate_with_entry_fails_in_a_fresh_interpreter(
    validator: Any, field: str, message: str
) -> None:
    """The same errors as in a long-running process: the field and the problem, before any
    request (a preview that would otherwise run never starts)."""
    config = {**BASE, "columns": [column("llm_text", [validator])]}
    (error,) = fresh(
        f"""
        import json
        import gridloom as gl
        try:
            gl.preview({config!r}, num_records=1)
        except gl.ConfigError as exc:
            print(json.dumps([exc.field, str(exc)]))
        """
    )
    assert error[0] == f"llm_text.{field}"
    assert message in error[1]


def test_a_preview_checks_every_answer_with_validate_with() -> None:
    """A whole preview in a fresh interpreter: a validator that accepts everything keeps
    every row, one that accepts nothing drops every row with the validator's reason."""
    keep = {**BASE, "columns": [column("llm_text", [ACCEPT_ALL])]}
    reject = {**BASE, "columns": [column("llm_text", [{"kind": "regex", "pattern": "^\\d{9}$"}])]}
    (kept, rejected) = fresh(
        f"""
        import json
        import gridloom as gl
        for config in ({keep!r}, {reject!r}):
            result = gl.preview(config, num_records=4)
            print(json.dumps([result.num_rows, result.summary["invocation"]["rows_dropped"]]))
        """
    )
    assert kept == [4, 0]
    assert rejected == [0, 4]
