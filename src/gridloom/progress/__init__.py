"""Live progress of a run, and the run's summary as text.

A :class:`ProgressReporter` is fed only by snapshots: the scheduler's
:meth:`~gridloom.engine.Scheduler.statistics`, each model handle's
:meth:`~gridloom.clients.ModelHandle.usage` and its throttles' ``statistics()``. It never reads
the engine's internals and never changes them. Two renderers:

* **bar** (rich): a bar per column (node) with done/total, records/s, ETA and failures; a line
  per model alias with its AIMD limit, requests in flight, requests and capacity refusals
  (``refused``: 429s, and 502/503/529s). Log records and anything printed go above the bars.
* **log**: one plain line every ``run.progress_interval_seconds`` (CI, files, notebooks), e.g.
  ``gridloom: 1,200/5,000 rows · summary 1,250 done 3 failed · writer limit 16 in flight 14
  refused 3 · 212 rows/s · ETA 18 s``, and a final line when the run is over.

:func:`render_summary` turns a run's summary into a plain-text table for the end of a run.

"Redraw on task completion, rate-limited" is realised by polling: the reporter's trio task takes
a snapshot every :data:`BAR_POLL_SECONDS` and redraws from it when a count changed: at most 8
redraws a second, spaced further apart if drawing would take more than about 1% of the event
loop (a slow terminal). Completions between two polls cost the engine nothing.

``auto`` mode (the default) picks ``bar`` when stdout and stderr are terminals, else ``log``; a
preview shows nothing unless asked; the ``GRIDLOOM_PROGRESS`` environment variable overrides
the config. The display goes to stderr, so stdout stays the command's (``--json``).

The rows figure counts rows *finished* (every column done, or dropped): the rows done by the
column furthest behind plus the rows dropped, at most the rows planned. It is exact at the end
and, with completion flowing diagonally across the grid, close to exact along the way.
"""

from __future__ import annotations

from ._reporter import BAR_POLL_SECONDS, ProgressReporter, make_console, reporting
from ._snapshot import (
    ENV_VAR,
    ColumnProgress,
    ModelProgress,
    ProgressMode,
    ProgressSnapshot,
    eta_seconds,
    format_duration,
    format_line,
    format_rate,
    model_progress,
    rate,
    resolve_mode,
    take_snapshot,
)
from ._summary import render_corrections, render_drops, render_summary, render_unwritten

__all__ = [
    "BAR_POLL_SECONDS",
    "ENV_VAR",
    "ColumnProgress",
    "ModelProgress",
    "ProgressMode",
    "ProgressReporter",
    "ProgressSnapshot",
    "eta_seconds",
    "format_duration",
    "format_line",
    "format_rate",
    "make_console",
    "model_progress",
    "rate",
    "render_corrections",
    "render_drops",
    "render_summary",
    "render_unwritten",
    "reporting",
    "resolve_mode",
    "take_snapshot",
]
