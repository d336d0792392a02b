"""``ThrottledModelClient``: any ``ModelClient`` behind adaptive limits.

Each attempt acquires its (provider, model, domain) limiter, calls the wrapped client, and
reports the outcome. A rate limit (429, or a configured overload status: 502, 503, 529)
feeds the controller and the request re-enters the acquire path — behind the cooldown — rather
than failing; after ``max_rate_limited_attempts`` refusals in a row it is raised. A 429 never
reaches transport retry: it must reach the controller.

A success whose quota headers say the provider's quota is spent (``x-ratelimit-remaining-requests:
0``, or fewer tokens left than a request typically costs) holds the limiter's admissions until
enough of the quota is back — without cutting the limit — so the next request is not refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from ..errors import EmptyAnswer, ProviderUnavailable, RateLimited
from ..throttle import MAX_SERVER_HOLD_SECONDS, AdaptiveLimiter, Ticket, TokenBucket
from ._span import CURRENT_CALLER, CURRENT_SLOT, CURRENT_SPAN
from ._token_estimate import budget_cost
from ._types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelClient,
    RateLimitState,
    Usage,
)

__all__ = ["MAX_QUOTA_HOLD_SECONDS", "MAX_RATE_LIMITED_ATTEMPTS", "ThrottledModelClient"]

T = TypeVar("T")

#: Refusals in a row after which a request gives up (the fault layer above decides what next).
MAX_RATE_LIMITED_ATTEMPTS = 50
#: Longest hold one response's quota headers may impose, in seconds (as for ``Retry-After``).
MAX_QUOTA_HOLD_SECONDS = MAX_SERVER_HOLD_SECONDS


class _Slot:
    """The limiter slot one attempt holds; transport retry sleeps outside it."""

    __slots__ = ("held", "limiter", "sent", "ticket")

    def __init__(self, limiter: AdaptiveLimiter, ticket: Ticket):
        self.limiter = limiter
        self.ticket = ticket
        self.held = True
        self.sent = trio.current_time()

    async def sleep_outside(self, seconds: float) -> None:
        self.limiter.released(self.ticket)
        self.held = False
        await trio.sleep(seconds)
        self.ticket = await self.limiter.acquire()
        self.held = True
        self.sent = trio.current_time()
        span = CURRENT_SPAN.get()
        if span is not None:
            span.request_sent(self.sent)


class ThrottledModelClient:
    """A :class:`~gridloom.clients.ModelClient` whose every attempt passes an adaptive limiter.

    Args:
        inner: the client that talks to the provider.
        chat: the limiter of chat requests; embedding: that of embedding requests.
        capacity_statuses: statuses other than 429 that count as a capacity refusal (with
            or without ``Retry-After``; without one, the throttle's cooldown).
        max_rate_limited_attempts: refusals in a row before the error is raised.
        max_refusal_wait: a refusal that would make the request wait longer than this many
            seconds before it is sent again is raised at once (``None``: waited out); a probe
            (``check-models``) sets it, a run does not.
        requests: a published requests-per-minute budget, taken before each attempt.
        tokens: a published tokens-per-minute budget, charged with each response's usage (a
            reply without one is charged an estimate from its characters, with a warning).
        respect_quota_headers: hold admissions when a response's quota headers
            (:attr:`ChatResponse.rate_limit`) say the provider's quota is spent: until one
            request is back (``reset_requests / (limit_requests - remaining_requests)``), or
            until the tokens a request costs on average (the mean ``input + output`` usage of
            this client's successes) are back, pro rata of ``reset_tokens``; at most
            :data:`MAX_QUOTA_HOLD_SECONDS`. A hold never changes the limit.
    """

    def __init__(
        self,
        inner: ModelClient,
        *,
        chat: AdaptiveLimiter,
        embedding: AdaptiveLimiter,
        capacity_statuses: tuple[int, ...] = (502, 503, 529),
        max_rate_limited_attempts: int = MAX_RATE_LIMITED_ATTEMPTS,
        max_refusal_wait: float | None = None,
        requests: TokenBucket | None = None,
        tokens: TokenBucket | None = None,
        respect_quota_headers: bool = True,
    ):
        self.requests_budget = requests
        self.tokens_budget = tokens
        self.inner = inner
        self.chat_limiter = chat
        self.embedding_limiter = embedding
        self.capacity_statuses = capacity_statuses
        self.max_rate_limited_attempts = max_rate_limited_attempts
        self.max_refusal_wait = max_refusal_wait
        self.respect_quota_headers = respect_quota_headers
        self._successes = 0
        self._mean_cost = 1.0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._attempt(
            self.chat_limiter, lambda: self.inner.chat(request), request=request
        )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        return await self._attempt(
            self.embedding_limiter, lambda: self.inner.embed(request), request=request
        )

    def _retry_after(self, exc: BaseException) -> tuple[bool, float | None]:
        """Whether ``exc`` is a capacity refusal, and the wait it asked for."""
        if isinstance(exc, RateLimited):
            return True, exc.retry_after
        if isinstance(exc, ProviderUnavailable) and exc.status in self.capacity_statuses:
            # With or without Retry-After (Anthropic's 529 and a gateway's 502/503 mostly come
            # without one): the cooldown then applies, as for a 429 without one.
            return True, exc.retry_after
        return False, None

    async def _attempt(
        self,
        limiter: AdaptiveLimiter,
        call: Callable[[], Awaitable[T]],
        *,
        request: ChatRequest | EmbeddingRequest | None = None,
    ) -> T:
        refusals = 0
        while True:
            if self.tokens_budget is not None:
                await trio.sleep_until(self.tokens_budget.available_at())
            if self.requests_budget is not None:
                await trio.sleep_until(self.requests_budget.reserve())
            slot = _Slot(limiter, await limiter.acquire())
            span = CURRENT_SPAN.get()
            if span is not None:
                span.request_sent(slot.sent)
            token = CURRENT_SLOT.set(slot)
            try:
                result = await call()
            except BaseException as exc:
                if span is not None:
                    span.response_received(trio.current_time())
                if not slot.held:  # cancelled while waiting outside its slot
                    raise
                capacity, retry_after = self._retry_after(exc)
                if not capacity:
                    limiter.released(slot.ticket)
                    if isinstance(exc, EmptyAnswer) and self.tokens_budget is not None:
                        # Served and billed though it holds no answer (a reasoning model's
                        # tokens spent before any text): the budget pays for it too.
                        self.tokens_budget.debit(exc.input_tokens + exc.output_tokens)
                    raise
                again = limiter.rate_limited(slot.ticket, retry_after)
                refusals += 1
                caller = CURRENT_CALLER.get()
                if caller is not None:  # the run's health watches refusals too
                    caller.refused(exc)
                if refusals >= self.max_rate_limited_attempts:
                    raise
                longest = self.max_refusal_wait
                if longest is not None and again - trio.current_time() > longest:
                    raise
                await trio.sleep_until(again)
                continue
            finally:
                CURRENT_SLOT.reset(token)
            usage = getattr(result, "usage", None)
            if isinstance(usage, Usage):
                self._successes += 1
                cost = usage.input_tokens + usage.output_tokens
                self._mean_cost += (cost - self._mean_cost) / self._successes
            state = getattr(result, "rate_limit", None)
            if self.respect_quota_headers and isinstance(state, RateLimitState):
                self._hold_for_quota(limiter, state)
            answered = trio.current_time()
            if span is not None:
                span.response_received(answered)
            caller = CURRENT_CALLER.get()
            if caller is not None:
                caller.answered(answered - slot.sent)
            limiter.succeeded(slot.ticket)
            if self.tokens_budget is not None:
                # A side the reply reports no usage for is charged an estimate.
                self.tokens_budget.debit(budget_cost(self.tokens_budget, request, result))
            return result

    def _hold_for_quota(self, limiter: AdaptiveLimiter, state: RateLimitState) -> None:
        """Hold ``limiter``'s admissions if ``state`` says the quota is spent."""
        waits: list[tuple[float, str]] = []
        remaining, reset = state.remaining_requests, state.reset_requests
        if remaining is not None and remaining < 1 and reset is not None:
            limit = state.limit_requests
            wait = reset if limit is None else reset / max(1, limit - remaining)
            waits.append((wait, f"remaining requests {remaining}, reset in {reset:g} s"))
        cost = self._mean_cost  # 1 until the first success reports its usage
        remaining, reset = state.remaining_tokens, state.reset_tokens
        if remaining is not None and remaining < cost and reset is not None:
            limit = state.limit_tokens
            wait = (
                reset if limit is None else reset * (cost - remaining) / max(1, limit - remaining)
            )
            waits.append(
                (wait, f"remaining tokens {remaining} < {cost:.0f} a request, reset in {reset:g} s")
            )
        if not waits:
            return
        wait, reason = max(waits)
        limiter.hold_until(trio.current_time() + min(wait, MAX_QUOTA_HOLD_SECONDS), reason)
