"""The simulated endpoint as a plain ASGI 3 application."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import trio

from ..config import SimulationConfig
from ._asgi import (
    WATCH_DISCONNECT,
    Api,
    DroppedConnection,
    Receive,
    Scope,
    Send,
    dump_json,
    error_body,
    format_retry_after,
    is_batch_route,
    quota_headers,
    read_body,
    send_bytes,
    send_json,
    wait_for_disconnect,
)
from ._behaviour import Fault, ModelBehaviour
from ._flight import Flight, sampling_of
from ._formats import anthropic_message, chat_completion, embeddings, model_list, model_object
from ._recorder import Recorder, SimulationStatistics, TimelineEntry
from ._replies import Reply, build_reply, embedding_vector, invalid_reply
from ._requests import (
    MAX_MODEL_NAME,
    EmbeddingsRequest,
    GenerationRequest,
    RequestError,
    parse_anthropic_messages,
    parse_chat_completions,
    parse_embeddings,
    parse_json_body,
)
from ._schema_values import Budget
from ._streams import Piece, anthropic_events, openai_events, send_stream
from ._thinking import fit_to_max_tokens

if TYPE_CHECKING:
    from ._batches import BatchService

__all__ = ["DEFAULT_MODEL", "MAX_EMBEDDING_VALUES", "MAX_MODELS", "SimulatedApp"]

#: The model ``GET /v1/models`` lists besides the configured ones (every name not configured
#: behaves like it: as ``config.default``).
DEFAULT_MODEL = "gridloom-simulated"
#: Longest model id ``GET /v1/models/{id}`` answers for.
MAX_MODEL_ID = 256
#: Most distinct model names one app keeps state and statistics for; a request naming one
#: more gets 400.
MAX_MODELS = 1_024
#: Most numbers in one embeddings answer (inputs times dimensions), e.g. 32 inputs of 8,192
#: dimensions or 2,048 of 128; beyond, 400.
MAX_EMBEDDING_VALUES = 262_144
#: Embedding numbers computed between two checkpoints (the event loop serves others meanwhile).
_EMBEDDING_SLICE = 8_192
#: Timeline entries encoded and sent at a time (the whole timeline is up to 100,000).
_TIMELINE_SLICE = 2_000

_CHAT = "/v1/chat/completions"
_MESSAGES = "/v1/messages"
_EMBEDDINGS = "/v1/embeddings"
_MODELS = "/v1/models"
_ROUTES: dict[str, str] = {
    _CHAT: "POST",
    _MESSAGES: "POST",
    _EMBEDDINGS: "POST",
    _MODELS: "GET",
    "/stats": "GET",
    "/timeline": "GET",
}
_SERVED = (
    "POST /v1/chat/completions, POST /v1/embeddings, POST /v1/messages, GET /v1/models,"
    " GET /v1/models/{model}, GET /stats, GET /timeline, the batch APIs (/v1/files,"
    " /v1/batches, /v1/messages/batches)"
)
#: Endpoints of the two APIs that the simulated endpoint knows and refuses (400, not 404).
_UNSUPPORTED = (
    "/v1/responses",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images",
    "/v1/audio",
    "/v1/uploads",
    "/v1/fine_tuning",
    "/v1/assistants",
    "/v1/threads",
    "/v1/vector_stores",
    "/v1/realtime",
    "/v1/messages/count_tokens",
)


def _unsupported(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in _UNSUPPORTED)


class SimulatedApp:
    """An ASGI app that speaks OpenAI chat completions and embeddings and Anthropic Messages,
    with latency, rate limits and faults configured per model name.

    Routes: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``POST /v1/messages``,
    ``GET /v1/models`` (the configured models and :data:`DEFAULT_MODEL`),
    ``GET /v1/models/{model}`` (any name: every name is served), ``GET /stats`` (counters per
    model) and ``GET /timeline`` (one entry per finished request, with the sampling parameters
    it was sent with). Other endpoints of the two
    APIs (``/v1/responses``, ``/v1/completions``, ...) and parameters the simulation does not
    model (``logprobs``, ``n`` above 16, ...) get 400; unknown paths 404 (listing the routes),
    wrong methods 405, bad bodies 400, all as JSON in the API's error shape.

    Chat completions and messages stream with ``stream: true`` (see :mod:`._streams`), answer
    ``n`` choices (at most 16), and call tools (see :mod:`._tools`).

    Every request is bounded, so that no client can make it work long or answer big: the
    limits of :mod:`._requests` (messages, text, tokens, embeddings), of
    :mod:`._schema_checks` and :mod:`._schema_values` (schemas, and the work of building a
    value for one), :data:`MAX_MODELS` model names and :data:`MAX_EMBEDDING_VALUES` numbers
    per embeddings answer; beyond any of them, 400. A large embeddings answer and
    ``GET /timeline`` are computed in slices, with checkpoints between them.

    It waits with ``trio.sleep`` (a chat answer is drafted first: its latency counts from the
    request's arrival), so mounted in-process (``httpx.ASGITransport``) under trio's
    ``autojump_clock`` it runs in virtual time. Answers depend only on the request; latencies
    and faults come from a random stream per model seeded by ``config.seed``. An injected
    dropped connection raises :class:`~gridloom.errors.ConnectionFailed` out of the app
    (mounted in-process, the caller of the request sees it; :func:`serve_simulated` turns it
    into a closed socket).

    A model with ``rate_limit_headers`` reports its buckets on every 200 answer, as of the
    moment the answer is sent: OpenAI's ``x-ratelimit-*`` headers (resets as durations) on
    the OpenAI paths, Anthropic's ``anthropic-ratelimit-*`` on ``/v1/messages``. Anthropic's
    resets are timestamps, ``wall_clock() + reset``: wall-clock time even when ``clock`` is
    virtual, because that is what a client compares them with.

    Args:
        config: the behaviour of each model.
        clock: the time source for the timeline and the rate-limit buckets.
        wall_clock: seconds since the epoch, for Anthropic's reset timestamps.
    """

    def __init__(
        self,
        config: SimulationConfig,
        *,
        clock: Callable[[], float] = trio.current_time,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self._clock = clock
        self._wall_clock = wall_clock
        self._recorder = Recorder()
        self._behaviours: dict[str, ModelBehaviour] = {}
        self._names: set[str] = set()
        self._epoch: float | None = None

    @cached_property
    def batches(self) -> BatchService:
        """The batch APIs (OpenAI files and batches, Anthropic message batches), made (and
        their modules imported) when first used: most runs send no batch."""
        from ._batches import BatchService

        config = self.config
        return BatchService(
            config.batch,
            self.answer_item,
            seed=config.seed,
            clock=self._clock,
            wall_clock=self._wall_clock,
        )

    def statistics(self) -> SimulationStatistics:
        """A snapshot of the counters per model (what ``GET /stats`` returns)."""
        return self._recorder.statistics()

    def timeline(self) -> list[TimelineEntry]:
        """The finished requests, oldest first (the last 100,000 are kept)."""
        return self._recorder.timeline()

    def _behaviour(self, model: str) -> ModelBehaviour:
        behaviour = self._behaviours.get(model)
        if behaviour is None:
            if self._epoch is None:
                self._epoch = self._clock()
            behaviour = ModelBehaviour(
                model,
                self.config.for_model(model),
                self.config.seed,
                self._clock,
                epoch=self._epoch,
            )
            self._behaviours[model] = behaviour
        return behaviour

    # ----------------------------------------------------------------- ASGI entry point

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope (``http`` or ``lifespan``)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        api: Api = "anthropic" if path.startswith(_MESSAGES) else "openai"
        if is_batch_route(path):
            await self.batches.handle(scope, api, receive, send)
            return
        allowed = "GET" if path.startswith(_MODELS + "/") else _ROUTES.get(path)
        if allowed is None:
            if _unsupported(path):
                message = f"{path} is not supported by gridloom's simulated endpoint"
                await send_json(send, 400, error_body(api, 400, f"{message}; it serves {_SERVED}"))
                return
            message = f"unknown path {path!r}; gridloom's simulated endpoint serves {_SERVED}"
            await send_json(send, 404, error_body(api, 404, message))
            return
        if method != allowed:
            message = f"method {method} not allowed for {path} (use {allowed})"
            headers = [(b"allow", allowed.encode())]
            await send_json(send, 405, error_body(api, 405, message), headers=headers)
            return
        if method == "GET":
            if path.startswith(_MODELS + "/"):
                name = urllib.parse.unquote(path[len(_MODELS) + 1 :])
                if not name or len(name) > MAX_MODEL_ID:
                    message = f"no model {name[:MAX_MODEL_ID]!r}"
                    await send_json(send, 404, error_body(api, 404, message, param="model"))
                    return
                await send_json(send, 200, model_object(name))
                return
            if path == "/timeline":
                await self._send_timeline(send)
                return
            await send_json(send, 200, self._report(path))
            return
        body = await read_body(receive)
        # A server that cancels the answer when the client goes spares it a watcher task.
        watch = scope.get("extensions", {}).get(WATCH_DISCONNECT)
        await self._handle(path, api, body, receive, send, watch=watch and watch["watch"])

    def answer_item(self, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        """A batch item's answer: what ``POST path`` with body ``payload`` would answer online
        (status and JSON body), with no latency and no transport fault, but the model's invalid
        structured outputs; counted in the statistics like an online request."""
        api: Api = "anthropic" if path == _MESSAGES else "openai"
        start = self._clock()
        model = ""
        try:
            model = self._model_name(payload.get("model"))
            request, replies = self._parse(path, payload)
        except RequestError as exc:
            self._recorder.arrived(model)
            self._finish(model, path, start, 400, "bad_request", admitted=False)
            return 400, error_body(api, 400, exc.message, param=exc.param, code=exc.code)
        self._recorder.arrived(model)
        self._recorder.admitted(model)
        if isinstance(request, EmbeddingsRequest):
            dimensions = request.dimensions or self.config.for_model(model).embedding_dimensions
            value = embeddings(request, dimensions)
            self._finish(
                model, path, start, 200, "ok", admitted=True, input_tokens=request.input_tokens()
            )
            return 200, value
        outcome = "ok"
        structured = any(reply.kind in ("json", "yaml", "xml") for reply in replies)
        if structured and self._behaviour(model).invalid_output(request.digest()):
            budget = Budget()
            replies = tuple(invalid_reply(r, request.digest(), budget=budget) for r in replies)
            outcome = "invalid_output"
        if api == "anthropic":
            value = anthropic_message(request, replies[0])
        else:
            value = chat_completion(request, replies)
        self._finish(
            model,
            path,
            start,
            200,
            outcome,
            admitted=True,
            input_tokens=replies[0].input_tokens,
            output_tokens=sum(reply.output_tokens for reply in replies),
            sampling=sampling_of(request),
        )
        return 200, value

    def _report(self, path: str) -> Any:
        if path == "/stats":
            return self.statistics().to_json()
        return model_list(sorted({*self.config.models, DEFAULT_MODEL}))

    async def _send_timeline(self, send: Send) -> None:
        """``GET /timeline``: a JSON array sent a slice at a time, so that a long timeline
        neither holds the event loop nor sits whole in memory."""
        entries = self.timeline()
        head = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        separator = b"["
        for start in range(0, len(entries), _TIMELINE_SLICE):
            part = [entry.to_json() for entry in entries[start : start + _TIMELINE_SLICE]]
            body = separator + dump_json(part)[1:-1]
            separator = b","
            await send({"type": "http.response.body", "body": body, "more_body": True})
        last = b"]" if entries else b"[]"
        await send({"type": "http.response.body", "body": last, "more_body": False})

    # ----------------------------------------------------------------- model requests

    def _model_name(self, value: Any) -> str:
        """The model a request names, as its statistics are kept ("" for none valid).

        Raises:
            RequestError: it would be one model more than :data:`MAX_MODELS`.
        """
        if not isinstance(value, str) or not value or len(value) > MAX_MODEL_NAME:
            return ""
        if value not in self._names:
            if len(self._names) >= MAX_MODELS:
                raise RequestError(
                    f"the simulated endpoint serves at most {MAX_MODELS} distinct model names",
                    param="model",
                )
            self._names.add(value)
        return value

    def _parse(
        self, path: str, payload: dict[str, Any]
    ) -> tuple[GenerationRequest | EmbeddingsRequest, tuple[Reply, ...]]:
        """The request in ``payload``, and its answers (none for embeddings).

        Raises:
            RequestError: the request is invalid, or beyond a limit.
        """
        if path == _EMBEDDINGS:
            embedding = parse_embeddings(payload)
            settings = self.config.for_model(embedding.model)
            dimensions = embedding.dimensions or settings.embedding_dimensions
            if len(embedding.inputs) * dimensions > MAX_EMBEDDING_VALUES:
                raise RequestError(
                    f"an embeddings answer may hold at most {MAX_EMBEDDING_VALUES} numbers"
                    f" (inputs times dimensions; asked {len(embedding.inputs)} x {dimensions})",
                    param="input",
                )
            return embedding, ()
        parse = parse_anthropic_messages if path == _MESSAGES else parse_chat_completions
        request = parse(payload)
        settings = self.config.for_model(request.model)
        budget = Budget()  # one for all the choices: n is no multiplier of the work
        replies = tuple(
            fit_to_max_tokens(
                build_reply(request, settings, choice=index, budget=budget),
                request.thinking,
                request.max_tokens,
            )
            for index in range(request.n)
        )
        return request, replies

    async def _handle(
        self,
        path: str,
        api: Api,
        body: bytes,
        receive: Receive,
        send: Send,
        *,
        watch: Callable[[], None] | None,
    ) -> None:
        start = self._clock()
        model = ""
        try:
            payload = parse_json_body(body)
            model = self._model_name(payload.get("model"))
            request, replies = self._parse(path, payload)
            del payload  # the request holds what matters; a large body's objects can go
            output_tokens = sum(reply.output_tokens for reply in replies)
        except RequestError as exc:
            self._recorder.arrived(model)
            self._finish(model, path, start, 400, "bad_request", admitted=False)
            body = error_body(api, 400, exc.message, param=exc.param, code=exc.code)
            await send_json(send, 400, body)
            return

        self._recorder.arrived(model)
        behaviour = self._behaviour(model)
        sampling = sampling_of(request)
        rejection = behaviour.admit(output_tokens)
        if rejection is not None:
            headers = [(b"retry-after", format_retry_after(rejection.retry_after).encode())]
            self._finish(model, path, start, 429, "rate_limited", admitted=False, sampling=sampling)
            await send_json(send, 429, error_body(api, 429, rejection.reason), headers=headers)
            return

        self._recorder.admitted(model)
        flight = Flight(self._finish, behaviour, path, start, sampling)
        try:
            if watch is not None:  # the server cancels this task if the client goes
                watch()
                await self._answer(api, flight, request, replies, send)
            else:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
                    await self._answer(api, flight, request, replies, send)
                    nursery.cancel_scope.cancel()
        finally:
            flight.settle(None, flight.outcome)
        if flight.outcome == "disconnect":
            raise DroppedConnection("the simulated endpoint dropped the connection", model=model)

    async def _answer(
        self,
        api: Api,
        flight: Flight,
        request: GenerationRequest | EmbeddingsRequest,
        replies: tuple[Reply, ...],
        send: Send,
    ) -> None:
        behaviour = flight.behaviour
        draw = behaviour.draw()
        settings = behaviour.settings
        if draw.fault is Fault.ERROR_500:
            flight.settle(500, "error_500")
            await send_json(send, 500, error_body(api, 500, "simulated internal server error"))
            return
        if draw.fault is Fault.ERROR_503:
            flight.settle(503, "error_503")
            headers = [(b"retry-after", format_retry_after(settings.retry_after).encode())]
            body = error_body(api, 503, "the simulated model is overloaded")
            await send_json(send, 503, body, headers=headers)
            return
        if draw.fault is Fault.HANG:
            flight.outcome = "hang"
            await trio.sleep_forever()
        # A stream spends the per-token latency between its events, the rest before them.
        stream = isinstance(request, GenerationRequest) and request.stream
        tokens = 0 if stream else sum(reply.output_tokens for reply in replies)
        # A chat answer is drafted while its latency passes, which counts from the request's
        # arrival, as on a server: the time spent reading, parsing and drafting is part of it,
        # not added to it, and when it is up the answer only has to be sent.
        outcome = "ok"
        data = b""
        if isinstance(request, GenerationRequest):
            structured = any(reply.kind in ("json", "yaml", "xml") for reply in replies)
            if structured and behaviour.invalid_output(request.digest()):
                budget = Budget()
                replies = tuple(
                    invalid_reply(reply, request.digest(), budget=budget) for reply in replies
                )
                outcome = "invalid_output"
            if not stream:
                value = (
                    anthropic_message(request, replies[0])
                    if api == "anthropic"
                    else chat_completion(request, replies)
                )
                data = dump_json(value)
        await trio.sleep(max(0.0, behaviour.latency(draw, tokens) - (self._clock() - flight.start)))
        if draw.fault is Fault.DISCONNECT:
            flight.settle(None, "disconnect")
            return
        if isinstance(request, EmbeddingsRequest):
            dimensions = request.dimensions or settings.embedding_dimensions
            data = await _embeddings_json(request, dimensions)
            input_tokens, output_tokens = request.input_tokens(), 0
        else:
            input_tokens = replies[0].input_tokens
            output_tokens = sum(reply.output_tokens for reply in replies)
            if stream:
                await self._stream(api, flight, request, replies, send, outcome, draw.fault)
                return
        quota = None
        if settings.rate_limit_headers:
            quota = quota_headers(api, behaviour.quotas(), self._wall_clock())
        if draw.fault is Fault.MALFORMED:
            flight.settle(200, "malformed")
            await send_bytes(send, 200, data[: len(data) // 2], headers=quota)
            return
        flight.settle(200, outcome, input_tokens=input_tokens, output_tokens=output_tokens)
        await send_bytes(send, 200, data, headers=quota)

    async def _stream(
        self,
        api: Api,
        flight: Flight,
        request: GenerationRequest,
        replies: tuple[Reply, ...],
        send: Send,
        outcome: str,
        fault: Fault | None,
    ) -> None:
        """Answer with server-sent events (the latency before the first has passed)."""
        behaviour = flight.behaviour
        if api == "anthropic":
            pieces = anthropic_events(request, replies[0])
        else:
            pieces = openai_events(request, replies)
        output_tokens = sum(reply.output_tokens for reply in replies)
        if fault is Fault.MALFORMED:
            data = b"".join(piece.data for piece in pieces)
            pieces = [Piece(output_tokens, data[: len(data) // 2])]
            outcome = "malformed"
        quota = None
        if behaviour.settings.rate_limit_headers:
            quota = quota_headers(api, behaviour.quotas(), self._wall_clock())

        def settle() -> None:
            if outcome == "malformed":
                flight.settle(200, outcome)
            else:
                input_tokens = replies[0].input_tokens
                flight.settle(200, outcome, input_tokens=input_tokens, output_tokens=output_tokens)

        per_token = behaviour.settings.latency.per_token
        await send_stream(send, pieces, per_token=per_token, headers=quota, before_last=settle)

    def _finish(
        self,
        model: str,
        path: str,
        start: float,
        status: int | None,
        outcome: str,
        *,
        admitted: bool,
        input_tokens: int = 0,
        output_tokens: int = 0,
        sampling: Mapping[str, Any] | None = None,
    ) -> None:
        entry = TimelineEntry(
            model=model,
            path=path,
            start=start,
            end=self._clock(),
            status=status,
            outcome=outcome,
            **(sampling or {}),
        )
        self._recorder.finished(
            entry, admitted=admitted, input_tokens=input_tokens, output_tokens=output_tokens
        )


async def _embeddings_json(request: EmbeddingsRequest, dimensions: int) -> bytes:
    """The embeddings answer as JSON — ``dump_json(embeddings(request, dimensions))`` — its
    vectors computed and encoded a slice at a time, with checkpoints between (the event loop
    serves others meanwhile)."""
    items: list[bytes] = []
    computed = 0
    for index, text in enumerate(request.inputs):
        vector = embedding_vector(request.model, text, dimensions)
        items.append(dump_json({"object": "embedding", "index": index, "embedding": vector}))
        computed += dimensions
        if computed >= _EMBEDDING_SLICE:
            computed = 0
            await trio.sleep(0)
    # The envelope with its data left out: a key of the object, "data":[] can only be that.
    head, _, tail = dump_json(embeddings(request, dimensions, vectors=[])).partition(b'"data":[]')
    return head + b'"data":[' + b",".join(items) + b"]" + tail


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    await wait_for_disconnect(receive)
    scope.cancel()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
