"""A model alias as generators see it: a client, a concurrency limit, and usage accounting."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

import attrs
import trio

from .._attrs import frozen
from ..config import ModelConfig
from ..errors import EmptyAnswer, ModelError
from ..throttle import AdaptiveLimiter, AIMDController
from ._cache_key import (
    CacheScope,
    CellKey,
    decode_chat,
    decode_embedding,
    encode_response,
    is_deterministic,
    request_key,
)
from ._span import CURRENT_CALLER, CURRENT_SPAN
from ._types import (
    CUT_FINISH_REASONS,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelClient,
    Usage,
)

if TYPE_CHECKING:
    from ._cache import ResponseCache  # sqlite3 loads only with a cache

__all__ = ["CacheSetting", "HealthRecorder", "ModelHandle", "ModelUsage"]

#: A column's or model's ``cache`` setting: ``True``, ``False``, ``"read_only"`` or ``None``.
CacheSetting = bool | Literal["read_only"] | None

R = TypeVar("R", ChatResponse, EmbeddingResponse)

#: Latencies kept per alias for percentiles (the most recent ones).
_LATENCY_SAMPLE = 10_000
#: Points of throttle history reported per domain (for plots).
_HISTORY_POINTS = 1000


@frozen(kw_only=True)
class ModelUsage:
    """A snapshot of one alias's traffic (what ``RunResult`` reports per model).

    ``requests``, ``input_tokens`` and ``output_tokens`` count what the provider served:
    ``online_requests`` plus ``batch_requests`` (requests answered by a batch job, whose
    tokens are also in ``batch_input_tokens`` and ``batch_output_tokens``). Answers served
    from the response cache are no requests: ``cached_requests`` counts them, and
    ``cached_input_tokens`` / ``cached_output_tokens`` the tokens they saved. With the model's
    ``price``, ``estimated_cost`` is what the provider's tokens cost (batch tokens discounted)
    and ``cache_savings`` what the cached ones would have cost online; else both are ``None``.
    """

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
    online_requests: int = 0
    batch_requests: int = 0
    batch_input_tokens: int = 0
    batch_output_tokens: int = 0
    cached_requests: int = 0
    cached_input_tokens: int = 0
    cached_output_tokens: int = 0
    estimated_cost: float | None = None
    cache_savings: float | None = None

    def as_dict(self) -> dict[str, object]:
        """The fields as plain data, every container a copy (what ``attrs.asdict`` gives; that
        visits each of the throttle history's points as a possible attrs instance, some
        milliseconds at a run's end)."""
        return {
            field.name: _copied(getattr(self, field.name)) for field in attrs.fields(ModelUsage)
        }


def _copied(value: object) -> object:
    """``value`` (plain data: a usage holds numbers, text, dicts and lists) with its dicts and
    lists copied, all the way down."""
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value


def _plotted(controller: AIMDController) -> list[list[float]]:
    """At most :data:`_HISTORY_POINTS` of ``controller``'s (time, limit, in flight) entries,
    evenly spread, the last one kept, times rounded to the microsecond."""
    return [
        [round(t, 6), limit, flight]
        for t, limit, flight in controller.history_sample(_HISTORY_POINTS)
    ]


def _whole(answer: ChatResponse | EmbeddingResponse) -> bool:
    """Whether ``answer`` was not cut at ``max_tokens``."""
    return not isinstance(answer, ChatResponse) or answer.finish_reason not in CUT_FINISH_REASONS


def _fits(
    request: ChatRequest | EmbeddingRequest, answer: ChatResponse | EmbeddingResponse
) -> bool:
    """Whether a cached ``answer`` can answer ``request``: one vector per input (a record
    in the file may have been written by anyone)."""
    if isinstance(request, EmbeddingRequest):
        return isinstance(answer, EmbeddingResponse) and len(answer.vectors) == len(request.inputs)
    return isinstance(answer, ChatResponse)


class HealthRecorder(Protocol):
    """Told when each request is sent, and its outcome (the run's ``HealthMonitor`` is
    one): ``sent`` gives a ticket in send order, then ``record`` the outcome, or ``forget``
    when the request ended with none (cancelled); ``refused`` hears of each capacity refusal
    the throttle sends again (no outcome: the request goes on)."""

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

    def refused(self, alias: str, error: BaseException) -> None: ...


class _CallRecord:
    """What the layers beneath one call report back to its handle: transport retries (counted
    per error class in the handle's counter), capacity refusals (told the health monitor) and
    the model's latency without queueing."""

    __slots__ = ("alias", "health", "latency", "retries")

    def __init__(self, retries: Counter[str], alias: str, health: HealthRecorder | None):
        self.retries = retries
        self.alias = alias
        self.health = health
        self.latency: float | None = None

    def refused(self, error: BaseException) -> None:
        if self.health is not None:
            self.health.refused(self.alias, error)

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
        cache: the response cache, if answers may be looked up and stored (see
            docs/cache.md); ``None``: none is (``--no-cache``).
        scope: what the alias's answers depend on besides the request (its provider), for
            cache keys; needed with ``cache``.

    A client with a truthy ``batched`` attribute (a batching client, whose answers may take
    hours) is called without holding a slot of ``limiter``.
    """

    def __init__(
        self,
        config: ModelConfig,
        client: ModelClient,
        limiter: trio.CapacityLimiter,
        *,
        throttles: Mapping[str, AdaptiveLimiter] | None = None,
        health: HealthRecorder | None = None,
        cache: ResponseCache | None = None,
        scope: CacheScope | None = None,
    ):
        if cache is not None and scope is None:
            raise ValueError("a cache needs the scope of the alias's requests")
        self.config = config
        self.cache = cache
        self.scope = scope
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
        self._batch_requests = 0
        self._batch_usage = Usage()
        self._cached = 0
        self._cached_usage = Usage()

    @property
    def alias(self) -> str:
        return self.config.alias

    @property
    def model(self) -> str:
        """The provider's model name."""
        return self.config.model

    @property
    def requests(self) -> int:
        """Requests made so far (cheap to read, for progress; :meth:`usage` has them all)."""
        return self._requests

    @property
    def rate_limited(self) -> int:
        """429s so far (cheap to read, for progress). With throttles, every 429 is counted
        there (most are retried, never raised)."""
        if self.throttles:
            return sum(t.statistics().rate_limited for t in self.throttles.values())
        return self._errors.get("RateLimited", 0)

    @property
    def cached_requests(self) -> int:
        """Answers served from the response cache so far (cheap to read, for progress)."""
        return self._cached

    def __repr__(self) -> str:
        return f"<ModelHandle {self.alias!r} → {self.config.provider}/{self.model}>"

    async def chat(
        self,
        request: ChatRequest,
        *,
        cache: CacheSetting = None,
        cell: CellKey | None = None,
        whole_only: bool = False,
    ) -> ChatResponse:
        """One chat completion, counted; from the response cache when the alias's (or the
        caller's ``cache``) setting allows and it holds the answer. ``cell``: the cell asking
        (run seed, row id, column; a generator's ``ctx.cell_key``), so that a sampled request
        cached by ``cache: true`` is keyed by its cell and equal prompts of other rows do not
        share its answer (:mod:`gridloom.clients._cache_key`). ``whole_only``: an answer cut
        at ``max_tokens`` is neither served from the cache nor stored in it (the caller asks
        again for a whole one: a column's ``on_truncated: retry``)."""
        return await self._cached_call(
            request,
            cache,
            decode_chat,
            lambda: self.client.chat(request),
            cell,
            whole=_whole if whole_only else None,
        )

    async def embed(
        self, request: EmbeddingRequest, *, cache: CacheSetting = None
    ) -> EmbeddingResponse:
        """Embeddings, counted; from the response cache as for :meth:`chat`."""
        return await self._cached_call(
            request, cache, decode_embedding, lambda: self.client.embed(request)
        )

    def cache_mode(
        self, request: ChatRequest | EmbeddingRequest, setting: CacheSetting = None
    ) -> Literal["on", "read_only", "off"]:
        """How ``request`` uses the cache: ``setting`` (a column's) if given, else the
        model's ``cache``; ``None`` for both means on for a deterministic request, off for
        another. Always off without a cache."""
        if self.cache is None or self.scope is None:
            return "off"
        chosen = setting if setting is not None else self.config.cache
        if chosen is None:
            chosen = is_deterministic(self.scope, request)
        if chosen == "read_only":
            return "read_only"
        return "on" if chosen else "off"

    async def _cached_call(
        self,
        request: ChatRequest | EmbeddingRequest,
        setting: CacheSetting,
        decode: Callable[[bytes], R],
        call: Callable[[], Awaitable[R]],
        cell: CellKey | None = None,
        *,
        whole: Callable[[R], bool] | None = None,
    ) -> R:
        mode = self.cache_mode(request, setting)
        if mode == "off" or self.cache is None or self.scope is None:
            return await self._counted(call)
        cache = self.cache
        if cell is not None and is_deterministic(self.scope, request):
            cell = None  # the same question gets the same answer in every row
        key = request_key(self.scope, request, cell)
        record = await cache.get(key, touch=mode == "on")
        if record is not None:
            try:
                hit = decode(record)
            except ValueError:
                pass  # not a whole record: a miss (a store below replaces it)
            else:
                if _fits(request, hit) and (whole is None or whole(hit)):
                    self._served_from_cache(hit)
                    return hit
        response = await self._counted(call)
        if mode == "on" and (whole is None or whole(response)):
            await cache.put(key, encode_response(response))
        return response

    def _served_from_cache(self, response: ChatResponse | EmbeddingResponse) -> None:
        """Count an answer the cache served (no request, no slot, no health outcome)."""
        self._cached += 1
        self._cached_usage = self._cached_usage + response.usage
        span = CURRENT_SPAN.get()
        if span is not None:
            span.using_model(self.alias)
            span.served_from_cache()

    async def _counted(self, call: Callable[[], Awaitable[R]]) -> R:
        """Run ``call`` within the cap, counting the request, its error or its usage, and
        telling the health monitor the outcome. A batching client (``client.batched``) is
        called without a slot: its requests wait in batch jobs, not on the provider."""
        span = CURRENT_SPAN.get()
        if span is not None:
            span.using_model(self.alias)
        record = _CallRecord(self._retries, self.alias, self.health)
        caller = CURRENT_CALLER.set(record)
        try:
            if getattr(self.client, "batched", False):
                return await self._call(call, record)
            limiter = self.limiter
            # A free slot is taken without a checkpoint: the request itself has plenty.
            try:
                limiter.acquire_nowait()
            except trio.WouldBlock:
                await limiter.acquire()
            try:
                return await self._call(call, record)
            finally:
                limiter.release()
        finally:
            CURRENT_CALLER.reset(caller)

    async def _call(self, call: Callable[[], Awaitable[R]], record: _CallRecord) -> R:
        # A cell can reach here between checkpoints after its run was stopped (a refused key
        # cancels the run while other cells are runnable; a free slot is taken without a
        # checkpoint), and the wire transport writes a request before its first checkpoint:
        # a cancelled cell must not send one. No yield when not cancelled.
        await trio.lowlevel.checkpoint_if_cancelled()
        started = trio.current_time()
        self._requests += 1
        health = self.health
        ticket = None if health is None else health.sent(self.alias)
        try:
            response = await call()
        except ModelError as exc:
            self._errors[type(exc).__name__] += 1
            if isinstance(exc, EmptyAnswer):  # served and billed, though it holds no answer
                self._usage = self._usage + Usage(
                    input_tokens=exc.input_tokens, output_tokens=exc.output_tokens
                )
            if health is not None:
                health.record(self.alias, False, exc, ticket=ticket)
            raise
        except BaseException:  # cancelled, or not the model's doing: no outcome
            if health is not None and ticket is not None:
                health.forget(self.alias, ticket)
            raise
        self._succeeded += 1
        self._usage = self._usage + response.usage
        if response.served_by == "batch":
            self._batch_requests += 1
            self._batch_usage = self._batch_usage + response.usage
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
            rate_limited=self.rate_limited,
            throttle={
                domain: {
                    "limit": stats.limit,
                    "cap": stats.cap,
                    "ceiling": stats.ceiling,
                    "cuts": stats.cuts,
                    "increases": stats.increases,
                    "probes": stats.probes,
                    "probes_refused": stats.probes_refused,
                    "outages": stats.outages,
                    "holds": stats.holds,
                    "rate_limited": stats.rate_limited,
                    "history": _plotted(t.controller),
                }
                for domain, t in self.throttles.items()
                if (stats := t.statistics()).admitted
            },
            input_tokens=self._usage.input_tokens,
            output_tokens=self._usage.output_tokens,
            mean_latency=sum(latencies) / len(latencies) if latencies else None,
            p95_latency=p95,
            online_requests=self._requests - self._batch_requests,
            batch_requests=self._batch_requests,
            batch_input_tokens=self._batch_usage.input_tokens,
            batch_output_tokens=self._batch_usage.output_tokens,
            cached_requests=self._cached,
            cached_input_tokens=self._cached_usage.input_tokens,
            cached_output_tokens=self._cached_usage.output_tokens,
            **self._costs(),
        )

    def _costs(self) -> dict[str, float | None]:
        """The estimated cost of the provider's tokens and the savings of the cached ones,
        when the model has a price."""
        price = self.config.price
        if price is None:
            return {"estimated_cost": None, "cache_savings": None}
        batch = self._batch_usage
        online_in = self._usage.input_tokens - batch.input_tokens
        online_out = self._usage.output_tokens - batch.output_tokens
        cost = price.cost(online_in, online_out) + price.cost(
            batch.input_tokens, batch.output_tokens, batch=True
        )
        cached = self._cached_usage
        return {
            "estimated_cost": cost,
            "cache_savings": price.cost(cached.input_tokens, cached.output_tokens),
        }
