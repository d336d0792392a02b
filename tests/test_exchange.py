"""The fast HTTP exchange (``request_head``, ``ReplyReader``, ``WireTransport.post``, the
``post_json`` route through it) against ordinary and hostile replies on real loopback sockets.

The servers here write raw bytes on ``trio.serve_tcp`` (and parse the requests they get with
h11), so a test can send what h11 would refuse to produce: a broken status line, a huge head,
bytes after the answer. Time is virtual (``autojump_clock``, or a ``MockClock`` inside the
hypothesis tests), so every timeout is checked to the instant.
"""

from __future__ import annotations

import gc
import gzip
import math
import random
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import cast

import h11
import httpx
import hypothesis
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.clients import build_http_client
from gridloom.clients._exchange import MAX_HEAD_BYTES, Reply, request_head
from gridloom.clients._http import DirectRoute, direct_route
from gridloom.clients._limit import (
    MAX_CODINGS,
    Decoder,
    ResponseCap,
    _Overflow,
    content_codings,
)
from gridloom.clients._post import post_json
from gridloom.clients._retry import RetryPolicy
from gridloom.clients._wire import WireTransport
from gridloom.config import ModelConfig, ProviderConfig
from gridloom.errors import MalformedResponse, RateLimited, ResponseTooLarge

# --------------------------------------------------------------------------- scripted server


class RawServer:
    """A loopback server: each connection is served by a handler that writes raw bytes."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[h11.Request] = []
        self.bodies: list[bytes] = []
        #: Connections the client closed (seen as EOF by the server).
        self.client_closed = 0
        self.url = ""
        self.port = 0

    async def read_request(self, stream: trio.abc.Stream) -> bool:
        """Read one whole request (recorded); False when the client closed the connection."""
        conn = h11.Connection(h11.SERVER)
        body = b""
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return False
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    self.client_closed += 1
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.ConnectionClosed):
                return False
            elif isinstance(event, h11.Request):
                self.requests.append(event)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.bodies.append(body)
                return True

    async def wait_for_close(self, stream: trio.abc.Stream) -> None:
        """Read (and drop) whatever the client sends until it closes the connection."""
        while await stream.receive_some(65536):
            pass
        self.client_closed += 1


Handler = Callable[[trio.abc.Stream, RawServer], Awaitable[None]]
#: A scripted answer: bytes are written, numbers are seconds slept (``math.inf``: stall).
Step = bytes | float


def script(*steps: Step, close: bool = False) -> Handler:
    """Answer every request on a connection with ``steps``; then close it if ``close``."""

    async def handler(stream: trio.abc.Stream, server: RawServer) -> None:
        while await server.read_request(stream):
            for step in steps:
                if isinstance(step, bytes):
                    await stream.send_all(step)
                else:
                    await trio.sleep(step)
            if close:
                return

    return handler


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
#: Answers ``ok`` on a keep-alive connection.
ANSWER_OK = script(OK)


def in_turn(*answers: bytes) -> Handler:
    """Answer the server's n-th request (on any connection) with ``answers[n]`` (the last one
    for every request after them); keep the connection open."""

    async def handler(stream: trio.abc.Stream, server: RawServer) -> None:
        while await server.read_request(stream):
            await stream.send_all(answers[min(len(server.requests), len(answers)) - 1])

    return handler


def first_then(hostile: Handler, then: Handler = ANSWER_OK) -> Handler:
    """The first connection is served by ``hostile``, every later one by ``then``."""

    async def handler(stream: trio.abc.Stream, server: RawServer) -> None:
        await (hostile if server.connections == 1 else then)(stream, server)

    return handler


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[RawServer]:
    server = RawServer()

    async def serve(stream: trio.SocketStream) -> None:
        server.connections += 1
        try:
            await handler(stream, server)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away first
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        server.port = listeners[0].socket.getsockname()[1]
        server.url = f"http://127.0.0.1:{server.port}"
        yield server
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- client side

CAP = ResponseCap(limit=1 << 20, aliases=("m",))
WHERE = ("prov", "mod")
PATH = "/v1/chat/completions?x=1"
BODY = b'{"model":"mod","messages":[]}'


def pool(connections: int = 2) -> WireTransport:
    return WireTransport(
        httpx.Limits(
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=4.0,
        )
    )


async def post(
    wire: WireTransport,
    server: RawServer,
    *,
    cap: ResponseCap = CAP,
    until: float = math.inf,
    **timeouts: float,
) -> Reply | None:
    url = httpx.URL(server.url + PATH)
    head = request_head(url, {"content-type": "application/json"})
    return await wire.post(
        url, head, BODY, timeouts=dict(timeouts), until=until, cap=cap, where=WHERE
    )


async def ok(wire: WireTransport, server: RawServer) -> Reply:
    reply = await post(wire, server)
    assert reply is not None
    return reply


def assert_all_slots_free(wire: WireTransport) -> None:
    limit = wire.limits.max_connections
    assert wire._slots.value == limit


async def assert_recovers(wire: WireTransport, server: RawServer, *, fresh: bool = True) -> None:
    """After a failure every slot is free and the next request works (on a new connection if
    ``fresh``: the failed one must not be reused)."""
    assert_all_slots_free(wire)
    opened = wire.connections_opened
    reply = await ok(wire, server)
    assert (reply.status_code, reply.content) == (200, b"ok")
    if fresh:
        assert wire.connections_opened == opened + 1
    assert_all_slots_free(wire)


async def fails(
    error: type[BaseException],
    match: str,
    hostile: Handler,
    *,
    cap: ResponseCap = CAP,
    fresh: bool = True,
    **timeouts: float,
) -> BaseException:
    """``post`` to a server whose first connection runs ``hostile`` raises ``error``; then the
    pool recovers (see :func:`assert_recovers`)."""
    async with serving(first_then(hostile) if fresh else hostile) as server, pool() as wire:
        with trio.fail_after(60), pytest.raises(error, match=match) as caught:
            await post(wire, server, cap=cap, **timeouts)
        await assert_recovers(wire, server, fresh=fresh)
    return caught.value


# --------------------------------------------------------------------------- 1. equivalence

#: Status lines: with a reason, an empty one, or none at all.
_REASONS = [b" OK", b" Whatever it is", b" ", b""]
_HEADER_NAMES = [
    "X-Request-Id",
    "x-repeat",
    "X-Repeat",
    "Retry-After",
    "x-ratelimit-remaining-requests",
    "Set-Cookie",
    "vary",
    "x_under!#$%&'*+.^`|~",
]
#: Field values (visible ASCII, inner spaces and tabs, obs-text); whitespace around a value is
#: left to test_header_values_lose_surrounding_whitespace_as_with_h11.
_VALUES = st.from_regex(
    rb"([!-~\x80-\xff]([ \t!-~\x80-\xff]{0,30}[!-~\x80-\xff])?)?", fullmatch=True
)


@dataclass(repr=False)
class Scripted:
    """A generated response: the bytes to write (and how they are split) and what they mean."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes  # decoded
    framing: str
    encoding: str | None
    pieces: list[bytes] = field(default_factory=list)

    @property
    def close(self) -> bool:
        return self.framing == "close"

    def __repr__(self) -> str:
        return (
            f"Scripted(status={self.status}, framing={self.framing!r},"
            f" encoding={self.encoding!r}, body={len(self.body)} bytes, headers={self.headers!r},"
            f" writes={[len(p) for p in self.pieces]}, head={self.pieces[0][:300]!r})"
        )


