"""SIGINT and SIGTERM on the command line: stop a run cleanly, and always end the process.

A run asked to handle signals (:class:`StopSignals`, a service of the run's nursery) receives
both itself, replacing trio's own Ctrl-C handling, so both stop a run the same way: a
cancellation, which the run records as status ``"interrupted"`` after the row groups being
written are committed. A :class:`Watchdog` thread makes sure the process ends even when the
loop cannot honour that (a template or custom function holding it): if the process is still
running :data:`SIGNAL_GRACE_SECONDS` after the first signal, or at a second signal, it calls
``on_abrupt_exit(first_signal, why)`` and exits at once with the first signal's exit code
(:func:`signal_exit`: 128 + the signal's number). Every file on disk is complete either way
(writes are atomic), and resuming cleans up what an abrupt exit leaves.

:func:`run_with_signals` runs one such run (or any work that takes a :class:`StopSignals`) in
its own trio loop and reports how it ended: its result, its error, and the signal that
stopped it. Commands with nothing to save use :func:`default_signals` instead: both signals
then end the process at once, whatever it is doing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import trio

from .._attrs import define

__all__ = [
    "SIGNAL_GRACE_SECONDS",
    "STOP_SIGNALS",
    "Interrupted",
    "Outcome",
    "StopSignals",
    "Watchdog",
    "chained_handlers",
    "default_signals",
    "run_with_signals",
    "signal_exit",
    "signal_name",
    "stopping",
]

T = TypeVar("T")

#: The signals that stop a run.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: After the first SIGINT/SIGTERM a run has this long to stop; then the process exits anyway.
SIGNAL_GRACE_SECONDS = 2.0
#: ``sa_flags`` bit asking the kernel to restore a signal's default action once it has been
#: delivered (Linux's SA_RESETHAND).
_SA_RESETHAND = -0x80000000


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``, ..."""
    try:
        return signal.Signals(signum).name
    except ValueError:  # pragma: no cover - only SIGINT and SIGTERM are received
        return f"signal {signum}"


def signal_exit(signum: int) -> int:
    """The exit code of a process a stop signal ended: 130 for SIGINT, 143 for SIGTERM."""
    try:
        sig = signal.Signals(signum)
    except ValueError:  # pragma: no cover
        sig = signal.SIGINT
    return 128 + (sig if sig in STOP_SIGNALS else signal.SIGINT)


class Interrupted(Exception):
    """A run handling signals was stopped by one (:attr:`signum`); raised by the run, caught
    by :func:`run_with_signals`."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal_name(signum)}")
        self.signum = signum


class Watchdog:
    """Ends the process when a stop signal is not honoured in time.

    A thread, so that it acts even while the event loop is held (a template rendering on it,
    a custom function that never yields, a worker thread the shutdown waits for): the signal
    handler only writes the signal's number to a socket (:meth:`notify`), the thread wakes on
    it and, if the process is still running ``grace`` seconds later or a second signal comes,
    prints one line, calls ``on_abrupt_exit`` and exits with the first signal's code. The files
    of the run are complete at any moment (atomic writes); resuming cleans up the temp files an
    abrupt exit leaves.
    """

    def __init__(
        self, on_abrupt_exit: Callable[[int, str], None], grace: float = SIGNAL_GRACE_SECONDS
    ):
        self._on_abrupt_exit = on_abrupt_exit
        self._grace = grace
        self._receive, self._send = socket.socketpair()
        self._send.setblocking(False)
        self.signalled = False
        self._thread = threading.Thread(
            target=self._watch, name="gridloom-signal-watchdog", daemon=True
        )
        self._thread.start()

    def notify(self, signum: int) -> None:
        """Called from the signal handler: one non-blocking send, safe there."""
        self.signalled = True
        with contextlib.suppress(OSError):
            self._send.send(bytes([signum & 0xFF]))

    def close(self) -> None:
        """The run is over. Without a signal the thread stops now; after one it stays armed
        until the process ends, so a shutdown that hangs later still ends in time."""
        if self.signalled:
            return
        self._send.close()
        self._thread.join()
        self._receive.close()

    def _next(self, timeout: float | None) -> int | None:
        """The next signal's number; ``None`` on timeout; ``-1`` once :meth:`close` ran."""
        ready, _, _ = select.select([self._receive], [], [], timeout)
        if not ready:
            return None
        data = self._receive.recv(1)
        return data[0] if data else -1

    def _watch(self) -> None:
        first = self._next(None)
        if first is None or first < 0:
            return
        deadline = time.monotonic() + self._grace
        second: int | None = None
        while second is None and (left := deadline - time.monotonic()) > 0:
            second = self._next(left)
        if second is not None and second < 0:  # pragma: no cover - close() keeps it armed
            return
        if second is None:
            line = (
                f"{signal_name(first)}: still running {self._grace:g} s later;"
                " exiting without waiting"
            )
            why = f"still running {self._grace:g} s later"
        else:
            line = f"{signal_name(second)} again: exiting without waiting"
            why = "a second signal"
        with contextlib.suppress(OSError):
            os.write(2, (line + "\n").encode())
        with contextlib.suppress(Exception):
            self._on_abrupt_exit(first, why)
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(signal_exit(first))


