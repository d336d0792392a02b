"""With ``--json`` stdout carries exactly the command's JSON: whatever user code (custom
functions, plugins, the modules they import) or a library writes to stdout — by ``print``,
``sys.stdout``, the file descriptor, C's stdio or a child process — goes to stderr instead,
and the signals' exits still print valid JSON.

The commands run as real subprocesses; in-process tests check that the process's stdout
(``sys.stdout`` and fd 1) is put back after the command.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gridloom.cli import cli
from gridloom.cli._stdout import json_stdout, write_json

from .test_signals_watchdog import _wait_for

#: Generous bound on waiting for a subprocess.
TIMEOUT = 60.0

NOISY = """\
import ctypes
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
print("noisy: print at import")


def _noise(ctx):
    print("noisy: print in f")
    sys.stdout.write("{not json")
    sys.stdout.flush()
    os.write(1, b"noisy: fd 1 in f\\n")
    if ctx.row_id == 0:
        libc = ctypes.CDLL(None)
        libc.printf(b"noisy: printf in f\\n")  # buffered by C's stdio
        subprocess.run([sys.executable, "-c", "print('noisy: child process')"], check=True)


def f(row, ctx):
    _noise(ctx)
    return 1


def hang(row, ctx):  # synchronous: a worker thread the run abandons when stopped
    _noise(ctx)
    if ctx.row_id >= 4:
        (HERE / "hanging").touch()
        while True:
            pass
    return 1


async def hang_on_loop(row, ctx):  # holds the event loop: the watchdog ends the process
    _noise(ctx)
    if ctx.row_id >= 4:
        (HERE / "hanging").touch()
        while True:
            pass
    return 1
"""

CONFIG = """\
columns:
  - {{name: a, uniform: {{low: 0, high: 1}}}}
  - {{name: b, custom: {{function: "noisy:{function}", dtype: int}}, depends_on: [a]}}
run: {{row_group_size: 4, max_row_groups_in_flight: 1, max_worker_threads: 1, seed: 1}}
"""

PLUGIN = """\
import os
import sys

