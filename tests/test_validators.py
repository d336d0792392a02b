"""The ``validate`` column kind: each built-in validator (valid and invalid values, exact
messages), config errors found before any request, ``drop_invalid``, user functions that crash,
async and batch functions, the builder, the file form and its JSON Schema, and the validator
registry (tests/test_validators_run.py has the http validator and the end-to-end runs)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio

import gridloom as gl
from gridloom.config import config_json_schema, dump_config, load_config, structure_pipeline
from gridloom.errors import ConfigError, UnknownReferenceError
from gridloom.generators.base import CellContext
from gridloom.kinds.validate import VERDICT_TYPE, ValidateColumn, verdict
from gridloom.kinds.validate._registry import BUILTIN_VALIDATORS, VALIDATOR_GROUP
from gridloom.kinds.validate.python import PythonCheck
from gridloom.kinds.validate.regex import RegexCheck

ROOT = Path(__file__).resolve().parent.parent


def pipeline(values: Sequence[Any], *validators: dict[str, Any], **run: Any) -> gl.PipelineConfig:
    """A ``value`` column drawn from ``values`` (in order: one per row) and validate columns."""
    return structure_pipeline(
        {
            "columns": [
                {
                    "name": "value",
                    "custom": {"function": "tests.test_validators:nth_value", "dtype": "json"},
                },
                *validators,
            ],
            "run": {"seed": 3, "row_group_size": 8, "progress": "off", **run},
        }
    )


VALUES: list[Any] = []


def nth_value(row: dict[str, Any], ctx: Any) -> Any:
    """The row's entry of VALUES, as JSON text (the json dtype parses it back)."""
    return json.dumps(VALUES[ctx.row_id])


def run_preview(values: Sequence[Any], *validators: dict[str, Any], **run: Any) -> gl.RunResult:
    VALUES[:] = list(values)
    return gl.preview(pipeline(values, *validators, **run), num_records=len(values))


def verdicts(result: gl.RunResult, column: str = "v") -> list[Any]:
    found: list[Any] = result.table.column(column).to_pylist()
    return found


def ok() -> dict[str, Any]:
    return {"is_valid": True, "messages": [], "details": None}


def bad(*messages: str, details: Any = None) -> dict[str, Any]:
    return {"is_valid": False, "messages": list(messages), "details": details}