def _encode(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body, mtime=0)
    if encoding == "deflate":
        return zlib.compress(body)
    return body


def _chunked(data: bytes, rng: random.Random, largest: int) -> bytes:
    out = []
    at = 0
    while at < len(data):
        size = rng.randint(1, largest)
        piece = data[at : at + size]
        ext = rng.choice([b"", b"", b";ext=1", b';q="a b"'])
        size_line = rng.choice([b"%x", b"%X", b"%04x"]) % len(piece)
        out.append(b"%s%s\r\n%s\r\n" % (size_line, ext, piece))
        at += size
    out.append(b"0\r\n\r\n")
    return b"".join(out)


@st.composite
def scripted_responses(draw: st.DrawFn) -> Scripted:
    """Responses of every framing, with or without compression, split into random writes."""
    # The shape is drawn from a seeded generator: hypothesis would favour the first choices.
    rng = random.Random(draw(st.integers(0, 2**32)))
    status = rng.choice([200, 201, 204, 400, 429, 503])
    size = rng.choice(
        [0, rng.randint(1, 300), rng.randint(300, 65536), rng.randint(65536, 200_000)]
    )
    text = bytes(rng.choices(b'abc {}":,\n', k=size))
    body = rng.randbytes(size) if rng.random() < 0.5 else text
    framing = rng.choice(["length", "chunked", "close"])
    encoding = rng.choice([None, "gzip", "deflate"])
    names = draw(st.lists(st.sampled_from(_HEADER_NAMES), max_size=6))
    headers = [(name.encode(), draw(_VALUES)) for name in names]
    if status == 204:
        body, encoding = b"", None
    wire_body = _encode(body, encoding)
    if encoding is not None:
        headers.append((rng.choice([b"Content-Encoding", b"content-encoding"]), encoding.encode()))
    if status != 204 and framing == "length":
        length = rng.choice(["%d", "%d", "%03d"]) % len(wire_body)
        headers.append((b"Content-Length", length.encode()))
    elif status != 204 and framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        largest = rng.choice([1, 7, 1000, 70_000]) + len(wire_body) // 1000
        wire_body = _chunked(wire_body, rng, largest)
    elif status == 204:
        wire_body = b""
    rng.shuffle(headers)
    data = b"HTTP/1.1 %d%s\r\n" % (status, rng.choice(_REASONS))
    data += b"".join(b"%s: %s\r\n" % header for header in headers) + b"\r\n" + wire_body
    cuts = sorted(rng.randrange(len(data)) for _ in range(rng.randint(0, 6)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    hypothesis.event(f"framing {framing if status != 204 else '204'}, encoding {encoding}")
    big = "> 64 KiB" if len(body) > 65536 else "<= 64 KiB"
    hypothesis.event(f"body {big}, writes {len(pieces)}")
    return Scripted(status, headers, body, framing, encoding, [p for p in pieces if p])


_REQUEST_HEADERS = {
    "Content-Type": "application/json",
    "Authorization": "Bearer sk-test-0123456789",
    "X-Trace": "a b\tc",
    "accept-encoding": "gzip, deflate",
}


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(response=scripted_responses(), payload=st.binary(max_size=3000))
def test_post_gives_what_the_h11_path_gives(response: Scripted, payload: bytes) -> None:
    """post reads any generated reply as h11 + aread does, and sends a request h11 parses."""
    steps: list[Step] = []
    for piece in response.pieces:
        steps += [piece, 0.001]  # separate writes reach the client as separate reads

    async def main() -> None:
        async with serving(script(*steps, close=response.close)) as server:
            url = httpx.URL(server.url + PATH)
            async with pool() as fast:
                head = request_head(url, _REQUEST_HEADERS)
                until = trio.current_time() + 1000
                reply = await fast.post(
                    url, head, payload, timeouts={}, until=until, cap=CAP, where=WHERE
                )
            async with pool() as slow:
                request = httpx.Request(
                    "POST",
                    url,
                    headers=_REQUEST_HEADERS,
                    content=payload,
                    extensions={"timeout": {"read": 1000.0}},
                )
                answer = await slow.handle_async_request(request)
                await answer.aread()
                await answer.aclose()
        assert reply is not None
        assert reply.status_code == answer.status_code == response.status
        assert reply.content == answer.content == response.body
        assert reply.headers == [(k.lower(), v) for k, v in answer.headers.raw]

        sent = server.requests[0]
        assert sent.method == b"POST"
        assert sent.target == b"/v1/chat/completions?x=1"
        got = [(k, v) for k, v in sent.headers.raw_items()]
        assert [v for k, v in got if k.lower() == b"host"] == [f"127.0.0.1:{server.port}".encode()]
        assert [v for k, v in got if k.lower() == b"content-length"] == [str(len(payload)).encode()]
        for name, value in _REQUEST_HEADERS.items():
            assert [v for k, v in got if k.lower() == name.lower().encode()] == [value.encode()]
        assert not [k for k, v in got if k.lower() == b"transfer-encoding"]
        assert server.bodies[0] == payload

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("line", [b"x-a:  v  ", b"x-a: v\t", b"x-a:\tv \t", b"x-a: v w "], ids=repr)
async def test_header_values_lose_surrounding_whitespace_as_with_h11(line: bytes) -> None:
    """Whitespace around a header value is dropped, as h11 drops it (RFC 9110 5.5)."""
    answer = b"HTTP/1.1 200 OK\r\n" + line + b"\r\ncontent-length: 2\r\n\r\nok"
    async with serving(script(answer)) as server, pool() as wire:
        reply = await ok(wire, server)
        request = httpx.Request("POST", server.url + PATH, content=BODY)
        response = await wire.handle_async_request(request)
        await response.aread()
        await response.aclose()
    assert reply.header(b"x-a") == response.headers["x-a"].encode() == line.split(b":")[1].strip()


# --------------------------------------------------------------------------- 2. hostile replies


@pytest.mark.parametrize(
    "status_line",
    [b"garbage\r\n\r\n", b"HTTP/1.1 2OO OK\r\n\r\n", b"HTTP/9 200 OK\r\n\r\n", b"\x00\xff\r\n\r\n"],
    ids=repr,
)
async def test_garbage_status_line(status_line: bytes, autojump_clock: object) -> None:
    """A reply that is not HTTP is a RemoteProtocolError; the pool recovers."""
    await fails(httpx.RemoteProtocolError, "malformed", script(status_line, math.inf))


def _big_head(size: int) -> bytes:
    """A response head of exactly ``size`` bytes (status line and headers, blank line included)."""
    start = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-big: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


@pytest.mark.parametrize("size", [MAX_HEAD_BYTES + 1, MAX_HEAD_BYTES + 200, 3 * MAX_HEAD_BYTES])
@pytest.mark.parametrize("writes", ["one write", "dribbled"])
async def test_head_longer_than_the_limit_is_refused(
    size: int, writes: str, autojump_clock: object
) -> None:
    """A head over MAX_HEAD_BYTES is refused, in one write or dribbled, even if it completes."""
    head = _big_head(size)
    steps: list[Step] = [head + b"ok"]
    if writes == "dribbled":
        steps = []
        for at in range(0, len(head), 1024):
            steps += [head[at : at + 1024], 0.01]
        steps.append(b"ok")
    await fails(httpx.RemoteProtocolError, "head longer than", script(*steps, math.inf))


async def test_head_just_within_the_limit_is_read(autojump_clock: object) -> None:
    """A head of exactly MAX_HEAD_BYTES (in one write, with its body) is accepted."""
    async with serving(script(_big_head(MAX_HEAD_BYTES) + b"ok")) as server, pool() as wire:
        reply = await ok(wire, server)
    assert reply.content == b"ok"


async def test_declared_length_over_the_cap_is_refused_before_the_body(
    autojump_clock: object,
) -> None:
    """A Content-Length over the cap fails at once, though the server stalls after the head."""
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n"
    start = trio.current_time()
    error = await fails(
        ResponseTooLarge, "5000 bytes", script(head, math.inf), cap=ResponseCap(limit=4999)
    )
    assert "max_response_bytes = 4999" in str(error)
    assert trio.current_time() == start


@pytest.mark.parametrize("framing", ["chunked", "close"])
async def test_body_growing_past_the_cap_is_refused(framing: str, autojump_clock: object) -> None:
    """A body without a declared length that never ends is cut off past the cap."""
    chunk = b"x" * 4096
    head = b"HTTP/1.1 200 OK\r\n"
    if framing == "chunked":
        head += b"transfer-encoding: chunked\r\n\r\n"
        chunk = b"1000\r\n" + chunk + b"\r\n"
    else:
        head += b"\r\n"

    async def endless(stream: trio.abc.Stream, server: RawServer) -> None:
        await server.read_request(stream)
        await stream.send_all(head)
        while True:
            await stream.send_all(chunk)
            await trio.sleep(0.001)

    error = await fails(
        ResponseTooLarge, "reading stopped there", endless, cap=ResponseCap(limit=100_000)
    )
    assert "max_response_bytes = 100000" in str(error)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compression_bomb_is_refused(encoding: str, autojump_clock: object) -> None:
    """A body inflating past the cap is ResponseTooLarge naming max_response_bytes."""
    bomb = _encode(b"\0" * (20 << 20), encoding)
    assert len(bomb) < 100_000
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-encoding: %s\r\ncontent-length: %d\r\n\r\n"
        % (encoding.encode(), len(bomb))
    ) + bomb
    error = await fails(
        ResponseTooLarge,
        "once decompressed",
        in_turn(answer, OK),
        cap=ResponseCap(limit=1 << 20),
        fresh=False,
    )
    assert "max_response_bytes = 1048576" in str(error)


@pytest.mark.parametrize(
    "body",
    [
        b"not gzip at all",
        gzip.compress(b"hello " * 100)[:-8] + b"\0" * 8,
        b"\x1f\x8b\x09" + b"\0" * 7 + b"junk",
    ],
    ids=["garbage", "bad-crc", "bad-header"],
)
async def test_corrupt_gzip_body_is_a_decoding_error(body: bytes, autojump_clock: object) -> None:
    """A gzip body that does not inflate is httpx.DecodingError."""
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(body)
    await fails(httpx.DecodingError, "undecodable", in_turn(answer + body, OK), fresh=False)


@pytest.mark.parametrize("encoding", [b"br", b"zstd", b"compress", b"BR "])
async def test_unasked_content_encoding_is_a_decoding_error(
    encoding: bytes, autojump_clock: object
) -> None:
    """A content-encoding gridloom does not ask for is httpx.DecodingError."""
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: %s\r\ncontent-length: 2\r\n\r\nok" % encoding
    await fails(
        httpx.DecodingError, "unsupported content-encoding", in_turn(answer, OK), fresh=False
    )


@pytest.mark.parametrize(
    ("sent", "match"),
    [
        (b"", "^Server disconnected without sending a response.$"),
        (b"HTTP/1.1 200 OK\r\ncontent-le", "mid-head"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", "without sending complete"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab", "without sending"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabcde\r\n", "without"),
    ],
    ids=["before-any-byte", "mid-head", "mid-body", "mid-chunk", "before-last-chunk"],
)
async def test_eof_before_the_end(sent: bytes, match: str, autojump_clock: object) -> None:
    """The server closing before the reply is whole is a RemoteProtocolError."""
    await fails(httpx.RemoteProtocolError, match, script(sent, close=True))


async def test_interim_responses_are_skipped(autojump_clock: object) -> None:
    """100 Continue and 103 Early Hints are skipped, headers too; the connection is reused."""
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nlink: </x>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nx-final: 1\r\ncontent-length: 2\r\n\r\nok"
    )
    steps: list[Step] = []
    for at in range(0, len(answer), 7):
        steps += [answer[at : at + 7], 0.001]  # read by read, as they come
    async with serving(script(*steps)) as server, pool() as wire:
        for _ in range(2):
            reply = await ok(wire, server)
            assert (reply.status_code, reply.content) == (200, b"ok")
            assert reply.headers == [(b"x-final", b"1"), (b"content-length", b"2")]
    assert wire.connections_opened == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n",
    ],
    ids=["upgrade", "bare", "after-100"],
)
async def test_switching_protocols_is_an_error(answer: bytes, autojump_clock: object) -> None:
    """101 Switching Protocols is a RemoteProtocolError (gridloom never asks to upgrade)."""
    await fails(httpx.RemoteProtocolError, "protocols|Upgrade", script(answer, math.inf))


