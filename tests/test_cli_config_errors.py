"""``gridloom`` commands report every problem of a config, in text and in ``--json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from click.testing import CliRunner, Result

from gridloom.cli import cli, output_schema

#: Three problems found while compiling: a misspelt field of a structured column (in a judge's
#: prompt), an unknown reference, and a custom function that does not import.
BAD = """\
providers: [{name: sim, type: simulated}]
models: [{alias: m, provider: sim, model: sim-1}]
columns:
  - name: answer
    llm_structured:
      model: m
      prompt: Answer.
      schema: {type: object, properties: {reply: {type: string}, confidence: {type: number}}}
  - name: judge
    llm_judge:
      model: m
      prompt: "Rate {{ answer.replyy }}"
      rubrics: [{name: accuracy, scores: {1: wrong, 5: exact}}]
  - {name: e, expression: "{{ topik }}"}
  - {name: f, custom: {function: "no_such_module_xyz:f"}}
"""


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def checked(command: str, stdout: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(stdout)
    jsonschema.validate(doc, output_schema(command))
    return doc


def test_validate_prints_every_problem_with_its_path(tmp_path: Path) -> None:
    """Text: the first problem on the ``error:`` line, then one indented line per further
    problem, each starting with its config path; nothing is summarised as "N more"."""
    config = tmp_path / "bad.yaml"
    config.write_text(BAD)
    result = invoke("validate", config)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (
        f"error: {config}: column 'judge', field 'llm_judge.prompt': 'answer' has no field"
        " 'replyy' (its schema has: reply, confidence); did you mean 'reply'? (if other fields"
        " may appear, set additionalProperties: true in its schema)"
    )
    assert lines[1:] == [
        "  columns.e.expression.template: references unknown column 'topik'",
        "  columns.f.custom.function: cannot import module 'no_such_module_xyz' for"
        " 'no_such_module_xyz:f': No module named 'no_such_module_xyz'",
    ]
    assert "more error" not in result.stderr


def test_validate_json_lists_every_problem(tmp_path: Path) -> None:
    """JSON: ``error`` keeps type, message, path and file (the first problem) and lists every
    problem under ``errors`` with its message, config path and column."""
    config = tmp_path / "bad.yaml"
    config.write_text(BAD)
    result = invoke("validate", config, "--json")
    assert result.exit_code == 2
    error = checked("validate", result.stdout)["error"]
    assert error["type"] == "UnknownReferenceError"
    assert error["path"] == "columns.judge.llm_judge.prompt"
    assert error["file"] == str(config)
    assert error["message"].startswith("column 'judge', field 'llm_judge.prompt': 'answer' has")
    assert [(e["path"], e["column"]) for e in error["errors"]] == [
        ("columns.judge.llm_judge.prompt", "judge"),
        ("columns.e.expression.template", "e"),
        ("columns.f.custom.function", "f"),
    ]
    assert error["errors"][0]["message"].startswith("'answer' has no field 'replyy'")


def test_loading_errors_are_all_listed_too(tmp_path: Path) -> None:
    """Problems found while loading (wrong values in several sections) are listed the same way,
    in ``preview`` as in ``validate``."""
    config = tmp_path / "bad.yaml"
    config.write_text(
        "columns:\n  - {name: a, bernoulli: {p: 2}}\n  - {name: b, uniform: {low: 5, high: 1}}\n"
        "run: {row_group_size: big}\n"
    )
    for command in ("validate", "preview"):
        result = invoke(command, config)
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith(f"error: {config}: column 'a', field 'bernoulli.p': ")
        assert lines[1].startswith("  columns.b.uniform.high: high (1.0) must be >= low")
        assert lines[2].startswith("  run.row_group_size: expected an integer")
        error = checked(command, invoke(command, config, "--json").stdout)["error"]
        assert [e["path"] for e in error["errors"]] == [
            "columns.a.bernoulli.p",
            "columns.b.uniform.high",
            "run.row_group_size",
        ]
        assert [e["column"] for e in error["errors"]] == ["a", "b", None]


def test_one_problem_reads_as_before(tmp_path: Path) -> None:
    """A single problem: one ``error:`` line as before; JSON lists it once under ``errors``."""
    config = tmp_path / "bad.yaml"
    config.write_text("columns:\n  - {name: a, bernoulli: {p: 2}}\n")
    result = invoke("validate", config)
    assert result.stderr.strip().splitlines() == [
        f"error: {config}: column 'a', field 'bernoulli.p': p must be between 0 and 1, got 2.0"
    ]
    error = checked("validate", invoke("validate", config, "--json").stdout)["error"]
    assert error["errors"] == [
        {
            "message": "p must be between 0 and 1, got 2.0",
            "path": "columns.a.bernoulli.p",
            "column": "a",
        }
    ]
