"""A model alias as generators see it: a client, a concurrency limit, and usage accounting."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

import attrs
import trio

from ..config import ModelConfig
from ..errors import ModelError
from ..throttle import AdaptiveLimiter
from ._span import CURRENT_CALLER, CURRENT_SPAN
from ._types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelClient,
    Usage,
)

__all__ = ["HealthRecorder", "ModelHandle", "ModelUsage"]

R = TypeVar("R", ChatResponse, EmbeddingResponse)

#: Latencies kept per alias for percentiles (the most recent ones).
_LATENCY_SAMPLE = 10_000
#: Points of throttle history reported per domain (for plots).
_HISTORY_POINTS = 1000


@attrs.frozen(kw_only=True)
class ModelUsage:
    """A snapshot of one alias's traffic (what ``RunResult`` reports per model)."""

    alias: str
    model: str
    provider: str
    requests: int
    succeeded: int
    failed: int
    errors: dict[str, int]
    transport_retries: dict[str, int]
    rate_limited: int
    throttle: dict[str, dict[str, object]]
    input_tokens: int
    output_tokens: int
    mean_latency: float | None
    p95_latency: float | None

    def as_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


def _downsample(
    history: list[tuple[float, int, int]], points: int = _HISTORY_POINTS
) -> list[list[float]]:
    """At most ``points`` (time, limit, in flight) samples, evenly spread, the last one kept."""
    if len(history) <= points:
        return [[round(t, 6), limit, flight] for t, limit, flight in history]
    step = len(history) / points
    picked = [history[int(i * step)] for i in range(points - 1)] + [history[-1]]
    return [[round(t, 6), limit, flight] for t, limit, flight in picked]


class HealthRecorder(Protocol):
    """Told when each request is sent, and its outcome (the run's ``HealthMonitor`` is
    one): ``sent`` gives a ticket in send order, then ``record`` the outcome, or ``forget``
    when the request ended with none (cancelled)."""

    def sent(self, alias: str) -> int: ...

    def record(
        self,
        alias: str,
        ok: bool,
        error: BaseException | None = None,
        *,
        ticket: int | None = None,
    ) -> None: ...

    def forget(self, alias: str, ticket: int) -> None: ...


class _CallRecord:
    """What the layers beneath one call report back to its handle: transport retries (counted
    per error class in the handle's counter) and the model's latency without queueing."""

    __slots__ = ("latency", "retries")

    def __init__(self, retries: Counter[str]):
        self.retries = retries
        self.latency: float | None = None

    def transport_retry(self, error: str) -> None:
        self.retries[error] += 1

    def answered(self, seconds: float) -> None:
        self.latency = seconds


class ModelHandle:
    """Calls one model alias through its client, within the (provider, model) concurrency limit,
    and counts requests, errors, tokens and latency.

    Args:
        config: the alias's model configuration.
        client: the provider's client.
        limiter: shared by every alias that points at the same (provider, model): its cap.
        throttles: the adaptive limiters beneath the cap, by domain, for reporting.
        health: told each request's outcome (a success, or the ``ModelError`` it raised; a
            cancelled request is no outcome), to stop the run when this alias keeps failing.
    """

    def __init__(
        self,
        config: ModelConfig,
        client: ModelClient,
        limiter: trio.CapacityLimiter,
        *,
        throttles: Mapping[str, AdaptiveLimiter] | None = None,
        health: HealthRecorder | None = None,
    ):
        self.config = config
        self.client = client
        self.limiter = limiter
        self.throttles = dict(throttles or {})
        self.health = health
        self._requests = 0
        self._succeeded = 0
        self._errors: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()
        self._usage = Usage()
        self._latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLE)

    @property
    def alias(self) -> str:
        return self.config.alias

    @property
    def model(self) -> str:
        """The provider's model name."""
        return self.config.model

    def __repr__(self) -> str:
        return f"<ModelHandle {self.alias!r} → {self.config.provider}/{self.model}>"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One chat completion, counted."""
        return await self._counted(lambda: self.client.chat(request))

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Embeddings, counted."""
        return await self._counted(lambda: self.client.embed(request))

    async def _counted(self, call: Callable[[], Awaitable[R]]) -> R:
        """Run ``call`` within the cap, counting the request, its error or its usage, and
        telling the health monitor the outcome."""
        span = CURRENT_SPAN.get()
        if span is not None:
            span.using_model(self.alias)
        record = _CallRecord(self._retries)
        caller = CURRENT_CALLER.set(record)
        try:
            async with self.limiter:
                return await self._call(call, record)
        finally:
            CURRENT_CALLER.reset(caller)

    async def _call(self, call: Callable[[], Awaitable[R]], record: _CallRecord) -> R:
        started = trio.current_time()
        self._requests += 1
        health = self.health
        ticket = None if health is None else health.sent(self.alias)
        try:
            response = await call()
        except ModelError as exc:
            self._errors[type(exc).__name__] += 1
            if health is not None:
                health.record(self.alias, False, exc, ticket=ticket)
            raise
        except BaseException:  # cancelled, or not the model's doing: no outcome
            if health is not None and ticket is not None:
                health.forget(self.alias, ticket)
            raise
        self._succeeded += 1
        self._usage = self._usage + response.usage
        # The model's latency when the throttle reported it (no queueing), else the call's.
        latency = record.latency
        self._latencies.append(trio.current_time() - started if latency is None else latency)
        if health is not None:
            health.record(self.alias, True, ticket=ticket)
        return response

    def usage(self) -> ModelUsage:
        """A frozen snapshot of this alias's traffic so far."""
        latencies = sorted(self._latencies)
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None
        return ModelUsage(
            alias=self.alias,
            model=self.model,
            provider=self.config.provider,
            requests=self._requests,
            succeeded=self._succeeded,
            failed=sum(self._errors.values()),
            errors=dict(self._errors),
            transport_retries=dict(self._retries),
            # With throttles, every 429 is counted there (most are retried, never raised).
            rate_limited=sum(t.statistics().rate_limited for t in self.throttles.values())
            if self.throttles
            else self._errors.get("RateLimited", 0),
            throttle={
                domain: {
                    "limit": stats.limit,
                    "cap": stats.cap,
                    "ceiling": stats.ceiling,
                    "cuts": stats.cuts,
                    "increases": stats.increases,
                    "probes": stats.probes,
                    "probes_refused": stats.probes_refused,
                    "holds": stats.holds,
                    "rate_limited": stats.rate_limited,
                    "history": _downsample(t.controller.history()),
                }
                for domain, t in self.throttles.items()
                if (stats := t.statistics()).admitted
            },
            input_tokens=self._usage.input_tokens,
            output_tokens=self._usage.output_tokens,
            mean_latency=sum(latencies) / len(latencies) if latencies else None,
            p95_latency=p95,
        )
