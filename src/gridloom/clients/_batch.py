"""Batch mode: a model's requests collected into provider batch jobs (see docs/batch.md).

Each ``chat()``/``embed()`` call of a model with ``batch: true`` queues its request and waits.
A queue is flushed into one job when ``batch_max_size`` requests wait, or ``batch_wait``
seconds after the first of them arrived; the job is submitted, polled with jittered,
capped backoff, and once it has ended each waiting caller gets its own answer, decoded by the
adapter exactly as an online answer is (``served_by="batch"``), or its own error:

=========================================  ===================================================
the item                                   the caller gets
=========================================  ===================================================
answered 200                               the response (or ``MalformedResponse``)
answered with an error status              the error that status maps to online (a 500 is
                                           ``ProviderUnavailable``: retried by the engine)
expired (or its job did)                   ``ProviderTimeout`` (retryable)
cancelled (or its job was)                 ``ProviderUnavailable`` (retryable)
missing from the results                   ``MalformedResponse`` (retryable)
written twice                              the first; the repeat is logged and ignored
its job refused (OpenAI ``failed``)        ``BadRequest``
=========================================  ===================================================

A retried request is a new item of a later job. With a :class:`BatchJournal`, every job is
recorded when it is submitted; a resumed run that makes a request a recorded job holds
re-attaches to that job (each recorded item serves one request) instead of submitting it
again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import httpx
import trio

from .._attrs import define, frozen
from ..config import ModelConfig
from ..errors import (
    BadRequest,
    MalformedResponse,
    ModelError,
    ProviderTimeout,
    ProviderUnavailable,
    StorageError,
)
from ._anthropic import AnthropicClient
from ._batch_journal import BatchJournal, JobRecord, request_key
from ._batch_wire import BatchWire, ItemOutcome, JobState
from ._errors import error_from_response
from ._openai import OpenAIClient
from ._types import ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse

__all__ = ["BatchClientStatistics", "BatchPolling", "BatchingClient"]

logger = logging.getLogger("gridloom.batch")

_CHAT = "/v1/chat/completions"
_MESSAGES = "/v1/messages"
_EMBEDDINGS = "/v1/embeddings"
#: Failed polls in a row after which a warning is logged. (Polls that fail retryably go on
#: until the job's ``max_wait``: giving its callers an error would make their retries new
#: jobs, paying twice for requests the provider is still answering.)
MAX_POLL_FAILURES = 5

_Answer = ChatResponse | EmbeddingResponse


@frozen(kw_only=True)
class BatchPolling:
    """How often a job is polled: ``first`` seconds after submission, then each wait
    ``growth`` times the last, at most ``longest``, each jittered by ± ``jitter``; and for how
    long: a job not ended ``max_wait`` seconds after it was submitted (or re-attached to) is
    given up — the client asks the provider to cancel it, and its callers get a retryable
    ``ProviderTimeout``. The default is the providers' 24-hour completion window and two
    hours' grace: a job still ``in_progress`` after that (or in a status the client does not
    know) is not coming back."""

    first: float = 1.0
    growth: float = 1.5
    longest: float = 60.0
    jitter: float = 0.1
    max_wait: float = 26 * 3600.0


@frozen(kw_only=True)
class BatchClientStatistics:
    """A snapshot of one batching client's work.

    Attributes:
        jobs_submitted: jobs this run created (and paid for).
        jobs_resumed: recorded jobs this run re-attached to.
        items_submitted: requests in the jobs it created.
        items_resumed: requests answered from recorded jobs.
        duplicates: repeated result lines ignored.
        missing: requests whose job ended without a line for them.
    """

    jobs_submitted: int
    jobs_resumed: int
    items_submitted: int
    items_resumed: int
    duplicates: int
    missing: int


@define(eq=False)
class _Pending:
    """One caller waiting for its answer."""

    endpoint: str
    body: dict[str, Any]
    key: str
    decode: Callable[[Any], _Answer]
    done: trio.Event = attrs.field(factory=trio.Event)
    answer: _Answer | None = None
    error: ModelError | None = None

    def settle(self, answer: _Answer | None = None, error: ModelError | None = None) -> None:
        if not self.done.is_set():
            self.answer, self.error = answer, error
            self.done.set()


@define(eq=False)
class _Job:
    """A job being followed: who waits for which item, and its results once read."""

    id: str
    waiting: dict[str, _Pending] = attrs.field(factory=dict)
    outcomes: dict[str, ItemOutcome] | None = None
    failure: ModelError | None = None
    #: Recorded by an earlier run (a failure to collect it is then retryable).
    resumed: bool = False


class _Queue:
    """Requests of one endpoint waiting to be flushed into a job."""

    def __init__(self) -> None:
        self.items: list[_Pending] = []
        self.first = 0.0
        self.arrived = trio.Event()


class BatchingClient:
    """A :class:`~gridloom.clients.ModelClient` that sends a model's requests as batch jobs.

    Use it within :meth:`running`, which runs the flushing and polling tasks.

    Args:
        adapter: the provider's adapter (OpenAI-compatible or Anthropic).
        config: the model alias; its ``batch_max_size`` and ``batch_wait`` apply.
        journal: where jobs are recorded for a resumed run (none: not recorded).
        polling: the poll schedule.
    """

    #: Calls wait for a job, not for a connection: the handle holds no concurrency slot.
    batched = True

    def __init__(
        self,
        adapter: OpenAIClient | AnthropicClient,
        config: ModelConfig,
        *,
        journal: BatchJournal | None = None,
        polling: BatchPolling | None = None,
    ):
        self._adapter = adapter
        self._config = config
        self._wire = BatchWire(adapter, config.model)
        self._journal = journal
        self._polling = polling or BatchPolling()
        self._queues: dict[str, _Queue] = {}
        self._jobs: dict[str, _Job] = {}
        self._recorded: dict[str, list[tuple[str, str]]] = {}
        self._nursery: trio.Nursery | None = None
        self._counts = dict.fromkeys(
            ("jobs_submitted", "jobs_resumed", "items_submitted", "items_resumed"), 0
        )
        self._counts.update(duplicates=0, missing=0)

    def __repr__(self) -> str:
        return f"BatchingClient({self._config.alias!r}, {self._wire.kind})"

    def statistics(self) -> BatchClientStatistics:
        """A snapshot of the jobs and items so far."""
        return BatchClientStatistics(**self._counts)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BatchingClient]:
        """Run the client's tasks (and read the journal) for the duration of the block."""
        if self._journal is not None:
            for job in await self._journal.load():
                for custom_id, key in job.items.items():
                    self._recorded.setdefault(key, []).append((job.id, custom_id))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                yield self
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    # ----------------------------------------------------------------- callers

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One chat completion, answered through a batch job."""
        adapter = self._adapter
        if isinstance(adapter, AnthropicClient):
            body, forced = adapter.prepare_chat(request)
            answer = await self._ask(
                _MESSAGES, body, lambda data: adapter.decode_chat(data, request, forced)
            )
        else:
            openai = adapter
            body = openai.prepare_chat(request)
            answer = await self._ask(_CHAT, body, lambda data: openai.decode_chat(data, request))
        assert isinstance(answer, ChatResponse)
        return attrs.evolve(answer, served_by="batch")

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Embeddings, answered through a batch job (Anthropic has none: ``BadRequest``)."""
        adapter = self._adapter
        if isinstance(adapter, AnthropicClient):
            return await adapter.embed(request)
        body = adapter.embed_body(request)
        answer = await self._ask(
            _EMBEDDINGS, body, lambda data: adapter.decode_embedding(data, request)
        )
        assert isinstance(answer, EmbeddingResponse)
        return attrs.evolve(answer, served_by="batch")

    async def _ask(
        self, endpoint: str, body: dict[str, Any], decode: Callable[[Any], _Answer]
    ) -> _Answer:
        nursery = self._nursery
        if nursery is None:
            raise RuntimeError("BatchingClient used outside its running() block")
        pending = _Pending(endpoint, body, request_key(endpoint, body), decode)
        recorded = self._recorded.get(pending.key)
        queue: _Queue | None = None
        attached: tuple[str, str] | None = None
        if recorded:
            attached = recorded.pop(0)
            self._attach(nursery, *attached, pending)
        else:
            queue = self._queues.get(endpoint)
            if queue is None:
                queue = self._queues[endpoint] = _Queue()
                nursery.start_soon(self._flush_loop, endpoint, queue)
            if not queue.items:
                queue.first = trio.current_time()
            queue.items.append(pending)
            queue.arrived.set()
        try:
            await pending.done.wait()
        except BaseException:
            self._withdraw(pending, queue, attached)
            raise
        if pending.error is not None:
            raise pending.error
        assert pending.answer is not None
        return pending.answer

    def _withdraw(
        self, pending: _Pending, queue: _Queue | None, attached: tuple[str, str] | None
    ) -> None:
        """The caller of ``pending`` gave up (cancelled): a request not submitted yet leaves
        its queue (nobody pays for it); a recorded item it waited for goes back on offer for
        the next identical request."""
        if queue is not None and pending in queue.items:
            queue.items.remove(pending)
        if attached is not None and not pending.done.is_set():
            job = self._jobs.get(attached[0])
            if job is not None and job.waiting.get(attached[1]) is pending:
                del job.waiting[attached[1]]
            self._recorded.setdefault(pending.key, []).insert(0, attached)
            self._counts["items_resumed"] -= 1

    def _attach(self, nursery: trio.Nursery, job_id: str, custom_id: str, p: _Pending) -> None:
        """Wait for ``custom_id`` of the recorded job ``job_id`` (following it if need be)."""
        self._counts["items_resumed"] += 1
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = _Job(job_id, resumed=True)
            self._counts["jobs_resumed"] += 1
            nursery.start_soon(self._follow, job, 0.0)
        if job.failure is not None:
            p.settle(error=job.failure)
        elif job.outcomes is not None:
            self._deliver(job, custom_id, p)
        else:
            job.waiting[custom_id] = p

    # ----------------------------------------------------------------- jobs

    async def _flush_loop(self, endpoint: str, queue: _Queue) -> None:
        size, wait = self._config.batch_max_size, self._config.batch_wait
        while True:
            while not queue.items:
                queue.arrived = trio.Event()
                await queue.arrived.wait()
            with trio.move_on_at(queue.first + wait):
                while len(queue.items) < size:
                    queue.arrived = trio.Event()
                    await queue.arrived.wait()
            if not queue.items:  # every caller gave up meanwhile
                continue
            items, queue.items = queue.items[:size], queue.items[size:]
            queue.first = trio.current_time()
            assert self._nursery is not None
            self._nursery.start_soon(self._submit, endpoint, items)

    async def _submit(self, endpoint: str, items: list[_Pending]) -> None:
        waiting = {f"g{index}": pending for index, pending in enumerate(items)}
        try:
            job_id = await self._wire.submit(endpoint, [(c, p.body) for c, p in waiting.items()])
        except ModelError as exc:
            for pending in items:
                pending.settle(error=exc)
            return
        except ValueError as exc:  # a body that is no JSON (NaN): fail the cells, not the client
            error = BadRequest(
                f"a batch job could not be written: {exc}",
                provider=self._adapter.provider.name,
                model=self._config.model,
            )
            for pending in items:
                pending.settle(error=error)
            return
        self._counts["jobs_submitted"] += 1
        self._counts["items_submitted"] += len(items)
        job = self._jobs[job_id] = _Job(job_id, waiting=waiting)
        if self._journal is not None:
            record = JobRecord(
                id=job_id, endpoint=endpoint, items={c: p.key for c, p in waiting.items()}
            )
            # Shielded: a job the provider holds must be on record, or a resume pays twice.
            with trio.CancelScope(shield=True):
                try:
                    await self._journal.add(record)
                except StorageError as exc:
                    logger.warning(
                        "batch job %s of %r is not on record (a resumed run would submit its"
                        " requests again): %s",
                        job_id,
                        self._config.alias,
                        exc,
                    )
        await self._follow(job, self._polling.first)

    async def _follow(self, job: _Job, first: float) -> None:
        """Poll ``job`` until it ends, read its results and settle its callers."""
        polling = self._polling
        jitter = random.Random(job.id)
        delay, failures = first, 0
        deadline = trio.current_time() + polling.max_wait
        state: JobState | None = None
        while state is None or not state.ended:
            wait = delay * (1 + polling.jitter * (2 * jitter.random() - 1))
            if trio.current_time() + wait > deadline:
                await trio.sleep_until(deadline)
                await self._give_up(job, state)
                return
            await trio.sleep(wait)
            delay = min(max(delay, polling.first) * polling.growth, polling.longest)
            try:
                state = await self._wire.poll(job.id)
                failures = 0
            except ModelError as exc:
                failures += 1
                if not exc.retryable:
                    self._fail(job, exc)
                    return
                if failures == MAX_POLL_FAILURES:
                    logger.warning(
                        "batch job %s of %r: %d polls in a row failed (%s); still polling",
                        job.id,
                        self._config.alias,
                        failures,
                        exc,
                    )
        try:
            outcomes = await self._wire.results(job.id, state)
        except ModelError as exc:
            self._fail(job, exc)
            return
        job.outcomes = {}
        for outcome in outcomes:
            if outcome.custom_id in job.outcomes:
                self._counts["duplicates"] += 1
                logger.warning(
                    "batch job %s of %r repeats %r: the first line is kept",
                    job.id,
                    self._config.alias,
                    outcome.custom_id,
                )
                continue
            job.outcomes[outcome.custom_id] = outcome
        waiting, job.waiting = job.waiting, {}
        for custom_id, pending in waiting.items():
            self._deliver(job, custom_id, pending)
        if not job.resumed:
            # Every item of a job of this run had its caller: nothing more to keep. (A
            # recorded job's results stay for the requests that re-attach later.)
            del self._jobs[job.id]

    async def _give_up(self, job: _Job, state: JobState | None) -> None:
        """``job`` did not end within ``max_wait``: ask the provider to cancel it (best
        effort), and fail its callers with a retryable timeout."""
        with contextlib.suppress(ModelError):
            await self._wire.cancel(job.id)
        status = "unknown" if state is None else state.status[:64]
        message = (
            f"batch job {job.id} did not end within {self._polling.max_wait:g} s (last status"
            f" {status!r}); cancelled"
        )
        error = ProviderTimeout(
            message, provider=self._adapter.provider.name, model=self._config.model
        )
        self._fail(job, error)

    def _fail(self, job: _Job, error: ModelError) -> None:
        if job.resumed and not error.retryable:
            # A recorded job the provider no longer serves: its requests go in new jobs.
            error = ProviderUnavailable(
                f"recorded batch job {job.id} cannot be collected ({error})",
                provider=self._adapter.provider.name,
                model=self._config.model,
            )
        job.failure = error
        waiting, job.waiting = job.waiting, {}
        for pending in waiting.values():
            pending.settle(error=error)
        if not job.resumed:
            self._jobs.pop(job.id, None)

    def _deliver(self, job: _Job, custom_id: str, pending: _Pending) -> None:
        """Settle ``pending`` with its item's outcome in the ended ``job``."""
        assert job.outcomes is not None
        outcome = job.outcomes.get(custom_id)
        where: dict[str, Any] = {
            "provider": self._adapter.provider.name,
            "model": self._config.model,
        }
        if outcome is None:
            self._counts["missing"] += 1
            message = f"batch job {job.id} ended without a result for this request"
            pending.settle(error=MalformedResponse(message, **where))
        elif outcome.status == 200:
            try:
                pending.settle(answer=pending.decode(outcome.body))
            except ModelError as exc:
                pending.settle(error=exc)
        elif outcome.status is not None:
            content = json.dumps(outcome.body, default=str).encode()
            response = httpx.Response(outcome.status, content=content)
            error = error_from_response(response, secrets=self._adapter._secrets, **where)
            pending.settle(error=error)
        elif outcome.reason == "expired":
            message = f"the request expired in batch job {job.id} before it was answered"
            pending.settle(error=ProviderTimeout(message, **where))
        else:
            reason = outcome.reason or "not answered"
            message = f"the request was {reason} in batch job {job.id}"
            pending.settle(error=ProviderUnavailable(message, **where))
