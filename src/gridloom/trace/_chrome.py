"""A task trace as Chrome trace-event JSON, to open in https://ui.perfetto.dev.

The layout (the JSON Object Format of the trace-event format):

* one *process* per column, in execution order, named after the column;
* in it, each task attempt is a complete event (``"ph": "X"``) from ready to completed, on the
  first *lane* (thread) free at its start, so attempts never overlap on a lane; inside it, its
  phases as nested slices: ``queue`` (ready → dispatched), ``slot wait`` (dispatched → slot,
  the wait for an LLM-wait slot), ``throttle`` (slot → sent: the model's concurrency cap and
  adaptive limit) and ``model`` (sent → response), or ``run`` (slot → completed) for a task
  that calls no model;
* a last process, ``models``, of counter tracks (``"ph": "C"``): per model the requests in
  flight according to the trace, plus the counters given (the throttles' AIMD limit and in
  flight).

Times are microseconds since the run's start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ._derive import assign_lanes, column_order, requests_in_flight, trace_end

__all__ = ["chrome_trace"]

#: What a task waits for from each moment on, up to the next known one.
_PHASES = ("ready", "dispatched", "slot", "sent", "response")
_FIELDS = (
    "row_group",
    "row_id",
    "rows",
    "column",
    "model",
    "attempt",
    "requests",
    "status",
    "error",
    *_PHASES,
    "completed",
)


def _ns(seconds: float) -> int:
    """Whole nanoseconds (never negative), so nested slices nest exactly."""
    return max(0, round(seconds * 1e9))


def _us(ns: int) -> float:
    return ns / 1000


def _phase(moment: str, model: str | None) -> str | None:
    if moment == "ready":
        return "queue"
    if moment == "dispatched":
        return "slot wait"
    if moment == "slot":
        return "throttle" if model is not None else "run"
    if moment == "sent":
        return "model"
    return None  # after the last answer: parsing and storing, not shown


def chrome_trace(
    table: pa.Table,
    *,
    counters: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A task trace as a Chrome trace-event document (JSON Object Format).

    Args:
        table: the trace (:data:`~gridloom.trace.TRACE_SCHEMA`, seconds since the run's start).
        counters: more counter tracks, by name: ``(time, value)`` points, times in seconds
            since the run's start (points before it are folded into one at 0); e.g.
            :func:`~gridloom.trace.throttle_counters`.
        metadata: added to ``otherData``.

    Returns:
        ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``, ready for
        ``json.dumps`` (no NaN anywhere).
    """
    data = {name: table.column(name).to_pylist() for name in _FIELDS}
    if "inference" in table.column_names:  # absent from traces written before it existed
        data["inference"] = table.column("inference").to_pylist()
    if "cached" in table.column_names:  # traces written before the response cache
        data["cached"] = table.column("cached").to_pylist()
    end = _ns(trace_end(table))
    columns = column_order(table)
    events: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    rows_of: dict[str, list[int]] = {column: [] for column in columns}
    bounds: list[tuple[int, int]] = []
    for index, (column, ready, completed) in enumerate(
        zip(data["column"], data["ready"], data["completed"], strict=True)
    ):
        rows_of[column].append(index)
        start = _ns(ready) if math.isfinite(ready) else end
        stop = _ns(completed) if math.isfinite(completed) else end
        bounds.append((start, max(start, stop)))
    for pid, column in enumerate(columns, start=1):
        events.append(_meta("process_name", pid, 0, name=column))
        events.append(_meta("process_sort_index", pid, 0, sort_index=pid))
        lanes, count = assign_lanes([bounds[i] for i in rows_of[column]])
        for lane in range(count):
            events.append(_meta("thread_name", pid, lane, name=f"lane {lane + 1}"))
            events.append(_meta("thread_sort_index", pid, lane, sort_index=lane))
        for index, lane in zip(rows_of[column], lanes, strict=True):
            slices.extend(_attempt(data, index, pid, lane, *bounds[index]))
    slices.sort(key=lambda e: (e["pid"], e["tid"], e["ts"], -e["dur"]))
    events.extend(slices)

    series: dict[str, Sequence[tuple[float, float]]] = {
        f"{model} in flight (trace)": points for model, points in requests_in_flight(table).items()
    }
    series.update(counters or {})
    if series:
        pid = len(columns) + 1
        events.append(_meta("process_name", pid, 0, name="models"))
        events.append(_meta("process_sort_index", pid, 0, sort_index=0))
        for name in sorted(series):
            events.extend(
                {
                    "name": name,
                    "ph": "C",
                    "ts": _us(_ns(t)),
                    "pid": pid,
                    "tid": 0,
                    "args": {"value": v},
                }
                for t, v in _from_start(series[name])
            )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"source": "gridloom", "attempts": table.num_rows, **(metadata or {})},
    }


def _meta(kind: str, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "ts": 0, "pid": pid, "tid": tid, "args": args}


def _attempt(
    data: Mapping[str, list[Any]], index: int, pid: int, tid: int, start: int, stop: int
) -> list[dict[str, Any]]:
    """The events of one task attempt: its slice and, nested in it, its phases."""
    row_id = data["row_id"][index]
    status = data["status"][index]
    model = data["model"][index]
    error = data["error"][index]
    rows = data["rows"][index]
    name = f"row {row_id}" if row_id >= 0 else f"batch of {rows} rows"
    if status != "ok":
        name = f"{name} ({status or 'open'})"
    args: dict[str, Any] = {
        "row_group": data["row_group"][index],
        "row_id": row_id,
        "attempt": data["attempt"][index],
        "status": status,
    }
    if rows != 1:
        args["rows"] = rows
    if model is not None:
        args["model"] = model
        args["requests"] = data["requests"][index]
        cached = data.get("cached")
        if cached and cached[index]:  # answers served from the response cache
            args["cached"] = cached[index]
    if error:
        args["error"] = error
    inference = data.get("inference")
    if inference and inference[index]:  # drawn inference parameters (JSON text)
        args["inference"] = inference[index]
    events = [
        {
            "name": name,
            "cat": "attempt",
            "ph": "X",
            "ts": _us(start),
            "dur": _us(stop - start),
            "pid": pid,
            "tid": tid,
            "args": args,
        }
    ]
    # The phases: from each moment reached (clamped into the attempt, never before the one
    # before it) to the next one reached, or to the attempt's end.
    at, label = start, None  # the last moment reached, and the phase that began there
    for moment in _PHASES:
        value = data[moment][index]
        if not math.isfinite(value):  # not reached
            continue
        reached = min(max(_ns(value), at), stop)
        if label is not None and reached > at:
            events.append(_slice(label, at, reached, pid, tid))
        at, label = reached, _phase(moment, model)
    if label is not None and stop > at:
        events.append(_slice(label, at, stop, pid, tid))
    return events


def _slice(label: str, at: int, until: int, pid: int, tid: int) -> dict[str, Any]:
    return {
        "name": label,
        "cat": "phase",
        "ph": "X",
        "ts": _us(at),
        "dur": _us(until - at),
        "pid": pid,
        "tid": tid,
    }


def _from_start(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """``points`` in time order, finite ones only, those before 0 folded into one at 0 (the
    value holding when the run started)."""
    out: list[tuple[float, float]] = []
    before: float | None = None
    for t, v in sorted(points, key=lambda p: p[0]):
        if not (math.isfinite(t) and math.isfinite(v)):
            continue
        if t < 0:
            before = v
            continue
        if before is not None and t > 0:
            out.append((0.0, before))
        before = None
        out.append((t, v))
    if before is not None:
        out.append((0.0, before))
    return out
