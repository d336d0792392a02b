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

Times are whole microseconds since the run's start, so nested slices nest exactly
(``trace.parquet`` keeps the clock's full resolution). Events come per column (its metadata
first), then lane by lane in time order, each attempt followed by its phases.

The JSON is formatted as text straight from the table's columns (:func:`chrome_trace_chunks`),
the times converted in Arrow's compute: a traced run writes several events per task attempt,
and a dict per event encoded by :mod:`json` cost about three times the CPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from ._derive import assign_lanes, column_order, requests_in_flight, trace_end

__all__ = ["chrome_trace", "chrome_trace_chunks"]

#: The moments of an attempt, in order; from each one reached, the task waits for the next.
_MOMENTS = ("ready", "dispatched", "slot", "sent", "response")
#: Times are clamped into [0, this many microseconds] (exact as floats and as int64).
_MAX_US = 2**53


def _us(seconds: float) -> int:
    """Whole microseconds (never negative), so nested slices nest exactly."""
    return min(max(0, round(seconds * 1e6)), _MAX_US)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)


def _number(value: Any) -> str:
    return repr(value) if type(value) in (int, float) else _json(value)


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
        ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``: the document
        :func:`chrome_trace_chunks` writes, parsed (no NaN anywhere).
    """
    text = "".join(chrome_trace_chunks(table, counters=counters, metadata=metadata))
    document: dict[str, Any] = json.loads(text)
    return document


def chrome_trace_chunks(
    table: pa.Table,
    *,
    counters: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """The JSON text of :func:`chrome_trace`, in pieces (about one per lane of a column), to
    write to a file as they come. The arguments are :func:`chrome_trace`'s."""
    yield '{"traceEvents":['
    separator = ""
    for piece in _events(table, counters or {}):
        yield separator + piece
        separator = ","
    other = {"source": "gridloom", "attempts": table.num_rows, **(metadata or {})}
    yield f'],"displayTimeUnit":"ms","otherData":{_json(other)}}}'


def _microseconds(column: pa.ChunkedArray) -> list[int | None]:
    """Each time as whole microseconds (see :func:`_us`), ``None`` if not finite (not
    reached)."""
    import pyarrow.compute as pc  # here: importing it costs every start of gridloom ~30 ms

    scaled = pc.round(pc.multiply(column, 1e6))  # half to even, as round() does
    clamped = pc.min_element_wise(pc.max_element_wise(scaled, 0.0), float(_MAX_US))
    reached = pc.if_else(pc.is_finite(column), clamped, pa.scalar(None, pa.float64()))
    values: list[int | None] = pc.cast(reached, pa.int64()).to_pylist()
    return values


def _texts(column: pa.ChunkedArray) -> list[str]:
    """Each integer as JSON text (``null`` where missing)."""
    import pyarrow.compute as pc

    texts: list[str] = pc.fill_null(pc.cast(column, pa.string()), "null").to_pylist()
    return texts


