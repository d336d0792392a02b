"""gridloom's simulated model endpoint: OpenAI chat completions and embeddings and Anthropic
Messages, answered deterministically, with latency, rate limits and faults per model, and
the batch APIs of both (OpenAI files + batches, Anthropic message batches).

Mount :class:`SimulatedApp` in-process with ``httpx.ASGITransport`` (it then runs on trio's
clock, virtual under ``autojump_clock``), or serve it over real sockets on loopback with
:func:`serve_simulated` / :func:`run_simulator`.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports as _lazy_exports
from ._app import SimulatedApp
from ._http11 import ServerLimits
from ._recorder import ModelStatistics, SimulationStatistics, TimelineEntry
from ._server import SimulatedServer, default_limits, run_simulator, serve_simulated

if TYPE_CHECKING:
    from ._batches import BatchService, BatchStatistics

__all__ = [
    "BatchService",
    "BatchStatistics",
    "ModelStatistics",
    "ServerLimits",
    "SimulatedApp",
    "SimulatedServer",
    "SimulationStatistics",
    "TimelineEntry",
    "default_limits",
    "run_simulator",
    "serve_simulated",
]

# The batch APIs load on first use (an app makes its BatchService when a batch route is first
# asked for): a run that sends no batch does not import them.
__getattr__, __dir__ = _lazy_exports(
    __name__, {"BatchService": "._batches", "BatchStatistics": "._batches"}
)
