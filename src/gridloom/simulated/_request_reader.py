"""Reading HTTP/1.1 requests off a connection's bytes with httptools (llhttp, in C), within
the server's limits.

A :class:`RequestReader` is fed whatever the connection reads and parses it at once: the
complete requests wait in :attr:`RequestReader.ready`, in order (a client may pipeline).
What ends the connection — a protocol error, a broken limit, an upgrade — is kept as
:attr:`RequestReader.failure`, for the connection to answer once the requests before it are
served; after it, nothing more is parsed.

Like the h11 server before it, the reader accepts HTTP/1.0 and HTTP/1.1 only (another
version: 505), wants exactly one ``Host`` header in an HTTP/1.1 request (else 400), never
keeps an HTTP/1.0 connection alive, and refuses a head over ``max_head_bytes`` (431) — also
one that has not ended yet — and a body over ``max_body_bytes`` (413), declared or sent.
"""

from __future__ import annotations

import collections
from typing import Protocol

import httptools

__all__ = ["Request", "RequestReader"]

#: Bytes a request line adds to its method and target (spaces, ``HTTP/1.1``, CRLF).
_LINE_OVERHEAD = 12
#: Bytes a header line adds to its name and value (``: `` and CRLF).
_HEADER_OVERHEAD = 4


class Buffers(Protocol):
    """The server-wide count of request-body bytes held (``_Activity``)."""

    buffered: int


class Limits(Protocol):
    """The sizes the reader enforces (``ServerLimits``)."""

    @property
    def max_head_bytes(self) -> int: ...  # pragma: no cover - a protocol

    @property
    def max_body_bytes(self) -> int: ...  # pragma: no cover - a protocol

    @property
    def max_buffered_bytes(self) -> int: ...  # pragma: no cover - a protocol


class Request:
    """One complete request.

    Attributes:
        method: e.g. ``b"POST"``.
        target: the request target as sent (path and query).
        headers: ``(name, value)`` pairs, names lowercased, values without surrounding blanks.
        body: the whole body (chunked bodies joined).
        version: ``"1.1"`` or ``"1.0"``.
        keep_alive: whether the client lets the connection carry another request.
        held: body bytes counted in the server's ``buffered`` (released once answered).
    """

    __slots__ = ("body", "headers", "held", "keep_alive", "method", "target", "version")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        version: str,
        keep_alive: bool,
        held: int,
    ):
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.version = version
        self.keep_alive = keep_alive
        self.held = held


class _Partial:
    """The request being parsed."""

    __slots__ = (
        "body",
        "chunks",
        "expects",
        "head_done",
        "headers",
        "hosts",
        "method",
        "seen",
        "size",
    )

    def __init__(self) -> None:
        self.method = b""
        self.chunks: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.hosts = 0
        #: Exact size of the head parsed so far (request line and whole headers).
        self.size = _LINE_OVERHEAD
        #: Bytes fed while the head was still incomplete, counted a whole read at a time
        #: (bounds a header that never ends).
        self.seen = 0
        self.head_done = False
        #: Body bytes so far (also counted in the server's ``buffered``).
        self.body = 0
        #: The client sent ``Expect: 100-continue`` and waits for a ``100 Continue``.
        self.expects = False


class _Stop(Exception):
    """Raised in a parser callback to stop parsing (``failure`` says why)."""


