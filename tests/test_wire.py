"""gridloom's HTTP/1.1 transport over real loopback sockets: reuse, limits, failures, HTTPS.

The servers here are scripted with h11 on ``trio.serve_tcp``, so each test decides exactly
what the server does (answer, close, stall, chunk). Timeouts run in virtual time.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import h11
import httpx
import pytest
import trio
import trio.testing
import trustme

from gridloom.clients import ChatRequest, Message, adapter_for, build_http_client
from gridloom.clients._exchange import request_head
from gridloom.clients._limit import ResponseCap
from gridloom.clients._wire import WireTransport
from gridloom.config import ModelConfig, ProviderConfig, SimulationConfig
from gridloom.simulated import serve_simulated

Handler = Callable[[trio.abc.Stream, "Server"], Awaitable[None]]


class Server:
    """A scripted HTTP/1.1 server on loopback; ``handler`` serves each connection."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[h11.Request] = []
        self.bodies: list[bytes] = []
        self.active = 0
        self.peak_active = 0
        self.url = ""

    async def read_request(self, stream: trio.abc.Stream, conn: h11.Connection) -> bool:
        """Read one request (head and body); False when the client closed the connection."""
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed):
                return False
            if isinstance(event, h11.Request):
                self.requests.append(event)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.bodies.append(body)
                return True


def reply(
    conn: h11.Connection, body: bytes, *, headers: list[tuple[str, str]] | None = None
) -> bytes:
    head = [("content-length", str(len(body))), *(headers or [])]
    return (
        (conn.send(h11.Response(status_code=200, headers=head)) or b"")
        + (conn.send(h11.Data(data=body)) or b"")
        + (conn.send(h11.EndOfMessage()) or b"")
    )


async def keep_alive(stream: trio.abc.Stream, server: Server) -> None:
    """Answer every request on the connection with ``ok``."""
    conn = h11.Connection(h11.SERVER)
    while await server.read_request(stream, conn):
        await stream.send_all(reply(conn, b"ok"))
        conn.start_next_cycle()


@asynccontextmanager
async def serving(handler: Handler, *, tls: trustme.CA | None = None) -> AsyncIterator[Server]:
    server = Server()

    async def serve(stream: trio.abc.Stream) -> None:
        server.connections += 1
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.issue_cert("127.0.0.1").configure_cert(context)
            stream = trio.SSLStream(stream, context, server_side=True)
        try:
            await handler(stream, server)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        port = listeners[0].socket.getsockname()[1]
        server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        yield server
        nursery.cancel_scope.cancel()


def transport(connections: int = 8) -> WireTransport:
    return WireTransport(
        httpx.Limits(
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=4.0,
        )
    )


async def get(wire: WireTransport, url: str, **timeout: float) -> httpx.Response:
    request = httpx.Request(
        "POST", url + "/v1/x", content=b'{"a":1}', extensions={"timeout": timeout}
    )
    response = await wire.handle_async_request(request)
    await response.aread()
    await response.aclose()
    return response


async def test_sequential_requests_share_one_connection() -> None:
    async with serving(keep_alive) as server:
        wire = transport()
        for _ in range(20):
            response = await get(wire, server.url)
            assert response.status_code == 200
            assert response.content == b"ok"
        await wire.aclose()
    assert server.connections == 1
    assert wire.connections_opened == 1
    assert server.bodies == [b'{"a":1}'] * 20
    request = server.requests[0]
    assert request.method == b"POST"
    assert request.target == b"/v1/x"
    assert dict(request.headers)[b"content-length"] == b"7"


async def test_concurrency_never_exceeds_max_connections(autojump_clock: object) -> None:
    """Ten concurrent requests through a pool of three: three on the wire at a time."""

    async def slow(stream: trio.abc.Stream, server: Server) -> None:
        conn = h11.Connection(h11.SERVER)
        while await server.read_request(stream, conn):
            server.active += 1
            server.peak_active = max(server.peak_active, server.active)
            await trio.sleep(1)
            server.active -= 1
            await stream.send_all(reply(conn, b"ok"))
            conn.start_next_cycle()

    async with serving(slow) as server:
        wire = transport(connections=3)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(get, wire, server.url)
        elapsed = trio.current_time() - start
        await wire.aclose()
    assert server.peak_active == 3
    assert wire.connections_opened == 3
    assert elapsed == pytest.approx(4.0, abs=0.01)  # ceil(10 / 3) rounds of 1 s


