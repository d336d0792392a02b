"""The HTTP client of a streamable-HTTP MCP server: headers read from environment variables
(their values never shown), explicit timeouts, and every response body bounded — a JSON
answer by its total size, an event stream (the SDK's SSE reader) by the size of each event.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping

import httpx2

__all__ = ["AnswerTooLong", "BoundedTransport", "http_client", "missing_header_variable"]


class AnswerTooLong(httpx2.StreamError):
    """A response body passed its size bound. A stream error, so that the SDK fails only
    the request it answered, not the whole connection."""


class _BoundedStream(httpx2.AsyncByteStream):
    """A response body that fails once it passes ``limit`` bytes."""

    def __init__(self, inner: httpx2.AsyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise AnswerTooLong(f"the server's answer is longer than {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class BoundedTransport(httpx2.AsyncBaseTransport):
    """httpx2's own transport, with non-streaming response bodies bounded to ``limit`` bytes
    (event streams are long-lived; the SDK bounds each of their events)."""

    def __init__(self, limit: int) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._limit = limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            stream = response.stream
            assert isinstance(stream, httpx2.AsyncByteStream)
            response.stream = _BoundedStream(stream, self._limit)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def missing_header_variable(headers_env: Mapping[str, str]) -> tuple[str, str] | None:
    """The first (header, variable) whose environment variable is unset, or ``None``."""
    for header, variable in headers_env.items():
        if variable not in os.environ:
            return header, variable
    return None


def http_client(
    headers_env: Mapping[str, str], *, connect_timeout: float, limit: int
) -> httpx2.AsyncClient:
    """A client sending the headers named in ``headers_env`` (values from the environment).

    ``connect_timeout`` bounds connecting and each write; reads may wait five minutes (the
    server's event stream stays open; each tool call is bounded by its own timeout).
    """
    headers = {header: os.environ[variable] for header, variable in headers_env.items()}
    timeout = httpx2.Timeout(connect_timeout, read=300.0)
    return httpx2.AsyncClient(headers=headers, timeout=timeout, transport=BoundedTransport(limit))
