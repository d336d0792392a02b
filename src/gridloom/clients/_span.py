"""Context of the model call whose code is running: who makes it, and the slot it holds.

:data:`CURRENT_CALLER` lets transport retries, deep in the HTTP layer, be counted per model
alias; :data:`CURRENT_SLOT` lets a transport retry sleep without holding a limiter slot. The
running task's trace span (:data:`~gridloom.trace.CURRENT_SPAN`) is the trace layer's: the
engine sets it, and the handle and the throttled client fill it in.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

from ..trace import CURRENT_SPAN, RequestSpan

__all__ = ["CURRENT_CALLER", "CURRENT_SLOT", "CURRENT_SPAN", "Caller", "HeldSlot", "RequestSpan"]


class Caller(Protocol):
    """Who is making the current model call (a model handle), to count transport retries
    and capacity refusals."""

    def transport_retry(self, error: str) -> None:
        """An attempt failed with ``error`` (a class name) and is being tried again."""

    def answered(self, seconds: float) -> None:
        """A request that had passed its model's limits was answered after ``seconds``."""

    def refused(self, error: BaseException) -> None:
        """The provider refused the request for capacity (``error``: a 429, or a 503/529
        with ``Retry-After``); the throttle will send it again."""


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
