"""A run has at most MAX_NUM_RECORDS (10**12) rows: ``-n`` beyond it is a usage error (exit
2, JSON with ``--json``) on every command that takes it, the Python API refuses it (and a
count that is not a whole number) with a ConfigError, and ``resume`` refuses a metadata.json
recording more."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

import gridloom as gl
from gridloom.cli import cli, output_schema
from gridloom.errors import ConfigError
from gridloom.run import MAX_NUM_RECORDS

CONFIG = "columns:\n  - {name: a, uniform: {low: 0, high: 1}}\n"
HUGE = "99999999999999999999999"


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _args(command: str, tmp_path: Path, n: str) -> list[str | Path]:
    config = tmp_path / "p.yaml"
    config.write_text(CONFIG)
    if command == "create":
        return ["create", config, "-n", n, "-o", tmp_path / "out"]
    if command == "resume":
        return ["resume", tmp_path / "out", "-n", n]
    return ["preview", config, "-n", n]


def test_the_bound_is_a_trillion_rows() -> None:
    """10**12: below 2**53 (exact as a float, in JSON readers too) and far inside int64."""
    assert MAX_NUM_RECORDS == 10**12
    assert MAX_NUM_RECORDS < 2**53


@pytest.mark.parametrize("command", ["create", "resume", "preview"])
@pytest.mark.parametrize("n", [HUGE, str(MAX_NUM_RECORDS + 1)])
def test_n_beyond_the_bound_is_a_usage_error(tmp_path: Path, command: str, n: str) -> None:
    """Exit 2, one line naming -n and the range; nothing is written."""
    result = invoke(*_args(command, tmp_path, n))
    assert result.exit_code == 2, result.output
    assert "'-n' / '--num-records'" in result.stderr
    assert f"1<=x<={MAX_NUM_RECORDS}" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["create", "resume", "preview"])
def test_n_beyond_the_bound_with_json(tmp_path: Path, command: str) -> None:
    """With --json: the usage error as the command's JSON (valid against its schema)."""
    result = invoke(*_args(command, tmp_path, HUGE), "--json")
    assert result.exit_code == 2, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(doc, output_schema(command))
    assert doc["ok"] is False
    assert doc["error"]["type"] == "UsageError"
    assert f"1<=x<={MAX_NUM_RECORDS}" in doc["error"]["message"]


def test_n_at_the_bound_is_accepted(tmp_path: Path) -> None:
    """-n 10**12 passes the option (here the missing config is what fails)."""
    result = invoke("create", tmp_path / "missing.yaml", "-n", str(MAX_NUM_RECORDS), "-o", "x")
    assert result.exit_code == 2
    assert "no such file" in result.stderr


@pytest.mark.parametrize(
    ("num_records", "message"),
    [
        (MAX_NUM_RECORDS + 1, "at most 1,000,000,000,000"),
        (10**23, "at most 1,000,000,000,000"),
        (0, ">= 1"),
        (True, "whole number"),
        (2.0, "whole number"),
    ],
)
def test_the_api_refuses_a_bad_count(tmp_path: Path, num_records: Any, message: str) -> None:
    """preview, create and plan_row_groups raise a ConfigError before anything is written."""
    config = tmp_path / "p.yaml"
    config.write_text(CONFIG)
    with pytest.raises(ConfigError, match=message):
        gl.preview(config, num_records)
    with pytest.raises(ConfigError, match=message):
        gl.create(config, num_records=num_records, output_dir=tmp_path / "out")
    with pytest.raises(ConfigError, match=message):
        gl.plan_row_groups(num_records, 500)
    assert not (tmp_path / "out").exists()


def test_resume_refuses_a_recorded_count_beyond_the_bound(tmp_path: Path) -> None:
    """A metadata.json recording more than the bound is not a valid run to resume (exit 1)."""
    config = tmp_path / "p.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    assert invoke("create", config, "-n", "2", "-o", out).exit_code == 0
    meta_path = out / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["num_records"] = MAX_NUM_RECORDS + 1
    meta_path.write_text(json.dumps(meta))
    result = invoke("resume", out, "--json")
    assert result.exit_code == 1, result.output
    assert "no valid num_records" in json.loads(result.stdout)["error"]["message"]