_EXTRA = [
    b"HTTP/1.1 500 Evil\r\nx-evil: 1\r\ncontent-length: 3\r\n\r\nbad",
    b"HTTP/1.1 200 OK\r\n",
    b"junk",
    b"\r\n\r\nxx",
]


@pytest.mark.parametrize("extra", _EXTRA, ids=["response", "status-line", "junk", "crlf-junk"])
@pytest.mark.parametrize("when", ["same write", "later write"])
@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
async def test_bytes_after_the_response(
    extra: bytes, when: str, close: bool, autojump_clock: object
) -> None:
    """Bytes after a whole reply: the reply is returned unchanged, its connection not reused."""
    head = b"HTTP/1.1 200 OK\r\nx-first: 1\r\n" + (b"connection: close\r\n" if close else b"")
    first = head + b"content-length: 2\r\n\r\nok"
    steps: list[Step] = [first + extra] if when == "same write" else [first, 0.01, extra]
    async with serving(first_then(script(*steps, math.inf))) as server, pool() as wire:
        reply = await ok(wire, server)
        await trio.sleep(0.1)
        assert_all_slots_free(wire)
        assert (await ok(wire, server)).content == b"ok"
    assert reply.status_code == 200
    assert reply.content == b"ok"
    closing = [(b"connection", b"close")] if close else []
    assert reply.headers == [(b"x-first", b"1"), *closing, (b"content-length", b"2")]
    assert wire.connections_opened == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nconnection: Close\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n\r\nok",
    ],
    ids=["close-length", "close-chunked", "http-1.0", "close-delimited"],
)
async def test_connection_not_reusable_is_not_reused(answer: bytes, autojump_clock: object) -> None:
    """Connection: close, HTTP/1.0 or a close-delimited body: the connection is not reused."""
    async with serving(script(answer, close=True)) as server, pool() as wire:
        for _ in range(3):
            assert (await ok(wire, server)).content == b"ok"
        assert_all_slots_free(wire)
    assert wire.connections_opened == server.connections == 3


