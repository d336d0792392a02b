"""What the CLI says about a run's output directory, resumes and the run's outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from gridloom.cli import cli, output_schema

PIPELINE = """\
columns:
  - {name: n, uniform: {low: 1, high: 100, convert_to: int}}
  - {name: double, expression: {template: "{{ n * 2 }}", dtype: int}}
run: {row_group_size: 10, seed: 5, progress: off}
"""


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def checked(command: str, stdout: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(stdout)
    jsonschema.validate(doc, output_schema(command))
    return doc


def config_file(folder: Path) -> Path:
    path = folder / "p.yaml"
    path.write_text(PIPELINE)
    return path


def test_an_existing_run_is_refused_in_cli_words(tmp_path: Path) -> None:
    """The error names the options a user types (--overwrite, --resume), not the Python
    arguments ("pass overwrite")."""
    config = config_file(tmp_path)
    out = tmp_path / "out"
    assert invoke("create", config, "-n", "10", "-o", out).exit_code == 0
    again = invoke("create", config, "-n", "10", "-o", out)
    assert again.exit_code == 3
    assert "--overwrite" in again.stderr
    assert "--resume" in again.stderr
    assert "pass overwrite" not in again.stderr


def test_a_plain_folder_with_a_data_folder_is_not_a_run(tmp_path: Path) -> None:
    """A folder whose data/ holds the user's own files is refused for what it is, and
    --overwrite refuses too rather than leave them next to the dataset (reading data/ would
    then fail); nothing of the user's is removed."""
    config = config_file(tmp_path)
    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    (out / "data" / "mine.csv").write_text("a,b\n1,2\n")
    for extra in ((), ("--overwrite",)):
        result = invoke("create", config, "-n", "10", "-o", out, *extra, "--json")
        assert result.exit_code == 1
        doc = checked("create", result.stdout)
        message = doc["error"]["message"]
        assert "data/mine.csv" in message
        assert "gridloom run" not in message
        assert (out / "data" / "mine.csv").read_text() == "a,b\n1,2\n"
    assert not (out / "metadata.json").exists()


def test_resume_refuses_to_shrink_a_run(tmp_path: Path) -> None:
    """`gridloom resume DIR -n 10` on a 40-row run was silently ignored: now a usage error
    saying both counts; `create --resume` with fewer rows fails the same way."""
    config = config_file(tmp_path)
    out = tmp_path / "out"
    assert invoke("create", config, "-n", "40", "-o", out).exit_code == 0
    result = invoke("resume", out, "-n", "10", "--json")
    assert result.exit_code == 2
    message = checked("resume", result.stdout)["error"]["message"]
    assert "40" in message
    assert "-n 10" in message
    assert "only grow" in message
    text = invoke("resume", out, "-n", "10")
    assert text.exit_code == 2
    assert text.stderr.startswith("error: ")
    again = invoke("create", config, "-n", "10", "-o", out, "--resume", "--json")
    assert again.exit_code == 1
    assert "only grow" in checked("create", again.stdout)["error"]["message"]


def test_the_rate_after_a_resume_counts_this_invocation_only(tmp_path: Path) -> None:
    """A resume that adds 20 rows to a 40-row run reports 20 rows generated, and its rows/s
    divides those 20 (not all 60) by this invocation's time."""
    config = config_file(tmp_path)
    out = tmp_path / "out"
    assert invoke("create", config, "-n", "40", "-o", out).exit_code == 0
    result = invoke("resume", out, "-n", "60", "--json")
    assert result.exit_code == 0, result.stdout
    doc = checked("resume", result.stdout)
    assert doc["num_rows"] == 60
    assert doc["rows_generated"] == 20
    assert doc["rows_per_second"] == doc["rows_generated"] / doc["wall_time"]
    plain = invoke("resume", out, "-n", "70")
    assert plain.exit_code == 0
    first = plain.stdout.splitlines()[0]
    assert first.startswith(f"70 of 70 rows written to {out}, 0 dropped, in ")
    assert "wrote" not in plain.stdout  # said once, in one format


def test_complete_means_every_row(tmp_path: Path) -> None:
    """A run that wrote every row says so, exits 0, and its summary has no shortfall."""
    config = config_file(tmp_path)
    result = invoke("create", config, "-n", "25", "-o", tmp_path / "o", "--json")
    assert result.exit_code == 0
    doc = checked("create", result.stdout)
    assert doc["status"] == "complete"
    assert doc["num_rows"] == 25
    assert doc["drop_examples"] == []
    assert "shortfall" not in doc


def test_resume_of_a_run_folder_with_a_hostile_config_is_a_clear_error(tmp_path: Path) -> None:
    """A run folder's config.yaml that nests without end, or holds a value YAML cannot build
    (2024-13-01), is reported as a config error with --json — never a traceback (the warning
    pass over the saved config read it without limits)."""
    config = config_file(tmp_path)
    out = tmp_path / "out"
    assert invoke("create", config, "-n", "10", "-o", out).exit_code == 0
    for text in ("a: " + "[" * 5000 + "]" * 5000 + "\n", "columns: []\nwhen: 2024-13-01\n"):
        (out / "config.yaml").write_text(text)
        result = invoke("resume", out, "--json")
        assert result.exit_code == 2, result.stdout
        doc = checked("resume", result.stdout)
        assert doc["error"]["type"] == "ConfigError"


@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_an_empty_output_dir_is_refused_not_taken_for_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    """``-o ""`` (an unset shell variable) is a usage error naming the option; it used to
    write the run into the current directory. Nothing is written."""
    config = config_file(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for command in (["create", config, "-n", "2", "-o", blank], ["inspect", blank]):
        result = invoke(*command)
        assert result.exit_code == 2
        assert "is empty; name a directory (. for the current one)" in result.stderr
    assert list(work.iterdir()) == []


def test_a_dangling_symlink_as_output_dir_is_a_clear_error(tmp_path: Path) -> None:
    """A symbolic link to nothing is named as such (was: a raw "[Errno 17] File exists")."""
    config = config_file(tmp_path)
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    result = invoke("create", config, "-n", "2", "-o", link)
    assert result.exit_code == 2
    assert "is a symbolic link to nothing" in result.stderr
    assert not (tmp_path / "gone").exists()
