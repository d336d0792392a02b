"""The command line's side of stop signals: the run layer handles them
(:func:`gridloom.run.run_with_signals`); a command only says what to print when the process
has to exit without waiting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio

from ..run import Outcome, StopSignals, run_with_signals, signal_name
from ._output import Out
from ._stdout import write_json

__all__ = ["abrupt_json", "run_stoppable"]

T = TypeVar("T")


def abrupt_json(out: Out) -> Callable[[int, str], None]:
    """What ``out`` prints when the process exits without waiting for the run (a second
    signal, or the run not stopping in time): with ``--json``, one error line."""

    def report(signum: int, why: str = "a second signal") -> None:
        if out.as_json:
            message = f"{signal_name(signum)}, then {why}: exited without waiting"
            error = {"type": "Interrupted", "message": message, "path": None, "file": None}
            write_json({"ok": False, "command": out.command, "error": error}, indent=None)

    return report


def run_stoppable(
    out: Out,
    work: Callable[[StopSignals], Awaitable[T]],
    *,
    instruments: Sequence[trio.abc.Instrument] = (),
) -> Outcome[T]:
    """Run ``work`` (a run given the signals: ``Run(..., signals=signals).preview(...)``)
    under SIGINT/SIGTERM handling, its loop watched by ``instruments``; returns its result,
    error and stop signal."""
    return run_with_signals(work, abrupt_json(out), instruments=instruments)
