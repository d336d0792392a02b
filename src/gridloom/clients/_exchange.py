"""A model request's whole HTTP/1.1 exchange, without building httpx's request and response
objects or framing through h11.

Profiling 10,000 rows of three LLM columns (``bench/profile.py``) put about half of gridloom's CPU
per cell in the transport: h11's event machinery and header validation, and httpx's ``Request``
and ``Response`` objects, which a model request built and threw away each time. A model request
is always the same shape — a JSON ``POST`` with headers that change only with the API key — so
this path sends it as one prebuilt head plus the body, and reads the reply with ``httptools``
(the C parser of llhttp, also behind uvicorn), which frames Content-Length, chunked and
close-delimited bodies. What the reply then needs — its status, a header or two and the body —
comes out as a :class:`Reply`; an unsuccessful one becomes a real ``httpx.Response`` for the
usual error mapping (:func:`Reply.to_response`).

Every read is bounded: the head to :data:`MAX_HEAD_BYTES`, the body to the model's
``max_response_bytes`` (a declared Content-Length beyond it is refused before the body is read;
a compressed body is inflated in bounded pieces by :class:`~gridloom.clients._limit.Decoder`,
under the content-coding rule of httpx's path: :func:`~gridloom.clients._limit.content_codings`).
Failures raise the same ``httpx`` exceptions as the h11 path, so transport retry and error
mapping see no difference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import httptools
import httpx

from ._limit import Decoder, ResponseCap, _Overflow, compressed_limit, content_codings, too_large

__all__ = ["MAX_HEAD_BYTES", "Reply", "ReplyReader", "request_head"]

#: The largest response head (status line and headers) accepted.
MAX_HEAD_BYTES = 64 * 1024

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A field value: no control character but the tab (h11 refuses the same).
_FIELD_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")
#: Headers the exchange writes itself; a caller's value for them is not sent.
_OWN = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})


def request_head(url: httpx.URL, headers: Mapping[str, str]) -> bytes:
    """The head of a JSON ``POST`` to ``url`` up to its ``Content-Length`` value: the caller
    appends the length, ``\\r\\n\\r\\n`` and the body.

    Raises:
        httpx.LocalProtocolError: a header name or value cannot be sent (a line break in it);
            the message names the header, never its value.
    """
    target = url.raw_path or b"/"
    lines = [b"POST " + target + b" HTTP/1.1", b"Host: " + url.netloc]
    for name, value in headers.items():
        try:
            raw_name = name.encode("ascii")
            raw_value = value.encode("latin-1").strip(b" \t")
        except UnicodeEncodeError:
            raw_name = raw_value = b"\x00"  # refused below, as httpx refuses it
        if raw_name.lower() in _OWN:
            continue
        if not _TOKEN.fullmatch(raw_name) or not _FIELD_VALUE.fullmatch(raw_value):
            raise httpx.LocalProtocolError(f"header {name!r} holds a character HTTP cannot send")
        lines.append(raw_name + b": " + raw_value)
    lines.append(b"Connection: keep-alive")
    lines.append(b"Content-Length: ")
    return b"\r\n".join(lines)


class _Surplus(Exception):
    """Raised by a parser callback to stop at the end of the response (bytes follow it)."""


class Reply:
    """A whole response: status, headers (names lowercased, in order) and the decoded body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: list[tuple[bytes, bytes]], content: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status_code < 300

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lowercase), or ``None``."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def to_response(self, request: httpx.Request) -> httpx.Response:
        """The same reply as an ``httpx.Response`` (its body already decoded)."""
        headers = [(k, v) for k, v in self.headers if k != b"content-encoding"]
        return httpx.Response(
            self.status_code, headers=headers, content=self.content, request=request
        )


