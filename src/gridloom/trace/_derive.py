"""What the trace views derive from a trace: lanes, column order, requests in flight, throttles.

Shared by the Perfetto export (:mod:`._chrome`) and the plots (:mod:`gridloom.plots`), so both
draw the same picture.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "assign_lanes",
    "column_order",
    "flight_series",
    "requests_in_flight",
    "throttle_counters",
    "throttle_history",
    "trace_end",
]

_TIMES = ("ready", "dispatched", "slot", "sent", "response", "completed")


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def assign_lanes(intervals: Sequence[tuple[float, float]]) -> tuple[list[int], int]:
    """Put each ``(start, end)`` interval on the first lane free at its start.

    Intervals are taken in order of start (then end); an interval may begin on a lane the
    moment the previous one there ends. The number of lanes is the peak overlap.

    Args:
        intervals: ``(start, end)`` pairs with ``start <= end``, in any order.

    Returns:
        The lane (0, 1, ...) of each interval, in the order given, and the number of lanes.
    """
    lanes = [0] * len(intervals)
    busy: list[tuple[float, int]] = []  # (end, lane) of the intervals still running
    free: list[int] = []  # lanes free now, lowest first
    count = 0
    for index in sorted(range(len(intervals)), key=lambda i: intervals[i]):
        start, end = intervals[index]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane = count
            count += 1
        lanes[index] = lane
        heapq.heappush(busy, (end, lane))
    return lanes, count


def column_order(table: pa.Table) -> list[str]:
    """The trace's columns in execution order: by the first time one of their tasks was ready
    (ties in the order the trace lists them)."""
    first: dict[str, tuple[float, int]] = {}
    for index, (column, ready) in enumerate(
        zip(table.column("column").to_pylist(), table.column("ready").to_pylist(), strict=True)
    ):
        key = (ready if _finite(ready) else math.inf, index)
        if column not in first or key < first[column]:
            first[column] = key
    return sorted(first, key=first.__getitem__)


def trace_end(table: pa.Table) -> float:
    """The latest time in the trace (seconds since the run's start; 0 for an empty trace)."""
    import pyarrow.compute as pc  # here: importing it costs every start of gridloom ~30 ms

    latest: list[float] = []
    for name in _TIMES:  # in Arrow's compute: a trace can hold millions of times
        column = table.column(name)
        finite = pc.filter(column, pc.is_finite(column))
        if len(finite):
            latest.append(pc.max(finite).as_py())
    return max(latest, default=0.0)


def requests_in_flight(table: pa.Table) -> dict[str, list[tuple[float, int]]]:
    """Per model alias, the task attempts waiting on it: a step series of ``(time, count)``.

    An attempt counts from its first request out (``sent``) to its last answer back
    (``response``; for an attempt cut short, its end or the end of the trace). Corrections and
    a throttle's own retries of an attempt stay one request in flight. The series starts at
    ``(0.0, 0)``; where several changes fall at one time, the level after all of them is kept.
    """
    return {
        model: list(zip(times.to_pylist(), levels.to_pylist(), strict=True))
        for model, (times, levels) in flight_series(table).items()
    }


def flight_series(table: pa.Table) -> dict[str, tuple[pa.Array, pa.Array]]:
    """:func:`requests_in_flight` as Arrow arrays: per model alias, its times (float64) and
    the levels from each (int64)."""
    import pyarrow as pa
    import pyarrow.compute as pc  # here: importing it costs every start of gridloom ~30 ms

    end = trace_end(table)
    # In Arrow's compute: two changes per attempt, and a trace can hold millions.
    counted = pc.fill_null(
        pc.and_(pc.is_valid(table.column("model")), pc.is_finite(table.column("sent"))), False
    )
    attempts = table.select(["model", "sent", "response", "completed"]).filter(counted)
    sent, response = attempts.column("sent"), attempts.column("response")
    completed = attempts.column("completed")
    answered = pc.fill_null(
        pc.and_(pc.is_finite(response), pc.greater_equal(response, sent)), False
    )
    ended = pc.if_else(pc.fill_null(pc.is_finite(completed), False), completed, end)
    back = pc.max_element_wise(pc.if_else(answered, response, ended), sent)
    series: dict[str, tuple[pa.Array, pa.Array]] = {}
    models = attempts.column("model")
    for model in sorted(pc.unique(models).to_pylist()):
        mine = pc.equal(models, model)
        out = pc.filter(sent, mine).combine_chunks()
        requests = pc.cast(pc.is_valid(out), pa.int64())  # +1 for each
        changes = pa.table(
            {
                "time": pa.concat_arrays([out, pc.filter(back, mine).combine_chunks()]),
                "delta": pa.concat_arrays([requests, pc.negate(requests)]),
            }
        )
        # At one time, answers before requests; the level after the last change of a time.
        changes = changes.take(
            pc.sort_indices(changes, sort_keys=[("time", "ascending"), ("delta", "ascending")])
        )
        times = changes.column("time").combine_chunks()
        levels = pc.cumulative_sum(changes.column("delta").combine_chunks())
        # Each time's last change: where the next one's time differs, and the very last.
        keep = pa.concat_arrays([pc.not_equal(times[:-1], times[1:]), pa.array([True])])
        times, levels = pc.filter(times, keep), pc.filter(levels, keep)
        if times[0].as_py() != 0.0:  # the series starts at (0, 0)
            times = pa.concat_arrays([pa.array([0.0]), times])
            levels = pa.concat_arrays([pa.array([0], pa.int64()), levels])
        series[model] = (times, levels)
    return series


def throttle_history(
    models: Mapping[str, Mapping[str, Any]], *, origin: float
) -> dict[str, dict[str, list[tuple[float, int, int]]]]:
    """Each alias's throttle history per domain, in seconds since the run's start.

    Args:
        models: per alias, its usage as reported (``ModelUsage.as_dict()``, or
            ``summary["models"]`` of ``metadata.json``): ``throttle[domain]["history"]`` is a
            list of ``[time, limit, in_flight]`` in trio clock time.
        origin: the clock time of the run's start (the trace's ``origin``).

    Returns:
        alias → domain → ``(time - origin, limit, in_flight)`` triples; aliases without
        throttle history are left out.
    """
    found: dict[str, dict[str, list[tuple[float, int, int]]]] = {}
    for alias, usage in models.items():
        throttle = usage.get("throttle") or {}
        domains = {
            domain: [(float(t) - origin, int(limit), int(flight)) for t, limit, flight in history]
            for domain, info in throttle.items()
            if (history := info.get("history"))
        }
        if domains:
            found[alias] = domains
    return found


def throttle_counters(
    models: Mapping[str, Mapping[str, Any]], *, origin: float
) -> dict[str, list[tuple[float, float]]]:
    """Counter series of each alias's AIMD limit and requests in flight at its throttle.

    Named ``"<alias> AIMD limit"`` and ``"<alias> in flight (throttle)"`` (with the domain after
    the alias when it has more than one, e.g. ``"<alias> embedding AIMD limit"``); times in
    seconds since the run's start. See :func:`throttle_history` for the arguments.
    """
    counters: dict[str, list[tuple[float, float]]] = {}
    for alias, domains in throttle_history(models, origin=origin).items():
        for domain, history in domains.items():
            prefix = alias if len(domains) == 1 else f"{alias} {domain}"
            counters[f"{prefix} AIMD limit"] = [(t, limit) for t, limit, _ in history]
            counters[f"{prefix} in flight (throttle)"] = [(t, flight) for t, _, flight in history]
    return counters
