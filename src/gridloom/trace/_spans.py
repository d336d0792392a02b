"""Task traces: one record per task attempt, so queue wait, throttle wait and model time show.

When tracing is on (``run.trace: true`` or ``GRIDLOOM_TRACE=1``) the scheduler opens a
:class:`TaskSpan` when a task becomes ready and fills in its times as it moves on::

    ready ──queue──▶ dispatched ──LLM-wait slot──▶ slot ──throttle──▶ sent ──model──▶ response
                                                                         ... ──▶ completed

``sent`` is when the first request of the attempt passed its model's limits and went out,
``response`` when the last answer came back; both stay ``NaN`` for tasks that call no model.
Spans hold trio clock times; :meth:`TaskTracer.table` gives seconds from the start of the run.
Spans beyond ``max_spans`` are not kept (counted in :attr:`TaskTracer.overflow`), so a trace
never grows without bound.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import TYPE_CHECKING, Any

from .._attrs import define

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["TRACE_SCHEMA", "TaskSpan", "TaskTracer", "trace_schema"]

_NAN = math.nan
_TIMES = frozenset({"ready", "dispatched", "slot", "sent", "response", "completed"})


@functools.cache
def trace_schema() -> pa.Schema:
    """The columns of ``trace.parquet`` (:data:`TRACE_SCHEMA`); built on first use, not at
    import (a preview imports pyarrow only once its first model request is out)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("row_group", pa.int64()),
            pa.field("row_id", pa.int64()),  # -1 for a batch
            pa.field("rows", pa.int64()),
            pa.field("column", pa.string()),
            pa.field("model", pa.string()),
            pa.field("attempt", pa.int64()),
            pa.field("ready", pa.float64()),
            pa.field("dispatched", pa.float64()),
            pa.field("slot", pa.float64()),
            pa.field("sent", pa.float64()),
            pa.field("response", pa.float64()),
            pa.field("completed", pa.float64()),
            pa.field("requests", pa.int64()),
            pa.field("cached", pa.int64()),
            pa.field("status", pa.string()),
            pa.field("error", pa.string()),
            pa.field("inference", pa.string()),
        ]
    )


if TYPE_CHECKING:
    #: The columns of ``trace.parquet``.
    TRACE_SCHEMA: pa.Schema
else:

    def __getattr__(name: str) -> Any:
        if name == "TRACE_SCHEMA":
            return trace_schema()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@define(slots=True, kw_only=True)
class TaskSpan:
    """The times and outcome of one task attempt (filled in as the task moves on).

    Attributes:
        row_group: the row group's index.
        row_id: the row's global id, or -1 for a batch task.
        rows: rows the task covers.
        column: the column (node) name.
        model: the model alias the task called, if any.
        attempt: 1 for the first attempt, then 2, 3, ... after retryable failures.
        ready, dispatched, slot, sent, response, completed: clock times (``NaN``: not reached).
        requests: model requests the attempt made (corrections count).
        cached: answers the attempt got from the response cache instead (no request).
        status: ``ok``, ``retry`` (deferred), ``salvage`` (waits for a salvage round),
            ``failed`` (row dropped), ``skipped`` (its row was dropped first) or ``cancelled``.
        error: the error's class name, for a failed attempt.
        inference: the inference parameters the cell drew from its column's or model's
            distributions, as JSON text (``{"temperature": 0.73}``); empty when none.
    """

    row_group: int
    row_id: int
    rows: int
    column: str
    attempt: int
    ready: float
    model: str | None = None
    dispatched: float = _NAN
    slot: float = _NAN
    sent: float = _NAN
    response: float = _NAN
    completed: float = _NAN
    requests: int = 0
    cached: int = 0
    status: str = ""
    error: str = ""
    inference: str = ""

    def using_model(self, alias: str) -> None:
        """The task calls model ``alias`` (called by the model handle)."""
        self.model = alias

    def request_sent(self, now: float) -> None:
        """A model request passed its limits and went out (called by the throttled client)."""
        if math.isnan(self.sent):
            self.sent = now
        self.requests += 1

    def response_received(self, now: float) -> None:
        """A model answer (or error) came back."""
        self.response = now

    def served_from_cache(self) -> None:
        """An answer came from the response cache (called by the model handle)."""
        self.cached += 1

    def inference_drawn(self, params: str) -> None:
        """The cell drew these inference parameters (JSON text; called by the generator)."""
        self.inference = params


class TaskTracer:
    """Collects the spans of a run.

    Args:
        origin: clock time the trace's times are measured from (the run's start).
        max_spans: spans kept at most; later ones are counted, not kept.
    """

    def __init__(self, *, origin: float = 0.0, max_spans: int = 2_000_000):
        self.origin = origin
        self.max_spans = max_spans
        self.spans: list[TaskSpan] = []
        self.overflow = 0

    def open(
        self, *, row_group: int, row_id: int, rows: int, column: str, attempt: int, now: float
    ) -> TaskSpan:
        """A task became ready: its span (kept if there is room)."""
        span = TaskSpan(
            row_group=row_group,
            row_id=row_id,
            rows=rows,
            column=column,
            attempt=attempt,
            ready=now,
        )
        if len(self.spans) < self.max_spans:
            self.spans.append(span)
        else:
            self.overflow += 1
        return span

    def table(self) -> pa.Table:
        """The kept spans as a table with :data:`TRACE_SCHEMA`, times in seconds since
        ``origin``."""
        import pyarrow as pa

        spans, origin = self.spans, self.origin
        columns: dict[str, list[Any]] = {}
        for name in trace_schema().names:  # a column at a time: one attribute getter per field
            values = list(map(operator.attrgetter(name), spans))
            columns[name] = [v - origin for v in values] if name in _TIMES else values
        return pa.table(columns, schema=trace_schema())
