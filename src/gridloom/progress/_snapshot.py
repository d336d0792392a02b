"""Progress snapshots and the pure computations on them: rates, ETAs, the plain line, the mode.

Nothing here touches trio or a terminal, so it is tested with synthetic snapshots.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Literal

from .._attrs import frozen

if TYPE_CHECKING:
    from ..clients import ModelHandle
    from ..engine import SchedulerStatistics

__all__ = [
    "ENV_VAR",
    "RATE_WINDOW_SECONDS",
    "ColumnProgress",
    "ModelProgress",
    "ProgressMode",
    "ProgressSnapshot",
    "eta_seconds",
    "format_duration",
    "format_line",
    "format_rate",
    "model_progress",
    "rate",
    "resolve_mode",
    "take_snapshot",
]

log = logging.getLogger("gridloom.progress")

#: What ``run.progress`` and ``GRIDLOOM_PROGRESS`` accept.
ProgressMode = Literal["auto", "bar", "log", "off"]

#: The environment variable that overrides ``run.progress``.
ENV_VAR = "GRIDLOOM_PROGRESS"
#: Rates (records/s) are measured over this many recent seconds.
RATE_WINDOW_SECONDS = 10.0
_MODES = ("auto", "bar", "log", "off")


@frozen(kw_only=True)
class ColumnProgress:
    """One node (a column, or a generator filling several) at one moment.

    Attributes:
        name: the node's name.
        done: cells (rows, for a batch node) generated.
        failed: cells whose failure dropped their row.
        skipped: cells left null because the column's ``skip_when`` held.
    """

    name: str
    done: int
    failed: int
    skipped: int = 0

    @property
    def settled(self) -> int:
        """Cells finished without dropping their row: generated or skipped."""
        return self.done + self.skipped


@frozen(kw_only=True)
class ModelProgress:
    """One model alias at one moment.

    Attributes:
        alias: the alias columns use.
        limit: the adaptive (AIMD) concurrency limit now; without a throttle, the hard cap.
        in_flight: requests sent and not yet answered.
        requests: requests made so far.
        rate_limited: capacity refusals so far (429s, and the throttle's
            ``capacity_statuses``: 502, 503, 529).
        cached: answers served from the response cache so far (no requests).
    """

    alias: str
    limit: int | None
    in_flight: int
    requests: int
    rate_limited: int
    cached: int = 0


@frozen(kw_only=True)
class ProgressSnapshot:
    """What the display shows at one moment; everything is a count of this invocation.

    Attributes:
        time: seconds since the reporter started.
        total: rows planned (grows when ``fill_to_target`` adds rows).
        rows: rows finished: every column done, or dropped (see the module docstring).
        rows_dropped: rows dropped by a failure.
        columns: per node, in execution order.
        models: per model alias.
    """

    time: float
    total: int
    rows: int
    rows_dropped: int
    columns: tuple[ColumnProgress, ...] = ()
    models: tuple[ModelProgress, ...] = ()


def take_snapshot(
    stats: SchedulerStatistics,
    models: Sequence[ModelProgress] = (),
    *,
    time: float,
    total: int,
) -> ProgressSnapshot:
    """A :class:`ProgressSnapshot` from a scheduler snapshot and the models' progress.

    Args:
        stats: ``Scheduler.statistics()``.
        models: :func:`model_progress` of each alias.
        time: seconds since the reporter started.
        total: rows planned in this invocation.
    """
    columns = tuple(
        ColumnProgress(name=node.name, done=node.done, failed=node.failed, skipped=node.skipped)
        for node in stats.nodes
    )
    furthest_behind = min((c.settled for c in columns), default=0)
    rows = min(total, furthest_behind + stats.rows_dropped)
    return ProgressSnapshot(
        time=time,
        total=total,
        rows=rows,
        rows_dropped=stats.rows_dropped,
        columns=columns,
        models=tuple(models),
    )


def model_progress(handle: ModelHandle) -> ModelProgress:
    """A :class:`ModelProgress` from one handle's counts and snapshots: its throttles'
    ``statistics()`` give the limit, requests in flight and capacity refusals (its cap limiter's
    statistics when it has no throttle)."""
    requests = handle.requests
    stats = {domain: limiter.statistics() for domain, limiter in handle.throttles.items()}
    if not stats:
        cap = handle.limiter.statistics()
        return ModelProgress(
            alias=handle.alias,
            limit=int(cap.total_tokens),
            in_flight=cap.borrowed_tokens,
            requests=requests,
            rate_limited=handle.rate_limited,
            cached=getattr(handle, "cached_requests", 0),
        )
    # The limit of the domain in use: the one with the most requests (chat on a tie).
    domain = max(stats, key=lambda d: (stats[d].admitted, d == "chat"))
    return ModelProgress(
        alias=handle.alias,
        limit=stats[domain].limit,
        in_flight=sum(s.in_flight for s in stats.values()),
        requests=requests,
        rate_limited=sum(s.rate_limited for s in stats.values()),
        cached=getattr(handle, "cached_requests", 0),
    )


def rate(
    samples: Sequence[tuple[float, float]],
    *,
    window: float = RATE_WINDOW_SECONDS,
    min_span: float = 1.0,
) -> float | None:
    """Records per second over the last ``window`` seconds of ``(time, count)`` samples.

    The rate runs from the oldest sample within the window (or, when the last sample is the
    only one in it, the one just before) to the last sample.

    Args:
        samples: ``(time, cumulative count)``, oldest first.
        window: how far back to look, in seconds.
        min_span: no rate over fewer seconds than this (too noisy).

    Returns:
        The rate (never negative), or ``None`` when the samples span less than ``min_span``.
    """
    if len(samples) < 2:
        return None
    now, last = samples[-1]
    start = len(samples) - 2
    while start > 0 and samples[start - 1][0] >= now - window:
        start -= 1
    then, first = samples[start]
    span = now - then
    if span < min_span or span <= 0:
        return None
    return max(0.0, (last - first) / span)


def eta_seconds(remaining: float, per_second: float | None) -> float | None:
    """Seconds until ``remaining`` records are done at ``per_second``; ``0`` when nothing
    remains, ``None`` when the rate is unknown or zero."""
    if remaining <= 0:
        return 0.0
    if per_second is None or per_second <= 0:
        return None
    return remaining / per_second


def format_duration(seconds: float | None) -> str:
    """``"4.2 s"``, ``"18 s"``, ``"3 min 05 s"``, ``"2 h 07 min"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def format_rate(per_second: float | None) -> str:
    """``"4.2"``, ``"212"``, ``"1,234"``; ``"?"`` when unknown."""
    if per_second is None:
        return "?"
    return f"{per_second:.1f}" if per_second < 10 else f"{per_second:,.0f}"


