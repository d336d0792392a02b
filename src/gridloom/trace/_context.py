"""Where a model request reports its timing when a task trace is being recorded.

The scheduler puts the running task's span in :data:`CURRENT_SPAN` (a context variable, so it
follows the task into the generator's model calls); the model handle names the model, the
throttled client marks when a request passed its limits and when its answer came back, and a
model-calling generator notes the inference parameters its cell drew. Without
a trace the variable holds ``None`` and nothing is recorded.

It lives here, below both the engine that sets it and the clients that fill it in, so neither
has to import the other.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

__all__ = ["CURRENT_SPAN", "RequestSpan"]


class RequestSpan(Protocol):
    """The part of a task span that model calls fill in."""

    def using_model(self, alias: str) -> None:
        """The task calls model ``alias``."""

    def request_sent(self, now: float) -> None:
        """A request passed its model's limits and went out at ``now``."""

    def response_received(self, now: float) -> None:
        """A request's answer (or error) came back at ``now``."""

    def served_from_cache(self) -> None:
        """An answer came from the response cache: no request was sent."""

    def inference_drawn(self, params: str) -> None:
        """The task's cell drew these inference parameters (JSON text of an object)."""


#: The span of the task whose code is running, when tracing; else ``None``.
CURRENT_SPAN: ContextVar[RequestSpan | None] = ContextVar("gridloom_request_span", default=None)
