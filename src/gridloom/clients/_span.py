"""Where a model request reports its timing when a task trace is being recorded.

The scheduler puts the running task's span in :data:`CURRENT_SPAN` (a context variable, so it
follows the task into the generator's model calls); the model handle names the model, and the
throttled client marks when a request passed its limits and when its answer came back.
Without a trace the variable holds ``None`` and nothing is recorded. Likewise
:data:`CURRENT_CALLER` lets transport retries, deep in the HTTP layer, be counted per model alias.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

__all__ = ["CURRENT_CALLER", "CURRENT_SLOT", "CURRENT_SPAN", "Caller", "HeldSlot", "RequestSpan"]


class RequestSpan(Protocol):
    """The part of a task span that model calls fill in."""

    def using_model(self, alias: str) -> None:
        """The task calls model ``alias``."""

    def request_sent(self, now: float) -> None:
        """A request passed its model's limits and went out at ``now``."""

    def response_received(self, now: float) -> None:
        """A request's answer (or error) came back at ``now``."""


#: The span of the task whose code is running, when tracing; else ``None``.
CURRENT_SPAN: ContextVar[RequestSpan | None] = ContextVar("gridloom_request_span", default=None)


class Caller(Protocol):
    """Who is making the current model call (a model handle), to count transport retries."""

    def transport_retry(self, error: str) -> None:
        """An attempt failed with ``error`` (a class name) and is being tried again."""

    def answered(self, seconds: float) -> None:
        """A request that had passed its model's limits was answered after ``seconds``."""


#: The model handle whose call is running (set by the handle around each call).
CURRENT_CALLER: ContextVar[Caller | None] = ContextVar("gridloom_caller", default=None)


class HeldSlot(Protocol):
    """The limiter slot the current request holds (set by the throttled client around a call)."""

    async def sleep_outside(self, seconds: float) -> None:
        """Give the slot back, sleep ``seconds``, then take a slot again (behind any queue)."""


#: The slot of the model call whose code is running, if it passed a limiter; else ``None``.
#: Transport retry sleeps through it, so a request waiting to be retried does not hold a slot
#: another request could use.
CURRENT_SLOT: ContextVar[HeldSlot | None] = ContextVar("gridloom_held_slot", default=None)
