"""``gridloom._sockets.send``: what the kernel takes at once goes straight to the descriptor,
the rest through ``send_all``; every byte arrives, in order; a peer that has gone is the
stream's ``BrokenResourceError``; a stream that is not plain TCP keeps ``send_all``."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom._sockets import descriptor, send


def _pair(buffer: int | None = None) -> tuple[trio.SocketStream, trio.SocketStream]:
    ends = socket.socketpair()
    if buffer is not None:
        for end in ends:
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    a, b = (trio.SocketStream(trio.socket.from_stdlib_socket(e)) for e in ends)
    return a, b


async def _receive(stream: trio.SocketStream, size: int, pace: float) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = await stream.receive_some(4096)
        assert chunk
        got += chunk
        await trio.sleep(pace)  # a slow reader: the writer's buffer fills
    return bytes(got)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 400_000), min_size=1, max_size=4), pace=st.sampled_from([0, 0.01])
)
def test_every_byte_arrives_in_order(sizes: list[int], pace: float) -> None:
    async def main() -> None:
        a, b = _pair(buffer=8192)
        assert descriptor(a) == a.socket.fileno() >= 0
        messages = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
        expected = b"".join(messages)
        async with a, b, trio.open_nursery() as nursery:
            received: list[bytes] = []

            async def reader() -> None:
                received.append(await _receive(b, len(expected), pace))

            if expected:
                nursery.start_soon(reader)
            for message in messages:
                await send(a, descriptor(a), message)
        assert b"".join(received) == expected

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_a_peer_that_has_gone_is_a_broken_resource() -> None:
    a, b = _pair()
    b.socket.close()
    with pytest.raises(trio.BrokenResourceError):
        await send(a, descriptor(a), b"x" * 65536)  # a socket pair fails at once (EPIPE)
    a.socket.close()


async def test_other_streams_keep_send_all() -> None:
    a, b = trio.testing.memory_stream_pair()
    assert descriptor(a) == -1
    await send(a, descriptor(a), b"hello")
    assert await b.receive_some(10) == b"hello"