def _events(
    table: pa.Table, counters: Mapping[str, Sequence[tuple[float, float]]]
) -> Iterator[str]:
    """The trace's events as JSON text, comma-separated, in pieces."""
    end = _us(trace_end(table))
    moments = [_microseconds(table.column(name)) for name in _MOMENTS]
    completed = _microseconds(table.column("completed"))
    bounds: list[tuple[int, int]] = []
    for ready, done in zip(moments[0], completed, strict=True):
        start = end if ready is None else ready
        stop = end if done is None else done
        bounds.append((start, stop if stop > start else start))
    names = table.column("column").to_pylist()
    row_ids = table.column("row_id").to_pylist()
    row_id_texts = _texts(table.column("row_id"))
    rows = table.column("rows").to_pylist()
    head_texts = [
        f'"row_group":{group},"row_id":{row_id},"attempt":{attempt}'
        for group, row_id, attempt in zip(
            _texts(table.column("row_group")),
            row_id_texts,
            _texts(table.column("attempt")),
            strict=True,
        )
    ]
    models = table.column("model").to_pylist()
    requests = _texts(table.column("requests"))
    statuses = table.column("status").to_pylist()
    errors = table.column("error").to_pylist()
    # Absent from traces written before the response cache, and before inference parameters.
    cached = table.column("cached").to_pylist() if "cached" in table.column_names else None
    inference = table.column("inference").to_pylist() if "inference" in table.column_names else None
    quoted: dict[Any, str] = {}  # JSON text of the statuses and models seen
    suffixes: dict[Any, str] = {}  # the escaped " (status)" of an attempt's name

    def attempt(index: int, tail: str, start: int, stop: int) -> str:
        """One task attempt's slice and, nested in it, its phases (``tail`` ends each event:
        its pid and tid)."""
        row_id = row_ids[index]
        status = statuses[index]
        model = models[index]
        if row_id is not None and row_id < 0:
            name = f"batch of {rows[index]} rows"
        else:
            name = f"row {row_id_texts[index]}"
        if status != "ok":
            suffix = suffixes.get(status)
            if suffix is None:  # escaped, without its quotes
                suffix = suffixes[status] = _json(f" ({status or 'open'})")[1:-1]
            name += suffix
        status_text = quoted.get(status)
        if status_text is None:
            status_text = quoted[status] = _json(status)
        args = f'{head_texts[index]},"status":{status_text}'
        if rows[index] != 1:
            args += f',"rows":{_number(rows[index])}'
        if model is not None:
            model_text = quoted.get(model)
            if model_text is None:
                model_text = quoted[model] = _json(model)
            args += f',"model":{model_text},"requests":{requests[index]}'
            if cached and cached[index]:  # answers served from the response cache
                args += f',"cached":{cached[index]}'
        if errors[index]:
            args += f',"error":{_json(errors[index])}'
        if inference and inference[index]:  # drawn inference parameters (JSON text)
            args += f',"inference":{_json(inference[index])}'
        events = [
            f'{{"name":"{name}","cat":"attempt","ph":"X","ts":{start},"dur":{stop - start}'
            f'{tail},"args":{{{args}}}}}'
        ]
        # The phases: from each moment reached (clamped into the attempt, never before the
        # one before it) to the next one reached, or to the attempt's end.
        at, label = start, ""  # the last moment reached, and the phase that began there
        for position, values in enumerate(moments):
            value = values[index]
            if value is None:  # not reached
                continue
            reached = value if value > at else at
            if reached > stop:
                reached = stop
            if label and reached > at:
                events.append(_slice(label, at, reached, tail))
            at = reached
            label = _PHASE_WITH_MODEL[position] if model is not None else _PHASE[position]
        if label and stop > at:
            events.append(_slice(label, at, stop, tail))
        return ",".join(events)

    columns = column_order(table)
    rows_of: dict[str, list[int]] = {column: [] for column in columns}
    for index, column in enumerate(names):
        rows_of[column].append(index)
    for pid, column in enumerate(columns, start=1):
        indices = sorted(rows_of[column], key=bounds.__getitem__)
        lanes, count = assign_lanes([bounds[i] for i in indices])
        meta = [
            _meta("process_name", pid, 0, "name", _json(column)),
            _meta("process_sort_index", pid, 0, "sort_index", str(pid)),
        ]
        for lane in range(count):
            meta.append(_meta("thread_name", pid, lane, "name", f'"lane {lane + 1}"'))
            meta.append(_meta("thread_sort_index", pid, lane, "sort_index", str(lane)))
        yield ",".join(meta)
        tails = [f',"pid":{pid},"tid":{lane}' for lane in range(count)]
        by_lane: list[list[str]] = [[] for _ in range(count)]
        for index, lane in zip(indices, lanes, strict=True):
            by_lane[lane].append(attempt(index, tails[lane], *bounds[index]))
        for events in by_lane:
            yield ",".join(events)

    series: dict[str, Sequence[tuple[float, float]]] = {
        f"{model} in flight (trace)": points for model, points in requests_in_flight(table).items()
    }
    series.update(counters)
    if series:
        pid = len(columns) + 1
        yield _meta("process_name", pid, 0, "name", '"models"')
        yield _meta("process_sort_index", pid, 0, "sort_index", "0")
        for name in sorted(series):
            head = f'{{"name":{_json(name)},"ph":"C","ts":'
            tail = f',"pid":{pid},"tid":0,"args":{{"value":'
            points = _from_start(series[name])
            if points:
                yield ",".join(f"{head}{_us(t)}{tail}{_number(v)}}}}}" for t, v in points)


#: The phase that begins at each moment of :data:`_MOMENTS`, for a task that calls a model and
#: for one that does not; none after the last answer (parsing and storing, not shown).
_PHASE_WITH_MODEL = ("queue", "slot wait", "throttle", "model", "")
_PHASE = ("queue", "slot wait", "run", "model", "")


def _meta(kind: str, pid: int, tid: int, key: str, value: str) -> str:
    """A metadata event: its one argument ``key``, with ``value`` as JSON text."""
    return f'{{"name":"{kind}","ph":"M","ts":0,"pid":{pid},"tid":{tid},"args":{{"{key}":{value}}}}}'


def _slice(label: str, at: int, until: int, tail: str) -> str:
    return f'{{"name":"{label}","cat":"phase","ph":"X","ts":{at},"dur":{until - at}{tail}}}'


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