def one_line_error(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    message = str(excinfo.value)
    return message.splitlines()[0]


# --------------------------------------------------------------------------- validators


def test_python_parse_and_lint_messages() -> None:
    """Syntax errors and ruff findings are messages with line and column; clean code passes."""
    result = run_preview(
        ["x = 1\n", "import os\n", "def f(:\n    pass\n", 42],
        {"name": "v", "validate": {"kind": "python", "target": "value"}},
    )
    assert verdicts(result) == [
        ok(),
        bad("1:8 F401 `os` imported but unused"),
        bad("1:7 SyntaxError: invalid syntax"),
        bad("expected Python code (text), got int"),
    ]
    assert result.table.schema.field("v").type == VERDICT_TYPE


def test_python_rules_are_the_users() -> None:
    """Only the chosen rules apply; ignore removes one; lint: false checks the parse only."""
    code = "import os\nx = (1)  \n"
    result = run_preview(
        [code],
        {"name": "v", "validate": {"kind": "python", "target": "value", "rules": ["W"]}},
        {"name": "w", "validate": {"kind": "python", "target": "value", "ignore": ["F401"]}},
        {"name": "p", "validate": {"kind": "python", "target": "value", "lint": False}},
    )
    assert verdicts(result) == [bad("2:8 W291 Trailing whitespace")]
    assert verdicts(result, "w") == [ok()]
    assert verdicts(result, "p") == [ok()]


def test_python_batch_lints_a_row_group_at_once() -> None:
    """batch: true gives the same verdicts as one ruff process per value."""
    values = ["x = 1\n", "import os\n", "def f(:\n    pass\n", 42, None, "import sys\nimport re\n"]
    cell = {"kind": "python", "target": "value"}
    result = run_preview(
        values,
        {"name": "v", "validate": cell},
        {"name": "b", "validate": {**cell, "batch": True}},
        row_group_size=4,
    )
    assert (
        verdicts(result, "b")
        == verdicts(result)
        == [
            ok(),
            bad("1:8 F401 `os` imported but unused"),
            bad("1:7 SyntaxError: invalid syntax"),
            bad("expected Python code (text), got int"),
            None,
            bad("1:8 F401 `sys` imported but unused", "2:8 F401 `re` imported but unused"),
        ]
    )


def test_python_unknown_rule_is_a_config_error() -> None:
    """A selector ruff does not know fails validation, naming the column and the field."""
    VALUES[:] = ["x = 1"]
    config = pipeline(
        VALUES, {"name": "v", "validate": {"kind": "python", "target": "value", "rules": ["QQ9"]}}
    )
    with pytest.raises(ConfigError) as excinfo:
        gl.validate(config)
    assert one_line_error(excinfo).startswith(
        "column 'v', field 'validate.rules': ruff refuses the rules: ruff failed"
    )


def test_sql_dialects() -> None:
    """SQL parses per dialect; parse errors say where; empty text is invalid by default."""
    result = run_preview(
        ["SELECT a FROM t WHERE b = 1", "SELECT (1", "", "SELECT 1; SELECT 2"],
        {"name": "v", "validate": {"kind": "sql", "target": "value", "dialect": "postgres"}},
    )
    assert verdicts(result) == [ok(), bad("1:9 Expecting )"), bad("no SQL statement"), ok()]


def test_sql_lint_per_value_and_per_batch() -> None:
    """lint: true runs sqlfluff on SQL that parses, with the chosen rules; batch agrees."""
    lint = {"kind": "sql", "target": "value", "dialect": "postgres", "lint": True}
    result = run_preview(
        ["select a,b from t\n", "SELECT (1", "select 1\n"],
        {"name": "v", "validate": {**lint, "lint_rules": ["LT09", "LT01"]}},
        {"name": "b", "validate": {**lint, "lint_rules": ["LT09", "LT01"], "batch": True}},
    )
    expected = [
        bad(
            "1:1 LT09 Select targets should be on a new line unless there is only one select"
            " target.",
            "1:10 LT01 Expected single whitespace between comma ',' and naked identifier.",
        ),
        bad("1:9 Expecting )"),
        ok(),
    ]
    assert verdicts(result) == verdicts(result, "b") == expected


def test_a_missing_optional_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without sqlfluff installed, lint: true fails validate saying what to install."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sqlfluff" else real(name, *a)
    )
    VALUES[:] = []
    check = {"kind": "sql", "target": "value", "lint": True}
    with pytest.raises(ConfigError) as excinfo:
        gl.validate(pipeline([], {"name": "v", "validate": check}))
    assert one_line_error(excinfo) == (
        "column 'v', field 'validate.kind': the sql validator needs the 'sqlfluff' package:"
        " pip install 'gridloom[validators]'"
    )


def test_sql_unknown_dialect_is_a_config_error() -> None:
    """An unknown dialect fails validation with sqlglot's suggestion."""
    VALUES[:] = ["SELECT 1"]
    config = pipeline(
        VALUES, {"name": "v", "validate": {"kind": "sql", "target": "value", "dialect": "postgrs"}}
    )
    with pytest.raises(ConfigError) as excinfo:
        gl.validate(config)
    assert one_line_error(excinfo) == (
        "column 'v', field 'validate.dialect': Unknown dialect 'postgrs'. Did you mean postgres?"
    )


