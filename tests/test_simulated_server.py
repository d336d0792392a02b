"""The simulated endpoint's HTTP/1.1 server (``simulated/_http11.py``): connections over
in-memory streams with an h11 client on the other end, status lines over a real socket, and
how it stops (in virtual time, and the ``gridloom simulate`` process on SIGINT)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from typing import Any

import h11
import pytest
import trio
import trio.testing

from gridloom.config import LatencyConfig, SimulatedModel, SimulationConfig
from gridloom.simulated import SimulatedApp, serve_simulated
from gridloom.simulated._asgi import DroppedConnection, Message, Scope
from gridloom.simulated._http11 import _Activity, serve_connection, serve_listeners


async def _exchange(stream: trio.abc.Stream, client: h11.Connection, path: str) -> list[Any]:
    """Send one GET and read its answer: the events up to the end of the message, or up to
    the connection closing."""
    request = h11.Request(method="GET", target=path, headers=[("host", "sim")])
    await stream.send_all((client.send(request) or b"") + (client.send(h11.EndOfMessage()) or b""))
    events: list[Any] = []
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await stream.receive_some(65536))
            continue
        events.append(event)
        if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return events


async def _reply(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_a_request_read_by_the_disconnect_watcher_is_answered() -> None:
    # The app answers, then keeps its disconnect watcher (a second receive()) alive while the
    # client already sends its next request on the same connection: those bytes must be kept
    # for the next request, not swallowed.
    client_stream, server_stream = trio.testing.memory_stream_pair()
    next_request_sent = trio.Event()
    paths: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        paths.append(scope["path"])
        await receive()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)  # waits for a disconnect
            await _reply(send, 200, scope["path"].encode())
            if len(paths) == 1:
                await next_request_sent.wait()
                await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()

    client = h11.Connection(h11.CLIENT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server_stream, app, ("sim", 80), _Activity())
        first = await _exchange(client_stream, client, "/first")
        client.start_next_cycle()
        request = h11.Request(method="GET", target="/second", headers=[("host", "sim")])
        await client_stream.send_all(
            (client.send(request) or b"") + (client.send(h11.EndOfMessage()) or b"")
        )
        next_request_sent.set()
        second: list[Any] = []
        with trio.fail_after(5):
            while not second or not isinstance(second[-1], h11.EndOfMessage):
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await client_stream.receive_some(65536))
                else:
                    second.append(event)
        await client_stream.aclose()

    assert paths == ["/first", "/second"]
    assert [bytes(e.data) for e in first if isinstance(e, h11.Data)] == [b"/first"]
    assert [bytes(e.data) for e in second if isinstance(e, h11.Data)] == [b"/second"]


async def test_dropped_connection_closes_without_an_answer() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        raise DroppedConnection("dropped", model="m")

    client = h11.Connection(h11.CLIENT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server_stream, app, ("sim", 80), _Activity())
        # The client sees the connection end where its answer should be.
        with pytest.raises(h11.RemoteProtocolError, match="ConnectionClosed"):
            await _exchange(client_stream, client, "/x")


async def test_an_app_error_is_a_500_and_the_connection_closes() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise ValueError("bug in the app")

    client = h11.Connection(h11.CLIENT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server_stream, app, ("sim", 80), _Activity())
        events = await _exchange(client_stream, client, "/x")
        assert isinstance(events[0], h11.Response)
        assert events[0].status_code == 500
        assert client.their_state is h11.MUST_CLOSE  # the answer said "connection: close"
        assert await client_stream.receive_some(10) == b""  # and the server closed it


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        body: Message = await receive()
        assert body["type"] == "http.request"
        seen.append(scope["path"])
        await _reply(send, 200, b"ok")

    client = h11.Connection(h11.CLIENT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server_stream, app, ("sim", 80), _Activity())
        for i in range(20):
            events = await _exchange(client_stream, client, f"/{i}")
            assert isinstance(events[0], h11.Response)
            assert events[0].status_code == 200
            client.start_next_cycle()
        await client_stream.aclose()
    assert seen == [f"/{i}" for i in range(20)]


# --------------------------------------------------------------------- status line, stopping


async def test_status_lines_carry_the_standard_reason_phrase() -> None:
    """Over a real socket, the status line is ``HTTP/1.1 200 OK`` (not ``HTTP/1.1 200 ``),
    and ``404 Not Found`` for an unknown path."""
    async with serve_simulated(SimulationConfig()) as server:
        lines = []
        for path in ("/v1/models", "/nothing"):
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                await stream.send_all(f"GET {path} HTTP/1.1\r\nhost: sim\r\n\r\n".encode())
                data = b""
                while b"\r\n" not in data:
                    chunk = await stream.receive_some(4096)
                    assert chunk, "the server closed before the status line"
                    data += chunk
            lines.append(data.split(b"\r\n")[0])
    assert lines == [b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found"]


class _MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """Hands the server the far ends of in-memory connections opened with :meth:`connect`."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](8)

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        await self._send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self._receive.close()
        await trio.sleep(0)


