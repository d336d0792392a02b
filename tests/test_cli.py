"""The gridloom command line, run as a real subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
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
    assert "250 of 250 rows written to " in proc.stdout
    assert pq.read_table(out / "data").num_rows == 250
    again = gridloom("create", EXAMPLE, "-n", "250", "-o", out)
    assert again.returncode == 3
    assert "resume" in again.stderr
    summary = json.loads(
        gridloom("create", EXAMPLE, "-n", "50", "-o", out, "--overwrite", "--json").stdout
    )
    assert summary["num_rows"] == 50


def test_a_failed_run_exits_1_with_one_line(tmp_path: Path) -> None:
    """A run-level error (resuming with another pipeline) exits 1 with an error line."""
    out = tmp_path / "out"
    assert gridloom("create", EXAMPLE, "-n", "20", "-o", out).returncode == 0
    other = tmp_path / "other.yaml"
    other.write_text(EXAMPLE.read_text().replace("seed: 7", "seed: 8"))
    (tmp_path / "people_functions.py").write_text(
        (EXAMPLE.parent / "people_functions.py").read_text()
    )
    proc = gridloom("create", other, "-n", "20", "-o", out, "--resume")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ")
    assert "configuration changed" in proc.stderr or "config" in proc.stderr
    assert "Traceback" not in proc.stderr


SLOW = """\
columns:
  - {name: n, uniform: {low: 0, high: 9, convert_to: int}}
  - {name: slow, custom: {function: "slow_functions:nap", dtype: int}, depends_on: [n]}
run: {row_group_size: 20, max_row_groups_in_flight: 1, max_worker_threads: 1, seed: 1}
"""


def test_ctrl_c_exits_130_and_keeps_completed_row_groups(tmp_path: Path) -> None:
    """SIGINT mid-run: exit 130, metadata says interrupted, written parquet stays readable."""
    (tmp_path / "slow.yaml").write_text(SLOW)
    (tmp_path / "slow_functions.py").write_text(
        "import time\n\ndef nap(row, ctx):\n    time.sleep(0.005)\n    return row['n']\n"
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridloom",
            "create",
            str(tmp_path / "slow.yaml"),
            "-n",
            "100000",
            "-o",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list((out / "data").glob("part-*.parquet")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no row group was written in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "interrupted"
    table = pq.read_table(out / "data")
    assert table.num_rows == 20 * len(meta["row_groups"]) > 0
