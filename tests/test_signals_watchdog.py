"""SIGINT and SIGTERM always end the process (issue 14, class 2): a run whose event loop or
worker thread is held by user work still exits with the signal's code soon after the first
signal, keeping every completed row group (and resuming exactly); ``validate`` ends at once
even inside a C call; a second signal ends a run stuck in a C call that holds the GIL.

Each test runs the real command in a subprocess and only bounds the wait generously (the
watchdog's grace is 2 s; nothing asserts how quickly the process ended).
"""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gridloom.run import Watchdog, chained_handlers

#: Generous bound on waiting for a subprocess.
TIMEOUT = 30.0

FUNCTIONS = """\
from pathlib import Path

HERE = Path(__file__).parent


def _stuck(ctx):
    # Rows of the third row group on hang, until the test writes the release file.
    return ctx.row_id >= 8 and not (HERE / "release").exists()


def _hang():
    (HERE / "hanging").touch()
    while True:
        pass  # pure Python: never returns, never yields to the event loop


def spin(row, ctx):  # synchronous: runs in a worker thread the shutdown waits for
    if _stuck(ctx):
        _hang()
    return row["n"]


async def spin_on_loop(row, ctx):  # asynchronous: holds the event loop itself
    if _stuck(ctx):
        _hang()
    return row["n"]


def c_loop(row, ctx):  # one C call holding the GIL: no Python code runs meanwhile
    if _stuck(ctx):
        (HERE / "hanging").touch()
        return sum(range(10**15)) % 7
    return row["n"]


def flag(row, ctx):
    if _stuck(ctx):
        (HERE / "hanging").touch()
        return 1
    return 0
"""

PIPELINE = """\
columns:
  - {{name: n, uniform: {{low: 0, high: 9, convert_to: int}}}}
  - {{name: out, custom: {{function: "hog_functions:{function}", dtype: int}}, depends_on: [n]}}
run: {{row_group_size: 4, max_row_groups_in_flight: 1, max_worker_threads: 1, seed: 1}}
"""

# The template's loop runs inside its CPU budget (2 s) for each flagged row, which are all
# dropped; the run goes on with the next one, and never yields the worker thread for long.
HEAVY_TEMPLATE = """\
columns:
  - {name: n, uniform: {low: 0, high: 9, convert_to: int}}
  - {name: flag, custom: {function: "hog_functions:flag", dtype: int}, depends_on: [n]}
  - name: out
    expression:
      template: >-
        {% set big = 'x' * 1000000 %}{% if flag %}{% for i in range(100000) %}{% set x =
        big|upper %}{% endfor %}{% endif %}{{ n }}
run:
  row_group_size: 4
  max_row_groups_in_flight: 1
  max_worker_threads: 1
  seed: 1
  generator_first_rows: 0
  generator_error_rate: null
  allow_drops: 1.0
"""

ROWS = 12


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "hog_functions.py").write_text(FUNCTIONS)
    return tmp_path


def _config(folder: Path, text: str) -> Path:
    config = folder / "pipeline.yaml"
    config.write_text(text)
    return config


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gridloom", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _interrupt(
    proc: subprocess.Popen[str], *signals: signal.Signals, pause: float = 0.3
) -> tuple[int, str, str]:
    """Send ``signals`` (``pause`` apart) and wait for the process, generously."""
    try:
        for i, sig in enumerate(signals):
            if i:
                time.sleep(pause)
                assert proc.poll() is None, "the process ended before the next signal"
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def _check_kept(out: Path, groups: int) -> None:
    """The completed row groups are on disk, whole and readable."""
    parts = sorted((out / "data").glob("part-*.parquet"))
    assert [int(p.stem.removeprefix("part-")) for p in parts] == list(range(groups))
    for part in parts:
        assert pq.read_table(part).num_rows == 4
    json.loads((out / "metadata.json").read_text())  # complete JSON