@pytest.mark.parametrize(
    "answer",
    [
        OK,
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 429 Slow down\r\nretry-after: 1\r\ncontent-length: 2\r\n\r\nno",
    ],
    ids=["length", "chunked", "204", "http-1.0-keep-alive", "429"],
)
async def test_keep_alive_connection_is_reused(answer: bytes, autojump_clock: object) -> None:
    """A whole keep-alive reply leaves its connection for the next request."""
    async with serving(script(answer)) as server, pool() as wire:
        for _ in range(3):
            await ok(wire, server)
    assert wire.connections_opened == server.connections == 1


def streaming(start: bytes, filler: bytes, *, total: int = 8 << 20) -> Handler:
    """Send ``start``, then ``filler`` again and again (``total`` bytes at most), then stall."""
    piece = filler * max(1, 65536 // len(filler))

    async def handler(stream: trio.abc.Stream, server: RawServer) -> None:
        if await server.read_request(stream):
            await stream.send_all(start)
            for _ in range(total // len(piece)):
                await stream.send_all(piece)
                await trio.sleep(0.001)
            await trio.sleep_forever()

    return handler


async def test_endless_interim_responses_are_bounded(autojump_clock: object) -> None:
    """A server sending 100 Continue forever is refused once their heads pass MAX_HEAD_BYTES."""
    hostile = streaming(b"", b"HTTP/1.1 100 Continue\r\n\r\n")
    until = trio.current_time() + 1000
    await fails(httpx.RemoteProtocolError, "head longer than", hostile, until=until)


_CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("start", "filler"),
    [
        (b"1;ext=", b"a"),
        (b"", b"0"),
        (b"2\r\nok\r\n0\r\n", b"x-trailer: " + b"v" * 100 + b"\r\n"),
        (b"2\r\nok\r\n0\r\nx-trailer: ", b"v"),
    ],
    ids=["chunk-extension", "chunk-size-zeros", "trailer-fields", "trailer-value"],
)
async def test_endless_chunk_framing_is_bounded(
    start: bytes, filler: bytes, autojump_clock: object
) -> None:
    """Endless chunk framing or trailers without body bytes are refused within bounded bytes."""
    hostile = streaming(_CHUNKED + start, filler)
    cap = ResponseCap(limit=100_000)
    error = (httpx.RemoteProtocolError, ResponseTooLarge)
    async with serving(first_then(hostile)) as server, pool() as wire:
        until = trio.current_time() + 1000
        with trio.fail_after(2000), pytest.raises(error):
            await post(wire, server, cap=cap, until=until)
        await assert_recovers(wire, server)


@pytest.mark.parametrize(
    "trailers",
    [b"x-trailer: 1\r\n", b"retry-after: 30\r\nx-ratelimit-remaining-requests: 0\r\n"],
    ids=["x-trailer", "quota-trailers"],
)
async def test_trailers_are_not_headers_of_the_reply(
    trailers: bytes, autojump_clock: object
) -> None:
    """Trailer fields are not headers of the reply (h11 drops them too)."""
    answer = _CHUNKED + b"2\r\nok\r\n0\r\n" + trailers + b"\r\n"
    async with serving(script(answer)) as server, pool() as wire:
        reply = await ok(wire, server)
        request = httpx.Request("POST", server.url + PATH, content=BODY)
        response = await wire.handle_async_request(request)
        await response.aread()
        await response.aclose()
    assert reply.content == response.content == b"ok"
    assert reply.headers == [(k.lower(), v) for k, v in response.headers.raw]


_PAYLOAD = b'{"text":"' + b"hello " * 50 + b'"}'


@pytest.mark.parametrize(
    ("lines", "body"),
    [
        ([b"identity", b"gzip"], gzip.compress(_PAYLOAD)),
        ([b"gzip", b"gzip"], gzip.compress(gzip.compress(_PAYLOAD))),
        ([b"deflate, gzip"], gzip.compress(zlib.compress(_PAYLOAD))),
        ([b"gzip, identity"], gzip.compress(_PAYLOAD)),
        ([b"identity", b"br"], b"\x0b\x02\x80hello\x03"),
    ],
    ids=["identity+gzip", "gzip+gzip", "deflate,gzip", "gzip,identity", "identity+br"],
)
async def test_every_content_coding_is_undone_or_refused(
    lines: list[bytes], body: bytes, autojump_clock: object
) -> None:
    """Several content-codings are all undone or refused, never left (partly) encoded."""
    head = b"".join(b"content-encoding: %s\r\n" % line for line in lines)
    answer = b"HTTP/1.1 200 OK\r\n%scontent-length: %d\r\n\r\n" % (head, len(body)) + body
    async with serving(script(answer)) as server, pool() as wire:
        try:
            reply = await ok(wire, server)
        except httpx.DecodingError:
            return
    assert reply.content == _PAYLOAD


# --------------------------------------------------------------------------- 3. timeouts


def dribble(answer: bytes, every: float) -> Handler:
    """Send ``answer`` one byte at a time, one every ``every`` seconds."""
    return script(*[step for byte in answer for step in (every, bytes([byte]))])


async def test_read_timeout_restarts_with_every_read(autojump_clock: object) -> None:
    """A server sending a byte every 0.9 s never trips a 1 s read timeout."""
    async with serving(dribble(OK, 0.9)) as server, pool() as wire:
        start = trio.current_time()
        reply = await post(wire, server, read=1.0)
        elapsed = trio.current_time() - start
    assert reply is not None
    assert reply.content == b"ok"
    assert elapsed == pytest.approx(0.9 * len(OK), abs=1e-6)


async def test_read_timeout_is_exact(autojump_clock: object) -> None:
    """A stall is ReadTimeout exactly one read timeout after the last byte (0.5 s + 1.0 s)."""
    hostile = script(0.5, OK[:20], 1.1, OK[20:])
    start = trio.current_time()
    await fails(httpx.ReadTimeout, "ReadTimeout", hostile, read=1.0)
    # fails() ran the recovery request too, which takes no virtual time
    assert trio.current_time() - start == pytest.approx(1.5, abs=1e-6)


async def test_overall_deadline_gives_none_and_frees_the_slot(autojump_clock: object) -> None:
    """Reaching ``until`` first gives None at exactly ``until``; the pool recovers."""
    async with serving(first_then(dribble(OK, 0.9))) as server, pool(connections=1) as wire:
        start = trio.current_time()
        reply = await post(wire, server, until=start + 3.0, read=10.0)
        assert reply is None
        assert trio.current_time() - start == pytest.approx(3.0, abs=1e-6)
        await assert_recovers(wire, server)


async def test_overall_deadline_while_waiting_for_a_slot(autojump_clock: object) -> None:
    """``until`` reached while waiting for a slot gives None then, and takes no slot."""
    async with serving(script(5.0, OK)) as server, pool(connections=1) as wire:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post, wire, server)
            await trio.sleep(1)
            start = trio.current_time()
            assert await post(wire, server, until=start + 2.0, pool=10.0) is None
            assert trio.current_time() - start == pytest.approx(2.0, abs=1e-6)
        assert_all_slots_free(wire)
        assert (await ok(wire, server)).content == b"ok"