class ReplyReader:
    """Frames one response from the bytes of a connection (``httptools`` callbacks).

    Feed it what the socket gives with :meth:`feed` until :attr:`complete`; :meth:`eof` when
    the peer closed. Then :meth:`reply` decodes the body within the cap.

    Args:
        cap: the model's reply size cap.
        where: ``(provider, model)`` for errors.
    """

    __slots__ = (
        "_after",
        "_cap",
        "_chunked",
        "_chunks",
        "_coding",
        "_head_seen",
        "_length",
        "_parser",
        "_size",
        "_where",
        "complete",
        "extra",
        "headers",
        "headers_done",
        "keep_alive",
        "status",
    )

    def __init__(self, cap: ResponseCap, where: tuple[str | None, str | None]):
        self._cap = cap
        self._where = where
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: list[bytes] = []
        self._size = 0
        self._head_seen = 0
        self._after = 0
        self._length: int | None = None
        self._chunked = False
        self._coding: str | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.extra = False
        self.keep_alive = False
        self.status = 0

    # httptools callbacks (errors are found by feed after the call; one raises to stop parsing)

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True  # bytes after the response: the connection cannot be reused
            raise _Surplus  # and they are not part of this reply: stop parsing here

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headers_done:  # trailers (after a chunked body) are no headers of the reply
            self.headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # an interim response (100 Continue, 103 Early Hints): skip it
            return
        self.status = status
        self.headers_done = True
        for name, value in self.headers:
            if name == b"content-length" and self._length is None:
                text = value.strip()
                self._length = int(text) if text.isdigit() else None
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
        values = [v.decode("latin-1") for n, v in self.headers if n == b"content-encoding"]
        # Any coding but identity (checked, as a whole, when the body is decoded).
        self._coding = (
            ", ".join(values)
            if any(c.strip().lower() not in ("", "identity") for v in values for c in v.split(","))
            else None
        )

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._size += len(body)

    def on_message_complete(self) -> None:
        if self.headers_done and not self.complete:
            self.complete = True
            self.keep_alive = self._parser.should_keep_alive()

    # driving

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raises the httpx error (or ``ResponseTooLarge``) it shows."""
        room = MAX_HEAD_BYTES - self._head_seen
        if not self.headers_done and len(data) > room:
            # First no more than may still be head: if it does not end there, it is too long.
            self._feed(data[:room])
            data = data[room:]
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if self.headers_done:
            self._after += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise httpx.RemoteProtocolError("the server switched protocols") from None
        except httptools.HttpParserError as exc:
            if not self.complete:
                raise httpx.RemoteProtocolError(f"malformed response: {exc}") from None
            self.extra = True  # bytes after the whole response (see on_message_begin)
        if not self.headers_done:
            self._head_seen += len(data)
            if self._head_seen >= MAX_HEAD_BYTES:  # and still not over: longer than that
                raise httpx.RemoteProtocolError(f"response head longer than {MAX_HEAD_BYTES} bytes")
            return
        if self.status == 101:
            raise httpx.RemoteProtocolError("the server switched protocols")
        limit = self._cap.limit
        provider, model = self._where
        if self._length is not None and self._length > limit and self._encoding() is None:
            seen = f"{self._length} bytes (its Content-Length)"
            raise too_large(self._cap, seen=seen, provider=provider, model=model)
        if self._size > (limit if self._encoding() is None else compressed_limit(limit)):
            raise too_large(self._cap, seen=None, provider=provider, model=model)
        if self._after - self._size > limit + MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError(
                "chunk framing and trailers longer than the body allows"
            )

    def eof(self) -> None:
        """The peer closed the connection: the end of a close-delimited body, else an error."""
        if self.complete:
            return
        if not self.headers_done:
            if self._head_seen == 0:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            raise httpx.RemoteProtocolError("the server closed the connection mid-head")
        if self._length is None and not self._chunked:
            self.complete = True
            self.keep_alive = False
            return
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )

    def close(self) -> None:
        """Let go of the parser (idempotent; the reader parses no more after it).

        The parser holds this reader's bound methods as its callbacks, so the two make a
        reference cycle that only Python's cyclic collector would free: one per request,
        enough garbage to set off a collection every few thousand requests, whose pause grows
        with everything young in flight (hundreds of milliseconds at 2,048 requests in flight).
        Dropped here, the reader and its parser go by reference counting alone.
        """
        if hasattr(self, "_parser"):
            del self._parser

    def _encoding(self) -> str | None:
        return self._coding  # the content-encoding values, when any is not identity

    def reply(self) -> Reply:
        """The complete response, its body inflated (gzip, deflate, stacked) within the cap.

        Raises:
            ResponseTooLarge: the body is longer than the cap once inflated.
            httpx.DecodingError: a compressed body does not decode, or its encoding is one
                gridloom does not ask for (:func:`~gridloom.clients._limit.content_codings`).
        """
        body = b"".join(self._chunks)
        encoding = self._encoding()
        if encoding is not None:
            limit = self._cap.limit
            decoder = Decoder(content_codings([encoding]), limit)
            overflow = False
            try:
                body = decoder.feed(body, limit)
                if len(body) <= limit:
                    body += decoder.flush(limit - len(body))
            except _Overflow:
                overflow = True
            if overflow or len(body) > limit:
                provider, model = self._where
                raise too_large(
                    self._cap, seen=None, provider=provider, model=model, decompressed=True
                )
        return Reply(self.status, self.headers, body)
