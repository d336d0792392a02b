"""What ``gridloom preview`` does to print its rows sooner, and how it shows where its time went.

**Arrow warm-up.** pyarrow imports pandas (when it is installed) the first time it converts
Python values, which for a preview is when its only row group is stored, after the last
answer; that import alone can take longer than a model call. :class:`ArrowWarmup` makes that
first conversion in a helper thread instead, once the event loop has gone idle waiting on the
models: the loop thread then sleeps in its I/O wait and leaves the interpreter lock free, which
the helper sees as its short sleeps ending on time. Started earlier, it would share the lock
with the config and the first requests and hold them back. pyarrow's own lock makes the run's
conversion wait for an import still under way rather than start a second.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["TIMES_ENV", "ArrowWarmup", "PhaseMarks"]

#: The environment variable naming the file a preview writes its phase marks to.
TIMES_ENV = "GRIDLOOM_PREVIEW_TIMES"

#: The helper's probe: a sleep this long...
_PROBE_S = 0.002
#: ...that ends later than this is taken as the loop thread holding the interpreter lock
#: (a waiting thread gets it back after the 5 ms switch interval at the latest).
_LATE_S = 0.0035
#: Probes ending on time in a row that make the loop idle (about 20 ms).
_IDLE_PROBES = 8
#: Past this, the helper stops waiting for an idle loop and converts anyway.
_GIVE_UP_S = 2.0


def _first_conversion() -> None:
    """What pyarrow imports on its first conversion of Python values; a failure here is the
    run's to meet (and report) when it converts."""
    import pyarrow as pa

    with contextlib.suppress(Exception):
        pa.array([], type=pa.null())


class ArrowWarmup:
    """A helper thread making pyarrow's first conversion once the event loop is idle.

    Use it as a context manager around the run: leaving it stops a helper still waiting and
    waits for a conversion under way (never started, it has nothing to wait for).
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
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
        self._stop.set()
        self._thread.join()

    def _main(self) -> None:
        try:
            if self._idle():
                self.started = time.perf_counter()
                _first_conversion()
                self.ended = time.perf_counter()
        finally:
            self.done.set()

    def _idle(self) -> bool:
        """Wait until the loop looks idle (or long enough); ``False``: stopped first."""
        give_up = time.perf_counter() + _GIVE_UP_S
        on_time = 0
        while on_time < _IDLE_PROBES:
            before = time.perf_counter()
            if self._stop.wait(_PROBE_S):
                return False
            after = time.perf_counter()
            on_time = on_time + 1 if after - before < _LATE_S else 0
            if after > give_up:
                break
        return not self._stop.is_set()


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