async def test_idle_connection_closed_by_the_server_is_not_reused() -> None:
    closed = trio.Event()

    async def once_then_close(stream: trio.abc.Stream, server: Server) -> None:
        conn = h11.Connection(h11.SERVER)
        if await server.read_request(stream, conn):
            await stream.send_all(reply(conn, b"ok"))
        await stream.aclose()
        closed.set()

    async with serving(once_then_close) as server:
        wire = transport()
        await get(wire, server.url)
        await closed.wait()
        await trio.sleep(0.01)  # let the FIN reach the client's socket
        response = await get(wire, server.url)  # a fresh connection, no error
        await wire.aclose()
    assert response.content == b"ok"
    assert wire.connections_opened == server.connections == 2


async def test_expired_idle_connection_is_replaced(autojump_clock: object) -> None:
    async with serving(keep_alive) as server:
        wire = transport()
        await get(wire, server.url)
        await trio.sleep(3.9)
        await get(wire, server.url)  # still within keepalive_expiry 4 s
        assert wire.connections_opened == 1
        await trio.sleep(4.0)
        await get(wire, server.url)
        await wire.aclose()
    assert wire.connections_opened == 2


async def test_connection_close_header_is_honoured() -> None:
    async def closing(stream: trio.abc.Stream, server: Server) -> None:
        conn = h11.Connection(h11.SERVER)
        if await server.read_request(stream, conn):
            await stream.send_all(reply(conn, b"ok", headers=[("connection", "close")]))

    async with serving(closing) as server:
        wire = transport()
        for _ in range(3):
            assert (await get(wire, server.url)).content == b"ok"
        await wire.aclose()
    assert wire.connections_opened == 3