def test_json_schema_values_and_text() -> None:
    """Parsed values and JSON text are checked; every error is reported with its path."""
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["n"],
    }
    result = run_preview(
        [{"n": 1}, '{"n": 2, "tags": ["a"]}', {"n": "x", "tags": [1]}, "{not json"],
        {"name": "v", "validate": {"kind": "json_schema", "target": "value", "schema": schema}},
    )
    assert verdicts(result) == [
        ok(),
        ok(),
        bad("$.n: 'x' is not of type 'integer'", "$.tags[0]: 1 is not of type 'string'"),
        bad(
            "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        ),
    ]


def test_regex_full_and_search() -> None:
    """full must match the whole text, search anywhere; numbers are matched as text."""
    result = run_preview(
        ["abc-123", "xx abc-123 yy", 123],
        {"name": "v", "validate": {"kind": "regex", "target": "value", "pattern": r"[a-z]+-\d+"}},
        {
            "name": "s",
            "validate": {
                "kind": "regex",
                "target": "value",
                "pattern": r"[a-z]+-\d+",
                "match": "search",
            },
        },
        {"name": "n", "validate": {"kind": "regex", "target": "value", "pattern": r"\d+"}},
    )
    assert verdicts(result) == [
        ok(),
        bad(r"does not match '[a-z]+-\\d+'"),
        bad(r"does not match '[a-z]+-\\d+'"),
    ]
    assert verdicts(result, "s") == [ok(), ok(), bad(r"no match for '[a-z]+-\\d+'")]
    assert verdicts(result, "n") == [
        bad(r"does not match '\\d+'"),
        bad(r"does not match '\\d+'"),
        ok(),
    ]


def test_long_text_and_null_target() -> None:
    """Text over max_chars is invalid without being checked; a null target gives a null verdict."""
    result = run_preview(
        ["x" * 11, None, "x"],
        {
            "name": "v",
            "validate": {"kind": "regex", "target": "value", "pattern": "x+", "max_chars": 10},
        },
    )
    assert verdicts(result) == [
        bad("the value is 11 characters long, more than max_chars (10)"),
        None,
        ok(),
    ]


# --------------------------------------------------------------------------- callables


def even(value: Any, ctx: CellContext) -> Any:
    """Valid when even; details say the remainder."""
    if value == 13:
        raise RuntimeError("thirteen is unlucky")
    return {
        "is_valid": value % 2 == 0,
        "messages": [] if value % 2 == 0 else [f"{value} is odd"],
        "details": {"rest": value % 2},
    }


async def positive(value: Any, ctx: CellContext) -> Any:
    """Valid when above ctx.params['floor']."""
    await trio.sleep(0)
    small = value <= ctx.params["floor"]
    return (not small, [f"{value} is too small"] if small else [])


BATCH_CALLS: list[list[Any]] = []


def small_batch(values: list[Any], ctx: Any) -> list[Any]:
    """One call per row group; a bool per value."""
    BATCH_CALLS.append(list(values))
    return [value < 3 for value in values]


def test_sync_callable_and_a_crash_fails_only_its_cell() -> None:
    """A mapping result keeps its details; an exception drops only its row, reason recorded."""
    result = run_preview(
        [2, 3, 13, 4],
        {
            "name": "v",
            "validate": {
                "kind": "callable",
                "target": "value",
                "function": "tests.test_validators:even",
            },
        },
    )
    assert verdicts(result) == [
        ok() | {"details": '{"rest": 0}'},
        bad("3 is odd", details='{"rest": 1}'),
        ok() | {"details": '{"rest": 0}'},
    ]
    assert result.drop_reasons == {"v": {"RuntimeError": 1}}
    assert result.dropped.to_pylist()[0]["message"] == "thirteen is unlucky"


async def test_async_callable_with_params(autojump_clock: Any) -> None:
    """An async function is awaited with the column's params."""
    VALUES[:] = [1, 5]
    check = {
        "kind": "callable",
        "target": "value",
        "function": "tests.test_validators:positive",
        "params": {"floor": 2},
    }
    result = await gl.apreview(pipeline(VALUES, {"name": "v", "validate": check}), num_records=2)
    assert verdicts(result) == [bad("1 is too small"), ok()]


def test_batch_callable_gets_the_row_group() -> None:
    """batch: true calls the function once per row group with the non-null values."""
    BATCH_CALLS.clear()
    result = run_preview(
        [1, 2, None, 5, 0],
        {
            "name": "v",
            "validate": {
                "kind": "callable",
                "target": "value",
                "function": "tests.test_validators:small_batch",
                "batch": True,
            },
        },
        row_group_size=4,
    )
    assert sorted(BATCH_CALLS) == [[0], [1, 2, 5]]
    assert verdicts(result) == [ok(), ok(), None, bad(), ok()]


def test_verdict_shapes() -> None:
    """Accepted results normalise to one shape; anything else is a GenerationError."""
    assert verdict(True, column="c") == ok()
    assert verdict((False, ["a", "b"]), column="c") == bad("a", "b")
    assert verdict({"is_valid": False, "messages": "one"}, column="c") == bad("one")
    assert verdict((False, [f"m{i}" for i in range(60)]), column="c")["messages"][-1] == (
        "... and 11 more messages"
    )
    for wrong, reason in [
        ("yes", "a validator must return a bool"),
        ({"is_valid": 1}, "is_valid must be a bool, got 1"),
        ({"is_valid": True, "extra": 1}, "unexpected key 'extra'"),
        ((False, [3]), "a message must be text, got 3"),
    ]:
        with pytest.raises(gl.errors.GenerationError, match=re.escape(reason)):
            verdict(wrong, column="c")


# --------------------------------------------------------------------------- drop_invalid


def test_drop_invalid_records_the_messages() -> None:
    """An invalid value drops its row with the validator's messages as the reason."""
    result = run_preview(
        ["x = 1\n", "import os\n", "y = 2\n"],
        {"name": "v", "validate": {"kind": "python", "target": "value", "drop_invalid": True}},
    )
    assert result.num_rows == 2
    assert result.drop_reasons == {"v": {"ValidationFailed": 1}}
    assert result.dropped.to_pylist()[0]["message"] == (
        "column 'v': 'value' is invalid (python): 1:8 F401 `os` imported but unused"
    )


def test_every_row_invalid_stops_the_run() -> None:
    """drop_invalid drops count as the column's errors: a validator that finds every row
    invalid stops the run like a broken column (generator health)."""
    result = run_preview(
        ["import os\n"] * 40,
        {"name": "v", "validate": {"kind": "python", "target": "value", "drop_invalid": True}},
        row_group_size=5,
        max_row_groups_in_flight=1,
    )
    assert result.status == "stopped"
    assert result.stop_reason is not None
    assert "'v'" in result.stop_reason
    assert "ValidationFailed" in result.stop_reason
    assert result.num_dropped == 5  # the first row group, then the run stopped


def test_waiting_validators_get_their_own_lane() -> None:
    """A checker that waits on an outside resource (ruff processes, a service) is queued in its
    own scheduler lane, like a model; a parse-only one is plain work."""
    from gridloom.generators import BuildContext, build_generator
    from gridloom.kinds.validate._subprocess import LANE, MAX_SUBPROCESSES

    def generator(**check: Any) -> Any:
        config = pipeline([], {"name": "v", "validate": {"target": "value", **check}})
        return build_generator(config.columns[1], BuildContext(columns={}))

    linting = generator(kind="python")
    assert (linting.model_bound, linting.model_lane) == (True, LANE)
    assert LANE == ("validate:subprocess", MAX_SUBPROCESSES)
    service = generator(kind="http", url="http://127.0.0.1:9/v", max_parallel=3)
    assert (service.model_bound, service.model_lane) == (True, ("validate:http://127.0.0.1:9/v", 3))
    parsing = generator(kind="python", lint=False)
    assert (parsing.model_bound, parsing.model_lane) == (False, None)


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("check", "first_line"),
    [
        (
            {"kind": "pyhton", "target": "value"},
            "column 'v', field 'validate.kind': unknown validator kind 'pyhton'; did you mean"
            " 'python'?",
        ),
        (
            {"target": "value", "pattern": "x"},
            "column 'v', field 'validate.kind': required: the validator kind, one of python, sql,"
            " json_schema, regex, callable, http",
        ),
        (
            {"kind": "regex", "target": "value", "pattern": "(unclosed"},
            "column 'v', field 'validate.pattern': pattern is not a valid regular expression:"
            " missing ), unterminated subpattern at position 0",
        ),
        (
            {"kind": "json_schema", "target": "value", "schema": {"type": "widget"}},
            "column 'v', field 'validate.schema': schema is not a valid JSON Schema: 'widget' is"
            " not valid under any of the given schemas",
        ),
        (
            {"kind": "regex", "target": "value", "pattern": "x", "patern": "y"},
            "column 'v', field 'validate.patern': unknown key 'patern'; did you mean 'pattern'?",
        ),
        (
            {"kind": "http", "target": "value", "url": "ftp://x"},
            "column 'v', field 'validate.url': url must be an http:// or https:// URL with a host,"
            " got 'ftp://x'",
        ),
    ],
)
def test_bad_validators_fail_at_load(check: dict[str, Any], first_line: str) -> None:
    """Each problem is one line naming the column and the field, found when loading."""
    with pytest.raises(ConfigError) as excinfo:
        pipeline([], {"name": "v", "validate": check})
    assert one_line_error(excinfo) == first_line