def _model_text(model: ModelProgress) -> str:
    limit = "-" if model.limit is None else f"{model.limit:,}"
    text = (
        f"{model.alias} limit {limit} in flight {model.in_flight:,} refused {model.rate_limited:,}"
    )
    return f"{text} cached {model.cached:,}" if model.cached else text


def format_line(
    snapshot: ProgressSnapshot,
    rows_per_second: float | None,
    *,
    status: str | None = None,
) -> str:
    """The ``log`` display's line for ``snapshot``.

    Args:
        snapshot: what to show.
        rows_per_second: the recent row rate (see :func:`rate`); on the final line, the run's
            average.
        status: for the final line: how the run ended (``complete``, ``stopped``, ...); it
            then shows the elapsed time instead of an ETA.

    Example:
        ``gridloom: 1,200/5,000 rows · summary 1,250 done 3 failed · writer limit 16 in flight
        14 refused 3 · 212 rows/s · ETA 18 s``
    """
    parts = [f"{snapshot.rows:,}/{snapshot.total:,} rows"]
    if status is not None:
        parts.insert(0, status)
    for column in snapshot.columns:
        text = f"{column.name} {column.done:,} done"
        if column.skipped:
            text += f" {column.skipped:,} skipped"
        if column.failed:
            text += f" {column.failed:,} failed"
        parts.append(text)
    parts.extend(_model_text(model) for model in snapshot.models)
    parts.append(f"{format_rate(rows_per_second)} rows/s")
    if status is None:
        remaining = snapshot.total - snapshot.rows
        parts.append(f"ETA {format_duration(eta_seconds(remaining, rows_per_second))}")
    else:
        parts.append(f"in {format_duration(snapshot.time)}")
    return "gridloom: " + " · ".join(parts)


def resolve_mode(
    setting: str,
    *,
    env: Mapping[str, str] | None = None,
    terminal: bool | None = None,
    preview: bool = False,
) -> Literal["bar", "log", "off"]:
    """The display a run gets.

    Args:
        setting: ``run.progress`` (``auto``, ``bar``, ``log`` or ``off``).
        env: the environment (default ``os.environ``); a valid ``GRIDLOOM_PROGRESS`` there
            overrides ``setting``; an invalid one is ignored with a warning.
        terminal: whether stdout and stderr are terminals (default: asked of them).
        preview: a preview: ``auto`` means ``off``.
    """
    env = os.environ if env is None else env
    chosen = setting
    override = env.get(ENV_VAR, "").strip().lower()
    if override in _MODES:
        chosen = override
    elif override:
        log.warning("%s=%r is not one of %s; ignored", ENV_VAR, override, ", ".join(_MODES))
    if chosen == "bar":
        return "bar"
    if chosen == "log":
        return "log"
    if chosen == "off" or preview:
        return "off"
    if terminal is None:
        terminal = _is_terminal(sys.stdout) and _is_terminal(sys.stderr)
    return "bar" if terminal else "log"


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False
