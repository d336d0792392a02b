"""The simulated endpoint's HTTP server against hostile clients (issue 14): protocol errors
are answered (400, 408, 413, 431, 503) or end one connection, never the server; slow and
idle clients are cut after their timeouts; connections beyond the limit are turned away; and
a hypothesis fuzz of raw byte streams leaves the server serving. All on virtual time, except
the end-to-end runs over real sockets."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
import gridloom.simulated
from gridloom.config import LatencyConfig, SimulatedModel, SimulationConfig
from gridloom.simulated import ServerLimits, SimulatedApp, SimulatedServer, serve_simulated
from gridloom.simulated._http11 import MAX_BODY_BYTES, MAX_CONNECTIONS, serve_listeners

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi rivers"}]}).encode()
CHAT = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n" % len(BODY)
) + BODY
CHUNKED = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ntransfer-encoding: chunked\r\n\r\n"
    b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
)
MODELS = b"GET /v1/models HTTP/1.1\r\nhost: sim\r\n\r\n"
#: Virtual seconds within which any connection must end: head, body, linger and an answer.
BOUND = 10.0 + 30.0 + 2.0 + 30.0


class Deaf(trio.abc.Stream):
    """The server's end of a connection whose client never reads: writes never finish."""

    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.sleep_forever()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.sleep_forever()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """Hands the server the far ends of connections opened with :meth:`connect`: in-memory
    streams, or (``sockets``, set by the ``connections`` fixture) real connected socket
    pairs, to whose descriptors the server writes its answers directly (gridloom._sockets).
    ``deaf``: the client never reads, so the server's writes never finish."""

    #: Whether connections are socket pairs rather than memory streams.
    sockets = False

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](0)
        #: Both ends of every socket pair, closed by :meth:`close_sockets` (the server closes
        #: its own, except one it was never handed: a connection made as it stopped).
        self._sockets: list[trio.SocketStream] = []

    def close_sockets(self) -> None:
        for end in self._sockets:
            end.socket.close()

    async def connect(self, *, deaf: bool = False) -> trio.abc.Stream:
        client: trio.abc.Stream
        server: trio.abc.Stream
        if self.sockets:
            ends = socket.socketpair()
            client, server = (trio.SocketStream(trio.socket.from_stdlib_socket(e)) for e in ends)
            self._sockets += (client, server)
        else:
            client, server = trio.testing.memory_stream_pair()
        await self._send.send(Deaf(server) if deaf else server)
        return client

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self._receive.close()
        await trio.sleep(0)


