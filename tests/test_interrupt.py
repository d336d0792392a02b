"""Interrupting ``gridloom create`` (SIGINT, SIGTERM, SIGKILL) and resuming it exactly.

Each test runs the real command in a subprocess against the simulated endpoint over real
sockets, signals it once some row groups are on disk, checks that everything left on disk is
complete and readable, resumes, and compares the result row for row with an uninterrupted run.

Data files carry no row id column: a run's rows are the row groups in index order, each with
its kept rows in ascending row id, so the concatenation of ``data/part-*.parquet`` in index
order is the dataset (``ParquetStore.read_table`` reads it the same way).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.storage._lock import LOCK_NAME

ROWS = 80
ROW_GROUP_SIZE = 10
N_GROUPS = ROWS // ROW_GROUP_SIZE

PIPELINE = f"""\
providers:
  - name: sim
    type: simulated
    simulation:
      default: {{latency: {{fixed: 0.02}}}}
models:
  - {{alias: writer, provider: sim, model: writer-8b, max_parallel_requests: 20}}
  - {{alias: judge, provider: sim, model: judge-70b, max_parallel_requests: 20}}
columns:
  - {{name: topic, category: {{values: [rivers, volcanoes, deserts, glaciers]}}}}
  - {{name: n, uniform: {{low: 0, high: 100, convert_to: int}}}}
  - name: summary
    llm_text: {{model: writer, prompt: "Summarize {{{{ topic }}}} number {{{{ n }}}}."}}
  - {{name: checked, custom: {{function: "interrupt_functions:check", dtype: int}},
     depends_on: [n, summary]}}
  - name: quality
    llm_judge:
      model: judge
      prompt: "{{{{ summary }}}}"
      rubrics:
        - {{name: accuracy, scores: {{1: wrong, 3: partly, 5: exact}}}}
run: {{row_group_size: {ROW_GROUP_SIZE}, max_row_groups_in_flight: 1, seed: 11, allow_drops: 0.5}}
"""

# Some rows fail (deterministically), so runs also write dropped/ files.
FUNCTIONS = """\
def check(row, ctx):
    if row["n"] % 11 == 0:
        raise ValueError(f"unlucky {row['n']}")
    return row["n"] * 2 + len(row["summary"])
"""

#: Generous bound on waiting for the subprocess; polls use small sleeps.
TIMEOUT = 60.0
POLL = 0.01


@attrs.frozen
class Dataset:
    """What a finished run left on disk."""

    data: pa.Table
    dropped: pa.Table
    meta: dict[str, Any]


def command(config: Path, out: Path, *extra: str) -> list[str]:
    args = ["create", str(config), "-n", str(ROWS), "-o", str(out), *extra]
    return [sys.executable, "-m", "gridloom", *args]


def start(config: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(config, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_to_end(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        command(config, out, *extra), capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def part_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.parquet"))


def wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    """Poll until ``ready()``; fail if the process ends first or the deadline passes."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL)


def interrupt(
    config: Path, out: Path, sig: signal.Signals, *, groups: int, delay: float = 0.0
) -> tuple[int, str]:
    """Start a run, send ``sig`` once ``groups`` row groups are on disk (plus ``delay`` s);
    return its exit code and stderr."""
    proc = start(config, out)
    try:
        if groups == 0:  # as soon as the run directory exists: before any row group
            wait_for(proc, lambda: (out / "metadata.json").exists(), "the run started")
        else:
            wait_for(
                proc,
                lambda: len(part_files(out / "data")) >= groups,
                f"{groups} row groups were written",
            )
        if delay:
            time.sleep(delay)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stderr


