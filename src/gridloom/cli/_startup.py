"""What ``gridloom preview`` does to print its rows sooner, and how it shows where its time went.

**Arrow warm-up.** A preview sends its first model requests before pyarrow is imported
(compiling a pipeline builds no Arrow type), and pyarrow imports pandas (when it is
installed) the first time it converts Python values; together these can take longer than a
model call. :class:`ArrowWarmup` imports pyarrow and makes that first conversion in a helper
thread instead, once the event loop has gone idle waiting on the
models. It watches the loop (a trio instrument): each time the loop goes to sleep with nothing
due for :data:`IDLE_SECONDS` and no worker thread busy, the helper is told, and if the loop is
still asleep :data:`IDLE_SECONDS` later, the helper converts. Until then it blocks on events,
costing the loop nothing while it works; started earlier, it would share the interpreter lock
with the config and the first requests and hold them back. pyarrow's own lock makes the run's
conversion wait for an import still under way rather than start a second. A loop that never
idles (a preview of samplers only) converts by itself, as without the helper.

**Phase marks.** With ``GRIDLOOM_PREVIEW_TIMES=<file>`` in the environment, a preview writes
the moments it reached each phase to that file as JSON (:class:`PhaseMarks`), on the clock of
:func:`time.perf_counter` (``CLOCK_MONOTONIC`` on Linux, shared by every process, so a parent
can set them against its own), with the process's CPU time at each; with tracing on
(``GRIDLOOM_TRACE=1``) also when each model request of the run went out and when its answer
came back, on the same clock. ``bench/preview.py`` reads them. Without the variable nothing
is recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["TIMES_ENV", "ArrowWarmup", "PhaseMarks"]

#: The environment variable naming the file a preview writes its phase marks to.
TIMES_ENV = "GRIDLOOM_PREVIEW_TIMES"

#: The loop asleep this long, no worker thread busy, is idle: its first requests are out and
#: their answers not back.
IDLE_SECONDS = 0.01


def _first_conversion() -> None:
    """What pyarrow imports on its first conversion of Python values; a failure here is the
    run's to meet (and report) when it converts."""
    import pyarrow as pa

    with contextlib.suppress(Exception):
        pa.array([], type=pa.null())


def _busy_worker_threads() -> int:
    """Worker threads of ``trio.to_thread`` running now (in the loop's thread)."""
    return int(trio.to_thread.current_default_thread_limiter().borrowed_tokens)


class ArrowWarmup(trio.abc.Instrument):
    """A helper thread making pyarrow's first conversion once the event loop it instruments
    (``trio.run(..., instruments=[warmup])``) has slept :data:`IDLE_SECONDS`.

    Use it as a context manager around the run: leaving it stops a helper still waiting and
    waits for a conversion under way (never started, it has nothing to wait for).
    """

    def __init__(self, *, busy_threads: Callable[[], int] | None = None) -> None:
        #: How many worker threads are busy (default: ``trio.to_thread``'s).
        self._busy_threads = busy_threads or _busy_worker_threads
        self._asleep = threading.Event()
        self._awake = threading.Event()
        self._stop = threading.Event()
        self._watching = True
        self._thread = threading.Thread(target=self._main, name="gridloom-arrow-warmup")
        self._thread.daemon = True
        #: :func:`time.perf_counter` when the conversion started and ended (``None``: not).
        self.started: float | None = None
        self.ended: float | None = None
        #: Set when the helper is done: converted, or stopped before.
        self.done = threading.Event()

    def __enter__(self) -> ArrowWarmup:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._watching = False
        self._stop.set()
        self._asleep.set()
        self._thread.join()

    # ------------------------------------------------------------------ the instrument

    def before_io_wait(self, timeout: float) -> None:
        """The loop is about to wait for I/O, ``timeout`` at most: tell the helper when that
        may be a sleep of :data:`IDLE_SECONDS` with no worker thread busy."""
        if not self._watching or timeout < IDLE_SECONDS:
            return
        if not self._busy_threads():
            self._awake.clear()
            self._asleep.set()

    def after_io_wait(self, timeout: float) -> None:
        """The loop woke up."""
        if self._asleep.is_set():
            self._asleep.clear()
            self._awake.set()

    # ------------------------------------------------------------------ the helper

    def _main(self) -> None:
        try:
            while True:
                self._asleep.wait()
                if self._stop.is_set():
                    return
                if not self._awake.wait(IDLE_SECONDS):
                    break  # still asleep: the loop is idle
            self._watching = False
            self.started = time.perf_counter()
            _first_conversion()
            self.ended = time.perf_counter()
        finally:
            self.done.set()


class PhaseMarks:
    """The moments a preview reached each phase; written only when :data:`TIMES_ENV` names a
    file."""

    def __init__(self) -> None:
        target = os.environ.get(TIMES_ENV, "")
        self.path = Path(target) if target else None
        self.marks: dict[str, float] = {}
        #: The process's CPU time (all threads) at each mark: its share of a phase holds up
        #: better than wall time on a busy machine.
        self.cpu: dict[str, float] = {}
        self._trace: pa.Table | None = None
        self._offset = 0.0

    def mark(self, phase: str) -> None:
        """The preview reached ``phase`` now."""
        if self.path is not None:
            self.marks[phase] = time.perf_counter()
            self.cpu[phase] = time.process_time()

    def requests(self, trace: pa.Table | None, offset: float) -> None:
        """The model requests of a traced run (``trace``, times in seconds since its origin
        on the trio clock; ``offset``: :func:`time.perf_counter` minus the trio clock); read
        when the marks are saved."""
        self._trace, self._offset = trace, offset

    def _requests(self) -> list[dict[str, Any]]:
        if self._trace is None:
            return []
        from ..trace import trace_origin

        origin = (trace_origin(self._trace) or 0.0) + self._offset
        return [
            {
                "row_id": span["row_id"],
                "column": span["column"],
                "model": span["model"],
                "attempt": span["attempt"],
                "status": span["status"],
                "sent": origin + span["sent"],
                "response": origin + span["response"],
            }
            for span in self._trace.to_pylist()
            # Tasks that sent no request (no model, or answered from the cache) have NaN.
            if span["model"] is not None and span["sent"] == span["sent"]
        ]

    def save(self, **extra: float | None) -> None:
        """Write the marks (and ``extra`` moments) to the file, if one was named."""
        if self.path is None:
            return
        doc = {
            "clock": "time.perf_counter",
            "marks": self.marks,
            "cpu": self.cpu,
            **extra,
            "requests": self._requests(),
        }
        self.path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
