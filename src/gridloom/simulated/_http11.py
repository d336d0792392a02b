"""A small HTTP/1.1 server for the simulated endpoint: httptools (llhttp) parses requests on
trio streams (:mod:`._request_reader`), answers are framed by hand (:mod:`._framing`), ASGI
to the app.

The simulated endpoint is the harness every benchmark measures gridloom against, and it
shares the machine with the engine, so its own cost per request matters: this server does
only what the simulated app needs, at about a quarter of a general-purpose server's CPU.

- HTTP/1.1 with keep-alive; one request at a time per connection (pipelined requests wait
  their turn).
- Each connection has a reader task that parses what the client sends as it comes, so the
  server sees a client go while its answer is on the way. Bytes read ahead are kept for the
  connection's next request (at most :data:`MAX_PIPELINED_BYTES` before the answer is out:
  more, and the client is treated as gone).
- The app sees ``http`` scopes only. ``receive()`` gives the whole request body once; called
  again, it waits until the client has gone and then reports ``http.disconnect`` (a
  hanging answer uses that to end when the client gives up). Cheaper, an app may call
  ``scope["extensions"][WATCH_DISCONNECT]["watch"]()`` (see :mod:`._asgi`): from then on,
  the client's going cancels the app's task, with no task of its own watching.
- An app raising :class:`~gridloom.simulated._asgi.DroppedConnection` has its connection
  closed without an answer; any other exception before the response starts is a 500 (and a
  warning on the ``gridloom.simulated.server`` logger).
- Nothing one connection does can stop the server: a malformed request (any llhttp
  parse error: bad request line, header or chunk, a body cut short; an HTTP/1.1 request
  without exactly one ``Host``) gets a 400, a head over
  :data:`MAX_HEAD_BYTES` a 431, a body over :data:`MAX_BODY_BYTES` a 413, a client too slow
  to send its request a 408 — each with ``Connection: close`` and a JSON error body — or,
  when an answer is already under way, the connection is closed. Any other error is logged
  and ends that connection only. The limits and timeouts are :class:`ServerLimits`.
- Stopping closes the listeners and the idle keep-alive connections at once; a connection
  with a request in progress answers it with ``Connection: close`` and closes (it never starts
  another), for up to ``grace`` seconds, after which it is cancelled and closed.
- Status lines carry the standard reason phrase (``HTTP/1.1 200 OK``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from .._attrs import frozen
from .._sockets import descriptor, receive, send
from ._asgi import WATCH_DISCONNECT, DroppedConnection, Message, Scope
from ._framing import Response as _Response
from ._framing import reason as _reason
from ._request_reader import Request, RequestReader

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_BUFFERED_BYTES",
    "MAX_CONNECTIONS",
    "MAX_HEAD_BYTES",
    "MAX_PIPELINED_BYTES",
    "ServerLimits",
    "serve_http",
    "serve_listeners",
]

_LOGGER = logging.getLogger("gridloom.simulated.server")

#: Largest request head (request line and headers), in bytes; a larger one gets 431.
MAX_HEAD_BYTES = 16 * 1024
#: Largest request body, in bytes; a larger one gets 413 (decoding a body this size as JSON
#: takes the event loop about 0.1 s).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Request bodies the whole server holds at once, in bytes; a request beyond gets 503.
MAX_BUFFERED_BYTES = 256 * 1024 * 1024
#: Bytes a client may send ahead of its answer (pipelining); more, and it is treated as gone.
MAX_PIPELINED_BYTES = 64 * 1024
#: Connections open at once; one more is answered 503 and closed at once. A client keeps one
#: connection per request in flight: 4,096 admits issue 21's 2,048 parallel requests twice over.
MAX_CONNECTIONS = 4096
_READ_SIZE = 64 * 1024
#: The interim answer to a request that asked ``Expect: 100-continue`` before its body.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Longest error message the server itself answers with (it may quote the client's bytes).
_MESSAGE_CHARS = 200

App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Any]

_ERROR_TYPES = {413: "request_too_large", 503: "overloaded_error"}
_ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}


@frozen(kw_only=True)
class ServerLimits:
    """What one client may take from the simulated endpoint's HTTP server.

    Attributes:
        head_timeout: seconds to send a request head, counted from the connection's opening
            or, on a kept-alive connection, from the first byte of the request; then 408.
        body_timeout: seconds to send the body once the head is in; then 408.
        idle_timeout: seconds a kept-alive connection may wait for its next request; then it
            is closed.
        write_timeout: seconds one write of an answer may take; a client that stops reading
            has its connection closed.
        linger: after an error answer, seconds the server keeps reading (and dropping) what
            the client still sends, so that the answer is read rather than cut by a reset.
        max_connections: connections open at once; one more is answered 503 and closed.
        max_head_bytes: largest request head; a larger one gets 431.
        max_body_bytes: largest request body; a larger one gets 413.
        max_buffered_bytes: request bodies held at once by the whole server; beyond, 503.
        max_pipelined_bytes: bytes a client may send ahead while its request is answered.
    """

    head_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    body_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    idle_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    write_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    linger: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))
    max_connections: int = attrs.field(default=MAX_CONNECTIONS, validator=attrs.validators.ge(1))
    max_head_bytes: int = attrs.field(default=MAX_HEAD_BYTES, validator=attrs.validators.ge(1))
    max_body_bytes: int = attrs.field(default=MAX_BODY_BYTES, validator=attrs.validators.ge(0))
    max_buffered_bytes: int = attrs.field(
        default=MAX_BUFFERED_BYTES, validator=attrs.validators.ge(0)
    )
    max_pipelined_bytes: int = attrs.field(
        default=MAX_PIPELINED_BYTES, validator=attrs.validators.ge(0)
    )


_DEFAULT_LIMITS = ServerLimits()


def _error_response(status: int, message: str, *, retry_after: bool = False) -> bytes:
    """A complete ``Connection: close`` answer with a JSON error body that both APIs' clients
    read (OpenAI's ``error.message`` and Anthropic's ``type: error``)."""
    kind = _ERROR_TYPES.get(status, "invalid_request_error")
    error = {"message": message[:_MESSAGE_CHARS], "type": kind, "param": None, "code": None}
    body = json.dumps({"type": "error", "error": error}).encode()
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        status,
        _reason(status),
        len(body),
    )
    if retry_after:
        head += b"retry-after: 1\r\n"
    return head + b"connection: close\r\n\r\n" + body


class _Refused(Exception):
    """The request cannot be served: answer ``status`` (with ``Connection: close``) if no
    answer has started, then close."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


