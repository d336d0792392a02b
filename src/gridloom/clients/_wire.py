"""gridloom's HTTP/1.1 transport: keep-alive connections on trio streams.

A model request takes :meth:`WireTransport.post`, whose reply is framed in C
(:mod:`~gridloom.clients._exchange`); every other request (httpx's interface,
``handle_async_request``) is framed by h11, which is imported with the first such request, so
a run whose requests all take the fast exchange never loads it.

httpx's default transport (httpcore) spends most of a model request's client-side CPU in its
connection pool: on every request event it walks all of its connections and requests
(encode/httpcore#1035), so its cost grows with the pool. gridloom's concurrency is already
bounded by the model limiters above the transport, so the pool here does the least that is
needed, at a cost that does not depend on its size:

- a request takes a connection slot (a semaphore of ``max_connections``), then the most recently
  used idle connection to its origin (a stack, so warm connections are reused and the others
  expire), else opens a new one;
- an idle connection is reused only if it is younger than ``keepalive_expiry`` and its socket
  has nothing to read (a server that closed it has sent EOF);
- the response body is a stream; when it has been read to the end and both sides may send
  another request, the connection goes back on the stack, otherwise it is closed.

httpx's timeouts are honoured per operation (connect, write, read, pool) and failures are
raised as the same ``httpx`` exceptions httpcore raises, so the client's error mapping and
transport retry see no difference (as httpcore, a reply the server sent before it stopped
reading the request — an early 413 or 401 — is still read when sending the body fails, and
that connection is not reused); a failed TLS handshake names its reason (``certificate
verify failed: self-signed certificate``, a hostname mismatch, an expired certificate, ...).
HTTPS uses the SSL context it is given, which the client builds from the provider's TLS
settings (:func:`~gridloom.clients._policy.ssl_context`), else httpx's default one (certifi,
or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``). Proxies and HTTP/2 are not supported here: the
client gives such providers httpx's own transport (:mod:`~gridloom.clients._policy`).
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import httpx
import trio

from .._sockets import descriptor, receive, send
from ._exchange import Reply, ReplyReader
from ._limit import ResponseCap

if TYPE_CHECKING:
    import h11

__all__ = ["WireTransport", "ssl_error", "tls_reason"]

#: Bytes asked for per read.
READ_SIZE = 64 * 1024

_Origin = tuple[bytes, str, int]

_NO_TIMEOUT: dict[str, float | None] = {}


def _timeout(request: httpx.Request, name: str) -> float:
    return _get(request.extensions.get("timeout", _NO_TIMEOUT), name)


def _get(timeouts: dict[str, float | None], name: str) -> float:
    value = timeouts.get(name)
    return float("inf") if value is None else value


class _Connection:
    """One HTTP/1.1 connection: a trio stream, and its h11 state once a request that h11
    frames has used it (the fast exchange keeps no state between requests)."""

    __slots__ = ("_h11", "fd", "idle_since", "origin", "socket", "stream")

    def __init__(self, origin: _Origin, stream: trio.abc.Stream, socket: trio.socket.SocketType):
        self.origin = origin
        self.stream = stream
        self.socket = socket
        self._h11: h11.Connection | None = None
        self.idle_since = 0.0
        #: The socket's descriptor when :meth:`WireTransport.post` may write to it directly
        #: (plain TCP on POSIX, see :mod:`gridloom._sockets`), else -1 (TLS).
        self.fd = descriptor(stream)

    def reusable(self, now: float, expiry: float) -> bool:
        """Young enough and not closed by the server (an idle socket has nothing to read)."""
        return now - self.idle_since < expiry and not self.socket.is_readable()

    @property
    def h11(self) -> h11.Connection:
        """The h11 state machine, made on first use: between two requests framed elsewhere it
        would stay idle, so a connection's first h11 request starts from the same state."""
        if self._h11 is None:
            import h11

            self._h11 = h11.Connection(h11.CLIENT)
        return self._h11

    def close_now(self) -> None:
        """Close without a checkpoint (no TLS close_notify; the peer sees the socket close)."""
        self.socket.close()

    async def send_request(self, request: httpx.Request) -> None:
        import h11

        head = h11.Request(
            method=request.method, target=request.url.raw_path, headers=request.headers.raw
        )
        out = [self.h11.send(head)]
        try:
            chunks: list[bytes] = [request.content]  # bytes given as content (or read)
        except httpx.RequestNotRead:
            chunks = [chunk async for chunk in request.stream]  # type: ignore[union-attr]
        out.extend(self.h11.send(h11.Data(data=chunk)) for chunk in chunks if chunk)
        out.append(self.h11.send(h11.EndOfMessage()))
        await self.stream.send_all(b"".join(x or b"" for x in out))

    async def next_event(self, scope: trio.CancelScope | None, read_seconds: float) -> Any:
        """The next h11 event from the server. Each read may take ``read_seconds``: the deadline of
        ``scope`` restarts with it (without a scope, one is opened only if a read is needed)."""
        import h11

        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            if scope is None:
                with _fail_after(read_seconds, httpx.ReadTimeout) as read_scope:
                    return await self.next_event(read_scope, read_seconds)
            scope.deadline = trio.current_time() + read_seconds
            data = await self.stream.receive_some(READ_SIZE)
            if not data and self.h11.their_state is h11.SEND_RESPONSE:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            self.h11.receive_data(cast(bytes, data))


