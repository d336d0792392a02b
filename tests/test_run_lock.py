"""Tests of the writer's lock on a run directory (gridloom.storage._lock): one writer at a time,
across processes and within one; a killed writer never blocks the next."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from gridloom.cli import cli
from gridloom.errors import OutputExistsError
from gridloom.storage import ParquetStore, location_of
from gridloom.storage import _lock as lock_module
from gridloom.storage._lock import LOCK_NAME, RunDirLock

from .test_cli_commands import invoke, pipeline
from .test_manifest_store import open_store as open_manifest
from .test_storage import HASH, SCHEMA, group, open_store

#: A process that opens the run in argv[1] with argv[2]'s mode and writes one row group (or
#: with "lock", only locks it), says so with a file, then waits (the test kills it).
_WRITER = textwrap.dedent(
    """
    import sys, time, trio
    from pathlib import Path
    from tests.test_storage import group, open_store
    from gridloom.storage._lock import RunDirLock
    out = Path(sys.argv[1])
    if sys.argv[2] == "lock":  # a writer of a run already there
        held = RunDirLock.acquire(out)
    else:
        store = open_store(out, mode=sys.argv[2])
        trio.run(store.write, group(0))
    (out.parent / "ready").write_text("")
    while True:
        time.sleep(60)
    """
)


def _writer(out: Path, mode: str) -> subprocess.Popen[bytes]:
    """Start a process writing the run in ``out``; return once it holds the lock (it says so
    with a file, so no timing is guessed)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(out), mode], cwd=root, env=env)
    ready = out.parent / "ready"
    deadline = time.monotonic() + 120  # a bound for a stuck child, not a timing guess
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the writer process ended or hung (exit {proc.returncode})")
        time.sleep(0.01)
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_second_process_cannot_write_a_run_being_written(tmp_path: Path) -> None:
    """While a process writes a run, another one's create, overwrite and resume fail at once,
    naming the folder and the writer's pid, and touch nothing (not even its temp files)."""
    out = tmp_path / "run"
    proc = _writer(out, "new")
    try:
        (out / ".tmp-metadata.json-live").write_text("being written")
        before = sorted(p.name for p in out.rglob("*"))
        for mode in ("new", "overwrite", "resume"):
            with pytest.raises(OutputExistsError) as caught:
                open_store(out, mode=mode)
            message = str(caught.value)
            assert str(out) in message
            assert f"another gridloom process (pid {proc.pid})" in message
        assert sorted(p.name for p in out.rglob("*")) == before
    finally:
        _kill(proc)


def test_a_killed_writer_never_blocks_a_resume(tmp_path: Path) -> None:
    """A writer killed with SIGKILL leaves its lock file, but not its lock: the resume takes the
    folder over, keeps the row group written, and removes the lock file when done."""
    out = tmp_path / "run"
    _kill(_writer(out, "new"))
    assert (out / LOCK_NAME).exists()
    store = open_store(out, mode="resume")
    assert sorted(store.completed()) == [0]
    store.close()
    assert not (out / LOCK_NAME).exists()


def test_the_cli_refuses_a_run_being_written_with_exit_3(tmp_path: Path) -> None:
    """`gridloom resume` of a run another process writes exits 3 with a JSON error naming the
    folder and that process."""
    out = tmp_path / "run"
    invoke("create", pipeline(tmp_path), "-n", 20, "-o", out)
    proc = _writer(out, "lock")
    try:
        result = CliRunner().invoke(cli, ["resume", str(out), "--json"], catch_exceptions=False)
    finally:
        _kill(proc)
    assert result.exit_code == 3, result.output
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "OutputExistsError"
    assert f"pid {proc.pid}" in error["message"]
    assert str(out) in error["message"]


def test_one_writer_per_folder_within_a_process(tmp_path: Path) -> None:
    """Two stores of one process on one folder are refused too, for both stores, until the
    first is closed; closing lets go and removes the lock file."""
    out = tmp_path / "run"

    def direct(mode: Any) -> ParquetStore:  # no stand-in for a new process: the same one
        return ParquetStore.open(
            out,
            schema=SCHEMA,
            config_text="",
            config_hash=HASH,
            num_records=10,
            row_group_size=4,
            seed=7,
            mode=mode,
        )

    first = direct("new")
    with pytest.raises(OutputExistsError, match="another run of this process"):
        open_manifest(location_of(out), mode="resume")
    with pytest.raises(OutputExistsError, match="another run of this process"):
        direct("resume")
    trio.run(first.write, group(0))
    first.close()
    first.close()  # idempotent
    assert not (out / LOCK_NAME).exists()
    second = direct("resume")
    assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    second.close()


def test_a_run_lets_go_of_its_folder_when_it_ends(tmp_path: Path) -> None:
    """After a run (here: refused half-way by a bad config hash), nothing stays locked."""
    out = tmp_path / "run"
    open_store(out).close()
    with pytest.raises(Exception, match="configuration changed"):
        open_store(out, mode="resume", config_hash="f" * 64)
    assert not (out / LOCK_NAME).exists()
    open_store(out, mode="resume").close()


def test_a_filesystem_without_flock_runs_unlocked_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the filesystem refuses flock (ENOLCK), the run goes on unlocked and says so."""

    def refuse(fd: int, op: int) -> Any:
        raise OSError(errno.ENOLCK, "No locks available")

    assert lock_module.fcntl is not None
    monkeypatch.setattr(lock_module.fcntl, "flock", refuse)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="gridloom.storage"):
        lock = RunDirLock.acquire(out)
    assert not lock.locked
    assert "goes on unlocked" in caplog.text
    assert str(out) in caplog.text
    lock.release()