def _python(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _resume(folder: Path, config: Path, out: Path) -> None:
    (folder / "release").touch()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridloom",
            "create",
            str(config),
            "-n",
            str(ROWS),
            "-o",
            str(out),
            "--resume",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    parts = sorted((out / "data").glob("part-*.parquet"))
    assert sum(pq.read_table(p).num_rows for p in parts) == ROWS


@pytest.mark.parametrize(
    ("function", "sig", "code"),
    [
        ("spin", signal.SIGINT, 130),
        ("spin_on_loop", signal.SIGTERM, 143),
        ("spin_on_loop", signal.SIGINT, 130),
    ],
)
def test_one_signal_ends_a_run_held_by_user_code(
    folder: Path, function: str, sig: signal.Signals, code: int
) -> None:
    """A custom function that never returns: the first signal still ends the process with
    its code. In a worker thread the run stops cleanly (the thread is abandoned); on the event
    loop the watchdog ends it, saying so in one line. Either way the completed row groups stay
    on disk, and resuming finishes the run."""
    config = _config(folder, PIPELINE.format(function=function))
    out = folder / "out"
    proc = _start("create", str(config), "-n", str(ROWS), "-o", str(out))
    _wait_for(proc, (folder / "hanging").exists, "the stuck cell started")
    returncode, _, stderr = _interrupt(proc, sig)
    assert returncode == code, stderr
    if function == "spin":
        assert f"interrupted by {sig.name}; 2 row groups kept" in stderr
    else:
        assert f"{sig.name}: still running 2 s later; exiting without waiting" in stderr
    _check_kept(out, groups=2)
    _resume(folder, config, out)


def test_one_signal_ends_a_run_rendering_a_heavy_template(folder: Path) -> None:
    """A template that uses its whole CPU budget on every cell renders in a worker thread;
    SIGINT ends the run with 130 (cleanly, or by the watchdog) keeping what was written."""
    config = _config(folder, HEAVY_TEMPLATE)
    out = folder / "out"
    proc = _start("create", str(config), "-n", str(ROWS), "-o", str(out))
    _wait_for(proc, (folder / "hanging").exists, "the heavy cells started")
    returncode, _, stderr = _interrupt(proc, signal.SIGINT)
    assert returncode == 130, stderr
    _check_kept(out, groups=2)


def test_one_signal_ends_a_preview_held_by_user_code(folder: Path) -> None:
    """preview runs under the same watchdog."""
    config = _config(folder, PIPELINE.format(function="spin_on_loop"))
    proc = _start("preview", str(config), "-n", str(ROWS), "--json")
    _wait_for(proc, (folder / "hanging").exists, "the stuck cell started")
    returncode, stdout, stderr = _interrupt(proc, signal.SIGINT)
    assert returncode == 130, stderr
    doc = json.loads(stdout)
    assert doc["ok"] is False
    assert doc["error"]["type"] == "Interrupted"
    assert "still running 2 s later" in doc["error"]["message"]


def test_a_second_signal_ends_a_run_at_once(folder: Path) -> None:
    """A second signal does not wait for the watchdog's grace (user code holds the loop, so
    the first one cannot stop the run)."""
    config = _config(folder, PIPELINE.format(function="spin_on_loop"))
    out = folder / "out"
    proc = _start("create", str(config), "-n", str(ROWS), "-o", str(out))
    _wait_for(proc, (folder / "hanging").exists, "the stuck cell started")
    returncode, _, stderr = _interrupt(proc, signal.SIGTERM, signal.SIGINT, pause=0.2)
    assert returncode == 143, stderr
    assert "SIGINT again: exiting without waiting" in stderr
    _check_kept(out, groups=2)


@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"),
    reason="the kernel's one-shot default action is set where struct sigaction is known",
)
def test_a_second_signal_ends_a_run_stuck_in_a_c_call(folder: Path) -> None:
    """While one C call holds the GIL no Python code runs, not even a signal handler; the
    second signal then takes the kernel's default action and ends the process. The row
    groups written are intact and the run resumes."""
    config = _config(folder, PIPELINE.format(function="c_loop"))
    out = folder / "out"
    proc = _start("create", str(config), "-n", str(ROWS), "-o", str(out))
    _wait_for(proc, (folder / "hanging").exists, "the C call started")
    returncode, _, stderr = _interrupt(proc, signal.SIGINT, signal.SIGINT, pause=0.5)
    assert returncode == -signal.SIGINT, stderr
    _check_kept(out, groups=2)
    _resume(folder, config, out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_validate_ends_at_once_even_inside_a_c_call(folder: Path, sig: signal.Signals) -> None:
    """validate has nothing to save: the signal takes its default action and ends the
    process, even while importing a module stuck in one C call."""
    (folder / "stuck_import.py").write_text(
        "from pathlib import Path\n"
        "Path(__file__).with_name('hanging').touch()\n"
        "x = sum(range(10**15))\n"
        "def f(row, ctx):\n    return 1\n"
    )
    config = _config(
        folder,
        "columns:\n  - {name: out, custom: {function: 'stuck_import:f', dtype: int}}\n",
    )
    proc = _start("validate", str(config))
    _wait_for(proc, (folder / "hanging").exists, "the import started")
    returncode, _, stderr = _interrupt(proc, sig)
    assert returncode == -sig, stderr


def test_the_watchdog_stops_with_a_run_that_ended_without_a_signal() -> None:
    """In-process: without a signal, the watchdog's thread ends with the run and the signal
    handlers are restored."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    calls: list[tuple[int, str]] = []
    watchdog = Watchdog(lambda signum, why: calls.append((signum, why)))
    with chained_handlers(watchdog):
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
    assert {sig: signal.getsignal(sig) for sig in before} == before
    watchdog.close()
    assert not any(t.name == "gridloom-signal-watchdog" for t in threading.enumerate())
    assert calls == []


def test_ctrl_c_while_the_command_line_loads_ends_with_one_line() -> None:
    """A SIGINT during the imports (delivered by a real signal while ``gridloom.cli`` is
    being imported) gives exit code 130 and one line, not an import traceback."""
    script = (
        "import os, signal, sys\n"
        "class Trip:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'gridloom.cli':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Trip())\n"
        "sys.argv = ['gridloom', 'validate', 'missing.yaml']\n"
        "from gridloom.__main__ import main\n"
        "main()\n"
    )
    proc = _python(script)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "interrupted while starting; nothing was done\n"
    assert proc.stdout == ""


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_after_the_receiver_closed_still_goes_to_the_watchdog(
    second: signal.Signals,
) -> None:
    """Once the run's signal receiver has closed (the loop still running its shutdown), a
    second signal goes to the watchdog, which exits with the first signal's code and says
    so: not SIGTERM's default action (status -15, no report) or a KeyboardInterrupt."""
    script = (
        "import os, signal, sys, trio\n"
        "from gridloom.run import StopSignals, Watchdog\n"
        "def abrupt(signum, why):\n"
        "    print('abrupt', signum, why, flush=True)\n"
        "async def main():\n"
        "    stop = StopSignals(abrupt, Watchdog(abrupt, grace=60.0))\n"
        "    scope = trio.CancelScope()\n"
        "    async with trio.open_nursery() as nursery:\n"
        "        await nursery.start(stop.watch, scope)\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        with scope:\n"
        "            await trio.sleep_forever()\n"
        "        nursery.cancel_scope.cancel()\n"
        "    handler = signal.getsignal(signal.SIGTERM)\n"
        "    print('default' if handler == signal.SIG_DFL else 'armed', flush=True)\n"
        f"    os.kill(os.getpid(), {int(second)})\n"
        "    await trio.sleep_forever()\n"
        "trio.run(main)\n"
    )
    proc = _python(script)
    assert proc.returncode == 143, proc.stderr
    assert proc.stdout == f"armed\nabrupt {int(signal.SIGTERM)} a second signal\n"
    assert f"{second.name} again: exiting without waiting" in proc.stderr
