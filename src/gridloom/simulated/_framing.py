"""Framing the app's ASGI answer messages as HTTP/1.1 bytes, the way h11 frames them.

The status line carries the standard reason phrase. A body goes out with the app's
``content-length`` (sending more, or less, is the app's error); without one, chunked to an
HTTP/1.1 client, and to an HTTP/1.0 client as is, ended by closing the connection. An answer
to ``HEAD`` carries no body. ``Connection: close`` is added when the connection will not
carry another request: the client asked so (or speaks HTTP/1.0), the app said so, the body
is delimited by the close, or the server is stopping. The headers the server adds are spelt
as h11 spelt them (``Connection: close``, ``Transfer-Encoding: chunked``): answers are the
same bytes as before.
"""

from __future__ import annotations

import http
from typing import Any

from ._request_reader import Request

__all__ = ["Response", "reason"]

_REASONS = {status.value: status.phrase.encode("ascii") for status in http.HTTPStatus}
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_CLOSE = b"Connection: close\r\n"


def reason(status: int) -> bytes:
    """The standard reason phrase of ``status`` (empty for a code without one)."""
    return _REASONS.get(status, b"")


class Response:
    """The answer to one request, framed one ASGI message at a time.

    Args:
        request: the request answered.
    """

    __slots__ = ("_chunked", "_head", "_remaining", "finished", "keep_alive", "request", "sent")

    def __init__(self, request: Request):
        self.request = request
        #: Whether the connection may carry another request after this answer (set it
        #: ``False`` before the head is framed to make it say ``connection: close``).
        self.keep_alive = request.keep_alive
        #: Whether the head has been framed (``http.response.body`` came).
        self.sent = False
        #: Whether the whole answer has been framed.
        self.finished = False
        self._head: Any = None
        #: Body bytes still due under ``content-length`` (``None``: no length).
        self._remaining: int | None = None
        self._chunked = False

    def frame(self, message: Any) -> bytes:
        """The bytes that send ``message`` (none for ``http.response.start``).

        Raises:
            RuntimeError: a message out of order, or a body longer or shorter than its
                ``content-length``.
        """
        kind = message["type"]
        if kind == "http.response.start":
            if self._head is not None:
                raise RuntimeError("unexpected ASGI message 'http.response.start'")
            self._head = message
            return b""
        if kind != "http.response.body" or self._head is None or self.finished:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        out = b"" if self.sent else self._start()
        data = message.get("body", b"")
        more = message.get("more_body", False)
        if self.request.method == b"HEAD":
            data = b""
        elif self._remaining is not None:
            self._remaining -= len(data)
            if self._remaining < 0 or (not more and self._remaining):
                raise RuntimeError("the body does not match its content-length")
        elif self._chunked:
            if data:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            if not more:
                data += b"0\r\n\r\n"
        if not more:
            self.finished = True
        return out + data if out else bytes(data)

    def _start(self) -> bytes:
        """The head: status line, the app's headers, framing and connection headers."""
        self.sent = True
        status = self._head["status"]
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason(status))]
        close = not self.keep_alive
        for name, value in self._head.get("headers", ()):
            name = bytes(name).lower()
            value = bytes(value)
            if name == b"content-length":
                self._remaining = int(value)
            elif name == b"transfer-encoding":
                self._chunked = True
            elif name == b"connection":
                if b"close" in value.lower():
                    close = True
                continue  # said again below, if the connection closes
            lines.append(b"%s: %s\r\n" % (name, value))
        if self._remaining is None and not self._chunked:
            if self.request.version == "1.1":
                self._chunked = True
                lines.append(_CHUNKED)
            else:
                close = True
        if close:
            self.keep_alive = False
            lines.append(_CLOSE)
        lines.append(b"\r\n")
        return b"".join(lines)
