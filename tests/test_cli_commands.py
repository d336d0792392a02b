"""Every ``gridloom`` command, on the simulated endpoint: text and ``--json`` output (checked
against the documented schemas), exit codes, error paths, interrupt and resume.

``create``, ``resume``, ``inspect`` and ``simulate`` run as real subprocesses; the other
commands run in-process through click's ``CliRunner``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner, Result

from gridloom.cli import cli, output_schema
from gridloom.config import (
    COLUMN_KINDS,
    config_json_schema,
    dump_config,
    load_config,
    structure_pipeline,
)
from gridloom.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60.0

#: An LLM pipeline on the simulated endpoint; ``checked`` drops the rows whose ``n`` is a
#: multiple of 7 (division by zero), which ``allow_drops`` lets go (by default).
PIPELINE = """\
providers:
  - name: sim
    type: simulated
    simulation:
      default: {latency: {fixed: LATENCY}}
models:
  - {alias: writer, provider: sim, model: writer-8b, max_parallel_requests: 4}
columns:
  - {name: topic, category: {values: [rivers, volcanoes, deserts]}}
  - {name: n, uniform: {low: 0, high: 100, convert_to: int}}
  - name: summary
    llm_text: {model: writer, prompt: "Summarize {{ topic }} number {{ n }}."}
  - name: checked
    expression: {template: "{{ n // (n % 7) }}", dtype: int}
run: {row_group_size: ROWS_PER_GROUP, max_row_groups_in_flight: 1, seed: 3, allow_drops: ALLOW}
"""


def pipeline(
    folder: Path, *, latency: float = 0.001, rows_per_group: int = 10, allow_drops: float = 0.5
) -> Path:
    """Write :data:`PIPELINE` to ``folder/pipeline.yaml``."""
    config = folder / "pipeline.yaml"
    text = PIPELINE.replace("LATENCY", str(latency)).replace("ROWS_PER_GROUP", str(rows_per_group))
    text = text.replace("ALLOW", str(allow_drops))
    config.write_text(text)
    return config


def gridloom(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridloom", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def popen(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gridloom", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def checked(command: str, stdout: str) -> dict[str, Any]:
    """Parse one ``--json`` document and validate it against the command's documented schema."""
    doc: dict[str, Any] = json.loads(stdout)
    jsonschema.validate(doc, output_schema(command))
    assert doc["command"] == command or doc["command"] is None
    return doc


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def parts(out: Path) -> int:
    return len(list((out / "data").glob("part-*.parquet")))


def signal_after(
    proc: subprocess.Popen[str], out: Path, groups: int, sig: signal.Signals
) -> tuple[str, str]:
    try:
        wait_for(proc, lambda: parts(out) >= groups, f"{groups} row groups")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return stdout, stderr


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", [None, *cli.commands])
def test_every_help_has_a_description_and_an_example(command: str | None) -> None:
    """`gridloom [COMMAND] --help` exits 0 with a description and an Example block."""
    result = invoke(*([command] if command else []), "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "--json" in result.output or command is None


# --------------------------------------------------------------------------- validate


def test_validate_json_and_a_bad_config(tmp_path: Path) -> None:
    """validate --json follows its schema; a bad template exits 2 naming the file, column and
    field (one stderr line), and with --json gives the config path of the field."""
    good = pipeline(tmp_path)
    doc = checked("validate", invoke("validate", good, "--json").output)
    assert doc["ok"]
    assert doc["valid"]
    assert {n["node"] for n in doc["nodes"]} == {"topic", "n", "summary", "checked"}
    assert doc["schema"]["summary"] == "string"

    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("Summarize {{ topic }}", "Summarize {{ topic }"))
    result = invoke("validate", bad)
    assert result.exit_code == 2
    line = one_line_error(result.stderr)
    assert line.startswith(f"error: {bad}: column 'summary', field 'llm_text.prompt': ")
    result = invoke("validate", bad, "--json")
    assert result.exit_code == 2
    error = checked("validate", result.stdout)["error"]
    assert error["type"] == "TemplateError"
    assert error["path"] == "columns.summary.llm_text.prompt"
    assert error["file"] == str(bad)


