"""User code that raises what is not an ``Exception`` (``sys.exit()``, ``GeneratorExit``, a
``BaseException`` of its own) or ``StopIteration`` fails its cell with a reason naming the
column — custom functions (sync, async, batch), validator functions, any generator — and never
ends the run or the process; Ctrl-C raised by user code still stops the run as Ctrl-C does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import RunConfig, structure_pipeline
from gridloom.errors import ConfigError, RunError
from gridloom.generators._escapes import ends_run
from gridloom.run._run import Run

from . import scheduling
from .test_scheduler_properties import dags, execute

SRC = str(Path(__file__).resolve().parent.parent / "src")
MODULE = "gridloom_test_exits"

SOURCE = """
import sys

class Own(BaseException):
    pass

def exit0(row, ctx):
    sys.exit(0)

def exit_none(row, ctx):
    sys.exit()

def exit_text(row, ctx):
    sys.exit("bye")

def generator_exit(row, ctx):
    raise GeneratorExit

def own(row, ctx):
    raise Own("mine")

def stop(row, ctx):
    raise StopIteration

async def async_exit(row, ctx):
    sys.exit(3)

async def async_generator_exit(row, ctx):
    raise GeneratorExit

async def async_stop(row, ctx):
    raise StopAsyncIteration

def batch_exit(columns, ctx):
    sys.exit(0)

async def async_batch_exit(columns, ctx):
    raise GeneratorExit

def validator_exit(value, ctx):
    sys.exit(0)

async def async_validator_exit(value, ctx):
    sys.exit(1)

def interrupt(row, ctx):
    raise KeyboardInterrupt