def test_unknown_target_is_reported_with_a_suggestion() -> None:
    """The target is a reference: an unknown one fails validate with did-you-mean."""
    config = pipeline(
        [], {"name": "v", "validate": {"kind": "regex", "target": "valeu", "pattern": "x"}}
    )
    with pytest.raises(UnknownReferenceError) as excinfo:
        gl.validate(config)
    assert one_line_error(excinfo) == (
        "column 'v', field 'validate.target': references unknown column 'valeu'; did you mean"
        " 'value'?"
    )


def test_templates_read_verdict_fields() -> None:
    """Downstream templates see the verdict; a field it lacks fails validate."""
    good = {"name": "e", "expression": "{{ v.is_valid }}/{{ v.messages | length }}"}
    result = run_preview(
        ["x = 1\n", "import os\n"],
        {"name": "v", "validate": {"kind": "python", "target": "value"}},
        good,
    )
    assert result.table.column("e").to_pylist() == ["True/0", "False/1"]
    wrong = {"name": "e", "expression": "{{ v.valid }}"}
    with pytest.raises(UnknownReferenceError, match="valid"):
        gl.validate(
            pipeline([], {"name": "v", "validate": {"kind": "python", "target": "value"}}, wrong)
        )


# --------------------------------------------------------------------------- file form