async def test_chunked_body_larger_than_one_read() -> None:
    payload = bytes(range(256)) * 1200  # 300 KiB in 75 chunks

    async def chunked(stream: trio.abc.Stream, server: Server) -> None:
        conn = h11.Connection(h11.SERVER)
        while await server.read_request(stream, conn):
            head = h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")])
            await stream.send_all(conn.send(head) or b"")
            for i in range(0, len(payload), 4096):
                await stream.send_all(conn.send(h11.Data(data=payload[i : i + 4096])) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            conn.start_next_cycle()

    async with serving(chunked) as server:
        wire = transport()
        for _ in range(2):
            assert (await get(wire, server.url)).content == payload
        await wire.aclose()
    assert wire.connections_opened == 1


async def test_server_hanging_up_without_an_answer() -> None:
    async def hang_up(stream: trio.abc.Stream, server: Server) -> None:
        await server.read_request(stream, h11.Connection(h11.SERVER))

    async with serving(hang_up) as server:
        wire = transport(connections=1)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await get(wire, server.url)
        with pytest.raises(httpx.RemoteProtocolError):
            await get(wire, server.url)  # the slot was released: no pool wait
        await wire.aclose()


async def test_read_timeout_is_exact_and_frees_the_slot(autojump_clock: object) -> None:
    async def silent(stream: trio.abc.Stream, server: Server) -> None:
        await server.read_request(stream, h11.Connection(h11.SERVER))
        await trio.sleep_forever()

    async with serving(silent) as server:
        wire = transport(connections=1)
        start = trio.current_time()
        with pytest.raises(httpx.ReadTimeout):
            await get(wire, server.url, read=7.0)
        assert trio.current_time() - start == pytest.approx(7.0, abs=1e-6)
        with pytest.raises(httpx.ReadTimeout):
            await get(wire, server.url, read=1.0)  # not a PoolTimeout: the slot is free
        await wire.aclose()


async def test_pool_timeout_when_every_slot_is_busy(autojump_clock: object) -> None:
    async def slow(stream: trio.abc.Stream, server: Server) -> None:
        conn = h11.Connection(h11.SERVER)
        if await server.read_request(stream, conn):
            await trio.sleep(10)
            await stream.send_all(reply(conn, b"ok"))

    async with serving(slow) as server:
        wire = transport(connections=1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(get, wire, server.url)
            await trio.sleep(1)
            with pytest.raises(httpx.PoolTimeout):
                await get(wire, server.url, pool=2.0)
        await wire.aclose()


async def test_refused_connection_is_a_connect_error() -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    wire = transport()
    with pytest.raises(httpx.ConnectError):
        await get(wire, f"http://127.0.0.1:{port}")
    await wire.aclose()


async def test_cancelled_request_closes_its_connection() -> None:
    started = trio.Event()

    async def stall(stream: trio.abc.Stream, server: Server) -> None:
        conn = h11.Connection(h11.SERVER)
        if await server.read_request(stream, conn):
            started.set()
            await trio.sleep_forever()

    async with serving(stall) as server:
        wire = transport(connections=1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(get, wire, server.url)
            await started.wait()
            nursery.cancel_scope.cancel()
        assert wire._idle_count == 0  # the half-used connection was not kept
        wire._slots.acquire_nowait()  # and its slot is free
        await wire.aclose()


async def test_https_with_a_trusted_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    with ca.cert_pem.tempfile() as pem:
        monkeypatch.setenv("SSL_CERT_FILE", pem)
        async with serving(keep_alive, tls=ca) as server:
            wire = transport()
            for _ in range(3):
                assert (await get(wire, server.url)).content == b"ok"
            await wire.aclose()
    assert wire.connections_opened == 1


async def test_https_with_an_untrusted_certificate_fails_to_connect() -> None:
    """The error names OpenSSL's reason (trio's BrokenResourceError around it has no text, so
    it once read 'TLS handshake failed: ' and nothing more)."""
    async with serving(keep_alive, tls=trustme.CA()) as server:
        wire = transport()
        with pytest.raises(httpx.ConnectError) as caught:
            await get(wire, server.url)
        await wire.aclose()
    assert str(caught.value) == (
        "TLS handshake failed: certificate verify failed: unable to get local issuer certificate"
    )


async def test_https_with_the_ssl_context_given() -> None:
    """The transport uses the SSL context it is given (the client builds it from the
    provider's TLS settings) instead of httpx's default one, and offers HTTP/1.1 by ALPN."""
    ca = trustme.CA()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with serving(keep_alive, tls=ca) as server:
        wire = WireTransport(httpx.Limits(max_connections=2), ssl_context=context)
        assert (await get(wire, server.url)).content == b"ok"
        await wire.aclose()
    assert wire.connections_opened == 1


async def test_https_exchange_goes_through_the_tls_stream() -> None:
    """``post`` over TLS writes through the SSL stream (a plain connection's requests go
    straight to its descriptor instead: tests/test_exchange.py), on one kept-alive
    connection."""
    ca = trustme.CA()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with serving(keep_alive, tls=ca) as server:
        wire = WireTransport(
            httpx.Limits(max_connections=2, max_keepalive_connections=2), ssl_context=context
        )
        url = httpx.URL(server.url + "/v1/x")
        for _ in range(3):
            reply = await wire.post(
                url,
                request_head(url, {}),
                b'{"a":1}',
                timeouts={},
                until=math.inf,
                cap=ResponseCap(limit=1 << 20, aliases=("m",)),
                where=("p", "m"),
            )
            assert reply is not None
            assert reply.content == b"ok"
        ((conn,),) = wire._idle.values()
        assert conn.fd == -1
        await wire.aclose()
    assert wire.connections_opened == 1


async def test_tls_failure_after_the_handshake_names_the_ssl_error() -> None:
    """A server that breaks the TLS session mid-answer (no close_notify): the read error
    carries OpenSSL's words, not an empty text."""
    ca = trustme.CA()
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def cut(stream: trio.abc.Stream, server: Server) -> None:
        if await server.read_request(stream, h11.Connection(h11.SERVER)):
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            assert isinstance(stream, trio.SSLStream)
            stream.transport_stream.socket.close()  # type: ignore[attr-defined]

    async with serving(cut, tls=ca) as server:
        wire = WireTransport(httpx.Limits(max_connections=2), ssl_context=context)
        with pytest.raises(httpx.ReadError, match="EOF occurred in violation of protocol"):
            await get(wire, server.url)
        await wire.aclose()


async def test_unsupported_scheme() -> None:
    wire = transport()
    with pytest.raises(httpx.UnsupportedProtocol):
        await wire.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/x"))


async def test_model_requests_through_the_built_client_reuse_connections() -> None:
    """The adapters' path (build_http_client → post_json → WireTransport) against the simulated
    server: the requests go straight to the transport, twelve answers over at most four
    connections."""
    provider = ProviderConfig(name="sim", type="openai", endpoint="http://unused.test/v1")
    models = [ModelConfig(alias="m", provider="sim", model="small", max_parallel_requests=4)]
    request = ChatRequest(model="small", messages=[Message(role="user", content="hi")])
    answers: list[str] = []
    async with serve_simulated(SimulationConfig()) as server:
        http = build_http_client(provider, models, base_url=server.url)
        async with http:
            wire = http._transport
            assert isinstance(wire, WireTransport)
            client = adapter_for(provider, http, api_key=None)

            async def ask() -> None:
                answers.append((await client.chat(request)).text)

            async with trio.open_nursery() as nursery:
                for _ in range(12):
                    nursery.start_soon(ask)
    assert len(answers) == 12
    assert all(answers)
    assert 1 <= wire.connections_opened <= 4
