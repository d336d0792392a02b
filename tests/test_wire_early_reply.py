"""WireTransport.post reads a reply the server sent before it read the whole body (a 413 or a
401 after the head, then the connection closed): over real sockets, with bodies larger than
the socket buffers, the real status is surfaced and the connection is never reused."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Awaitable, Callable

import httpx
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.clients._exchange import Reply, request_head
from gridloom.clients._limit import ResponseCap
from gridloom.clients._wire import WireTransport

CAP = ResponseCap(limit=1 << 20, aliases=("m",))
WHERE = ("p", "m")
TIMEOUTS: dict[str, float | None] = {"connect": 10.0, "write": 10.0, "read": 10.0}


def early_reply(status: int, *, close_header: bool) -> bytes:
    """A complete JSON error reply, as an auth proxy or a size limit sends it."""
    body = json.dumps({"error": {"message": f"refused {status}"}}).encode()
    head = [
        f"HTTP/1.1 {status} X",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    if close_header:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def answer_early(
    stream: trio.SocketStream,
    *,
    status: int,
    partial: int,
    delay: float,
    close_header: bool,
    seen: list[int],
) -> None:
    """Read the head and ``partial`` bytes of the body, wait ``delay``, answer ``status`` and
    close without reading the rest (the kernel resets the connection over the unread bytes)."""
    buffer = b""
    try:
        while b"\r\n\r\n" not in buffer:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            buffer += chunk
        body = len(buffer.partition(b"\r\n\r\n")[2])
        while body < partial:
            chunk = await stream.receive_some(min(65536, partial - body))
            if not chunk:
                return
            body += len(chunk)
        seen.append(body)
        await trio.sleep(delay)
        await stream.send_all(early_reply(status, close_header=close_header))
    except trio.BrokenResourceError:
        pass
    finally:
        stream.socket.close()


async def hang_up(stream: trio.SocketStream) -> None:
    """Read the head, then close without an answer (and without reading the body)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buffer += chunk
    stream.socket.close()


async def post_to(
    handler: Callable[[trio.SocketStream], Awaitable[None]], body: bytes
) -> tuple[int, object]:
    """One ``post`` of ``body`` to a server on 127.0.0.1 serving each connection with
    ``handler``; the idle connections it left kept and what it gave or raised."""
    wire = WireTransport(
        httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=60.0)
    )
    outcome: object
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        url = httpx.URL(f"http://127.0.0.1:{port}/v1/chat/completions")
        try:
            outcome = await wire.post(
                url,
                request_head(url, {"content-type": "application/json"}),
                body,
                timeouts=TIMEOUTS,
                until=math.inf,
                cap=CAP,
                where=WHERE,
            )
        except httpx.HTTPError as exc:
            outcome = exc
        kept = wire._idle_count
        await wire.aclose()
        nursery.cancel_scope.cancel()
    return kept, outcome


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(st.integers(0, 64 * 1024), st.integers(64 * 1024, 6 * 1024 * 1024)),
    status=st.sampled_from([413, 401]),
    partial=st.one_of(st.just(0), st.integers(0, 512 * 1024)),
    delay=st.sampled_from([0.0, 0.0, 0.005]),
    close_header=st.booleans(),
)
def test_early_reply_is_surfaced_whatever_the_body_size(
    size: int, status: int, partial: int, delay: float, close_header: bool
) -> None:
    """A reply sent after the head (and maybe part of the body), the connection then closed
    unread, reaches the caller with its real status; its connection is not kept."""
    seen: list[int] = []
    handler = functools.partial(
        answer_early,
        status=status,
        partial=min(partial, size),
        delay=delay,
        close_header=close_header,
        seen=seen,
    )
    kept, outcome = trio.run(post_to, handler, b"x" * size)
    assert isinstance(outcome, Reply), repr(outcome)
    assert outcome.status_code == status
    assert outcome.content == json.dumps({"error": {"message": f"refused {status}"}}).encode()
    assert len(seen) == 1
    if close_header:
        assert kept == 0


def test_early_reply_on_a_body_larger_than_the_socket_buffers() -> None:
    """The reviewer's case: 8 MB body, 401 right after the head: the 401, once, and the
    connection whose write failed is closed even though the reply did not say so."""
    seen: list[int] = []
    handler = functools.partial(
        answer_early, status=401, partial=0, delay=0.0, close_header=False, seen=seen
    )
    kept, outcome = trio.run(post_to, handler, b"x" * (8 << 20))
    assert getattr(outcome, "status_code", outcome) == 401
    assert kept == 0


def test_a_failed_write_without_a_reply_is_a_connection_failure() -> None:
    """A server closing after the head without answering: the failed write is reported as the
    read error httpcore raises (retried as a connection failure), not a protocol error."""
    kept, outcome = trio.run(post_to, hang_up, b"x" * (8 << 20))
    assert isinstance(outcome, httpx.ReadError), repr(outcome)
    assert kept == 0


@pytest.mark.parametrize("status", [413, 401])
def test_early_reply_with_a_small_body_is_unchanged(status: int) -> None:
    """A small body the kernel takes at once: the early reply is read as any reply."""
    seen: list[int] = []
    handler = functools.partial(
        answer_early, status=status, partial=0, delay=0.0, close_header=True, seen=seen
    )
    _, outcome = trio.run(post_to, handler, b'{"a": 1}')
    assert getattr(outcome, "status_code", outcome) == status


async def request_to(
    handler: Callable[[trio.SocketStream], Awaitable[None]], body: bytes
) -> tuple[int, httpx.Response | httpx.HTTPError]:
    """As :func:`post_to`, through ``handle_async_request`` (h11) with the body read."""
    wire = WireTransport(
        httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=60.0)
    )
    outcome: httpx.Response | httpx.HTTPError
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        request = httpx.Request(
            "POST",
            f"http://127.0.0.1:{port}/v1/files",
            content=body,
            extensions={"timeout": TIMEOUTS},
        )
        try:
            outcome = await wire.handle_async_request(request)
            await outcome.aread()
            await outcome.aclose()
        except httpx.HTTPError as exc:
            outcome = exc
        kept = wire._idle_count
        await wire.aclose()
        nursery.cancel_scope.cancel()
    return kept, outcome


@pytest.mark.parametrize("size", [100, 8 << 20])
@pytest.mark.parametrize("close_header", [True, False])
def test_h11_path_surfaces_the_early_reply_too(size: int, close_header: bool) -> None:
    """``handle_async_request`` (httpx requests: batch files, ...) also reads the early reply
    after a failed write, and never keeps that connection."""
    seen: list[int] = []
    handler = functools.partial(
        answer_early, status=413, partial=0, delay=0.0, close_header=close_header, seen=seen
    )
    kept, outcome = trio.run(request_to, handler, b"x" * size)
    assert isinstance(outcome, httpx.Response), repr(outcome)
    assert outcome.status_code == 413
    assert outcome.content == json.dumps({"error": {"message": "refused 413"}}).encode()
    if close_header or size > 1 << 20:
        assert kept == 0


def test_h11_path_failed_write_without_a_reply_is_a_read_error() -> None:
    """No reply before the failed write: the write's failure, as a ``ReadError``."""
    kept, outcome = trio.run(request_to, hang_up, b"x" * (8 << 20))
    assert isinstance(outcome, httpx.ReadError), repr(outcome)
    assert kept == 0