#: What a connection that ended under the server's feet raises.
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)


def _gone(exc: BaseException) -> bool:
    """Whether ``exc`` (or every exception of a group) says the client went away."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_gone(inner) for inner in exc.exceptions)
    return isinstance(exc, (*_GONE, DroppedConnection))


class _Activity:
    """Counts requests in progress and lets the server wait until there are none; knows the
    connections waiting for a request (idle), and on :meth:`stop` ends them."""

    def __init__(self) -> None:
        self.busy = 0
        self.stopping = False
        #: Connections open now.
        self.connections = 0
        #: Bytes of request bodies held now (read, and not yet answered).
        self.buffered = 0
        self._idle: trio.Event | None = None
        #: The cancel scopes of the connections waiting for their next request.
        self.waiting: set[trio.CancelScope] = set()

    def stop(self) -> None:
        """No more requests: end every connection that waits for its next one."""
        self.stopping = True
        for scope in self.waiting:
            scope.cancel()

    def begin(self) -> None:
        self.busy += 1

    def end(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        if self.busy:
            self._idle = trio.Event()
            await self._idle.wait()


class _Connection:
    """One client connection, served by two tasks: a reader, which parses whatever the client
    sends as it comes (and so sees the client go while an answer is on its way), and the
    connection's own task, which answers the requests in turn."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        app: App,
        server: tuple[str, int],
        activity: _Activity,
        limits: ServerLimits,
    ):
        self.stream = stream
        #: The socket's descriptor if plain TCP (answers are written to it directly:
        #: gridloom._sockets), else -1.
        self.fd = descriptor(stream)
        self.app = app
        self.server = server
        self.activity = activity
        self.limits = limits
        self.reader = RequestReader(limits, activity)
        #: Whether part of an answer is on the wire and the rest is not (then an error can
        #: only close the connection).
        self.answering = False
        #: The connection's scope: cancelled to stop it, its deadline the current phase's.
        self.scope = trio.CancelScope()
        self.phase = "head"
        #: Whether a request is being answered (from its app's start to its end).
        self.busy = False
        #: Whether the answer to the request being answered is not all sent yet.
        self.unanswered = False
        #: Bytes read since the request being answered was taken.
        self.ahead = 0
        #: Set once the client has gone (closed, reset, or flooded its own connection).
        self.gone = trio.Event()
        #: Whether the app of the request being answered asked to be cancelled if the
        #: client goes (the WATCH_DISCONNECT extension).
        self.watched = False
        self.extensions: dict[str, Any] = {WATCH_DISCONNECT: {"watch": self._watch}}
        self._wake: trio.Event | None = None
        self._resume: trio.Event | None = None

    async def serve(self) -> None:
        """Answer requests until the client or the server closes the connection (or the
        server stops while the connection waits for a request)."""
        # One scope per connection. It is in ``activity.waiting`` only between requests:
        # stopping cancels it there and never in the middle of an answer. Its deadline is the
        # timeout of the current phase (see _phase): one scope for every timeout of the
        # connection, moved rather than made anew, as that costs less per request.
        activity = self.activity
        refusal: tuple[int, str] | None = None
        with self.scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read)
                    refusal = await self._serve_requests()
                    nursery.cancel_scope.cancel()
            finally:
                activity.waiting.discard(self.scope)
                activity.buffered -= self.reader.release()
        if self.scope.cancelled_caught and not activity.stopping:
            if self.phase == "head":
                timeout = self.limits.head_timeout
                refusal = (408, f"no complete request head within {timeout:g} s")
            elif self.phase == "body":
                refusal = (408, f"the request body took over {self.limits.body_timeout:g} s")
        if refusal is not None and refusal[0]:
            await self._refuse(*refusal)

    async def _serve_requests(self) -> tuple[int, str] | None:
        """Answer requests in turn; what to refuse with at the end, if anything."""
        activity = self.activity
        waiting = activity.waiting
        first = True
        while not activity.stopping:
            waiting.add(self.scope)
            try:
                request = await self._next(first)
            except _Refused as exc:
                return (exc.status, exc.message)
            if request is None:  # closed, or idle for too long
                return None
            waiting.discard(self.scope)
            first = False
            activity.begin()
            self.busy = self.unanswered = True
            self.ahead = 0
            try:
                if not await self._answer(request):
                    return None
            finally:
                self.busy = self.unanswered = self.watched = False
                activity.end()
                activity.buffered -= request.held
                request.held = 0
                if self._resume is not None:
                    self._resume.set()
        return None

    async def _read(self) -> None:
        """Read and parse what the client sends until it goes; then cancel the request being
        answered, if any (the client will not read its answer).

        While a request is answered, the client may send ahead (pipelining): up to
        ``max_pipelined_bytes`` before the answer is out — more, and it is treated as gone —
        and, after, the size of a request; then reading waits for the next request's turn.
        """
        limits = self.limits
        enough = limits.max_head_bytes + limits.max_body_bytes
        reader = self.reader
        try:
            while True:
                if self.busy and self.ahead > enough:
                    self._resume = trio.Event()
                    await self._resume.wait()
                    self._resume = None
                    continue
                data = await receive(self.stream, self.fd, _READ_SIZE)
                if not data:
                    break
                if self.busy:
                    self.ahead += len(data)
                    if self.unanswered and self.ahead > limits.max_pipelined_bytes:
                        break  # a client that floods its own connection is treated as gone
                reader.feed(data)
                if self._wake is not None:
                    self._wake.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.gone.set()
        reader.end_of_stream()
        if self.busy and self.watched:
            self.scope.cancel()
        elif self._wake is not None:
            self._wake.set()

    def _watch(self) -> None:
        """Cancel the request being answered if the client goes (now, if it has gone)."""
        self.watched = True
        if self.gone.is_set():
            self.scope.cancel()

    def _phase(self, phase: str, timeout: float) -> None:
        """Enter ``phase`` (``idle``, ``head``, ``body``, ``app`` or ``write``), which ends the
        connection after ``timeout`` seconds (408 for a head or a body)."""
        self.phase = phase
        self.scope.deadline = trio.current_time() + timeout

    async def _next(self, first: bool) -> Request | None:
        """The next complete request; ``None`` when the client closed, or (kept alive) sent
        nothing for ``idle_timeout``. A request's head must come within ``head_timeout`` (of
        the connection's opening, or of the request's first byte), its body within
        ``body_timeout`` of its head.

        Raises:
            _Refused: the request is malformed (400), its head too large (431), its body too
                large (413) or too many bodies are held (503); status 0: an upgrade (close).
        """
        reader = self.reader
        limits = self.limits
        phase = ""
        while True:
            if reader.ready:
                return reader.ready.popleft()
            if reader.failure is not None:
                raise _Refused(*reader.failure)
            if self.gone.is_set():
                return None
            if reader.head_done:
                if reader.take_continue():
                    await self._send(CONTINUE)
                    phase = ""  # the body's time starts now
                wanted, timeout = "body", limits.body_timeout
            elif first or reader.started:
                wanted, timeout = "head", limits.head_timeout
            else:
                wanted, timeout = "idle", limits.idle_timeout
            if wanted != phase:
                phase = wanted
                self._phase(wanted, timeout)
            self._wake = trio.Event()
            await self._wake.wait()
            self._wake = None

    async def _send(self, data: bytes, *, last: bool = False) -> None:
        """Send ``data``; a client that takes more than ``write_timeout`` to read it is cut
        (the connection's scope is cancelled: the app and the connection end). After the
        ``last`` write of an answer the deadline stays: the app has that long to return."""
        self.phase = "write"
        scope = self.scope
        scope.deadline = trio.current_time() + self.limits.write_timeout
        await send(self.stream, self.fd, data)
        if not last:
            self.phase = "app"
            scope.deadline = math.inf

    async def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close, or just close when an answer has already started;
        then linger: drop what the client still sends, for a moment, so that it reads the
        answer instead of a connection reset."""
        if self.answering:
            return
        stream = self.stream
        try:
            with trio.move_on_after(self.limits.write_timeout):
                await stream.send_all(_error_response(status, message, retry_after=status == 503))
            await _linger(stream, self.limits)
        except _GONE:
            pass

    async def _answer(self, request: Request) -> bool:
        """Run the app for one request; whether the connection may carry another."""
        self.phase = "app"
        self.scope.deadline = math.inf  # the app takes the time it takes
        path, _, query = request.target.partition(b"?")
        method = request.method.decode("ascii")
        scope: Scope = {
            "type": "http",
            "asgi": _ASGI_VERSION,
            "http_version": request.version,
            "method": method,
            "scheme": "http",
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": request.headers,
            "client": None,
            "server": self.server,
            "extensions": self.extensions,
        }
        delivered = False
        response = _Response(request)

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            # A client waiting for its answer sends nothing more, except that it may close the
            # connection: the reader tells.
            await self.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if self.activity.stopping:  # this answer is the connection's last
                response.keep_alive = False
            out = response.frame(message)
            self.answering = not response.finished
            self.unanswered = not response.finished
            await self._send(out, last=response.finished)

        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if _gone(exc):
                return False
            _LOGGER.warning("simulated app failed on %s %s", method, scope["path"], exc_info=True)
            if response.sent:
                return False  # the answer is under way: only closing can tell the client
            self.answering = False
            error = b'{"error":{"message":"internal error","type":"server_error"}}'
            head = b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
            head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(error)
            await self._send(head + error, last=True)
            return False
        return response.finished and response.keep_alive


async def serve_connection(
    stream: trio.abc.Stream,
    app: App,
    server: tuple[str, int],
    activity: _Activity,
    limits: ServerLimits = _DEFAULT_LIMITS,
) -> None:
    """Answer requests on ``stream`` until either side ends the connection, then close it.

    Never raises for anything the client does: whatever ends one connection is that
    connection's business (logged when unexpected), not the server's."""
    try:
        await _Connection(stream, app, server, activity, limits).serve()
    except* _GONE:
        pass
    except* Exception:
        _LOGGER.warning("simulated server: a connection failed", exc_info=True)
    finally:
        await trio.aclose_forcefully(stream)


async def _linger(stream: trio.abc.Stream, limits: ServerLimits) -> None:
    """After a last answer: end the sending side, then drop what the client still sends, for
    ``linger`` seconds at most. Closed with unread bytes in its buffer, a socket is reset (RST),
    and the client may then lose the answer it has not read yet."""
    with trio.move_on_after(limits.linger):
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        drained = 0
        while drained <= limits.max_body_bytes:
            data = await stream.receive_some(_READ_SIZE)
            if not data:
                break
            drained += len(data)


async def _turn_away(stream: trio.abc.Stream, limits: ServerLimits) -> None:
    """Answer a connection beyond ``max_connections`` with 503 (then linger: :func:`_linger`),
    and close it."""
    try:
        with trio.move_on_after(min(limits.write_timeout, 1.0)):
            message = f"the simulated endpoint serves at most {limits.max_connections} connections"
            await stream.send_all(_error_response(503, message, retry_after=True))
            await _linger(stream, limits)
    except _GONE:
        pass
    except Exception:
        _LOGGER.warning("simulated server: turning a connection away failed", exc_info=True)
    finally:
        await trio.aclose_forcefully(stream)


async def serve_http(
    app: App,
    host: str,
    port: int,
    *,
    shutdown: trio.Event,
    grace: float = 3.0,
    limits: ServerLimits | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until ``shutdown`` is set; reports the bound (host, port)
    to ``task_status`` once listening. Then stops as described above. ``limits`` bound what
    each client may take (default: :class:`ServerLimits`'s defaults)."""
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=4096)
    sockname = listeners[0].socket.getsockname()
    bound = (str(sockname[0]), int(sockname[1]))
    await serve_listeners(
        app,
        listeners,
        bound,
        shutdown=shutdown,
        grace=grace,
        limits=limits,
        task_status=task_status,
    )


async def serve_listeners(
    app: App,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    bound: tuple[str, int],
    *,
    shutdown: trio.Event,
    grace: float = 3.0,
    limits: ServerLimits | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`serve_http` on listeners already open (the ASGI ``server`` is ``bound``)."""
    activity = _Activity()
    limits = limits or _DEFAULT_LIMITS

    async with trio.open_nursery() as handlers:

        async def handle(stream: trio.abc.Stream) -> None:
            if activity.connections >= limits.max_connections:
                await _turn_away(stream, limits)
                return
            activity.connections += 1
            try:
                await serve_connection(stream, app, bound, activity, limits)
            finally:
                activity.connections -= 1

        async with trio.open_nursery() as acceptors:
            acceptors.start_soon(
                functools.partial(
                    trio.serve_listeners, handle, list(listeners), handler_nursery=handlers
                )
            )
            task_status.started(bound)
            await shutdown.wait()
            acceptors.cancel_scope.cancel()
        activity.stop()
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        with trio.move_on_after(grace):
            await activity.wait_idle()
        handlers.cancel_scope.cancel()