def test_dump_load_round_trip_and_schema(tmp_path: Path) -> None:
    """The flat file form dumps and loads back equal; the JSON Schema accepts it and refuses
    an unknown validator kind or a parameter of another kind."""
    VALUES[:] = []
    config = pipeline(
        [],
        {"name": "v", "validate": {"kind": "python", "target": "value", "rules": ["F"]}},
        {
            "name": "s",
            "validate": {
                "kind": "sql",
                "target": "value",
                "dialect": "duckdb",
                "drop_invalid": True,
            },
        },
        {
            "name": "c",
            "validate": {
                "kind": "callable",
                "target": "value",
                "function": "tests.test_validators:even",
            },
        },
    )
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config
    data = json.loads(json.dumps(structure_pipeline.__globals__["unstructure_pipeline"](config)))
    assert data["columns"][1]["validate"] == {
        "kind": "python",
        "target": "value",
        "rules": ["F"],
        "ignore": [],
        "lint": True,
        "batch": False,
        "timeout": 10.0,
        "drop_invalid": False,
        "max_chars": 200000,
    }
    schema = config_json_schema()
    jsonschema.validate(data, schema)
    data["columns"][1]["validate"]["kind"] = "pyhton"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)
    data["columns"][1]["validate"] |= {"kind": "regex", "pattern": "x"}
    with pytest.raises(jsonschema.ValidationError):  # rules belong to python, not regex
        jsonschema.validate(data, schema)


