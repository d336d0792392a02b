"""The simulated endpoint's HTTP/1.1 server (``simulated/_http11.py``), one connection at a
time over in-memory streams, with an h11 client on the other end."""

from __future__ import annotations

from typing import Any

import h11
import pytest
import trio
import trio.testing

from gridloom.simulated._asgi import DroppedConnection, Message, Scope
from gridloom.simulated._http11 import _Activity, serve_connection


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
