"""A transport that spreads requests over several small connection pools.

httpcore's pool does bookkeeping proportional to the *square* of its connection count on every
request event (see encode/httpcore#1035, open as of httpcore 1.0.9): a single pool of 512
connections costs milliseconds of CPU per request, which is what a self-hosted endpoint with
``max_parallel_requests: 512`` needs. Pools of at most :data:`SHARD_SIZE` connections keep that
cost small and flat; requests go to the shard with the fewest in flight.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["SHARD_SIZE", "ShardedTransport"]

#: Connections per pool.
SHARD_SIZE = 16


class _CountedStream(httpx.AsyncByteStream):
    """A response body that tells its shard when it is closed (the connection is free again)."""

    def __init__(self, inner: httpx.AsyncByteStream, release: Any):
        self._inner = inner
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._release()


class ShardedTransport(httpx.AsyncBaseTransport):
    """``ceil(limits.max_connections / shard_size)`` pooled HTTP transports behind one.

    Args:
        limits: the total limits; each shard gets an equal share of connections.
        shard_size: connections per shard at most.
    """

    def __init__(self, limits: httpx.Limits, *, shard_size: int = SHARD_SIZE):
        total = max(1, limits.max_connections or 1)
        count = max(1, math.ceil(total / shard_size))
        per_shard = math.ceil(total / count)
        shard_limits = httpx.Limits(
            max_connections=per_shard,
            max_keepalive_connections=per_shard,
            keepalive_expiry=limits.keepalive_expiry,
        )
        self._shards = [httpx.AsyncHTTPTransport(limits=shard_limits) for _ in range(count)]
        self._in_flight = [0] * count
        self.limits = shard_limits

    @property
    def shards(self) -> int:
        return len(self._shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._shards)), key=self._in_flight.__getitem__)
        self._in_flight[index] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._in_flight[index] -= 1

        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_CountedStream(response.stream, release),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()
