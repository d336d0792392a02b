"""Task traces: what each task attempt waited for, and how long its model took.

``trace.parquet`` holds one row per task attempt (:data:`TRACE_SCHEMA`); ``trace.json`` is the
same trace as Chrome trace-event JSON (:func:`chrome_trace`, written by
:func:`chrome_trace_chunks`), to open in https://ui.perfetto.dev.
"""

import typing as _typing

from ._chrome import chrome_trace, chrome_trace_chunks
from ._context import CURRENT_SPAN, RequestSpan
from ._derive import (
    assign_lanes,
    column_order,
    requests_in_flight,
    throttle_counters,
    throttle_history,
    trace_end,
)
from ._files import (
    CHROME_MAX_ATTEMPTS,
    CHROME_TRACE_FILE,
    ORIGIN_KEY,
    TRACE_FILE,
    trace_origin,
    with_origin,
    write_trace,
)
from ._spans import TaskSpan, TaskTracer

if _typing.TYPE_CHECKING:
    from ._spans import TRACE_SCHEMA
else:

    def __getattr__(name: str) -> _typing.Any:
        # TRACE_SCHEMA is built on first use: importing the package imports no pyarrow.
        if name == "TRACE_SCHEMA":
            from ._spans import TRACE_SCHEMA

            return TRACE_SCHEMA
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CHROME_MAX_ATTEMPTS",
    "CHROME_TRACE_FILE",
    "CURRENT_SPAN",
    "ORIGIN_KEY",
    "TRACE_FILE",
    "TRACE_SCHEMA",
    "RequestSpan",
    "TaskSpan",
    "TaskTracer",
    "assign_lanes",
    "chrome_trace",
    "chrome_trace_chunks",
    "column_order",
    "requests_in_flight",
    "throttle_counters",
    "throttle_history",
    "trace_end",
    "trace_origin",
    "with_origin",
    "write_trace",
]