print("plugin: print at import")
sys.stdout.write("{plugin not json")
sys.stdout.flush()
os.write(1, b"plugin: fd 1 at import\\n")
KIND = None  # not a kind: the plugin is listed as broken
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with the noisy custom functions, and a noisy plugin installed on the path."""
    (tmp_path / "noisy.py").write_text(NOISY)
    site = tmp_path / "site"
    dist = site / "noisyplug-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "noisyplug.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: noisyplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[gridloom.columns]\nnoisy_kind = noisyplug:KIND\n")
    return tmp_path


def _config(folder: Path, function: str = "f") -> Path:
    config = folder / "noisy.yaml"
    config.write_text(CONFIG.format(function=function))
    return config


def _env(folder: Path) -> dict[str, str]:
    paths = [str(folder / "site"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _run(folder: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridloom", *map(str, args)],
        capture_output=True,
        text=True,
        env=_env(folder),
        timeout=TIMEOUT,
        check=False,
    )


def _one_document(stdout: str) -> dict[str, Any]:
    """``stdout`` is one JSON object and nothing else."""
    doc = json.loads(stdout)
    assert isinstance(doc, dict)
    return doc


def test_validate_json_keeps_import_time_prints_off_stdout(folder: Path) -> None:
    """The custom function's module and the plugin print when imported: stderr gets it."""
    proc = _run(folder, "validate", _config(folder), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = _one_document(proc.stdout)
    assert doc["ok"] is True
    assert doc["command"] == "validate"
    assert "noisy: print at import" in proc.stderr
    assert "plugin: print at import" in proc.stderr
    assert "{plugin not json" in proc.stderr
    assert "plugin: fd 1 at import" in proc.stderr


def test_plugins_json_keeps_a_plugins_prints_off_stdout(folder: Path) -> None:
    """`plugins --json` imports every plugin; the broken noisy one is reported in the JSON
    (exit 1), its output on stderr."""
    proc = _run(folder, "plugins", "--json")
    assert proc.returncode == 1, proc.stderr
    doc = _one_document(proc.stdout)
    assert doc["command"] == "plugins"
    assert "noisy_kind" in json.dumps(doc)
    assert "plugin: print at import" in proc.stderr


@pytest.mark.parametrize("command", ["preview", "create"])
def test_run_time_output_of_user_code_goes_to_stderr(folder: Path, command: str) -> None:
    """print, sys.stdout.write, os.write(1), C's printf and a child process, from a custom
    function while rows are generated: stdout is still exactly the command's JSON."""
    config = _config(folder)
    args: list[str | Path] = [command, config, "-n", "6", "--json"]
    if command == "create":
        args += ["-o", folder / "out"]
    proc = _run(folder, *args)
    assert proc.returncode == 0, proc.stderr
    doc = _one_document(proc.stdout)
    assert doc["ok"] is True
    assert doc["command"] == command
    for noise in (
        "noisy: print in f",
        "{not json",
        "noisy: fd 1 in f",
        "noisy: printf in f",
        "noisy: child process",
    ):
        assert noise in proc.stderr


def test_a_usage_error_with_json_is_one_document(folder: Path) -> None:
    """A usage error (exit 2) is still the only thing on stdout."""
    proc = _run(folder, "preview", _config(folder), "-n", "0", "--json")
    assert proc.returncode == 2, proc.stderr
    assert _one_document(proc.stdout)["error"]["type"] == "UsageError"


@pytest.mark.parametrize(
    ("function", "sig", "code", "how"),
    [
        ("hang", signal.SIGINT, 130, "interrupted by SIGINT"),
        ("hang", signal.SIGTERM, 143, "interrupted by SIGTERM"),
        ("hang_on_loop", signal.SIGINT, 130, "still running 2 s later"),
    ],
)
def test_a_stop_signal_still_prints_one_json_document(
    folder: Path, function: str, sig: signal.Signals, code: int, how: str
) -> None:
    """Stopped cleanly or by the watchdog (user code holding the loop), a noisy `create
    --json` exits with the signal's code and its stdout is the one JSON error."""
    config = _config(folder, function)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridloom",
            "create",
            str(config),
            "-n",
            "12",
            "-o",
            str(folder / "out"),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(folder),
    )
    try:
        _wait_for(proc, (folder / "hanging").exists, "the stuck cell")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, stderr
    doc = _one_document(stdout)
    assert doc["ok"] is False
    assert doc["error"]["type"] == "Interrupted"
    assert how in doc["error"]["message"]
    assert "noisy: print in f" in stderr


def test_the_process_stdout_is_put_back(capfd: pytest.CaptureFixture[str]) -> None:
    """In-process: inside, fd 1 and sys.stdout lead to stderr and only write_json reaches
    stdout; afterwards both are the process's stdout again."""
    before = sys.stdout
    with json_stdout():
        print("python print")
        os.write(1, b"fd write\n")
        write_json({"ok": True}, indent=None)
        assert sys.stdout is not before
    assert sys.stdout is before
    print("after")
    sys.stdout.flush()
    os.write(1, b"fd after\n")
    captured = capfd.readouterr()
    assert captured.out == '{"ok": true}\nafter\nfd after\n'
    assert "python print" in captured.err
    assert "fd write" in captured.err


def test_a_diverted_stdout_answers_isatty_for_the_real_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The progress display's auto mode asks whether stdout is a terminal: inside, the answer
    is still the real stdout's."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, tty in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stdout", stream)
        with json_stdout():
            assert sys.stdout.isatty() is tty
            print("noise")
            write_json({"ok": True}, indent=None)
        assert stream.getvalue() == '{"ok": true}\n'


def test_in_process_runner_output_stays_separate(tmp_path: Path) -> None:
    """Under click's CliRunner (streams without a file descriptor) the JSON still reaches the
    runner's stdout, the user code's prints its stderr."""
    (tmp_path / "noisy.py").write_text(NOISY)
    config = _config(tmp_path)
    result = CliRunner().invoke(cli, ["validate", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert _one_document(result.stdout)["ok"] is True
