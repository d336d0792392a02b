"""The simulated endpoint's HTTP server on httptools (issue 21 item 3): a request split anyhow
across writes gets the same answers; the head limit is exact and holds however the head
comes; HTTP versions, Host headers and garbage are refused as h11 refused them; HEAD, HTTP/1.0
and bodies without a length are framed as h11 framed them; a client that goes mid-answer
cancels the answer at once (the app's watch extension, no watcher task); and
``serve_simulated(tune_gc=True)`` tunes the collector for its block only. Virtual time."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.config import LatencyConfig, SimulatedModel, SimulationConfig
from gridloom.simulated import ServerLimits, SimulatedApp
from gridloom.simulated._http11 import _Activity, serve_connection

from .test_simulated_hardening import BODY, CHAT, CHUNKED, MODELS, error_of, responses

LAST = MODELS.replace(b"host: sim", b"host: sim\r\nconnection: close")
#: Three requests back to back: a chat completion, the same chunked, the model list (closing).
PIPELINE = CHAT + CHUNKED + LAST


def _app(latency: float = 0.0) -> SimulatedApp:
    return SimulatedApp(
        SimulationConfig(default=SimulatedModel(latency=LatencyConfig(fixed=latency)))
    )


async def _talk(
    pieces: list[bytes],
    *,
    app: SimulatedApp | None = None,
    limits: ServerLimits | None = None,
    then: Callable[[trio.abc.Stream], Awaitable[None]] | None = None,
) -> bytes:
    """Send ``pieces`` one write each (a checkpoint between) on a fresh connection to a
    server; return all it sends until it closes."""
    client, server = trio.testing.memory_stream_pair()
    serve = functools.partial(
        serve_connection, server, app or _app(), ("sim", 80), _Activity(), limits or ServerLimits()
    )
    received = b""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        for piece in pieces:
            await client.send_all(piece)
            await trio.sleep(0)
        if then is not None:
            await then(client)
        with trio.fail_after(60):
            while data := await client.receive_some(65536):
                received += data
    return received


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


_ONE_WRITE: list[bytes] = []


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(1, len(PIPELINE) - 1), max_size=12))
def test_a_request_split_anyhow_across_writes_gets_the_same_answers(cuts: list[int]) -> None:
    """Three pipelined requests (one chunked) cut at any points into separate writes are
    answered with the very bytes they get when sent in one write."""

    async def main() -> None:
        if not _ONE_WRITE:
            _ONE_WRITE.append(await _talk([PIPELINE]))
        assert await _talk(_split(PIPELINE, cuts)) == _ONE_WRITE[0]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [status for status, _, _ in responses(_ONE_WRITE[0])] == [200, 200, 200]


def _head_of_size(size: int) -> bytes:
    """A ``GET /v1/models`` head whose size as limited (its bytes but the final CRLF) is
    ``size``."""
    head = b"GET /v1/models HTTP/1.1\r\nhost: sim\r\nconnection: close\r\nx-pad: "
    return head + b"a" * (size - len(head) - 2) + b"\r\n\r\n"


@pytest.mark.parametrize("at_once", [True, False], ids=["one-write", "byte-by-byte"])
async def test_the_head_limit_is_exact_however_the_head_comes(
    autojump_clock: trio.testing.MockClock, at_once: bool
) -> None:
    """A head of exactly ``max_head_bytes`` is served, one byte more gets 431, whether the
    head comes in one write or a byte at a time."""
    limits = ServerLimits(max_head_bytes=2048, linger=0.0)
    for size, status in ((2048, 200), (2049, 431)):
        head = _head_of_size(size)
        pieces = [head] if at_once else [head[i : i + 1] for i in range(len(head))]
        [(answered, _, _)] = responses(await _talk(pieces, limits=limits))
        assert answered == status, size


async def test_a_head_that_never_ends_is_refused_before_it_is_held(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A header line that never ends, sent a kilobyte at a time, gets 431 once the head
    passes the limit: the server does not keep reading (and holding) it."""
    limits = ServerLimits(max_head_bytes=4096, linger=0.0)
    client, server = trio.testing.memory_stream_pair()
    sent = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, _app(), ("sim", 80), _Activity(), limits)
        await client.send_all(b"GET /v1/models HTTP/1.1\r\nhost: sim\r\nx-endless: ")
        answer = b""
        with trio.move_on_after(5):
            while not answer:
                try:
                    await client.send_all(b"a" * 1024)
                except trio.BrokenResourceError:
                    break
                sent += 1024
                await trio.testing.wait_all_tasks_blocked()
                with trio.move_on_after(0.01):
                    answer = await client.receive_some(65536)
        while data := await client.receive_some(65536):
            answer += data
    [(status, _, _)] = responses(answer)
    assert status == 431
    assert sent <= 4096 + 2048


