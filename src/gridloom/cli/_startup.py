"""How ``gridloom preview`` shows where its time went.

**Phase marks.** With ``GRIDLOOM_PREVIEW_TIMES=<file>`` in the environment, a preview writes
the moments it reached each phase to that file as JSON (:class:`PhaseMarks`), on the clock of
:func:`time.perf_counter` (``CLOCK_MONOTONIC`` on Linux, shared by every process, so a parent
can set them against its own); with tracing on (``GRIDLOOM_TRACE=1``) also when each model
request of the run went out and when its answer came back, on the same clock.
``bench/preview.py`` reads them. Without the variable nothing is recorded.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["TIMES_ENV", "PhaseMarks"]

#: The environment variable naming the file a preview writes its phase marks to.
TIMES_ENV = "GRIDLOOM_PREVIEW_TIMES"


class PhaseMarks:
    """The moments a preview reached each phase; written only when :data:`TIMES_ENV` names a
    file."""

    def __init__(self) -> None:
        target = os.environ.get(TIMES_ENV, "")
        self.path = Path(target) if target else None
        self.marks: dict[str, float] = {}
        self._trace: pa.Table | None = None
        self._offset = 0.0

    def mark(self, phase: str) -> None:
        """The preview reached ``phase`` now."""
        if self.path is not None:
            self.marks[phase] = time.perf_counter()

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
            **extra,
            "requests": self._requests(),
        }
        self.path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