def test_builtin_validators_match_pyproject() -> None:
    """The fallback list of built-in validators is what pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"][VALIDATOR_GROUP]
    assert [f"{k} = {v}" for k, v in declared.items()] == list(BUILTIN_VALIDATORS)


def test_a_broken_validator_plugin_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A validator plugin that fails to import is skipped; a config naming it fails with the
    reason, and the built-in validators still work."""
    from gridloom.config import _kinds
    from gridloom.kinds.validate import _registry

    real = _kinds.discover_entry_points

    def with_broken(group: str, builtin: tuple[str, ...]) -> list[Any]:
        broken = importlib.metadata.EntryPoint("spell", "no_such_module_x:VALIDATOR", group)
        return [*real(group, builtin), (broken, "spells", "1.0", False)]

    monkeypatch.setattr(_registry, "discover_entry_points", with_broken)
    _registry.reload_validators()
    try:
        with pytest.raises(ConfigError) as excinfo:
            pipeline([], {"name": "v", "validate": {"kind": "spell", "target": "value"}})
        assert one_line_error(excinfo) == (
            "column 'v', field 'validate.kind': validator kind 'spell' from plugin spells 1.0"
            " (entry point spell = no_such_module_x:VALIDATOR) is not available: it failed to"
            " import: ModuleNotFoundError: No module named 'no_such_module_x'"
        )
        pipeline(
            [], {"name": "v", "validate": {"kind": "regex", "target": "value", "pattern": "x"}}
        )
    finally:
        monkeypatch.undo()
        _registry.reload_validators()


def test_builder_takes_a_validator_as_a_file_writes_it() -> None:
    """PipelineBuilder.validate also takes the validator as a mapping with its ``kind`` (what
    the stub advertises), giving the same column as the object; its problems are located."""
    by_mapping = (
        gl.PipelineBuilder(seed=1)
        .category("code", ["x = 1\n"])
        .validate("r", "code", {"kind": "regex", "pattern": "x.*", "match": "search"})
        .build()
    )
    by_object = (
        gl.PipelineBuilder(seed=1)
        .category("code", ["x = 1\n"])
        .validate("r", "code", RegexCheck(pattern="x.*", match="search"))
        .build()
    )
    assert by_mapping == by_object
    for check, message in (
        (
            {"kind": "regx", "pattern": "x"},
            r"field 'validate\.check\.kind': unknown validator kind 'regx'; did you mean 'regex'\?",
        ),
        (
            {"kind": "regex", "patern": "x"},
            r"field 'validate\.check\.patern': unknown key 'patern'; did you mean 'pattern'\?",
        ),
        (
            {"kind": "regex", "pattern": "("},
            r"field 'validate\.check\.pattern': pattern is not a valid regular expression",
        ),
    ):
        with pytest.raises(ConfigError, match=r"column 'r', " + message):
            gl.PipelineBuilder().validate("r", "code", check)


def test_builder_method() -> None:
    """PipelineBuilder.validate takes the target and a validator object."""
    config = (
        gl.PipelineBuilder(seed=1)
        .category("code", ["x = 1\n", "import os\n"])
        .validate("v", "code", PythonCheck(rules=["F"]), drop_invalid=False)
        .validate("r", "code", RegexCheck(pattern="x.*"))
        .build()
    )
    assert isinstance(config.columns[1], ValidateColumn)
    table = gl.preview(config, num_records=6).table
    for code, found in zip(
        table.column("code").to_pylist(), table.column("v").to_pylist(), strict=True
    ):
        assert found["is_valid"] is (code == "x = 1\n")
    with pytest.raises(ConfigError, match=r"column 'v', field 'validate\.check'"):
        gl.PipelineBuilder().validate("v", "code", "python")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'no way' is not a ruff rule selector"):
        PythonCheck(rules=["no way"])