def test_config_errors_from_compiling_get_the_full_path(tmp_path: Path) -> None:
    """An error raised while compiling (a custom function that does not import) names the
    parameter under its kind key, like errors raised while loading."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "columns:\n  - {name: f, custom: {function: 'no_such_module_xyz:f'}}\n"
        "  - {name: m, uniform: {low: 1, hihg: 2}}\n"
    )
    error = checked("validate", invoke("validate", config, "--json").stdout)["error"]
    assert error["path"] == "columns.m.uniform.hihg"
    config.write_text("columns:\n  - {name: f, custom: {function: 'no_such_module_xyz:f'}}\n")
    error = checked("validate", invoke("validate", config, "--json").stdout)["error"]
    assert error["path"] == "columns.f.custom.function"
    config.write_text(
        "models:\n  - {alias: m, provider: p, model: x}\ncolumns: [{name: a, uuid: {}}]\n"
    )
    error = checked("validate", invoke("validate", config, "--json").stdout)["error"]
    assert error["path"] == "models[0].provider"


def test_a_missing_config_and_usage_errors(tmp_path: Path) -> None:
    """A missing config file is a configuration error (exit 2); a usage error with --json is
    JSON on stdout too."""
    missing = tmp_path / "nope.yaml"
    for command in ("validate", "preview", "check-models"):
        result = invoke(command, missing)
        assert result.exit_code == 2
        assert one_line_error(result.stderr) == f"error: {missing}: no such file"
        doc = checked(command, invoke(command, missing, "--json").stdout)
        assert doc["error"]["file"] == str(missing)
    result = invoke("create", pipeline(tmp_path), "--json")  # no -n, no -o
    assert result.exit_code == 2
    error = checked("create", result.stdout)["error"]
    assert error["type"] == "UsageError"
    assert "--num-records" in error["message"]


# --------------------------------------------------------------------------- preview


def test_preview_prints_a_table_or_json_rows(tmp_path: Path) -> None:
    """preview writes nothing, prints the rows as text, or as JSON rows with drop reasons."""
    config = pipeline(tmp_path)
    doc = checked("preview", invoke("preview", config, "-n", "12", "--json").stdout)
    assert doc["num_records"] == 12
    assert len(doc["rows"]) == doc["num_rows"] == 12 - doc["num_dropped"]
    assert set(doc["rows"][0]) == {"topic", "n", "summary", "checked"}
    if doc["num_dropped"]:
        assert doc["drop_reasons"]["checked"]
    result = invoke("preview", config, "-n", "3")
    assert result.exit_code == 0
    assert "topic" in result.stdout
    assert "summary" in result.stdout
    assert "of 3 rows" in result.stdout
    assert list(tmp_path.iterdir()) == [config]  # nothing written


def test_preview_of_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("columns:\n  - {name: a, bernoulli: {p: 1.5}}\n")
    result = invoke("preview", config, "--json")
    assert result.exit_code == 2
    assert checked("preview", result.stdout)["error"]["path"] == "columns.a.bernoulli.p"


# --------------------------------------------------------------------------- check-models


@pytest.mark.parametrize("key", [None, "  ", "sk-a\nb"])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_provider_error_found_opening_the_models_gets_the_full_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str | None, index: int
) -> None:
    """An API key variable that is unset, empty or unusable is found when the models are
    opened (not when the file is read); its error names the provider's field from the root,
    ``providers[1].api_key_env``, as the file's other errors do."""
    if key is None:
        monkeypatch.delenv("GRIDLOOM_TEST_UNSET_KEY", raising=False)
    else:
        monkeypatch.setenv("GRIDLOOM_TEST_UNSET_KEY", key)
    keyed = "{name: keyed, endpoint: 'http://127.0.0.1:9/v1', api_key_env: GRIDLOOM_TEST_UNSET_KEY}"
    others = [f"{{name: p{n}, endpoint: 'http://127.0.0.1:9/v1'}}" for n in range(2)]
    providers = [*others[:index], keyed, *others[index:]]
    config = tmp_path / "c.yaml"
    config.write_text(
        "providers:\n"
        + "".join(f"  - {p}\n" for p in providers)
        + "models:\n  - {alias: a, provider: p0, model: x}\n"
        "  - {alias: b, provider: keyed, model: y}\n"
        "columns:\n  - {name: t, llm_text: {model: a, prompt: hi}}\n"
        "  - {name: u, llm_text: {model: b, prompt: hi}}\n"
    )
    result = invoke("check-models", config, "--json")
    assert result.exit_code == 2
    error = checked("check-models", result.stdout)["error"]
    assert error["type"] == "ConfigError"
    assert error["path"] == f"providers[{index}].api_key_env"
    assert [e["path"] for e in error["errors"]] == [f"providers[{index}].api_key_env"]
    assert "GRIDLOOM_TEST_UNSET_KEY" in error["message"]