@pytest.fixture(autouse=True, params=["memory", "socketpair"])
def connections(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on both kinds of connection (see :class:`MemoryListener`)."""
    monkeypatch.setattr(MemoryListener, "sockets", request.param == "socketpair")
    return str(request.param)


def app(latency: float = 0.0) -> SimulatedApp:
    return SimulatedApp(
        SimulationConfig(default=SimulatedModel(latency=LatencyConfig(fixed=latency)))
    )


async def serving(
    test: Callable[[MemoryListener], Any], *, latency: float = 0.0, **options: Any
) -> None:
    """Run ``test(listener)`` against a server on in-memory connections; stop it after."""
    listener = MemoryListener()
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            functools.partial(
                serve_listeners, app(latency), [listener], ("sim", 80), shutdown=shutdown, **options
            )
        )
        try:
            await test(listener)
        finally:
            shutdown.set()
            listener.close_sockets()


async def read_all(stream: trio.abc.Stream) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The responses in ``data`` — well-formed HTTP/1.1, or this raises — as (status,
    headers, body); a response cut short by the close is not counted."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    client.receive_data(b"")
    found: list[tuple[int, dict[str, str], bytes]] = []
    while client.trailing_data[0]:  # bytes left: a response must begin
        client.send(h11.Request(method="GET", target="/", headers=[("host", "sim")]))
        client.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = client.next_event()
            if isinstance(event, h11.ConnectionClosed):
                return found
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        found.append((status, headers, body))
        if client.their_state is not h11.DONE:
            break
        client.start_next_cycle()
    return found


async def exchange(listener: MemoryListener, data: bytes, *, close: bool = True) -> bytes:
    """Send ``data`` on a new connection (then close the client's side, if ``close``) and
    return what the server sends until it closes."""
    stream = await listener.connect()
    await stream.send_all(data)
    if close:
        await stream.send_eof()  # type: ignore[attr-defined]
    with trio.fail_after(BOUND):
        return await read_all(stream)


async def ok(listener: MemoryListener) -> None:
    """A normal request on a new connection still gets 200."""
    await trio.testing.wait_all_tasks_blocked()  # the server is done with closed connections
    stream = await listener.connect()
    await stream.send_all(CHAT.replace(b"host: sim", b"host: sim\r\nconnection: close"))
    with trio.fail_after(BOUND):
        [(status, _, body)] = responses(await read_all(stream))
    assert status == 200, body
    assert json.loads(body)["object"] == "chat.completion"


def error_of(answer: tuple[int, dict[str, str], bytes]) -> str:
    _, headers, body = answer
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    message: str = json.loads(body)["error"]["message"]
    return message


# --------------------------------------------------------------------- the attacker's examples


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(CHAT[: CHAT.index(b"\r\n\r\n") + 12], id="closed-mid-body"),
        pytest.param(CHUNKED.replace(b"%x\r\n" % len(BODY), b"zz\r\n"), id="bad-chunk-header"),
    ],
)
async def test_a_broken_request_gets_400_and_the_server_stays_up(
    autojump_clock: trio.testing.MockClock, attack: bytes
) -> None:
    """A body cut short by the client's close, or a bad chunk header, was an h11 error that
    escaped the connection's task and stopped the server (``gridloom simulate`` exited 1)."""

    async def test(listener: MemoryListener) -> None:
        [answer] = responses(await exchange(listener, attack))
        assert answer[0] == 400
        assert "malformed request" in error_of(answer)
        await ok(listener)

    await serving(test)


def test_simulate_survives_a_client_closing_mid_body() -> None:
    """The attacker's example against a real ``serve_simulated`` (what ``gridloom simulate``
    runs): ``Content-Length: 100``, 8 bytes, close; then a normal request is answered."""

    async def main() -> None:
        async with serve_simulated(SimulationConfig()) as server:

            def attack() -> bytes:
                with socket.create_connection((server.host, server.port), timeout=10) as sock:
                    sock.sendall(
                        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                        b"content-length: 100\r\n\r\n12345678"
                    )
                    sock.shutdown(socket.SHUT_WR)
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
                    return data

            answer = await trio.to_thread.run_sync(attack)
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                await stream.send_all(CHAT.replace(b"host: sim", b"host: sim\r\nconnection: close"))
                with trio.fail_after(10):
                    [(status, _, _)] = responses(await read_all(stream))
            assert status == 200

    trio.run(main)


def _attack(host: str, port: int) -> None:
    """The attacker's requests, each on its own connection: a body cut short, a bad chunk
    header, garbage, a huge head."""
    attacks = [
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n12345678",
        CHUNKED.replace(b"%x\r\n" % len(BODY), b"zz\r\n"),
        b"\x00\xff garbage \r\n\r\n",
        b"GET / HTTP/1.1\r\nx: " + b"a" * 100_000 + b"\r\n\r\n",
    ]
    for attack in attacks * 3:
        try:
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(attack)
        except OSError:  # the server may reset a connection it refused
            pass


def test_a_run_on_a_simulated_provider_survives_attacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gridloom create`` with a ``simulated`` provider (its endpoint in-process, over real
    sockets) completes while another client attacks the endpoint's port: the attack used to
    stop the server, and with it the run."""
    started = threading.Event()
    ports: list[tuple[str, int]] = []

    @contextlib.asynccontextmanager
    async def spy(*args: Any, **kwargs: Any) -> AsyncIterator[SimulatedServer]:
        async with serve_simulated(*args, **kwargs) as server:
            ports.append((server.host, server.port))
            started.set()
            yield server

    # The run opens its endpoint with gridloom.simulated.serve_simulated: note the port.
    monkeypatch.setattr(gridloom.simulated, "serve_simulated", spy)
    attacker_done = threading.Event()

    def attacker() -> None:
        if started.wait(60):
            _attack(*ports[0])
        attacker_done.set()

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    config = (
        gl.PipelineBuilder(seed=1)
        .provider(
            "sim",
            type="simulated",
            simulation=SimulationConfig(default=SimulatedModel(latency=LatencyConfig(fixed=0.05))),
        )
        .model("m", provider="sim", model="small", max_parallel_requests=4)
        .category("topic", ["rivers", "volcanoes"])
        .llm_text("summary", "m", "Summarize {{ topic }}.")
        .build()
    )
    result = gl.create(config, num_records=40, output_dir=str(tmp_path / "out"))
    thread.join(60)
    assert ports, "the run did not start its simulated endpoint"
    assert attacker_done.is_set()
    assert result.num_rows == 40


async def test_dimensions_of_a_billion_get_400_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``dimensions: 1000000000`` built a billion-number vector on the event loop (24 GB,
    deaf to SIGTERM); now it is refused before any work."""
    body = json.dumps({"model": "e", "input": "rivers", "dimensions": 1_000_000_000}).encode()
    request = (
        b"POST /v1/embeddings HTTP/1.1\r\nhost: sim\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )

    async def test(listener: MemoryListener) -> None:
        with trio.fail_after(1):
            [(status, _, answer)] = responses(await exchange(listener, request))
        assert status == 400
        assert json.loads(answer)["error"]["param"] == "dimensions"

    await serving(test)


async def test_slowloris_is_cut_after_the_head_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client trickling its head (a byte every 5 s) gets 408 once 10 s have passed since it
    connected, and its connection closes; others are served meanwhile."""

    async def test(listener: MemoryListener) -> None:
        start = trio.current_time()
        slow = await listener.connect()
        ended: list[float] = []

        async def trickle() -> None:
            for byte in CHAT:
                try:
                    await slow.send_all(bytes([byte]))
                except trio.BrokenResourceError:
                    return
                await trio.sleep(5.0)

        async def watch() -> None:
            answer = await read_all(slow)
            ended.append(trio.current_time() - start)
            [(status, _, _)] = responses(answer)
            assert status == 408

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            nursery.start_soon(watch)
            await ok(listener)
        assert ended
        assert ended[0] <= 10.0 + 2.0  # the head timeout, then at most the linger

    await serving(test)


async def test_many_slowloris_connections_are_all_cut(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Thousands of connections that send half a head and wait are all closed by the head
    timeout: none is held for ever."""
    limits = ServerLimits(max_connections=1024)

    async def test(listener: MemoryListener) -> None:
        async def slow_client(results: list[bytes]) -> None:
            stream = await listener.connect()
            await stream.send_all(CHAT[:20])
            results.append(await read_all(stream))
            await stream.aclose()

        results: list[bytes] = []
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                for _ in range(2000):
                    nursery.start_soon(slow_client, results)
        # Within the limit, each got its 408; the rest were turned away with 503.
        statuses = [responses(data)[0][0] for data in results]
        assert len(statuses) == 2000
        assert set(statuses) == {408, 503}
        assert statuses.count(408) == limits.max_connections
        await ok(listener)

    await serving(test, limits=limits)


async def test_connections_beyond_the_limit_are_turned_away(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With :data:`MAX_CONNECTIONS` connections open, one more gets 503 at once and is
    closed; once one of them closes, a new connection is served."""

    async def test(listener: MemoryListener) -> None:
        held = [await listener.connect() for _ in range(MAX_CONNECTIONS)]
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(1):
            [answer] = responses(await exchange(listener, CHAT))
        assert answer[0] == 503
        assert answer[1]["retry-after"] == "1"
        assert f"at most {MAX_CONNECTIONS} connections" in error_of(answer)
        await held.pop().aclose()
        await trio.testing.wait_all_tasks_blocked()
        await ok(listener)
        for stream in held:
            await stream.aclose()

    await serving(test)


# --------------------------------------------------------------------- limits and timeouts


async def test_limits_are_answered_with_their_status(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A head over 16 KiB gets 431, a declared body over the limit 413 (before it is sent),
    a chunked body that grows over it 413, garbage 400, a wrong HTTP version 505 or 400."""
    big_length = CHAT.replace(b"content-length: %d" % len(BODY), b"content-length: 999999999")
    cases = {
        431: b"GET /v1/models HTTP/1.1\r\nhost: sim\r\nx: " + b"a" * 17_000 + b"\r\n\r\n",
        413: big_length,
        400: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
    }

    async def test(listener: MemoryListener) -> None:
        for status, request in cases.items():
            [refusal] = responses(await exchange(listener, request, close=False))
            assert refusal[0] == status, refusal
            error_of(refusal)
        # A chunked body that never declares its size is cut when it passes the limit.
        stream = await listener.connect()
        await stream.send_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
        answer = b""
        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:

                async def pump() -> None:
                    for _ in range(MAX_BODY_BYTES // 65536 + 8):
                        try:
                            await stream.send_all(chunk)
                        except trio.BrokenResourceError:
                            return
                        await trio.sleep(0)

                nursery.start_soon(pump)
                answer = await read_all(stream)
        [(status, _, _)] = responses(answer)
        assert status == 413
        await ok(listener)

    await serving(test)


async def test_request_bodies_held_at_once_are_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Bodies beyond ``max_buffered_bytes`` held by the whole server at once get 503 (with
    ``Retry-After``); once the others are answered, there is room again."""
    limits = ServerLimits(max_buffered_bytes=len(BODY) + 10)

    async def test(listener: MemoryListener) -> None:
        first = await listener.connect()
        await first.send_all(CHAT)  # answered after 1 s: its body is held until then
        await trio.sleep(0.5)
        [answer] = responses(await exchange(listener, CHAT))
        assert answer[0] == 503
        assert answer[1]["retry-after"] == "1"
        assert "too many request bodies" in error_of(answer)
        await trio.sleep(1.0)
        await ok(listener)

    await serving(test, latency=1.0, limits=limits)


async def test_timeouts_are_parameters(autojump_clock: trio.testing.MockClock) -> None:
    """``head_timeout``, ``body_timeout`` and ``idle_timeout`` of :class:`ServerLimits` cut a
    slow head (408), a slow body (408) and an idle kept-alive connection (closed, no answer),
    each exactly when its time is up."""
    limits = ServerLimits(head_timeout=1.0, body_timeout=2.0, idle_timeout=3.0, linger=0.0)

    async def timed(listener: MemoryListener, data: bytes) -> tuple[float, bytes]:
        stream = await listener.connect()
        start = trio.current_time()
        await stream.send_all(data)
        answer = await read_all(stream)
        return trio.current_time() - start, answer

    async def test(listener: MemoryListener) -> None:
        elapsed, answer = await timed(listener, CHAT[:10])
        assert (elapsed, responses(answer)[0][0]) == (1.0, 408)
        elapsed, answer = await timed(listener, CHAT[:-5])
        assert (elapsed, responses(answer)[0][0]) == (2.0, 408)
        elapsed, answer = await timed(listener, CHAT)
        assert elapsed == 3.0
        assert [status for status, _, _ in responses(answer)] == [200]  # then closed

    await serving(test, limits=limits)


async def test_a_client_that_stops_reading_is_cut(autojump_clock: trio.testing.MockClock) -> None:
    """A client that sends requests but never reads the answers has its connection closed
    after ``write_timeout``: the server's write does not wait for ever."""
    limits = ServerLimits(write_timeout=5.0)

    async def test(listener: MemoryListener) -> None:
        stream = await listener.connect(deaf=True)
        start = trio.current_time()
        await stream.send_all(CHAT)
        assert await read_all(stream) == b""  # closed without an answer
        assert trio.current_time() - start == 5.0
        await ok(listener)

    await serving(test, limits=limits)


async def test_pipelining_flood_ends_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that keeps sending while its request is answered (here: for 5 s) may send
    64 KiB ahead; more, and it is treated as gone, its request never answered. The server
    holds no more than that."""

    async def test(listener: MemoryListener) -> None:
        stream = await listener.connect()
        await stream.send_all(CHAT)
        with contextlib.suppress(trio.BrokenResourceError):  # closed while the client sends
            for _ in range(100):
                await stream.send_all(b"x" * 4096)
                await trio.sleep(0.01)
        with trio.fail_after(1):
            assert await read_all(stream) == b""
        await ok(listener)

    await serving(test, latency=5.0)


async def test_pipelined_requests_are_answered_in_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Requests sent back to back, before any answer, are each answered, in order."""

    last = CHAT.replace(b"host: sim", b"host: sim\r\nconnection: close")

    async def test(listener: MemoryListener) -> None:
        data = await exchange(listener, CHAT + MODELS + last, close=False)
        assert [status for status, _, _ in responses(data)] == [200, 200, 200]

    await serving(test)


async def test_an_app_error_is_a_500_and_a_warning(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception in the app for one request is a 500 for that request and a
    warning on ``gridloom.simulated.server``; the server goes on."""
    listener = MemoryListener()
    shutdown = trio.Event()
    calls = 0

    async def flaky(scope: Any, receive: Any, send: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ExceptionGroup("bug", [KeyError("x")])
        await app()(scope, receive, send)

    caplog.set_level(logging.WARNING, logger="gridloom.simulated.server")
    async with trio.open_nursery() as nursery:
        await nursery.start(
            functools.partial(serve_listeners, flaky, [listener], ("sim", 80), shutdown=shutdown)
        )
        [(status, _, _)] = responses(await exchange(listener, CHAT))
        assert status == 500
        await ok(listener)
        shutdown.set()
    listener.close_sockets()
    [record] = [r for r in caplog.records if r.name == "gridloom.simulated.server"]
    assert record.levelno == logging.WARNING
    assert "simulated app failed on POST /v1/chat/completions" in record.getMessage()


# --------------------------------------------------------------------- fuzz

#: Valid requests to start mutations from.
_SEEDS = [CHAT, CHUNKED, MODELS, CHAT.replace(b"HTTP/1.1", b"HTTP/1.0")]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid request (or a few back to back), then damaged: cut, spliced with junk, bytes
    flipped, a header or chunk size made wrong or huge."""
    data = b"".join(draw(st.lists(st.sampled_from(_SEEDS), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["cut", "insert", "flip", "length", "chunk", "header"]))
        at = draw(st.integers(0, len(data)))
        if kind == "cut":
            data = data[:at]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(max_size=64)) + data[at:]
        elif kind == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "length":
            value = draw(st.sampled_from([b"-1", b"abc", b"99999999999999999999", b"0", b"5"]))
            data = data.replace(b"content-length: %d" % len(BODY), b"content-length: " + value)
        elif kind == "chunk":
            value = draw(st.sampled_from([b"zz", b"-1", b"f" * 40, b"1;ext=\x00", b""]))
            data = data.replace(b"%x\r\n" % len(BODY), value + b"\r\n")
        else:
            name = draw(st.sampled_from([b"x", b"transfer-encoding", b"content-length", b""]))
            value = draw(st.sampled_from([b"chunked", b"a" * 20_000, b"\xff\xfe", b"1, 2"]))
            data = data.replace(b"host: sim\r\n", b"host: sim\r\n" + name + b": " + value + b"\r\n")
    return data


_BYTE_STREAMS = st.one_of(st.binary(max_size=512), _mutated())


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=_BYTE_STREAMS, close=st.booleans(), pieces=st.integers(1, 4))
def test_fuzzed_byte_streams_never_stop_the_server(data: bytes, close: bool, pieces: int) -> None:
    """Whatever bytes a client sends — random, or a valid request damaged — its connection
    ends within bounded virtual time with well-formed HTTP responses (or none) and a close,
    and the server then answers a normal request with 200."""

    async def test(listener: MemoryListener) -> None:
        stream = await listener.connect()
        size = max(1, len(data) // pieces)
        with contextlib.suppress(trio.BrokenResourceError):  # the server closed first
            for start in range(0, len(data), size):
                await stream.send_all(data[start : start + size])
                await trio.sleep(0.5)
            if close:
                await stream.send_eof()  # type: ignore[attr-defined]
        with trio.fail_after(BOUND):
            answer = await read_all(stream)
        for status, _, body in responses(answer):
            assert 200 <= status < 600
            if status >= 400:
                assert "error" in json.loads(body)
        await ok(listener)

    trio.run(serving, test, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_a_client_that_expects_100_continue_gets_it_before_its_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``Expect: 100-continue`` (curl sends it for large bodies) gets ``100 Continue`` as soon
    as the head is in, then the answer once the body follows (was: no interim answer, so curl
    waited a second before sending each body). A body declared over the limit gets 413 with
    no ``100 Continue``; an HTTP/1.0 request gets none either."""
    head = CHAT[: -len(BODY)].replace(
        b"host: sim", b"host: sim\r\nexpect: 100-continue\r\nconnection: close"
    )

    async def test(listener: MemoryListener) -> None:
        stream = await listener.connect()
        await stream.send_all(head)
        with trio.fail_after(0.5):  # well within the body's timeout
            interim = await stream.receive_some(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await stream.send_all(BODY)
        with trio.fail_after(BOUND):
            [(status, _, body)] = responses(await read_all(stream))
        assert status == 200, body
        too_big = head.replace(b"content-length: %d" % len(BODY), b"content-length: 999999999")
        answer = await exchange(listener, too_big, close=False)
        assert not answer.startswith(b"HTTP/1.1 100")
        [(status, _, _)] = responses(answer)
        assert status == 413
        old = head.replace(b"HTTP/1.1", b"HTTP/1.0") + BODY
        answer = await exchange(listener, old, close=False)
        assert b"100 Continue" not in answer
        [(status, _, _)] = responses(answer)
        assert status == 200
        await ok(listener)

    await serving(test)