def check_on_disk(out: Path, *, graceful: bool) -> None:
    """Everything an interrupted run left is complete: each parquet file reads back, and
    metadata.json parses. Temp files and the lock file may be left only by an abrupt kill
    (resume removes the first, takes the second); after a graceful stop metadata.json lists
    exactly the row groups on disk."""
    assert out.is_dir()
    allowed = {"config.yaml", "metadata.json", "data", "dropped"}
    temps: list[Path] = []
    for entry in out.iterdir():
        if entry.name.startswith(".tmp-"):
            temps.append(entry)
        elif entry.name == LOCK_NAME:
            # The writer's lock file: a graceful stop removes it; after a kill the OS has
            # released the lock and the file stays until the next writer takes it.
            assert not graceful, f"{entry} left by a graceful stop"
        else:
            assert entry.name in allowed, f"unexpected {entry}"
    for sub in ("data", "dropped"):
        directory = out / sub
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry.name.startswith(".tmp-"):
                temps.append(entry)
                continue
            assert re.fullmatch(r"part-\d{5}\.parquet", entry.name), entry
            pq.read_table(entry)  # complete: footer and all
    meta = json.loads((out / "metadata.json").read_text())
    on_disk = {int(p.stem.removeprefix("part-")) for p in part_files(out / "data")}
    listed = {int(i) for i in meta["row_groups"]}
    if graceful:
        assert temps == []
        assert meta["status"] == "interrupted"
        assert listed == on_disk
    else:
        assert meta["status"] == "running"
        # A data file committed just before the kill may not be listed yet (resume adopts it).
        assert listed <= on_disk


def read_run(out: Path) -> Dataset:
    """The dataset of a finished run, row group by row group in index order."""
    meta = json.loads((out / "metadata.json").read_text())
    data_files = part_files(out / "data")
    assert [int(p.stem.removeprefix("part-")) for p in data_files] == list(range(N_GROUPS))
    dropped_files = part_files(out / "dropped")
    assert not list(out.rglob(".tmp-*"))
    return Dataset(
        data=pa.concat_tables(pq.read_table(p) for p in data_files),
        dropped=pa.concat_tables(pq.read_table(p) for p in dropped_files),
        meta=meta,
    )


def assert_same_dataset(out: Path, reference: Dataset) -> None:
    resumed = read_run(out)
    assert resumed.meta["status"] == "complete"
    assert resumed.data.num_rows == reference.data.num_rows
    assert resumed.data.to_pylist() == reference.data.to_pylist()
    assert resumed.dropped.to_pylist() == reference.dropped.to_pylist()
    for key in ("seed", "num_records", "rows_written", "rows_dropped", "counts", "row_groups"):
        assert resumed.meta[key] == reference.meta[key], key


def interrupt_and_resume(
    config: Path,
    out: Path,
    reference: Dataset,
    sig: signal.Signals,
    *,
    groups: int,
    delay: float = 0.0,
) -> str:
    code, stderr = interrupt(config, out, sig, groups=groups, delay=delay)
    expected = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}
    assert code == expected[sig], stderr
    check_on_disk(out, graceful=sig != signal.SIGKILL)
    run_to_end(config, out, "--resume")
    assert_same_dataset(out, reference)
    return stderr


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline")
    (folder / "interrupt_functions.py").write_text(FUNCTIONS)
    config = folder / "pipeline.yaml"
    config.write_text(PIPELINE)
    return config


@pytest.fixture(scope="module")
def reference(pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The dataset of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "out"
    run_to_end(pipeline, out)
    dataset = read_run(out)
    assert 0 < dataset.dropped.num_rows < ROWS  # the pipeline does drop rows
    return dataset


def fresh_dir(tmp_path: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp_path)) / "out"


