"""gridloom's simulated model endpoint: OpenAI chat completions and embeddings and Anthropic
Messages, answered deterministically, with latency, rate limits and faults per model, and
the batch APIs of both (OpenAI files + batches, Anthropic message batches).

Mount :class:`SimulatedApp` in-process with ``httpx.ASGITransport`` (it then runs on trio's
clock, virtual under ``autojump_clock``), or serve it over real sockets on loopback with
:func:`serve_simulated` / :func:`run_simulator`.
"""

from ._app import SimulatedApp
from ._batches import BatchService, BatchStatistics
from ._http11 import ServerLimits
from ._recorder import ModelStatistics, SimulationStatistics, TimelineEntry
from ._server import SimulatedServer, default_limits, run_simulator, serve_simulated

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