def test_check_models_json_and_a_failing_model(tmp_path: Path) -> None:
    """Every model answers: exit 0; one does not: exit 1, ModelCheckFailed, with the results."""
    config = pipeline(tmp_path)
    doc = checked("check-models", invoke("check-models", config, "--json").stdout)
    assert [m["alias"] for m in doc["models"]] == ["writer"]
    assert doc["models"][0]["ok"]

    down = tmp_path / "down.yaml"
    down.write_text(
        "providers:\n  - {name: sim, type: simulated}\n"
        "  - {name: down, endpoint: 'http://127.0.0.1:9/v1'}\n"
        "models:\n  - {alias: writer, provider: sim, model: w}\n"
        "  - {alias: judge, provider: down, model: j, timeout: 2}\n"
        "columns:\n  - {name: a, llm_text: {model: writer, prompt: hi}}\n"
        "  - {name: b, llm_text: {model: judge, prompt: '{{ a }}'}}\n"
    )
    result = invoke("check-models", down, "--json")
    assert result.exit_code == 1
    doc = checked("check-models", result.stdout)
    assert doc["ok"] is False
    assert doc["error"]["type"] == "ModelCheckFailed"
    assert {m["alias"]: m["ok"] for m in doc["models"]} == {"judge": False, "writer": True}
    text = invoke("check-models", down)
    assert text.exit_code == 1
    assert "FAIL  judge" in text.stdout


# --------------------------------------------------------------------------- schema


def test_schema_command(tmp_path: Path) -> None:
    """schema prints the config schema, writes it with --output, wraps it with --json, and
    prints a command's output schema with --command."""
    printed = json.loads(invoke("schema").stdout)
    assert printed == config_json_schema()
    target = tmp_path / "s.json"
    doc = checked("schema", invoke("schema", "--output", target, "--json").stdout)
    assert doc["output"] == str(target)
    assert json.loads(target.read_text()) == printed
    assert json.loads(invoke("schema", "--command", "inspect").stdout) == output_schema("inspect")
    result = invoke("schema", "--command", "nope", "--json")
    assert result.exit_code == 2
    assert checked("schema", result.stdout)["error"]["type"] == "UsageError"


def test_the_config_schema_is_valid_and_covers_every_kind() -> None:
    schema = config_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(COLUMN_KINDS) <= set(schema["$defs"]["Column"]["properties"])


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates_against_the_config_schema(example: Path) -> None:
    """Each example, as YAML reads it and in its JSON form, and as a run saves it
    (config.yaml: every field written out), is valid for the schema."""
    schema = config_json_schema()
    doc = yaml.safe_load(example.read_text())
    jsonschema.validate(doc, schema)
    jsonschema.validate(json.loads(json.dumps(doc, default=str)), schema)
    saved = dump_config(load_config(example), strict=False, redact=True)
    jsonschema.validate(yaml.safe_load(saved), schema)