async def _receive(
    conn: _Connection, reader: ReplyReader, scope: trio.CancelScope, read: float, until: float
) -> None:
    """Read a reply into ``reader`` until it is complete, each read taking ``read`` seconds at
    most (never past ``until``) under ``scope``."""
    while not reader.complete:
        _bound(scope, read, until)
        data = await receive(conn.stream, conn.fd, READ_SIZE)
        if data:
            reader.feed(data)
        else:
            reader.eof()


class _Overdue(Exception):
    """The exchange's overall deadline passed (internal to :meth:`WireTransport.post`)."""


def _bound(scope: trio.CancelScope, seconds: float, until: float) -> None:
    """Let the next operation take ``seconds`` (never past ``until``): ``scope``'s deadline is
    moved only when that changes it, as moving it costs more than comparing."""
    deadline = min(trio.current_time() + seconds, until)
    if deadline != scope.deadline:
        scope.deadline = deadline


class _fail_after:
    """``trio.fail_after`` raising the given httpx timeout instead of ``trio.TooSlowError``."""

    __slots__ = ("_error", "_scope")

    def __init__(self, seconds: float, error: type[httpx.TimeoutException]):
        self._scope = trio.move_on_after(seconds)
        self._error = error

    def __enter__(self) -> trio.CancelScope:
        return self._scope.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._scope.__exit__(*exc)  # type: ignore[arg-type]
        if self._scope.cancelled_caught:
            raise self._error(self._error.__name__)


class _Body(httpx.AsyncByteStream):
    """A response body read from its connection; closing it frees (or closes) the connection."""

    def __init__(
        self, transport: WireTransport, conn: _Connection, read_timeout: float, *, reusable: bool
    ):
        self._transport = transport
        self._conn: _Connection | None = conn
        self._read_timeout = read_timeout
        self._done = False
        #: False when sending the request failed: the connection is closed after the reply.
        self._reusable = reusable

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        import h11

        conn = self._conn
        if conn is None or self._done:
            raise StopAsyncIteration
        try:
            event = await conn.next_event(None, self._read_timeout)
        except BaseException as exc:
            await self.aclose()
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        if isinstance(event, h11.Data):
            return bytes(event.data)
        self._done = True  # EndOfMessage
        raise StopAsyncIteration

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._transport._finished(conn, reuse=self._done and self._reusable)


class WireTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport for HTTP/1.1 over trio with a size-independent connection pool.

    Args:
        limits: ``max_connections`` bounds the requests in flight (and so the connections in
            use), ``max_keepalive_connections`` the idle connections kept, ``keepalive_expiry``
            how long an idle connection may be reused.
        ssl_context: TLS settings for ``https`` origins (its ALPN protocols are set to
            HTTP/1.1 here); ``httpx.create_ssl_context()``, made on first use, when ``None``.
    """

    def __init__(self, limits: httpx.Limits, *, ssl_context: ssl.SSLContext | None = None):
        self.limits = limits
        self._slots = trio.Semaphore(limits.max_connections or 1_000_000)
        self._keep = limits.max_keepalive_connections or 0
        self._expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._ssl = ssl_context
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["http/1.1"])
        self._closed = False
        #: Connections opened so far (for tests and statistics).
        self.connections_opened = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import h11

        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        origin: _Origin = (scheme, url.host, port)
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            with _fail_after(_timeout(request, "pool"), httpx.PoolTimeout):
                await self._slots.acquire()
        conn: _Connection | None = None
        read_timeout = _timeout(request, "read")
        phase: type[httpx.TimeoutException] = httpx.ConnectTimeout
        unsent: BaseException | None = None
        try:
            # One cancel scope for the whole exchange; its deadline follows the phase.
            with trio.CancelScope() as scope:
                conn = self._checkout(origin)
                if conn is None:
                    scope.deadline = trio.current_time() + _timeout(request, "connect")
                    conn = await self._connect(origin)
                phase = httpx.WriteTimeout
                scope.deadline = trio.current_time() + _timeout(request, "write")
                try:
                    await conn.send_request(request)
                except (trio.BrokenResourceError, OSError) as exc:
                    unsent = exc  # the server may have answered already (see post)
                phase = httpx.ReadTimeout
                try:
                    event = await conn.next_event(scope, read_timeout)
                    while isinstance(event, h11.InformationalResponse):
                        event = await conn.next_event(scope, read_timeout)
                except (httpx.TransportError, h11.ProtocolError, trio.BrokenResourceError, OSError):
                    if unsent is None:
                        raise
                    raise unsent from None
            if scope.cancelled_caught:
                if unsent is not None:
                    raise unsent
                raise phase(phase.__name__)
        except BaseException as exc:
            if conn is not None:
                conn.close_now()
            self._slots.release()
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        assert conn is not None
        assert isinstance(event, h11.Response)
        return httpx.Response(
            status_code=event.status_code,
            headers=event.headers.raw_items(),
            stream=_Body(self, conn, read_timeout, reusable=unsent is None),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": bytes(event.reason)},
        )

    async def post(
        self,
        url: httpx.URL,
        head: bytes,
        body: bytes,
        *,
        timeouts: dict[str, float | None],
        until: float,
        cap: ResponseCap,
        where: tuple[str | None, str | None],
    ) -> Reply | None:
        """One whole exchange: ``head`` (up to the Content-Length value, see
        :func:`~gridloom.clients._exchange.request_head`) and ``body`` sent, the reply read
        within ``cap`` (:mod:`~gridloom.clients._exchange`).

        Per-operation timeouts and errors are :meth:`handle_async_request`'s; the exchange as
        a whole ends at trio time ``until`` (``math.inf``: no bound), and then gives ``None``.
        One cancel scope serves both, its deadline the nearer of the two.

        A server may answer before it has read the whole body and close the connection (a 413
        or 401 sent once the head is read): sending then fails (a broken pipe, a reset) once
        the body is larger than the socket buffers. As httpcore does, the reply is still read
        (within ``cap`` and the read timeout), and only if no whole reply came is the failed
        write reported. Such a connection is never reused.
        """
        if self._closed:
            raise RuntimeError("the transport is closed")
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin: _Origin = (scheme, url.host, url.port or (443 if scheme == b"https" else 80))
        conn: _Connection | None = None
        reader = ReplyReader(cap, where)
        phase: type[httpx.TimeoutException] = httpx.PoolTimeout
        slot = False
        #: Why sending the request failed, if it did (a reply may still have come).
        unsent: BaseException | None = None
        try:
            with trio.CancelScope(deadline=until) as scope:
                try:
                    self._slots.acquire_nowait()
                except trio.WouldBlock:
                    _bound(scope, _get(timeouts, "pool"), until)
                    await self._slots.acquire()
                slot = True
                conn = self._checkout(origin)
                if conn is None:
                    phase = httpx.ConnectTimeout
                    _bound(scope, _get(timeouts, "connect"), until)
                    conn = await self._connect(origin)
                phase = httpx.WriteTimeout
                _bound(scope, _get(timeouts, "write"), until)
                request = b"".join((head, str(len(body)).encode(), b"\r\n\r\n", body))
                try:
                    await send(conn.stream, conn.fd, request)
                except (trio.BrokenResourceError, OSError) as exc:
                    unsent = exc  # the server may have answered already: read below
                phase = httpx.ReadTimeout
                read = _get(timeouts, "read")
                try:
                    await _receive(conn, reader, scope, read, until)
                except (httpx.TransportError, trio.BrokenResourceError, OSError):
                    if unsent is None:
                        raise
                    raise unsent from None  # no whole reply came before it: report the write
            if scope.cancelled_caught:
                if trio.current_time() >= until:
                    raise _Overdue
                if unsent is not None:
                    raise unsent
                raise phase(phase.__name__)
        except BaseException as exc:
            reader.close()
            if conn is not None:
                conn.close_now()
            if slot:
                self._slots.release()
            if isinstance(exc, _Overdue):
                return None
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        reader.close()
        self._slots.release()
        assert conn is not None
        try:
            reply = reader.reply()
        except BaseException:  # refused (too large once inflated, undecodable): as h11's path
            conn.close_now()
            raise
        reuse = unsent is None and reader.keep_alive and not reader.extra
        self._keep_or_close(conn, reuse=reuse)
        return reply

    def _checkout(self, origin: _Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        now = trio.current_time()
        while stack:
            conn = stack.pop()
            self._idle_count -= 1
            if conn.reusable(now, self._expiry):
                return conn
            conn.close_now()
        return None

    async def _connect(self, origin: _Origin) -> _Connection:
        """A new connection (the caller's cancel scope bounds the time it may take)."""
        scheme, host, port = origin
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        stream: trio.abc.Stream = tcp
        if scheme == b"https":
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
                self._ssl.set_alpn_protocols(["http/1.1"])
            ssl_stream = trio.SSLStream(tcp, self._ssl, server_hostname=host)
            try:
                await ssl_stream.do_handshake()
            except BaseException as exc:
                tcp.socket.close()
                if isinstance(exc, OSError | trio.BrokenResourceError):
                    raise httpx.ConnectError(f"TLS handshake failed: {tls_reason(exc)}") from exc
                raise
            stream = ssl_stream
        self.connections_opened += 1
        return _Connection(origin, stream, tcp.socket)

    def _finished(self, conn: _Connection, *, reuse: bool) -> None:
        """A response is over: keep its connection for the next request, or close it."""
        import h11

        self._slots.release()
        state = conn.h11
        reuse = reuse and state.our_state is h11.DONE and state.their_state is h11.DONE
        if reuse:
            state.start_next_cycle()
        self._keep_or_close(conn, reuse=reuse)

    def _keep_or_close(self, conn: _Connection, *, reuse: bool) -> None:
        """Put an idle connection back on its origin's stack (if there is room), else close it."""
        if reuse and not self._closed and self._idle_count < self._keep:
            conn.idle_since = trio.current_time()
            self._idle.setdefault(conn.origin, []).append(conn)
            self._idle_count += 1
        else:
            conn.close_now()

    async def aclose(self) -> None:
        self._closed = True
        for stack in self._idle.values():
            for conn in stack:
                conn.close_now()
        self._idle.clear()
        self._idle_count = 0


def ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl`` error behind ``exc``, if any: trio wraps it in a ``BrokenResourceError``
    whose own text is empty, and httpcore and httpx wrap that again."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None or isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def tls_reason(exc: BaseException) -> str:
    """Why a TLS connection failed, in OpenSSL's words: ``certificate verify failed:
    self-signed certificate``, ``... IP address mismatch, certificate is not valid for
    '127.0.0.1'.``, ``... certificate has expired``, ``[SSL: WRONG_VERSION_NUMBER] wrong
    version number``, ..."""
    error = ssl_error(exc)
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if error is not None:
        text = error.strerror or str(error)
        return text.split(" (_ssl.c:", 1)[0] or error.reason or type(error).__name__
    return str(exc) or type(exc).__name__


def _translate(exc: BaseException) -> BaseException:
    """The httpx exception for a failure below it (httpx's own and cancellation pass through)."""
    if isinstance(exc, httpx.HTTPError | trio.Cancelled | KeyboardInterrupt):
        return exc
    h11 = sys.modules.get("h11")  # not loaded: no h11 error can have been raised
    if h11 is not None and isinstance(exc, h11.RemoteProtocolError):
        return httpx.RemoteProtocolError(str(exc))
    if h11 is not None and isinstance(exc, h11.LocalProtocolError):
        return httpx.LocalProtocolError(str(exc))
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError):
        if ssl_error(exc) is not None:
            return httpx.ReadError(tls_reason(exc))
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        return httpx.ReadError(str(cause) or type(cause).__name__)
    return exc