async def test_pool_timeout_when_every_slot_is_busy(autojump_clock: object) -> None:
    """With every slot busy, PoolTimeout after exactly the pool timeout; slots freed after."""
    async with serving(script(10.0, OK)) as server, pool(connections=2) as wire:
        replies: list[Reply | None] = []

        async def busy() -> None:
            replies.append(await post(wire, server))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(busy)
            nursery.start_soon(busy)
            await trio.sleep(1)
            start = trio.current_time()
            with pytest.raises(httpx.PoolTimeout):
                await post(wire, server, pool=2.0)
            assert trio.current_time() - start == pytest.approx(2.0, abs=1e-6)
        assert [r.content for r in replies if r is not None] == [b"ok", b"ok"]
        assert_all_slots_free(wire)


async def test_connect_timeout(autojump_clock: object) -> None:
    """A handshake that never completes is ConnectTimeout at exactly the connect timeout."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue (nobody accepts)
            sock = trio.socket.socket()
            with trio.move_on_after(0.5):
                await sock.connect(("127.0.0.1", port))
            fillers.append(sock)
        async with pool(connections=1) as wire:
            url = httpx.URL(f"http://127.0.0.1:{port}/v1/x")
            head = request_head(url, {})
            start = trio.current_time()
            with pytest.raises(httpx.ConnectTimeout):
                await wire.post(
                    url,
                    head,
                    b"{}",
                    timeouts={"connect": 3.0},
                    until=math.inf,
                    cap=CAP,
                    where=WHERE,
                )
            assert trio.current_time() - start == pytest.approx(3.0, abs=1e-6)
            async with serving(ANSWER_OK) as server:
                await assert_recovers(wire, server)
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


async def test_write_timeout(autojump_clock: object) -> None:
    """A server not reading the request body: WriteTimeout at exactly the write timeout."""

    async def deaf(stream: trio.abc.Stream, server: RawServer) -> None:
        await trio.sleep_forever()

    async with serving(first_then(deaf)) as server, pool() as wire:
        url = httpx.URL(server.url + PATH)
        head = request_head(url, {})
        start = trio.current_time()
        with pytest.raises(httpx.WriteTimeout):
            await wire.post(
                url,
                head,
                b"x" * (32 << 20),
                timeouts={"write": 2.0},
                until=math.inf,
                cap=CAP,
                where=WHERE,
            )
        assert trio.current_time() - start == pytest.approx(2.0, abs=1e-6)
        await assert_recovers(wire, server)


# --------------------------------------------------------------------------- 4. cancellation


async def test_cancellation_mid_read_closes_the_connection(autojump_clock: object) -> None:
    """Cancelled mid-read: the connection is closed (server sees EOF) and its slot freed."""
    started = trio.Event()
    closed = trio.Event()

    async def half(stream: trio.abc.Stream, server: RawServer) -> None:
        await server.read_request(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        started.set()
        await server.wait_for_close(stream)
        closed.set()

    async with serving(first_then(half)) as server, pool(connections=1) as wire:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post, wire, server)
            await started.wait()
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        with trio.fail_after(1):
            await closed.wait()
        assert wire._idle_count == 0
        await assert_recovers(wire, server)


async def test_cancellation_while_waiting_for_a_slot_takes_none(autojump_clock: object) -> None:
    """A request cancelled while it waits for a slot gives back no slot it never took."""
    async with serving(script(2.0, OK)) as server, pool(connections=1) as wire:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post, wire, server)
            await trio.sleep(0.5)
            with trio.move_on_after(0.5):
                await post(wire, server)
        assert_all_slots_free(wire)


# --------------------------------------------------------------------------- 5. request heads

_SECRET = "sk-live-SECRET0123456789abcdef"


@given(
    at=st.integers(0, len(_SECRET)),
    bad=st.sampled_from(
        ["\r", "\n", "\0", "\r\n", "\r\nX-Injected: 1", "\x01", "\x1f", "\x7f", "€", "\u2028"]
    ),
    name=st.sampled_from(["Authorization", "x-api-key", "X-Custom"]),
)
def test_unsendable_header_value_is_refused_without_showing_it(
    at: int, bad: str, name: str
) -> None:
    """A value holding a control character (CR, LF, NUL, any other but the tab) or a character
    Latin-1 cannot encode is LocalProtocolError naming the header, never the value."""
    value = "Bearer " + _SECRET[:at] + bad + _SECRET[at:]
    with pytest.raises(httpx.LocalProtocolError) as caught:
        request_head(httpx.URL("http://h.test/v1"), {name: value})
    message = str(caught.value)
    assert name in message
    assert _SECRET[:8] not in message
    assert _SECRET[-8:] not in message
    for part in (_SECRET[:at], _SECRET[at:]):
        assert len(part) < 4 or part not in message


@given(
    name=st.one_of(
        st.sampled_from(["", "bad name", "x:y", "x\r\ny", "(x)", "x/y", 'x"', "ä", "x\0"]),
        st.text(min_size=1, max_size=8).filter(
            lambda s: any(
                c not in "!#$%&'*+-.^_`|~" and not (c.isascii() and c.isalnum()) for c in s
            )
        ),
    )
)
def test_header_name_that_is_not_a_token_is_refused(name: str) -> None:
    """A header name that is not an HTTP token is LocalProtocolError."""
    with pytest.raises(httpx.LocalProtocolError):
        request_head(httpx.URL("http://h.test/v1"), {name: "v"})


def _parse(head: bytes, body: bytes) -> tuple[h11.Request, bytes]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head + str(len(body)).encode() + b"\r\n\r\n" + body)
    request = conn.next_event()
    assert isinstance(request, h11.Request)
    data = conn.next_event()
    received = data.data if isinstance(data, h11.Data) else b""
    return request, bytes(received)


@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_own_headers_from_the_caller_are_not_sent_twice(case: Callable[[str], str]) -> None:
    """Caller-given Host, Content-Length, Transfer-Encoding, Connection are not sent twice."""
    url = httpx.URL("http://api.test:8443/v1/chat?q=1")
    given_headers = {
        case("host"): "evil.test",
        case("content-length"): "999",
        case("transfer-encoding"): "chunked",
        case("connection"): "close",
        "X-Keep": "1",
    }
    request, body = _parse(request_head(url, given_headers), b"{}")
    names = [k.lower() for k, _ in request.headers.raw_items()]
    assert sorted(names) == sorted([b"host", b"x-keep", b"connection", b"content-length"])
    values = dict(request.headers)
    assert values[b"host"] == b"api.test:8443"
    assert values[b"content-length"] == b"2"
    assert values[b"connection"] == b"keep-alive"
    assert request.target == b"/v1/chat?q=1"
    assert body == b"{}"


def test_route_head_merges_headers_case_insensitively_and_hides_the_key() -> None:
    """DirectRoute.head: the request's header wins in any case; repr hides the API key."""
    route = DirectRoute(
        pool(),
        {"Authorization": "Bearer provider-default", "User-Agent": "ua", "X-Both": "client"},
        httpx.URL("http://api.test:8080/v1/"),
    )
    key = "sk-proj-" + "K" * 40
    head = route.head("chat/completions", {"authorization": f"Bearer {key}", "x-both": "req"})
    request, _ = _parse(head, b"{}")
    pairs = [(k.lower(), v) for k, v in request.headers.raw_items()]
    assert [v for k, v in pairs if k == b"authorization"] == [f"Bearer {key}".encode()]
    assert [v for k, v in pairs if k == b"x-both"] == [b"req"]
    assert [v for k, v in pairs if k == b"user-agent"] == [b"ua"]
    assert request.target == b"/v1/chat/completions"
    assert (
        route.head("chat/completions", {"authorization": f"Bearer {key}", "x-both": "req"}) is head
    )
    assert key not in repr(route)
    assert key not in str(route)