COLUMN = {"name": "a", "uniform": {"low": 0, "high": 1}}


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        ({"columns": [{"name": "a", "unifrom": {"low": 0, "high": 1}}]}, "unknown kind"),
        ({"columns": [{**COLUMN, "bernoulli": {"p": 0.5}}]}, "two kind keys"),
        ({"columns": [{"uniform": {"low": 0, "high": 1}}]}, "no name"),
        ({"columns": [{"name": "a"}]}, "no kind"),
        ({"columns": [{"name": "a", "uniform": {"low": 0, "hihg": 1}}]}, "typo in a parameter"),
        ({"columns": [{"name": "a", "bernoulli": {"p": "0.5"}}]}, "a string for a number"),
        ({"columns": [{"name": "a", "bernoulli": {"p": 1.5}}]}, "out of range"),
        ({"columns": [{"name": "a", "uniform": {"low": 0, "high": 1, "drop": True}}]}, "drop"),
        ({"columns": [{"name": "a", "custom": {"function": "no_colon"}}]}, "function path"),
        ({"columns": [COLUMN], "run": {"row_group_size": 0}}, "row_group_size 0"),
        ({"columns": [COLUMN], "run": {"seed": True}}, "a boolean seed"),
        ({"columns": [COLUMN], "colums": []}, "unknown top-level key"),
        ({"columns": [COLUMN], "providers": [{"name": "p", "type": "openia"}]}, "provider type"),
        ({"run": {}}, "no columns"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_broken_configs_fail_the_schema_and_the_loader(broken: dict[str, Any], where: str) -> None:
    """What the schema rejects, loading rejects too."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, config_json_schema())
    with pytest.raises(ConfigError):
        structure_pipeline(broken)


def test_shorthands_the_loader_accepts_pass_the_schema() -> None:
    doc = {
        "columns": [
            {"name": "u", "uuid": None},
            {"name": "g", "gaussian": {}},
            {"name": "e", "expression": "{{ u }}"},
            {"name": "j", "expression": {"template": "{{ g }}", "dtype": "string"}, "drop": True},
        ]
    }
    jsonschema.validate(doc, config_json_schema())
    structure_pipeline(doc)


# --------------------------------------------------------------------------- create, inspect


def test_create_then_inspect(tmp_path: Path) -> None:
    """create --json gives the run summary; a second create exits 3 (JSON error); inspect
    reports what metadata.json and the parquet footers say, with a sample of the rows."""
    config = pipeline(tmp_path)
    out = tmp_path / "out"
    proc = gridloom("create", config, "-n", "30", "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = checked("create", proc.stdout)
    assert summary["status"] == "complete"
    assert summary["num_rows"] + summary["num_dropped"] == 30
    assert summary["num_dropped"] > 0  # the pipeline does drop rows

    again = invoke("create", config, "-n", "30", "-o", out, "--json")
    assert again.exit_code == 3
    assert checked("create", again.stdout)["error"]["type"] == "OutputExistsError"

    proc = gridloom("inspect", out, "--json", "-n", "2")
    assert proc.returncode == 0, proc.stderr
    info = checked("inspect", proc.stdout)
    meta = json.loads((out / "metadata.json").read_text())
    assert info["status"] == "complete"
    assert info["resume_command"] is None
    assert info["rows_written"] == info["rows_on_disk"] == summary["num_rows"]
    assert info["rows_dropped"] == summary["num_dropped"]
    assert info["columns"] == meta["counts"] == summary["columns"]
    assert info["drop_reasons"] == summary["drop_reasons"]
    assert sum(info["drop_reasons"]["checked"].values()) == summary["num_dropped"]
    assert info["row_groups"] == {
        "planned": 3,
        "fill": 0,
        "written": 3,
        "on_disk": 3,
        "unlisted": [],
    }
    assert [f["name"] for f in info["schema"]] == ["topic", "n", "summary", "checked"]
    assert info["problems"] == []
    assert info["sample"] == pq.read_table(out / "data").slice(0, 2).to_pylist()

    assert info["drop_examples"] == summary["drop_examples"]
    [example] = info["drop_examples"]
    assert example["column"] == "checked"
    assert example["rows"] == summary["num_dropped"]
    assert "ZeroDivisionError" in example["message"]
    dropped = pq.read_table(out / "dropped").to_pylist()
    assert {"row_id": example["row_id"], "column": "checked"}.items() <= dropped[0].items()

    result = invoke("inspect", out)
    assert result.exit_code == 0
    for part in (
        "complete",
        "dropped rows, by reason:",
        f"checked · GenerationError · {summary['num_dropped']} row",
        f"row {example['row_id']}: template failed to render: ZeroDivisionError",
        "schema:",
        "sample (first 5",
    ):
        assert part in result.stdout


def test_a_run_short_of_rows_exits_5_with_its_reasons(tmp_path: Path) -> None:
    """With run.allow_drops 0 (the default) a run that drops rows ends "incomplete" and exits
    5, its text and JSON output saying why with an example per reason; inspect and preview
    say so too. (It used to end "complete" and exit 0 having written 0 of 30 rows.)"""
    config = pipeline(tmp_path, allow_drops=0.0)
    out = tmp_path / "out"
    proc = gridloom("create", config, "-n", "30", "-o", out)
    assert proc.returncode == 5, proc.stderr
    assert "ended: incomplete:" in proc.stdout
    assert "checked · GenerationError" in proc.stdout
    assert "ZeroDivisionError" in proc.stdout
    doc = checked(
        "create", invoke("create", config, "-n", "30", "-o", out, "--overwrite", "--json").stdout
    )
    assert doc["ok"] is False
    assert doc["error"]["type"] == "RunIncomplete"
    assert doc["status"] == "incomplete"
    assert doc["shortfall"]["missing"] == doc["num_dropped"] > 0
    assert doc["shortfall"]["allowed"] == 0
    assert "ZeroDivisionError" in doc["drop_examples"][0]["message"]
    info = checked("inspect", gridloom("inspect", out, "--json").stdout)
    assert info["status"] == "incomplete"
    assert info["resume_command"] is None
    preview = invoke("preview", config, "-n", "30", "--json")
    assert preview.exit_code == 5
    shown = checked("preview", preview.stdout)
    assert shown["status"] == "incomplete"
    assert shown["drop_examples"][0]["column"] == "checked"


def test_inspect_and_resume_need_a_run_directory(tmp_path: Path) -> None:
    """A missing directory, or one without metadata.json, is a clear error (exit 2)."""
    missing = tmp_path / "missing"
    proc = gridloom("inspect", missing)
    assert proc.returncode == 2
    assert one_line_error(proc.stderr) == f"error: {missing}: no such directory"
    result = invoke("resume", missing, "--json")
    assert result.exit_code == 2
    assert checked("resume", result.stdout)["error"]["type"] == "NotARunDirectory"
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("inspect", "resume"):
        result = invoke(command, empty)
        assert result.exit_code == 2
        assert "not a gridloom run directory" in one_line_error(result.stderr)
        doc = checked(command, invoke(command, empty, "--json").stdout)
        assert doc["error"]["file"] == str(empty)


# --------------------------------------------------------------------------- resume


def test_interrupt_resume_interrupt_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """SIGTERM stops create (143); inspect shows the interrupted run; SIGINT stops resume
    (130, naming `gridloom resume`); a last resume completes it, equal to a run never
    interrupted."""
    config = pipeline(tmp_path, latency=0.05, rows_per_group=4)
    rows = "48"
    reference = tmp_path / "reference"
    assert invoke("create", config, "-n", rows, "-o", reference).exit_code == 0

    out = tmp_path / "out"
    _, stderr = signal_after(popen("create", config, "-n", rows, "-o", out), out, 1, signal.SIGTERM)
    assert "interrupted by SIGTERM; " in stderr
    kept = parts(out)
    assert 1 <= kept < 12

    info = checked("inspect", invoke("inspect", out, "--json").stdout)
    assert info["status"] == "interrupted"
    assert info["resume_command"] == f"gridloom resume {out}"
    assert info["row_groups"]["written"] == kept

    proc = popen("resume", out, "--json")
    stdout, stderr = signal_after(proc, out, kept + 1, signal.SIGINT)
    assert proc.returncode == 130, stderr
    doc = checked("resume", stdout)
    assert doc["error"]["type"] == "Interrupted"
    assert doc["signal"] == "SIGINT"
    assert doc["resume_command"] == f"gridloom resume {out}"
    assert doc["row_groups_kept"] == parts(out) > kept

    proc = gridloom("resume", out, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = checked("resume", proc.stdout)
    assert summary["status"] == "complete"
    assert summary["num_records"] == 48
    assert pq.read_table(out / "data").to_pylist() == pq.read_table(reference / "data").to_pylist()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["counts"] == json.loads((reference / "metadata.json").read_text())["counts"]


FUNCTIONS = "def double(row, ctx):\n    return row['n'] * 2\n"


def test_resume_finds_functions_next_to_the_original_config(tmp_path: Path) -> None:
    """metadata.json records the original config's folder, so a resume from the saved
    config.yaml finds a custom function module next to it; once the module has moved, the
    error says to pass --base-dir, and --base-dir finds it."""
    original = tmp_path / "original"
    original.mkdir()
    (original / "cli_resume_functions.py").write_text(FUNCTIONS)
    config = original / "f.yaml"
    config.write_text(
        "columns:\n  - {name: n, uniform: {low: 0, high: 9, convert_to: int}}\n"
        "  - {name: d, custom: {function: 'cli_resume_functions:double', dtype: int},"
        " depends_on: [n]}\nrun: {seed: 1, row_group_size: 5}\n"
    )
    out = tmp_path / "out"
    proc = gridloom("create", config, "-n", "10", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "metadata.json").read_text())["base_dir"] == str(original.resolve())
    proc = gridloom("resume", out, "-n", "15")
    assert proc.returncode == 0, proc.stderr
    assert "15 of 15 rows written to " in proc.stdout
    moved = tmp_path / "moved"
    original.rename(moved)
    result = invoke("resume", out, "-n", "20")
    assert result.exit_code == 2
    line = one_line_error(result.stderr)
    assert line.startswith(f"error: {out / 'config.yaml'}: column 'd', field 'custom.function'")
    assert "--base-dir" in line
    proc = gridloom("resume", out, "--base-dir", moved, "-n", "20")
    assert proc.returncode == 0, proc.stderr
    assert "20 of 20 rows written to " in proc.stdout


# --------------------------------------------------------------------------- simulate


def test_simulate_json_lines() -> None:
    """simulate --json prints a ready line with the URL, and a stopped line after SIGTERM."""
    proc = popen("simulate", "--port", "0", "--latency", "0", "--json")
    try:
        assert proc.stdout is not None
        ready = checked("simulate", proc.stdout.readline())
        assert ready["event"] == "ready"
        assert ready["url"] == f"http://127.0.0.1:{ready['port']}/v1"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    stopped = checked("simulate", stdout)
    assert stopped == {"ok": True, "command": "simulate", "event": "stopped", "signal": "SIGTERM"}


# --------------------------------------------------------------------------- plot


def test_plot_draws_a_traced_run_and_explains_an_untraced_one(tmp_path: Path) -> None:
    """plot writes the three PNGs of a traced run (--json lists them); on a run without a
    trace it fails with one clear line."""
    config = pipeline(tmp_path)
    traced = tmp_path / "traced"
    env_run = subprocess.run(
        [sys.executable, "-m", "gridloom", "create", str(config), "-n", "20", "-o", str(traced)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "GRIDLOOM_TRACE": "1", "GRIDLOOM_PROGRESS": "off"},
    )
    assert env_run.returncode == 0, env_run.stderr
    result = invoke("plot", traced, "--json", "--dest", tmp_path / "pictures")
    assert result.exit_code == 0, result.stdout
    doc = checked("plot", result.stdout)
    names = sorted(Path(f).name for f in doc["files"])
    assert names == ["columns.png", "latency.png", "models.png"]
    assert all(Path(f).stat().st_size > 10_000 for f in doc["files"])
    plain = tmp_path / "plain"
    assert gridloom("create", config, "-n", "10", "-o", plain).returncode == 0
    proc = gridloom("plot", plain)
    assert proc.returncode == 1
    assert one_line_error(proc.stderr).startswith(f"error: {plain}:")