def test_sigterm_stops_cleanly_and_resumes_exactly(
    pipeline: Path, reference: Dataset, tmp_path: Path
) -> None:
    """SIGTERM: exit 143, status interrupted, one line saying how to resume; resume is exact."""
    out = tmp_path / "out"
    stderr = interrupt_and_resume(pipeline, out, reference, signal.SIGTERM, groups=3)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("interrupted by SIGTERM; ")
    assert f"row groups kept in {out}" in lines[0]
    assert lines[0].endswith(f"-n {ROWS} -o {out} --resume")


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(groups=st.integers(1, N_GROUPS - 2), delay=st.floats(0, 0.05))
def test_sigint_at_any_moment_then_resume_equals_an_uninterrupted_run(
    pipeline: Path, reference: Dataset, tmp_path: Path, groups: int, delay: float
) -> None:
    """Ctrl-C after any number of row groups: exit 130, status interrupted, exact resume."""
    stderr = interrupt_and_resume(
        pipeline, fresh_dir(tmp_path), reference, signal.SIGINT, groups=groups, delay=delay
    )
    assert stderr.startswith("interrupted by SIGINT; "), stderr


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(groups=st.integers(1, N_GROUPS - 2), delay=st.floats(0, 0.05))
def test_sigkill_at_any_moment_then_resume_equals_an_uninterrupted_run(
    pipeline: Path, reference: Dataset, tmp_path: Path, groups: int, delay: float
) -> None:
    """SIGKILL (no chance to clean up) after any number of row groups: exact resume."""
    interrupt_and_resume(
        pipeline, fresh_dir(tmp_path), reference, signal.SIGKILL, groups=groups, delay=delay
    )


def test_sigkill_right_after_start_then_resume_equals_an_uninterrupted_run(
    pipeline: Path, reference: Dataset, tmp_path: Path
) -> None:
    """SIGKILL as soon as the run directory exists, before any row group is written."""
    out = tmp_path / "out"
    interrupt_and_resume(pipeline, out, reference, signal.SIGKILL, groups=0)


NAP_PIPELINE = """\
columns:
  - {name: n, uniform: {low: 0, high: 9, convert_to: int}}
  - {name: slow, custom: {function: "nap_functions:nap", dtype: int}, depends_on: [n]}
run: {row_group_size: 4, max_worker_threads: 1, seed: 1}
"""

# A worker thread cannot be cancelled, but a stop no longer waits for it (it is abandoned).
NAP_FUNCTIONS = """\
import time
from pathlib import Path


def nap(row, ctx):
    Path(__file__).with_name("napping").touch()
    time.sleep(60)
    return row["n"]
"""


def test_a_cell_sleeping_in_a_worker_thread_does_not_hold_ctrl_c(tmp_path: Path) -> None:
    """While a cell sleeps in a worker thread (which cannot be cancelled), one SIGINT ends the
    run cleanly at once, exit 130 and status interrupted, long before the 60 s nap ends (the
    shutdown used to wait for it, and only a second SIGINT got out)."""
    (tmp_path / "nap_functions.py").write_text(NAP_FUNCTIONS)
    config = tmp_path / "nap.yaml"
    config.write_text(NAP_PIPELINE)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridloom", "create", str(config), "-n", "8", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(proc, (tmp_path / "napping").exists, "the slow cell started")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)  # well before the 60 s nap ends
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "interrupted by SIGINT; 0 row groups kept" in stderr
    assert "still running" not in stderr  # stopped cleanly, not by the watchdog
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["row_groups"] == {}
    assert meta["status"] == "interrupted"


DEAD_PIPELINE = """\
providers:
  - name: sim
    type: simulated
    simulation: {default: {latency: {fixed: 0.001}, error_500_rate: 1.0}}
models:
  - {alias: writer, provider: sim, model: writer, max_parallel_requests: 4}
columns:
  - {name: topic, category: {values: [rivers, deserts]}}
  - {name: text, llm_text: {model: writer, prompt: "On {{ topic }}."}}
run: {seed: 1, row_group_size: 10, retry_backoff_seconds: 0.01, retry_backoff_max_seconds: 0.01,
      shutdown_min_seconds: 0}
"""


def test_a_run_that_stops_early_exits_4(tmp_path: Path) -> None:
    """A model answering only 500s stops the run early: the reason is printed and the
    command exits 4, over real sockets."""
    config = tmp_path / "pipeline.yaml"
    config.write_text(DEAD_PIPELINE)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "gridloom", "create", str(config), "-n", "200", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4, done.stderr
    # Said once (the summary's last line), not three times.
    assert (done.stdout + done.stderr).count("stopped early: model 'writer' failed") == 1
    assert json.loads((out / "metadata.json").read_text())["status"] == "stopped"