# --------------------------------------------------------------------------- 6. post_json


@asynccontextmanager
async def model_client(server: RawServer) -> AsyncIterator[httpx.AsyncClient]:
    provider = ProviderConfig(name="p", type="openai", endpoint="http://unused.test/v1")
    models = [ModelConfig(alias="m", provider="p", model="mod", max_parallel_requests=2)]
    http = build_http_client(provider, models, base_url=server.url + "/v1")
    async with http:
        route = direct_route(http)
        assert route is not None
        assert isinstance(route.transport, WireTransport)
        yield http


async def call(http: httpx.AsyncClient) -> tuple[object, httpx.Headers]:
    return await post_json(
        http,
        "chat/completions",
        {"model": "mod"},
        headers={"authorization": "Bearer sk-x"},
        time_limit=30.0,
        retry=RetryPolicy(max_attempts=3, rng=random.Random(0)),
        provider="p",
        model="mod",
    )


def _json(status: bytes, body: bytes, *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 %s\r\n%scontent-length: %d\r\n\r\n%s" % (status, extra, len(body), body)


async def test_post_json_429_is_rate_limited_with_retry_after(autojump_clock: object) -> None:
    """A 429 with Retry-After is RateLimited carrying that retry_after, not retried."""
    answer = _json(b"429 Too Many Requests", b'{"error":{"message":"slow"}}', b"Retry-After: 7")
    async with serving(script(answer)) as server, model_client(server) as http:
        with pytest.raises(RateLimited) as caught:
            await call(http)
    assert caught.value.retry_after == 7
    assert len(server.requests) == 1


async def test_post_json_retries_a_503(autojump_clock: object) -> None:
    """A 503 is retried by the transport retry; the next answer is returned."""
    answers = [_json(b"503 Busy", b'{"error":"busy"}'), _json(b"200 OK", b'{"ok":true}')]

    async def flaky(stream: trio.abc.Stream, server: RawServer) -> None:
        while await server.read_request(stream):
            await stream.send_all(answers[min(len(server.requests), 2) - 1])

    async with serving(flaky) as server, model_client(server) as http:
        data, _ = await call(http)
    assert data == {"ok": True}
    assert len(server.requests) == 2
    assert server.bodies == [b'{"model":"mod"}'] * 2


async def test_post_json_non_json_200_is_malformed(autojump_clock: object) -> None:
    """A 200 whose body is not JSON is MalformedResponse."""
    answer = _json(b"200 OK", b"<html>oops</html>")
    async with serving(script(answer)) as server, model_client(server) as http:
        with pytest.raises(MalformedResponse, match="not JSON"):
            await call(http)


async def test_post_json_cleans_lone_surrogates(autojump_clock: object) -> None:
    """A reply escaping a lone surrogate (\\ud800) comes back with it replaced."""
    answer = _json(b"200 OK", b'{"text":"a\\ud800b","k\\udfff":["\\uD800"]}')
    async with serving(script(answer)) as server, model_client(server) as http:
        data, _ = await call(http)
    assert data == {"text": "a\ufffdb", "k\ufffd": ["\ufffd"]}


async def test_post_json_returns_quota_headers(autojump_clock: object) -> None:
    """x-ratelimit-* and Retry-After of a 200 reach the caller; the request is as built."""
    answer = _json(
        b"200 OK",
        b'{"ok":1}',
        b"X-RateLimit-Remaining-Requests: 41",
        b"x-ratelimit-reset-tokens: 6ms",
        b"retry-after: 2",
        b"x-other: y",
    )
    async with serving(script(answer)) as server, model_client(server) as http:
        data, headers = await call(http)
    assert data == {"ok": 1}
    sent = server.requests[0]
    assert sent.target == b"/v1/chat/completions"
    names = [k.lower() for k, _ in sent.headers.raw_items()]
    assert len(names) == len(set(names))  # each header once
    values = dict(sent.headers)
    assert values[b"authorization"] == b"Bearer sk-x"
    assert values[b"content-type"] == b"application/json"
    assert values[b"accept-encoding"] == b"gzip, deflate"
    assert values[b"host"] == f"127.0.0.1:{server.port}".encode()
    assert server.bodies == [b'{"model":"mod"}']
    assert headers["x-ratelimit-remaining-requests"] == "41"
    assert headers["x-ratelimit-reset-tokens"] == "6ms"
    assert headers["retry-after"] == "2"


# --------------------------------------------------------------------------- 9. no cycles

#: What each exchange below meets: a kept-alive answer, one the server closes after, a
#: malformed one, one over the cap, a stall past the read timeout.
_NO_CYCLE_CASES = {
    "ok": (script(OK), None, {}),
    "closed after": (
        script(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nok", close=True),
        None,
        {},
    ),
    "malformed": (script(b"HTTP/1.1 2x0 OK\r\n\r\n"), httpx.RemoteProtocolError, {}),
    "too large": (script(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n"), ResponseTooLarge, {}),
    "read timeout": (script(b"HTTP/1.1 200 OK\r\n", math.inf), httpx.ReadTimeout, {"read": 1.0}),
}


@pytest.mark.parametrize("case", list(_NO_CYCLE_CASES))
async def test_an_exchange_leaves_no_reference_cycle(case: str, autojump_clock: object) -> None:
    """Whatever the reply, the reader and its parser go by reference counting: as a cycle
    (the parser holds the reader's bound methods) they would be garbage only the cyclic
    collector frees, one per request, and its pauses grow with every request in flight."""
    handler, error, timeouts = _NO_CYCLE_CASES[case]
    cap = ResponseCap(limit=10, aliases=("m",))
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        async with serving(handler) as server, pool() as wire:
            for _ in range(5):
                if error is None:
                    assert await post(wire, server, cap=cap, **timeouts) is not None
                else:
                    with pytest.raises(error):
                        await post(wire, server, cap=cap, **timeouts)
        gc.collect()
        kinds = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    # An exception raised from an except block keeps its frame, and the frame its locals, in a
    # cycle of the exception's own: the reader may hang off it, but never with its parser.
    assert "HttpResponseParser" not in kinds
    if error is None:
        assert "ReplyReader" not in kinds


# --------------------------------------------------------------------------- 10. the socket


async def test_plain_connections_are_written_through_their_descriptor(
    autojump_clock: object,
) -> None:
    """A plain TCP connection's requests are written straight to its descriptor
    (gridloom._sockets), and a reply larger than one read arrives whole."""
    big = b"y" * (5 * 64 * 1024 + 17)
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big
    async with serving(script(answer)) as server, pool() as wire:
        for _ in range(3):
            reply = await post(wire, server)
            assert reply is not None
            assert reply.content == big
        (conn,) = wire._idle[(b"http", "127.0.0.1", server.port)]
        assert conn.fd == conn.socket.fileno() >= 0
        assert wire.connections_opened == 1


def _reset(stream: trio.abc.Stream) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP reset, not an end of stream."""
    sock = cast(trio.SocketStream, stream).socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\npart"])
async def test_connection_reset_is_a_read_error(sent: bytes, autojump_clock: object) -> None:
    """A server resetting the connection (before or in the middle of its answer) gives
    httpx.ReadError, and the pool recovers on a new connection."""

    async def resets(stream: trio.abc.Stream, server: RawServer) -> None:
        await server.read_request(stream)
        if sent:
            await stream.send_all(sent)
            await trio.sleep(0.5)
        _reset(stream)
        await trio.sleep_forever()

    await fails(httpx.ReadError, "reset|Connection", resets)


def _coded(payload: bytes, coding: str) -> bytes:
    return gzip.compress(payload) if coding == "gzip" else zlib.compress(payload)


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(max_size=3000) | st.integers(0, 200_000).map(lambda n: b"a" * n),
    codings=st.lists(st.sampled_from(["gzip", "deflate"]), min_size=1, max_size=MAX_CODINGS),
    limit=st.integers(1, 150_000),
    cut=st.integers(1, 4096),
)
def test_decoder_undoes_stacked_codings_within_the_cap(
    payload: bytes, codings: list[str], limit: int, cut: int
) -> None:
    """Stacked codings fed in any pieces: the payload comes back whole when it fits the cap;
    otherwise the output passes the cap by at most one byte, then the caller stops."""
    body = payload
    for coding in codings:
        body = _coded(body, coding)
    decoder = Decoder(content_codings([", ".join(codings)]), limit)
    out = b""
    try:
        for i in range(0, len(body), cut):
            out += decoder.feed(body[i : i + cut], limit - len(out))
            assert len(out) <= limit + 1
            if len(out) > limit:
                break
        else:
            out += decoder.flush(limit - len(out))
    except _Overflow:
        assert len(payload) > limit
        return
    if len(payload) <= limit:
        assert out == payload
    else:
        assert limit < len(out) <= limit + 1
        assert out == payload[: len(out)]


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (["br"], "unsupported content-encoding 'br'"),
        (["gzip, zstd"], "unsupported content-encoding 'zstd'"),
        (["gzip", "gzip", "gzip", "gzip"], "4 stacked content-encodings"),
    ],
)
def test_content_codings_refuses_what_it_cannot_undo(values: list[str], match: str) -> None:
    """A coding gridloom does not ask for, or too many stacked, is refused by name."""
    with pytest.raises(httpx.DecodingError, match=match):
        content_codings(values)
    assert content_codings([" Identity ", "X-GZIP,deflate", ""]) == ("x-gzip", "deflate")