async def _post_chat(stream: trio.abc.Stream, client: h11.Connection) -> h11.Response | None:
    """POST a chat completion and read the answer: its head, or ``None`` when the connection
    ends instead."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}).encode()
    headers = [("host", "sim"), ("content-type", "application/json")]
    headers.append(("content-length", str(len(body))))
    request = h11.Request(method="POST", target="/v1/chat/completions", headers=headers)
    try:
        await stream.send_all(
            (client.send(request) or b"")
            + (client.send(h11.Data(data=body)) or b"")
            + (client.send(h11.EndOfMessage()) or b"")
        )
    except trio.BrokenResourceError:
        return None
    head = None
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.EndOfMessage):
            return head
        elif isinstance(event, h11.ConnectionClosed):
            return None


def _closes(head: h11.Response | None) -> bool:
    return head is not None and (b"connection", b"close") in list(head.headers)


def _latency(seconds: float) -> SimulatedApp:
    return SimulatedApp(
        SimulationConfig(default=SimulatedModel(latency=LatencyConfig(fixed=seconds)))
    )


async def test_stopping_ends_idle_keep_alive_connections_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A kept-alive connection idle when the server stops is closed at once: the server is
    done at the very moment it was told to stop, not after its grace period."""
    listener = _MemoryListener()
    shutdown = trio.Event()
    ended: list[float] = []

    async def server() -> None:
        await serve_listeners(_latency(1.0), [listener], ("sim", 80), shutdown=shutdown)
        ended.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        stream = await listener.connect()
        client = h11.Connection(h11.CLIENT)
        assert await _post_chat(stream, client) is not None  # answered at t = 1
        client.start_next_cycle()
        await trio.sleep(4.0)
        shutdown.set()
        assert await stream.receive_some(10) == b""  # the server closed the idle connection
    assert ended == [5.0]


async def test_stopping_lets_busy_connections_finish_their_request_and_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Once stopping, a connection with a request in progress answers it with
    ``Connection: close`` and starts no other, so clients that keep sending cannot hold the
    server for its whole grace period (``gridloom simulate`` took seconds to stop)."""
    listener = _MemoryListener()
    shutdown = trio.Event()
    ended: list[float] = []
    served: dict[str, list[bool]] = {"a": [], "b": []}

    async def server() -> None:
        await serve_listeners(_latency(1.0), [listener], ("sim", 80), shutdown=shutdown)
        ended.append(trio.current_time())

    async def busy_client(name: str, start: float) -> None:
        # Sends its next request as soon as the previous answer is in, like a benchmark.
        await trio.sleep(start)
        stream = await listener.connect()
        client = h11.Connection(h11.CLIENT)
        while True:
            try:
                head = await _post_chat(stream, client)
            except h11.RemoteProtocolError:  # cut in the middle of an answer
                head = None
            if head is None:
                return
            served[name].append(_closes(head))
            if _closes(head):
                return
            client.start_next_cycle()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        # a: answers at 1, 2; b: at 1.5. Stopping at 1.25, with one of them always busy.
        nursery.start_soon(busy_client, "a", 0.0)
        nursery.start_soon(busy_client, "b", 0.5)
        await trio.sleep(1.25)
        shutdown.set()
    assert ended == [2.0]  # was 4.25: the 3 s grace, then every connection cut
    assert served == {"a": [False, True], "b": [True]}


async def test_stopping_cuts_requests_still_running_after_the_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A request still running when the grace period ends is cut: its connection closes
    without an answer, and the server is done exactly then."""
    listener = _MemoryListener()
    shutdown = trio.Event()
    ended: list[float] = []

    async def server() -> None:
        await serve_listeners(
            _latency(10.0), [listener], ("sim", 80), shutdown=shutdown, grace=0.25
        )
        ended.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        stream = await listener.connect()

        async def stop_soon() -> None:
            await trio.sleep(1.0)
            shutdown.set()

        nursery.start_soon(stop_soon)
        with pytest.raises(h11.RemoteProtocolError):  # the connection ends mid-answer
            await _post_chat(stream, h11.Connection(h11.CLIENT))
    assert ended == [1.25]


def test_simulate_command_exits_zero_on_sigint() -> None:
    """``gridloom simulate`` stops on SIGINT with exit code 0 and its ``stopped`` line, and
    closes a kept-alive connection that was open."""
    command = [sys.executable, "-m", "gridloom", "simulate", "--port", "0", "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "ready"
        with socket.create_connection((ready["host"], ready["port"]), timeout=30) as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: sim\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
            process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=60)
            assert sock.recv(4096) == b""  # the idle connection was closed, not left open
    finally:
        if process.poll() is None:  # a failed assertion above: do not leave it running
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert json.loads(out) == {
        "ok": True,
        "command": "simulate",
        "event": "stopped",
        "signal": "SIGINT",
    }
