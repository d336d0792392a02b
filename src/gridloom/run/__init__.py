"""The run layer: one :class:`Run` per invocation, owning the top-level nursery and everything
with a lifetime in it — the models (clients, throttles, simulated endpoints) and their ramp,
the model health monitor, progress, stop signals on the command line, the scheduler with its
top-up rounds, and the store it finishes.

``gridloom.create``/``preview``/``check_models`` and the ``gridloom`` command line all go
through :class:`Run`; errors leave it unwrapped, in one place. The engine below never opens a
client: the run hands it typed model handles.
"""

from ._health import SLICE_SECONDS, HealthMonitor
from ._models import open_models, serve_models, used_aliases
from ._plan import MAX_NUM_RECORDS, plan_row_groups
from ._run import Run
from ._signals import (
    SIGNAL_GRACE_SECONDS,
    STOP_SIGNALS,
    Interrupted,
    Outcome,
    StopSignals,
    Watchdog,
    chained_handlers,
    default_signals,
    run_with_signals,
    signal_exit,
    signal_name,
    stopping,
)
from ._source import ConfigSource, compile_source, load_source

__all__ = [
    "MAX_NUM_RECORDS",
    "SIGNAL_GRACE_SECONDS",
    "SLICE_SECONDS",
    "STOP_SIGNALS",
    "ConfigSource",
    "HealthMonitor",
    "Interrupted",
    "Outcome",
    "Run",
    "StopSignals",
    "Watchdog",
    "chained_handlers",
    "compile_source",
    "default_signals",
    "load_source",
    "open_models",
    "plan_row_groups",
    "run_with_signals",
    "serve_models",
    "signal_exit",
    "signal_name",
    "stopping",
    "used_aliases",
]