"""

#: function → the reason each of its cells fails with.
CASES = {
    "exit0": "the function called sys.exit(0)",
    "exit_none": "the function called sys.exit(None)",
    "exit_text": "the function called sys.exit('bye')",
    "generator_exit": "the function raised GeneratorExit",
    "own": "the function raised Own: mine",
    "stop": "the function raised StopIteration",
    "async_exit": "the function called sys.exit(3)",
    "async_generator_exit": "the function raised GeneratorExit",
    "async_stop": "the function raised StopAsyncIteration",
}


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The module of misbehaving functions, importable, removed again afterwards."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(MODULE, None)


def _config(*columns: dict[str, Any]) -> dict[str, Any]:
    return {
        "run": {"seed": 1, "row_group_size": 10, "progress": "off"},
        "columns": [{"name": "a", "uniform": {"low": 0, "high": 1}}, *columns],
    }


def _custom(function: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "b",
        "custom": {"function": f"{MODULE}:{function}", **fields},
        "depends_on": ["a"],
    }


def _drops(result: gl.RunResult) -> list[tuple[str, str, str]]:
    return sorted(
        (d["column"], d["error_type"], d["message"]) for d in result.summary["drop_examples"]
    )


# --------------------------------------------------------------------------- the Python API


@pytest.mark.parametrize(("function", "reason"), sorted(CASES.items()))
def test_custom_functions_fail_their_cells(user_module: Path, function: str, reason: str) -> None:
    """Each cell of the column fails (its row dropped and counted) with the reason; the run
    returns."""
    result = gl.preview(structure_pipeline(_config(_custom(function))), num_records=3)
    assert result.summary["num_dropped"] == 3
    assert result.summary["columns"]["b"]["failed"] == 3
    assert _drops(result) == [("b", "GenerationError", f"column 'b': {reason}; the cell fails")]


@pytest.mark.parametrize(
    ("function", "reason"),
    [("batch_exit", "called sys.exit(0)"), ("async_batch_exit", "raised GeneratorExit")],
)
def test_batch_functions_fail_their_rows(user_module: Path, function: str, reason: str) -> None:
    """A batch function's exit fails the batch's rows (one row group: a run whose every row
    fails may stop before its next group)."""
    result = gl.preview(
        structure_pipeline(_config(_custom(function, mode="batch"))), num_records=10
    )
    assert result.summary["num_dropped"] == 10
    assert _drops(result) == [
        ("b", "GenerationError", f"column 'b': the function {reason}; the cell fails")
    ]


@pytest.mark.parametrize(
    ("function", "reason"),
    [("validator_exit", "called sys.exit(0)"), ("async_validator_exit", "called sys.exit(1)")],
)
def test_validator_functions_fail_their_cells(
    user_module: Path, function: str, reason: str
) -> None:
    """A callable validator that exits fails its cells, naming the validate column."""
    check = {"kind": "callable", "target": "a", "function": f"{MODULE}:{function}"}
    result = gl.preview(
        structure_pipeline(_config({"name": "v", "validate": check})), num_records=2
    )
    assert result.summary["num_dropped"] == 2
    assert _drops(result) == [
        ("v", "GenerationError", f"column 'v': the function {reason}; the cell fails")
    ]


def test_exit_on_import_is_a_config_error(user_module: Path) -> None:
    """A module that calls sys.exit() when imported is a ConfigError naming the field."""
    (user_module / "gridloom_test_exit_on_import.py").write_text("import sys\nsys.exit(4)\n")
    column = {"name": "b", "custom": {"function": "gridloom_test_exit_on_import:f"}}
    try:
        with pytest.raises(ConfigError) as info:
            gl.validate(structure_pipeline(_config(column)))
    finally:
        sys.modules.pop("gridloom_test_exit_on_import", None)
    assert str(info.value).startswith("column 'b', field 'custom.function': cannot import")
    assert "importing it called sys.exit(4)" in str(info.value)


# --------------------------------------------------------------------------- any generator

ESCAPES = st.sampled_from(
    [
        (SystemExit(0), "called sys.exit(0)"),
        (SystemExit("x"), "called sys.exit('x')"),
        (GeneratorExit(), "raised GeneratorExit"),
        (BaseExceptionGroup("g", [SystemExit(2)]), "raised BaseExceptionGroup: g (SystemExit)"),
    ]
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=dags(max_nodes=4), num_records=st.integers(1, 8), data=st.data())
def test_any_generator_exiting_fails_only_its_cells(
    specs: list[scheduling.NodeSpec], num_records: int, data: st.DataObject
) -> None:
    """Generators of every shape (async, sync in a thread, inline, cell, batch) whose call
    raises a BaseException that is not an Exception fail those cells only: their rows are
    dropped with the reason, the others complete, the scheduler returns."""
    escape, said = data.draw(ESCAPES)
    cells = st.tuples(st.integers(0, len(specs) - 1), st.integers(0, num_records - 1))
    failures = data.draw(st.frozensets(cells, min_size=1, max_size=3))
    original = scheduling._ProbeBase._result

    def _result(self: Any, ctx: Any, call: Any, now: float) -> Any:
        try:
            return original(self, ctx, call, now)
        except RuntimeError:
            raise escape from None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scheduling._ProbeBase, "_result", _result)
        outcome = execute(
            specs, num_records=num_records, run=RunConfig(row_group_size=4), failures=failures
        )
    failed = {r for c in outcome.recorder.calls if c.failed for r in c.row_ids}
    drops = outcome.store.inner.read_dropped().to_pylist()
    assert sorted(d["row_id"] for d in drops) == sorted(failed)
    for d in drops:
        assert d["error_type"] == "GenerationError"
        assert d["message"] == f"column {d['column']!r}: the generator {said}; the cell fails"


@pytest.mark.parametrize(
    ("exc", "ends"),
    [
        (KeyboardInterrupt(), True),
        (trio.Cancelled._create(), True),  # type: ignore[attr-defined]
        (BaseExceptionGroup("g", [SystemExit(0), KeyboardInterrupt()]), True),
        (SystemExit(0), False),
        (GeneratorExit(), False),
        (BaseExceptionGroup("g", [SystemExit(0)]), False),
    ],
)
def test_what_still_ends_the_run(exc: BaseException, ends: bool) -> None:
    """Only Ctrl-C and the run's own cancellation (alone or grouped) pass the cells' guard."""
    assert ends_run(exc) is ends


def test_an_exit_past_the_guards_is_a_run_error() -> None:
    """A SystemExit that leaves the run's nursery (from no cell) is a RunError, never a
    silent exit."""
    run = Run(structure_pipeline(_config()))

    async def work(services: Any) -> None:
        raise SystemExit(0)

    with pytest.raises(RunError, match="the run was ended by user code: SystemExit\\(0\\)"):
        trio.run(run._supervise, work)


# --------------------------------------------------------------------------- the command line


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridloom", *args],
        capture_output=True,
        text=True,
        cwd=folder,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(folder)])},
        timeout=120,
    )


@pytest.mark.parametrize("function", ["exit0", "async_exit"])
def test_cli_reports_the_failed_cells(user_module: Path, function: str) -> None:
    """`preview --json` and `create --json` print their JSON report (rows dropped with the
    reason) and exit 5 (incomplete), with no traceback — never 0 with nothing printed."""
    config = _config(_custom(function))
    (user_module / "f12.json").write_text(json.dumps(config))
    reason = f"column 'b': {CASES[function]}; the cell fails"
    for args in (
        ("preview", "f12.json", "-n", "3", "--json"),
        ("create", "f12.json", "-n", "3", "-o", "out", "--json"),
    ):
        out = _cli(user_module, *args)
        assert out.returncode == 5, out
        assert "Traceback" not in out.stderr
        report = json.loads(out.stdout)
        assert report["ok"] is False
        assert report["status"] == "incomplete"
        assert report["num_dropped"] == 3
        assert [d["message"] for d in report["drop_examples"]] == [reason]
    metadata = json.loads((user_module / "out" / "metadata.json").read_text())
    assert metadata["status"] != "complete"


def test_cli_keyboard_interrupt_from_user_code_stops_the_run(user_module: Path) -> None:
    """KeyboardInterrupt raised by a function is Ctrl-C: the run stops (exit 130), reported,
    without a traceback."""
    (user_module / "f.json").write_text(json.dumps(_config(_custom("interrupt"))))
    out = _cli(user_module, "preview", "f.json", "-n", "3", "--json")
    assert out.returncode == 130, out
    assert "Traceback" not in out.stderr
    assert json.loads(out.stdout)["status"] == "interrupted"