@pytest.mark.parametrize(
    ("request_bytes", "status", "says"),
    [
        (b"GET /v1/models HTTP/1.1\r\n\r\n", 400, "no Host header"),
        (b"GET /v1/models HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", 400, "more than one Host"),
        (b"GET /v1/models HTTP/2.0\r\nhost: sim\r\n\r\n", 505, "HTTP/2.0 is not supported"),
        (
            b"POST /v1/embeddings HTTP/1.1\r\nhost: sim\r\ncontent-length: 2\r\n"
            b"content-length: 3\r\n\r\n{}",
            400,
            "malformed request",
        ),
        (b"\x00\x01\x02 hello\r\n\r\n", 400, "malformed request"),
        (CHUNKED.replace(b"\r\n0\r\n", b"\r\nxyz\r\n"), 400, "malformed request"),
    ],
    ids=["no-host", "two-hosts", "http2", "two-lengths", "garbage", "bad-last-chunk"],
)
async def test_what_h11_refused_is_refused_with_its_status(
    autojump_clock: trio.testing.MockClock, request_bytes: bytes, status: int, says: str
) -> None:
    """A request without exactly one Host (HTTP/1.1), another HTTP version, two lengths,
    bytes that are not HTTP or a bad chunk get their status, a JSON error naming the problem
    and ``connection: close``; requests before it on the connection are answered first."""
    answers = responses(await _talk([CHAT + request_bytes], limits=ServerLimits(linger=0.0)))
    assert [answer[0] for answer in answers] == [200, status]
    assert says in error_of(answers[1])


async def test_head_requests_get_a_head_and_the_connection_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An answer to HEAD carries its head (and content-length) but no body, and the
    connection then serves the next request."""
    head = b"HEAD /v1/models HTTP/1.1\r\nhost: sim\r\n\r\n"
    data = await _talk([head + LAST])
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"content-length: " in first
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    [(status, _, body)] = responses(rest)
    assert (status, json.loads(body)["object"]) == (200, "list")


async def test_http10_and_lengthless_bodies_are_framed_as_h11_framed_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``GET /timeline`` (no content-length) is chunked to an HTTP/1.1 client, and sent as
    is and ended by the close to an HTTP/1.0 one; HTTP/1.0 answers say ``Connection: close``."""
    timeline = b"GET /timeline HTTP/1.1\r\nhost: sim\r\n\r\n"
    chunked = await _talk([CHAT + timeline + LAST])
    assert b"\r\nTransfer-Encoding: chunked\r\n" in chunked
    assert [status for status, _, _ in responses(chunked)] == [200, 200, 200]
    plain = await _talk([b"GET /timeline HTTP/1.0\r\n\r\n"])
    head, _, body = plain.partition(b"\r\n\r\n")
    assert head.endswith(b"\r\nConnection: close")
    assert b"transfer-encoding" not in head.lower()
    assert json.loads(body) == []


async def test_a_client_that_goes_mid_answer_cancels_it_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that closes 1 s into a 5 s answer gets none; the request is recorded as
    ``client_closed`` when the client went (not when the answer would have been due), and
    nothing of it is in flight."""
    app = _app(latency=5.0)

    async def leave(client: trio.abc.Stream) -> None:
        await trio.sleep(1.0)
        await client.aclose()

    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, app, ("sim", 80), _Activity())
        start = trio.current_time()
        await client.send_all(CHAT)
        await leave(client)
    assert trio.current_time() - start == 1.0
    [entry] = app.timeline()
    assert (entry.status, entry.outcome, entry.end - entry.start) == (None, "client_closed", 1.0)
    stats = app.statistics().models["m"]
    assert (stats.in_flight, dict(stats.by_status)) == (0, {"client_closed": 1})


async def test_a_half_closed_client_still_gets_an_answer_that_needs_no_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that sends its request and then half-closes still reads an answer the app
    gives without waiting (a 400 here), as under h11: only the wait for a model answer is
    cut short by the client's leaving."""

    async def half_close(client: trio.abc.Stream) -> None:
        await client.send_eof()  # type: ignore[attr-defined]

    bad = CHAT.replace(BODY, b"{" + b" " * (len(BODY) - 1))
    [(status, _, _)] = responses(await _talk([bad], then=half_close))
    assert status == 400
