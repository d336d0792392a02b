"""``ThrottledModelClient``: any ``ModelClient`` behind adaptive limits.

Each attempt acquires its (provider, model, domain) limiter, calls the wrapped client, and
reports the outcome. A rate limit (429, or a configured overload status with ``Retry-After``)
feeds the controller and the request re-enters the acquire path — behind the cooldown — rather
than failing; after ``max_rate_limited_attempts`` refusals in a row it is raised. A 429 never
reaches transport retry: it must reach the controller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from ..errors import ProviderUnavailable, RateLimited
from ..throttle import AdaptiveLimiter, TokenBucket
from ._types import ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, ModelClient

__all__ = ["MAX_RATE_LIMITED_ATTEMPTS", "ThrottledModelClient"]

T = TypeVar("T")

#: Refusals in a row after which a request gives up (the fault layer above decides what next).
MAX_RATE_LIMITED_ATTEMPTS = 50


class ThrottledModelClient:
    """A :class:`~gridloom.clients.ModelClient` whose every attempt passes an adaptive limiter.

    Args:
        inner: the client that talks to the provider.
        chat: the limiter of chat requests; embedding: that of embedding requests.
        capacity_statuses: statuses other than 429 that, with a ``Retry-After``, count as a
            capacity refusal.
        max_rate_limited_attempts: refusals in a row before the error is raised.
        requests: a published requests-per-minute budget, taken before each attempt.
        tokens: a published tokens-per-minute budget, charged with each response's usage.
    """

    def __init__(
        self,
        inner: ModelClient,
        *,
        chat: AdaptiveLimiter,
        embedding: AdaptiveLimiter,
        capacity_statuses: tuple[int, ...] = (503, 529),
        max_rate_limited_attempts: int = MAX_RATE_LIMITED_ATTEMPTS,
        requests: TokenBucket | None = None,
        tokens: TokenBucket | None = None,
    ):
        self.requests_budget = requests
        self.tokens_budget = tokens
        self.inner = inner
        self.chat_limiter = chat
        self.embedding_limiter = embedding
        self.capacity_statuses = capacity_statuses
        self.max_rate_limited_attempts = max_rate_limited_attempts

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._attempt(self.chat_limiter, lambda: self.inner.chat(request))

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        return await self._attempt(self.embedding_limiter, lambda: self.inner.embed(request))

    def _retry_after(self, exc: BaseException) -> tuple[bool, float | None]:
        """Whether ``exc`` is a capacity refusal, and the wait it asked for."""
        if isinstance(exc, RateLimited):
            return True, exc.retry_after
        if (
            isinstance(exc, ProviderUnavailable)
            and exc.status in self.capacity_statuses
            and exc.retry_after is not None
        ):
            return True, exc.retry_after
        return False, None

    async def _attempt(self, limiter: AdaptiveLimiter, call: Callable[[], Awaitable[T]]) -> T:
        refusals = 0
        while True:
            if self.tokens_budget is not None:
                await trio.sleep_until(self.tokens_budget.available_at())
            if self.requests_budget is not None:
                await trio.sleep_until(self.requests_budget.reserve())
            ticket = await limiter.acquire()
            try:
                result = await call()
            except BaseException as exc:
                capacity, retry_after = self._retry_after(exc)
                if not capacity:
                    limiter.released(ticket)
                    raise
                limiter.rate_limited(ticket, retry_after)
                refusals += 1
                if refusals >= self.max_rate_limited_attempts:
                    raise
                continue
            limiter.succeeded(ticket)
            usage = getattr(result, "usage", None)
            if self.tokens_budget is not None and usage is not None:
                self.tokens_budget.debit(usage.input_tokens + usage.output_tokens)
            return result
