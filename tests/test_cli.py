"""The gridloom command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "people.yaml"


def gridloom(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridloom", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_validate_prints_the_graph() -> None:
    """`gridloom validate` accepts the example and lists its nodes; --json parses."""
    proc = gridloom("validate", EXAMPLE)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout
    assert "loyalty_score" in proc.stdout
    data = json.loads(gridloom("validate", EXAMPLE, "--json").stdout)
    assert data["valid"] is True
    assert {n["node"] for n in data["nodes"]} >= {"country", "city", "greeting"}


def test_validate_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    """A config error exits 2 with one line naming the file, column and field."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns:\n  - {name: a, expression: '{{ b }}'}\n")
    proc = gridloom("validate", bad)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(bad) in lines[0]
    assert "column 'a'" in lines[0]
    assert "'b'" in lines[0]


def test_create_writes_a_dataset_and_refuses_to_clobber_it(tmp_path: Path) -> None:
    """`gridloom create` writes parquet; a second run into the folder exits 3."""
    out = tmp_path / "out"
    proc = gridloom("create", EXAMPLE, "-n", "250", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 250 of 250 rows" in proc.stdout
    assert pq.read_table(out / "data").num_rows == 250
    again = gridloom("create", EXAMPLE, "-n", "250", "-o", out)
    assert again.returncode == 3
    assert "resume" in again.stderr
    summary = json.loads(
        gridloom("create", EXAMPLE, "-n", "50", "-o", out, "--overwrite", "--json").stdout
    )
    assert summary["num_rows"] == 50
