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

The JSON is formatted as text straight from the table's columns, in Arrow's compute, a piece
at a time (:func:`chrome_trace_chunks`): a traced run writes several events per task attempt,
and a dict per event encoded by :mod:`json` took about six times the CPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._derive import assign_lanes, column_order, flight_series, trace_end

if TYPE_CHECKING:
    import pyarrow as pa

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


def _microseconds(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Each time as whole microseconds (see :func:`_us`), null if not finite (not reached)."""
    import pyarrow as pa
    import pyarrow.compute as pc  # here: importing it costs every start of gridloom ~30 ms

    scaled = pc.round(pc.multiply(column, 1e6))  # half to even, as round() does
    clamped = pc.min_element_wise(pc.max_element_wise(scaled, 0.0), float(_MAX_US))
    reached = pc.if_else(pc.is_finite(column), clamped, pa.scalar(None, pa.float64()))
    return pc.cast(reached, pa.int64())


def _text(values: Any, missing: str = "null") -> pa.Array:
    """Each value (integers) as JSON text, ``missing`` where null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.fill_null(pc.cast(values, pa.string()), missing)


def _quoted(values: Any, text: Callable[[Any], str], missing: str) -> pa.Array:
    """``text(value)`` for each value, computed once per distinct value; ``missing`` for null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(values).combine_chunks()
    distinct = pa.array([text(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.fill_null(distinct.take(encoded.indices), missing)


def _attempts(
    table: pa.Table, start: pa.Array, stop: pa.Array, pids: pa.Array, tids: pa.Array
) -> pa.Array:
    """Per task attempt, the JSON text of its slice and, nested in it, its phases (one string
    per attempt, events separated by commas), built column by column in Arrow's compute."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def join(*parts: Any) -> pa.Array:  # null where any part is null
        return pc.binary_join_element_wise(*parts, "")

    moments = [_microseconds(table.column(name)) for name in _MOMENTS]
    tail = join(',"pid":', _text(pids), ',"tid":', _text(tids), "")
    has_model = pc.is_valid(table.column("model"))

    def phase(label: pa.Array, at: pa.Array, until: pa.Array) -> pa.Array:
        event = join(
            '{"name":"', label, '","cat":"phase","ph":"X","ts":', _text(at), ',"dur":',
            _text(pc.subtract(until, at)), tail, "}",
        )  # fmt: skip
        return pc.if_else(pc.fill_null(pc.greater(until, at), False), event, None)

    # The phases: from each moment reached (clamped into the attempt, never before the one
    # before it) to the next one reached, or to the attempt's end.
    events = []
    at = start  # the last moment reached
    label = pa.nulls(len(table), pa.string())  # the phase that began there
    for position, values in enumerate(moments):
        reached_now = pc.is_valid(values)
        reached = pc.min_element_wise(pc.max_element_wise(values, at), stop)
        events.append(pc.if_else(reached_now, phase(label, at, reached), None))
        at = pc.if_else(reached_now, reached, at)
        begins = pc.if_else(has_model, _PHASE_WITH_MODEL[position], _PHASE[position])
        label = pc.if_else(reached_now, pc.if_else(pc.equal(begins, ""), None, begins), label)
    events.append(phase(label, at, stop))

    row_id = table.column("row_id")
    rows = table.column("rows")
    status = table.column("status")
    name = pc.if_else(
        pc.fill_null(pc.less(row_id, 0), False),
        join("batch of ", _text(rows), " rows"),
        join("row ", _text(row_id)),
    )
    suffix = _quoted(  # escaped, without its quotes
        status, lambda s: "" if s == "ok" else _json(f" ({s or 'open'})")[1:-1], " (open)"
    )
    head = join(
        '"row_group":', _text(table.column("row_group")), ',"row_id":', _text(row_id),
        ',"attempt":', _text(table.column("attempt")), ',"status":', _quoted(status, _json, "null"),
    )  # fmt: skip
    model = join(
        ',"model":', _quoted(table.column("model"), _json, "null"), ',"requests":',
        _text(table.column("requests")),
    )  # fmt: skip
    args = [
        head,
        pc.if_else(pc.fill_null(pc.not_equal(rows, 1), True), join(',"rows":', _text(rows)), ""),
        pc.if_else(has_model, model, ""),
    ]
    if "cached" in table.column_names:  # absent from traces written before the response cache
        cached = table.column("cached")
        served = pc.and_(has_model, pc.fill_null(pc.not_equal(cached, 0), False))
        args.append(pc.if_else(served, join(',"cached":', _text(cached)), ""))
    args.append(_quoted(table.column("error"), lambda e: f',"error":{_json(e)}' if e else "", ""))
    if "inference" in table.column_names:  # drawn inference parameters (JSON text)
        inference = table.column("inference")
        args.append(_quoted(inference, lambda i: f',"inference":{_json(i)}' if i else "", ""))
    attempt = join(
        '{"name":"', name, suffix, '","cat":"attempt","ph":"X","ts":', _text(start), ',"dur":',
        _text(pc.subtract(stop, start)), tail, ',"args":{', *args, "}}",
    )  # fmt: skip
    return pc.binary_join_element_wise(attempt, *events, ",", null_handling="skip")


def _events(
    table: pa.Table, counters: Mapping[str, Sequence[tuple[float, float]]]
) -> Iterator[str]:
    """The trace's events as JSON text, comma-separated, in pieces."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # Each attempt from ready to completed; a time not reached is the end of the trace.
    end = _us(trace_end(table))
    start = pc.fill_null(_microseconds(table.column("ready")), end)
    stop = pc.max_element_wise(pc.fill_null(_microseconds(table.column("completed")), end), start)
    bounds = list(zip(start.to_pylist(), stop.to_pylist(), strict=True))
    columns = column_order(table)
    rows_of: dict[str, list[int]] = {column: [] for column in columns}
    for index, column in enumerate(table.column("column").to_pylist()):
        rows_of[column].append(index)
    # Each column's attempts on lanes: the order they are written in, and their pid and tid.
    order: list[int] = []
    pids: list[int] = []
    tids: list[int] = []
    written: list[tuple[str, int]] = []  # per column, its metadata events and its attempts
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
        by_lane: list[list[int]] = [[] for _ in range(count)]
        for index, lane in zip(indices, lanes, strict=True):
            by_lane[lane].append(index)
        for lane, on_lane in enumerate(by_lane):
            order.extend(on_lane)
            tids.extend([lane] * len(on_lane))
        pids.extend([pid] * len(indices))
        written.append((",".join(meta), len(indices)))
    # The attempts in that order, a piece at a time (the text of a piece is all in memory).
    take = pa.array(order, pa.int64())
    attempts = table.take(take)
    start, stop = start.take(take), stop.take(take)
    pid_of, tid_of = pa.array(pids, pa.int64()), pa.array(tids, pa.int64())
    at = 0
    for metadata, count in written:
        yield metadata
        for first in range(at, at + count, _PIECE):
            size = min(_PIECE, at + count - first)
            text = _attempts(
                attempts.slice(first, size),
                start.slice(first, size),
                stop.slice(first, size),
                pid_of.slice(first, size),
                tid_of.slice(first, size),
            )
            yield ",".join(text.to_pylist())
        at += count

    # Counter tracks: the trace's requests in flight per model (two changes per attempt, so
    # formatted in Arrow's compute), then the counters given (by name; one given under a
    # trace track's name replaces it).
    flights = {
        f"{model} in flight (trace)": arrays for model, arrays in flight_series(table).items()
    }
    names = sorted({*flights, *counters})
    if names:
        pid = len(columns) + 1
        yield _meta("process_name", pid, 0, "name", '"models"')
        yield _meta("process_sort_index", pid, 0, "sort_index", "0")
        for name in names:
            head = f'{{"name":{_json(name)},"ph":"C","ts":'
            tail = f',"pid":{pid},"tid":0,"args":{{"value":'
            if name not in counters and pc.min(flights[name][0]).as_py() >= 0:
                times, levels = flights[name]  # in time order, each time once
                text = pc.binary_join_element_wise(
                    head, _text(_microseconds(times)), tail, _text(levels), "}}", ""
                )
                yield ",".join(text.to_pylist())
                continue
            if name in counters:
                given = counters[name]
            else:  # a time before the run's start: folded into one at 0, as for any counter
                times, levels = flights[name]
                given = list(zip(times.to_pylist(), levels.to_pylist(), strict=True))
            if points := _from_start(given):
                yield ",".join(f"{head}{_us(t)}{tail}{_number(v)}}}}}" for t, v in points)


#: Task attempts formatted at once (their text is in memory together: ~0.7 kB each).
_PIECE = 8192


#: The phase that begins at each moment of :data:`_MOMENTS`, for a task that calls a model and
#: for one that does not; none after the last answer (parsing and storing, not shown).
_PHASE_WITH_MODEL = ("queue", "slot wait", "throttle", "model", "")
_PHASE = ("queue", "slot wait", "run", "model", "")


def _meta(kind: str, pid: int, tid: int, key: str, value: str) -> str:
    """A metadata event: its one argument ``key``, with ``value`` as JSON text."""
    return f'{{"name":"{kind}","ph":"M","ts":0,"pid":{pid},"tid":{tid},"args":{{"{key}":{value}}}}}'


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
