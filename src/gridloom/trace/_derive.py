"""What the trace views derive from a trace: lanes, column order, requests in flight, throttles.

Shared by the Perfetto export (:mod:`._chrome`) and the plots (:mod:`gridloom.plots`), so both
draw the same picture.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

__all__ = [
    "assign_lanes",
    "column_order",
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
    a throttle's own retries of an attempt stay one request in flight.
    """
    end = trace_end(table)
    data = {
        name: table.column(name).to_pylist() for name in ("model", "sent", "response", "completed")
    }
    changes: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for model, sent, response, completed in zip(
        data["model"], data["sent"], data["response"], data["completed"], strict=True
    ):
        if model is None or not _finite(sent):
            continue
        if _finite(response) and response >= sent:
            back = response
        else:
            back = completed if _finite(completed) else end
        changes[model].append((sent, 1))
        changes[model].append((max(back, sent), -1))
    series: dict[str, list[tuple[float, int]]] = {}
    for model in sorted(changes):
        points = [(0.0, 0)]
        level = 0
        for time, delta in sorted(changes[model]):  # at one time, answers before requests
            level += delta
            if points[-1][0] == time:
                points[-1] = (time, level)
            else:
                points.append((time, level))
        series[model] = points
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