class RequestReader:
    """Parses the bytes of one connection into :class:`Request` objects.

    Args:
        limits: the head and body sizes allowed.
        buffers: the server-wide count of body bytes held, checked against
            ``limits.max_buffered_bytes`` and raised by each body byte parsed.
    """

    def __init__(self, limits: Limits, buffers: Buffers):
        self._limits = limits
        self._buffers = buffers
        self._parser = httptools.HttpRequestParser(self)
        self._partial: _Partial | None = None
        self._target: list[bytes] = []
        #: Complete requests not yet answered, oldest first.
        self.ready: collections.deque[Request] = collections.deque()
        #: ``(status, message)``: what ends the connection after the ready requests (an
        #: upgrade request has status 0: close without an answer).
        self.failure: tuple[int, str] | None = None

    # ----------------------------------------------------------------- the connection's side

    @property
    def started(self) -> bool:
        """Whether a request has begun and is not complete yet."""
        return self._partial is not None

    def take_continue(self) -> bool:
        """Whether the request being parsed has its head in, asked ``Expect: 100-continue``
        (HTTP/1.1) and sent no body yet: the client waits for ``100 Continue`` before sending
        it (curl does, for large bodies). True once per request."""
        partial = self._partial
        if partial is None or not (partial.head_done and partial.expects):
            return False
        partial.expects = False
        return partial.body == 0 and self._parser.get_http_version() == "1.1"

    @property
    def head_done(self) -> bool:
        """Whether the request being parsed has its whole head in (its body is on the way)."""
        return self._partial is not None and self._partial.head_done

    def feed(self, data: bytes | bytearray) -> None:
        """Parse ``data`` (ignored after a failure)."""
        if self.failure is not None:
            return
        partial = self._partial
        if partial is not None and not partial.head_done:
            partial.seen += len(data)  # a read that began inside the head is all head
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgraded()
        except httptools.HttpParserError as exc:
            if self.failure is None:  # else a callback set it
                self.failure = (400, f"malformed request: {exc}")
        else:
            partial = self._partial
            limit = self._limits.max_head_bytes
            if partial is not None and not partial.head_done and partial.seen > limit:
                self.failure = (431, f"the request head is over {limit} bytes")

    def end_of_stream(self) -> None:
        """The client closed its side: a request cut short is malformed."""
        if self._partial is not None and self.failure is None:
            self.failure = (400, "malformed request: the client closed the connection mid-request")

    def release(self) -> int:
        """Body bytes still held by requests never answered (and forget them)."""
        held = sum(request.held for request in self.ready)
        if self._partial is not None:
            held += self._partial.body
            self._partial.body = 0
        for request in self.ready:
            request.held = 0
        return held

    # ----------------------------------------------------------------- httptools callbacks

    def _fail(self, status: int, message: str) -> None:
        self.failure = (status, message)
        raise _Stop

    def _check_head(self, partial: _Partial, size: int) -> None:
        limit = self._limits.max_head_bytes
        if size > limit:
            self._fail(431, f"the request head is over {limit} bytes")

    def on_message_begin(self) -> None:
        self._partial = _Partial()
        self._target = []

    def on_url(self, url: bytes) -> None:
        partial = self._partial
        assert partial is not None
        self._target.append(url)
        partial.size += len(url)
        self._check_head(partial, partial.size)

    def on_header(self, name: bytes, value: bytes) -> None:
        partial = self._partial
        assert partial is not None
        partial.size += len(name) + len(value) + _HEADER_OVERHEAD
        self._check_head(partial, partial.size)
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            limit = self._limits.max_body_bytes
            if value.isdigit() and int(value) > limit:
                self._fail(413, f"the request body is over {limit} bytes")
        elif name == b"host":
            partial.hosts += 1
        elif name == b"expect" and value.lower() == b"100-continue":
            partial.expects = True
        partial.headers.append((name, value))

    def on_headers_complete(self) -> None:
        partial = self._partial
        assert partial is not None
        parser = self._parser
        partial.method = parser.get_method()
        partial.size += len(partial.method)
        self._check_head(partial, partial.size)
        partial.head_done = True
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            self._fail(505, f"HTTP/{version} is not supported (HTTP/1.1 is)")
        if version == "1.1" and partial.hosts != 1:
            problem = "no Host header" if not partial.hosts else "more than one Host header"
            self._fail(400, f"malformed request: {problem}")

    def on_body(self, body: bytes) -> None:
        partial = self._partial
        assert partial is not None
        size = len(body)
        limits = self._limits
        if partial.body + size > limits.max_body_bytes:
            self._fail(413, f"the request body is over {limits.max_body_bytes} bytes")
        buffers = self._buffers
        if buffers.buffered + size > limits.max_buffered_bytes:
            self._fail(503, "the simulated endpoint holds too many request bodies")
        buffers.buffered += size
        partial.body += size
        partial.chunks.append(body)

    def on_message_complete(self) -> None:
        partial = self._partial
        assert partial is not None
        parser = self._parser
        version = parser.get_http_version()
        keep_alive = version == "1.1" and parser.should_keep_alive()
        target = self._target[0] if len(self._target) == 1 else b"".join(self._target)
        self.ready.append(
            Request(
                partial.method,
                target,
                partial.headers,
                b"".join(partial.chunks),
                version,
                keep_alive,
                partial.body,
            )
        )
        self._partial = None

    def _upgraded(self) -> None:
        """An upgrade (``Upgrade:`` header or ``CONNECT``): the request is answered, if its
        head is whole, and the connection then closes; what follows is not HTTP/1.1."""
        partial = self._partial
        if partial is not None and partial.head_done:
            self.on_message_complete()
        elif partial is not None:  # pragma: no cover - llhttp upgrades after a whole head
            self.failure = (400, "malformed request: an upgrade before the head ended")
            return
        if self.ready:
            self.ready[-1].keep_alive = False  # its answer says so
        self.failure = (0, "upgrade")