@contextlib.contextmanager
def chained_handlers(watchdog: Watchdog | None) -> Iterator[None]:
    """While inside: SIGINT/SIGTERM first tell ``watchdog``, then run the handler already
    installed (trio's receiver). Where the kernel allows (Linux), each delivery also restores
    the signal's default action until the handler has run: if the interpreter cannot run it
    (a C call holding the GIL), a second signal ends the process right away."""
    if watchdog is None:
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def handler(signum: int, frame: Any) -> None:
        watchdog.notify(signum)
        signal.signal(signum, handler)  # re-arm the one-shot default action
        _reset_on_delivery(signum)
        prior = previous.get(signal.Signals(signum))
        if callable(prior):
            prior(signum, frame)

    for signum in previous:
        signal.signal(signum, handler)
        _reset_on_delivery(signum)
    try:
        yield
    finally:
        for signum, prior in previous.items():
            signal.signal(signum, prior)


def _reset_on_delivery(signum: int) -> None:
    """Add SA_RESETHAND to the installed action of ``signum`` (Linux on x86-64 or arm64,
    where ``struct sigaction`` is handler, 128-byte mask, flags, restorer); elsewhere, or if
    anything fails, nothing changes."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        return

    class _SigAction(ctypes.Structure):
        _fields_ = [
            ("handler", ctypes.c_void_p),
            ("mask", ctypes.c_ulong * 16),
            ("flags", ctypes.c_int),
            ("restorer", ctypes.c_void_p),
        ]

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        action = _SigAction()
        if libc.sigaction(signum, None, ctypes.byref(action)) != 0:
            return
        if action.handler in (None, 0, 1):  # SIG_DFL, SIG_IGN
            return
        action.flags |= _SA_RESETHAND
        libc.sigaction(signum, ctypes.byref(action), None)


@contextlib.contextmanager
def default_signals() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM take their default action, ending the process at once
    whatever it is doing (even a C call holding the GIL). For commands with nothing to save."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_DFL) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, prior in previous.items():
            signal.signal(signum, prior)


class StopSignals:
    """A run's handling of SIGINT and SIGTERM (see the module docstring).

    Args:
        on_abrupt_exit: called with the first signal and why, just before the process exits
            without waiting for the run (a second signal, or the grace period over).
        watchdog: the thread that ends the process if the run does not stop in time; without
            one, a second signal ends the process from the loop.

    Attributes:
        signum: the first stop signal received, if any.
    """

    def __init__(
        self, on_abrupt_exit: Callable[[int, str], None], watchdog: Watchdog | None = None
    ) -> None:
        self._on_abrupt_exit = on_abrupt_exit
        self._watchdog = watchdog
        self.signum: int | None = None

    async def watch(
        self,
        scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The service: receive the stop signals until cancelled; the first cancels ``scope``
        (the run's work)."""
        try:
            with (
                trio.open_signal_receiver(*STOP_SIGNALS) as signals,
                chained_handlers(self._watchdog),
            ):
                task_status.started()
                await self._receive(signals, scope)
        finally:
            # The receiver has just put back the handlers from before the run (SIGTERM's
            # default ends the process with no report). After a signal, the watchdog takes
            # any further one from here on, not only once the loop has ended.
            if self.signum is not None and self._watchdog is not None:
                _arm(self._watchdog)

    async def _receive(self, signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
        async for signum in signals:
            if self.signum is None:
                self.signum = signum
                scope.cancel()
                continue
            if self._watchdog is not None:
                continue  # the watchdog saw it too, and is ending the process
            # A second signal while shutting down: leave now. Every file on disk is complete
            # (written atomically); resuming removes the temp files an abrupt exit leaves.
            sys.stderr.write(f"{signal_name(signum)} again: exiting without waiting\n")
            self._on_abrupt_exit(self.signum, "a second signal")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(signal_exit(self.signum))


@define
class Outcome(Generic[T]):
    """How work run by :func:`run_with_signals` ended: its result, its error, and the signal
    that stopped it (an error may come with a signal: most likely a consequence of it)."""

    result: T | None = None
    error: Exception | None = None
    signum: int | None = None


#: A stop signal came: the process exits as soon as the command has reported.
_STOPPING = False


def stopping() -> bool:
    """Whether a stop signal came during a :func:`run_with_signals` of this process."""
    return _STOPPING


def run_with_signals(
    work: Callable[[StopSignals], Awaitable[T]],
    on_abrupt_exit: Callable[[int, str], None],
    *,
    instruments: Sequence[trio.abc.Instrument] = (),
) -> Outcome[T]:
    """Run ``work(signals)`` in its own trio loop, under a :class:`Watchdog`; ``work`` hands
    ``signals`` to the run (``Run(..., signals=signals)``), which stops on the first SIGINT or
    SIGTERM. Returns how it ended; only a ``BaseException`` other than Ctrl-C is raised.
    ``instruments`` watch the loop (``trio.run``'s own argument).
    """
    global _STOPPING
    watchdog = Watchdog(on_abrupt_exit)
    signals = StopSignals(on_abrupt_exit, watchdog)
    outcome: Outcome[T] = Outcome()
    try:
        outcome.result = trio.run(work, signals, instruments=instruments)
    except Interrupted:
        pass
    except Exception as exc:
        outcome.error = exc
    except BaseException as exc:
        # Ctrl-C before the signal receiver was open (or after it closed): trio raises it.
        if not _is_keyboard_interrupt(exc):
            raise
        signals.signum = signal.SIGINT
    finally:
        watchdog.close()
    outcome.signum = signals.signum
    if watchdog.signalled:
        _STOPPING = True
    if watchdog.signalled:
        _arm(watchdog)
    return outcome


def _arm(watchdog: Watchdog) -> None:
    """Stopping: until the process has exited (the report, the interpreter's own shutdown,
    threads the shutdown waits for), a further signal goes to ``watchdog``, which exits at
    once with the first signal's code. Only the main thread installs signal handlers."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda number, _frame: watchdog.notify(number))


def _is_keyboard_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_keyboard_interrupt(inner) for inner in exc.exceptions)
    return False
