"""One HTTP contract, run against both transports (gridloom's fast one and httpx's own): TLS
settings, proxies (the provider's and the environment's), body framings and encodings, idle
connections the server closed, and the reply size cap.

The servers are real, on 127.0.0.1: gridloom's simulated endpoint, hypercorn (a third-party
server) serving a small ASGI app, a scripted socket for a close-delimited body, and a small
proxy written here (``CONNECT`` tunnels and plain-HTTP forwarding). Where a setting only
httpx's transport can serve (a proxy, HTTP/2), the policy picks it whatever was asked, and
the tests check that it did.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import gzip
import os
import shutil
import ssl
import subprocess
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import attrs
import h11
import httpx
import hypercorn.config
import hypercorn.trio
import pytest
import trio
import trio.testing
import trustme
from click.testing import CliRunner

import gridloom as gl
from gridloom.cli import cli
from gridloom.clients import (
    ChatRequest,
    Message,
    OpenAIClient,
    RetryPolicy,
    build_http_client,
    http_limits,
    transport_plan,
)
from gridloom.clients._http import direct_route
from gridloom.clients._limit import _Inflate
from gridloom.clients._policy import environment_proxy, network_transport
from gridloom.clients._wire import WireTransport
from gridloom.config import (
    LLMTextColumn,
    ModelConfig,
    PipelineConfig,
    ProviderConfig,
    SimulatedModel,
    SimulationConfig,
    dump_config,
)
from gridloom.errors import (
    CertificateRejected,
    ConfigError,
    ConnectionFailed,
    MalformedResponse,
    ModelError,
    ResponseTooLarge,
    TLSFailed,
    is_retryable,
)
from gridloom.simulated import serve_simulated

Kind = Literal["fast", "httpx"]
KINDS: list[Kind] = ["fast", "httpx"]
MiB = 1024 * 1024
#: The "50 MB model answer" of issue 14.
BIG = 50 * MiB
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


# --------------------------------------------------------------------------- certificates


@attrs.frozen
class Certs:
    """A test CA and PEM files: the CA, a server certificate for 127.0.0.1, a client one."""

    ca: trustme.CA
    ca_pem: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    client_both: str

    def leaf(self, name: str, leaf: trustme.LeafCert, folder: Path) -> tuple[str, str]:
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        return str(cert), str(key)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca_pem = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    blank = Certs(ca, str(ca_pem), "", "", "", "", "")
    server_cert, server_key = blank.leaf("server", ca.issue_cert("127.0.0.1", "localhost"), folder)
    client = ca.issue_cert("client@gridloom.test")
    client_cert, client_key = blank.leaf("client", client, folder)
    both = folder / "client-both.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(both))
    return attrs.evolve(
        blank,
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        client_both=str(both),
    )


def ca_directory(certs: Certs, folder: Path) -> str:
    """A CA directory as ``capath`` reads it: certificates named by their subject hash, which
    the ``openssl`` command computes (the test is skipped without it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to name a CA directory's files")
    args = [openssl, "x509", "-hash", "-noout", "-in", certs.ca_pem]
    subject_hash = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    folder.mkdir()
    certs.ca.cert_pem.write_to_path(str(folder / f"{subject_hash.strip()}.0"))
    return str(folder)


# --------------------------------------------------------------------------- the ASGI app


def _chat(text: bytes) -> bytes:
    return (
        b'{"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"'
        + text
        + b'"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}'
    )


@functools.cache
def _bomb() -> bytes:
    """A chat reply of 50 MB of spaces inside its text, gzipped to about 50 KB."""
    return gzip.compress(_chat(b" " * BIG), compresslevel=6)


@functools.cache
def _double_bomb() -> bytes:
    """The same 50 MB reply gzipped twice (``Content-Encoding: gzip, gzip``): a few KB."""
    return gzip.compress(_bomb(), compresslevel=9)


#: Per mode of :class:`App` with a content-coded body: the body and its Content-Encoding.
_CODED: dict[str, Callable[[], tuple[bytes, bytes]]] = {
    "gzip": lambda: (gzip.compress(_chat(b"gzip ok")), b"gzip"),
    "bomb": lambda: (_bomb(), b"gzip"),
    "gzgz": lambda: (gzip.compress(zlib.compress(_chat(b"gzgz ok"))), b"deflate, GZIP"),
    "gzgzbomb": lambda: (_double_bomb(), b"gzip, gzip"),
    "br": lambda: (b"\x0b\x02\x80hello\x03", b"br"),
    "gz4": lambda: (
        gzip.compress(gzip.compress(gzip.compress(gzip.compress(b"{}")))),
        b"gzip, gzip, gzip, gzip",
    ),
}


class App:
    """A small OpenAI-ish ASGI app; the first path segment says how to answer."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rpartition(".")[2]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        while (await receive()).get("more_body"):
            pass
        self.seen.append(
            {
                "path": scope["path"],
                "client": tuple(scope["client"]),
                "http_version": scope["http_version"],
            }
        )
        mode = scope["path"].split("/")[1]
        head = [(b"content-type", b"application/json")]
        if mode == "plain":
            body = _chat(b"plain ok")
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*head, (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        elif mode in _CODED:
            body, coding = _CODED[mode]()
            headers = [*head, (b"content-encoding", coding)]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif mode == "chunked":  # no Content-Length: HTTP/1.1 frames it as chunks
            await send({"type": "http.response.start", "status": 200, "headers": head})
            body = _chat(b"chunked ok " + b"z" * 200_000)
            for i in range(0, len(body), 7000):
                piece = body[i : i + 7000]
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif mode in ("big", "biglen"):  # a 50 MB answer, streamed in 1 MiB pieces
            prefix, suffix = _chat(b"\x00").split(b"\x00")
            headers = list(head)
            if mode == "biglen":
                size = len(prefix) + BIG + len(suffix)
                headers.append((b"content-length", str(size).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": prefix, "more_body": True})
            piece = b"x" * MiB
            for _ in range(BIG // MiB):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": suffix})
        else:
            await send({"type": "http.response.start", "status": 404, "headers": head})
            await send({"type": "http.response.body", "body": b'{"error":"no such mode"}'})


@contextlib.asynccontextmanager
async def hypercorn_serving(
    app: App,
    *,
    certs: Certs | None = None,
    client_cert: bool = False,
    server_cert: tuple[str, str] | None = None,
    keep_alive: float = 5.0,
) -> AsyncIterator[str]:
    """Serve ``app`` with hypercorn on 127.0.0.1; yields the base URL."""
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.keep_alive_timeout = keep_alive
    config.accesslog = None
    config.errorlog = None
    if certs is not None:
        config.certfile, config.keyfile = server_cert or (certs.server_cert, certs.server_key)
        if client_cert:
            config.ca_certs = certs.ca_pem
            config.verify_mode = ssl.CERT_REQUIRED
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(hypercorn.trio.serve, app, config))
        yield binds[0]
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- a small proxy


class Proxy:
    """An HTTP proxy on 127.0.0.1: ``CONNECT`` tunnels, and plain-HTTP requests in absolute
    form forwarded (each on a new upstream connection). It records what went through it."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.forwarded: list[str] = []
        self.auth: list[str | None] = []
        self.url = ""

    async def serve(self, client: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = await _next_event(conn, client)
                if not isinstance(event, h11.Request):
                    return
                headers = dict(event.headers)
                auth = headers.get(b"proxy-authorization")
                self.auth.append(auth.decode() if auth else None)
                if event.method == b"CONNECT":
                    await self._tunnel(conn, client, event.target.decode())
                    return
                await self._forward(conn, client, event)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(client)

    async def _tunnel(self, conn: h11.Connection, client: trio.SocketStream, target: str) -> None:
        self.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        while not isinstance(await _next_event(conn, client), h11.EndOfMessage):
            pass
        upstream = await trio.open_tcp_stream(host, int(port))
        await client.send_all(conn.send(h11.Response(status_code=200, headers=[])) or b"")
        leftover, _closed = conn.trailing_data
        if leftover:
            await upstream.send_all(leftover)

        async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while data := await source.receive_some(65536):
                    await sink.send_all(data)
                await sink.send_eof()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, client, upstream)
                nursery.start_soon(pump, upstream, client)
        finally:
            await trio.aclose_forcefully(upstream)

    async def _forward(
        self, conn: h11.Connection, client: trio.SocketStream, request: h11.Request
    ) -> None:
        url = httpx.URL(request.target.decode())
        self.forwarded.append(str(url))
        body = b""
        while not isinstance(event := await _next_event(conn, client), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                body += event.data
        skip = {b"proxy-authorization", b"proxy-connection", b"connection"}
        upstream = await trio.open_tcp_stream(url.host, url.port or 80)
        up = h11.Connection(h11.CLIENT)
        try:
            head = h11.Request(
                method=request.method,
                target=url.raw_path,
                headers=[(k, v) for k, v in request.headers if k.lower() not in skip],
            )
            await upstream.send_all(
                b"".join(
                    x or b""
                    for x in (
                        up.send(head),
                        up.send(h11.Data(data=body)),
                        up.send(h11.EndOfMessage()),
                    )
                )
            )
            while True:
                event = await _next_event(up, upstream)
                if isinstance(event, h11.Response):
                    headers = [(k, v) for k, v in event.headers if k.lower() != b"connection"]
                    response = h11.Response(status_code=event.status_code, headers=headers)
                    await client.send_all(conn.send(response) or b"")
                elif isinstance(event, h11.Data):
                    await client.send_all(conn.send(h11.Data(data=event.data)) or b"")
                elif isinstance(event, h11.EndOfMessage):
                    await client.send_all(conn.send(h11.EndOfMessage()) or b"")
                    return
                else:
                    return
        finally:
            await trio.aclose_forcefully(upstream)


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(65536))


@contextlib.asynccontextmanager
async def proxying() -> AsyncIterator[Proxy]:
    proxy = Proxy()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), proxy.serve, 0
        )
        proxy.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        yield proxy
        nursery.cancel_scope.cancel()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.lower() in PROXY_VARIABLES or name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            monkeypatch.delenv(name)
    return monkeypatch


# --------------------------------------------------------------------------- the client side


@attrs.define
class Model:
    """A provider's client as the engine builds it, and an OpenAI adapter over it."""

    http: httpx.AsyncClient
    client: OpenAIClient
    kind: str

    async def ask(self) -> str:
        request = ChatRequest(model="m-1", messages=[Message(role="user", content="hi")])
        return (await self.client.chat(request)).text

    @property
    def wire(self) -> WireTransport | None:
        route = direct_route(self.http)
        assert route is not None
        return route.transport if isinstance(route.transport, WireTransport) else None


def model(
    url: str, kind: Kind | None = None, *, max_response_bytes: int | None = None, **settings: Any
) -> Model:
    """The client for ``url``; ``kind`` forces a transport (``None``: the policy's choice)."""
    provider = ProviderConfig(name="p", endpoint=url, **settings)
    extra = {} if max_response_bytes is None else {"max_response_bytes": max_response_bytes}
    models = [ModelConfig(alias="m", provider="p", model="m-1", **extra)]
    if kind is None:
        http = build_http_client(provider, models)
        plan = direct_route(http).plan  # type: ignore[union-attr]
        assert plan is not None
        chosen = plan.kind
    else:
        transport, plan = network_transport(provider, url, http_limits(provider, models), kind=kind)
        http = build_http_client(provider, models, transport=transport)
        chosen = kind
    retry = RetryPolicy(max_attempts=1)  # what the transport itself does, without retries
    return Model(http, OpenAIClient(http, provider=provider, api_key=None, retry=retry), chosen)


@contextlib.asynccontextmanager
async def opened(url: str, kind: Kind | None = None, **settings: Any) -> AsyncIterator[Model]:
    m = model(url, kind, **settings)
    async with m.http:
        yield m


def is_transport(m: Model, kind: Kind) -> None:
    route = direct_route(m.http)
    assert route is not None
    if kind == "fast":
        assert isinstance(route.transport, WireTransport)
    else:
        assert isinstance(route.transport, httpx.AsyncHTTPTransport)


# --------------------------------------------------------------------------- (a) simulated


@pytest.mark.parametrize("kind", KINDS)
async def test_simulated_endpoint_concurrent_requests(kind: Kind) -> None:
    """Both transports carry concurrent chat requests to the simulated endpoint over a few
    reused connections."""
    async with serve_simulated(SimulationConfig()) as server, opened(server.url, kind) as m:
        is_transport(m, kind)
        answers: list[str] = []

        async def ask() -> None:
            answers.append(await m.ask())

        async with trio.open_nursery() as nursery:
            for _ in range(12):
                nursery.start_soon(ask)
    assert len(answers) == 12
    assert all(answers)


@pytest.mark.parametrize("kind", KINDS)
async def test_simulated_endpoint_reply_size_cap(kind: Kind) -> None:
    """A reply over the model's max_response_bytes is refused (declared Content-Length), not
    retried, and the message names the alias, the cap and how to raise it; a larger cap
    accepts it."""
    sim = SimulationConfig(default=SimulatedModel(output_tokens=2000))  # about 15 KB
    async with serve_simulated(sim) as server:
        async with opened(server.url, kind, max_response_bytes=4096) as m:
            with pytest.raises(ResponseTooLarge) as caught:
                await m.ask()
            assert m.http is not None
        async with opened(server.url, kind, max_response_bytes=64 * 1024) as m:
            assert len(await m.ask()) > 4096
    error = caught.value
    assert not error.retryable
    assert not gl.errors.is_retryable(error)
    assert error.limit == 4096
    message = str(error)
    assert message.startswith("p/m-1: reply too large:")
    assert "Content-Length" in message
    assert "max_response_bytes = 4096 (4 KiB) of model alias 'm'" in message
    assert "raise it (max_response_bytes: 1048576 on that model)" in message


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.1", "localhost,127.0.0.1:1,127.0.0.1"])
async def test_simulated_endpoint_through_http_proxy_from_the_environment(
    clean_env: pytest.MonkeyPatch, no_proxy: str | None
) -> None:
    """HTTP_PROXY sends plain-HTTP requests through the proxy (httpx's transport, forwarding
    in absolute form); NO_PROXY naming the host keeps them direct, on the fast transport."""
    async with serve_simulated(SimulationConfig()) as server, proxying() as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        if no_proxy is not None:
            clean_env.setenv("NO_PROXY", no_proxy)
        async with opened(server.url) as m:
            assert await m.ask()
            assert await m.ask()
    if no_proxy is None:
        assert m.kind == "httpx"
        assert proxy.forwarded == [server.url + "/chat/completions"] * 2
        assert transport_plan(m.client.provider).proxy_source == "HTTP_PROXY"
    else:
        assert m.kind == "fast"
        assert proxy.forwarded == []
        assert (
            "NO_PROXY entry '127.0.0.1' excludes 127.0.0.1"
            in transport_plan(m.client.provider).reason
        )


async def test_simulated_providers_ignore_environment_proxies(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """A provider of type simulated is served on loopback: HTTP_PROXY does not apply to it."""
    clean_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    plan = transport_plan(ProviderConfig(name="sim", type="simulated"))
    assert (plan.kind, plan.reason) == ("fast", "simulated endpoint on loopback")
    asgi = ProviderConfig(
        name="sim", type="simulated", simulation=SimulationConfig(transport="asgi")
    )
    assert transport_plan(asgi).kind == "asgi"


# --------------------------------------------------------------------------- (b) TLS


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("verify", ["file", "dir"])
async def test_tls_with_the_ca_bundle_given(
    certs: Certs, clean_env: pytest.MonkeyPatch, tmp_path: Path, kind: Kind, verify: str
) -> None:
    """verify: <CA bundle path> (a PEM file, or a directory of certificates) trusts the test
    CA, on both transports, and the connection is reused."""
    ca = certs.ca_pem if verify == "file" else ca_directory(certs, tmp_path / "cas")
    app = App()
    async with (
        hypercorn_serving(app, certs=certs) as url,
        opened(url + "/plain/v1", kind, verify=ca) as m,
    ):
        for _ in range(3):
            assert await m.ask() == "plain ok"
    assert len({seen["client"] for seen in app.seen}) == 1


def _expired(certs: Certs, folder: Path) -> tuple[str, str]:
    leaf = certs.ca.issue_cert(
        "127.0.0.1",
        not_before=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2001, 1, 1, tzinfo=dt.UTC),
    )
    return certs.leaf("expired", leaf, folder)


def _other_host(certs: Certs, folder: Path) -> tuple[str, str]:
    return certs.leaf("other", certs.ca.issue_cert("other.gridloom.test"), folder)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("untrusted", "certificate verify failed: unable to get local issuer certificate"),
        ("mismatch", "certificate verify failed: IP address mismatch"),
        ("expired", "certificate verify failed: certificate has expired"),
    ],
)
async def test_tls_failures_name_their_reason(
    certs: Certs,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    kind: Kind,
    case: str,
    reason: str,
) -> None:
    """verify: true against a certificate of an unknown CA, for another host, or expired:
    the error says why (the fast transport once said only 'TLS handshake failed:')."""
    server_cert = None
    verify: bool | str = True
    if case == "mismatch":
        server_cert, verify = _other_host(certs, tmp_path), certs.ca_pem
    elif case == "expired":
        server_cert, verify = _expired(certs, tmp_path), certs.ca_pem
    async with (
        hypercorn_serving(App(), certs=certs, server_cert=server_cert) as url,
        opened(url + "/plain/v1", kind, verify=verify) as m,
    ):
        with pytest.raises(CertificateRejected) as caught:
            await m.ask()
    assert reason in str(caught.value)
    assert not is_retryable(caught.value)  # final: retrying cannot fix a certificate


@contextlib.asynccontextmanager
async def plain_http_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A server answering anything with a plain-HTTP 400 and closing (as a plain-HTTP server
    answers a TLS ClientHello); yields its https:// URL and the count of connections."""
    connections = [0]

    async def serve(stream: trio.SocketStream) -> None:
        connections[0] += 1
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        serve_tcp = functools.partial(trio.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve_tcp, serve, 0)
        yield f"https://127.0.0.1:{listeners[0].socket.getsockname()[1]}/v1", connections
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("kind", KINDS)
async def test_https_to_a_plain_http_server_is_final_and_suggests_http(
    clean_env: pytest.MonkeyPatch, kind: Kind
) -> None:
    """https:// against a plain-HTTP server (WRONG_VERSION_NUMBER) is TLSFailed: not retried
    by the transport (one connection, where 3 attempts were made), final, and the message
    suggests an http:// endpoint."""
    async with plain_http_server() as (url, connections), opened(url, kind) as m:
        with pytest.raises(TLSFailed) as caught:
            await m.ask()
    assert connections == [1]
    assert not is_retryable(caught.value)
    assert "wrong version number" in str(caught.value).lower()
    assert str(caught.value).endswith(
        "the server does not speak TLS there: if it serves plain HTTP, use an http:// endpoint"
    )


async def test_a_run_against_https_on_plain_http_stops_at_once(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """A run whose endpoint is https:// on a plain-HTTP server stops after its first failed
    request, like a refused key, naming the model and suggesting http://."""
    async with plain_http_server() as (url, connections):
        config = PipelineConfig(
            providers=[ProviderConfig(name="p", endpoint=url)],
            models=[ModelConfig(alias="m", provider="p", model="m-1", max_parallel_requests=1)],
            columns=[LLMTextColumn(name="a", model="m", prompt="hi")],
        )
        result = await gl.apreview(config, 5)
    assert result.status == "stopped"
    assert result.stop_reason is not None
    assert result.stop_reason.startswith("model 'm': TLS with the provider cannot work (")
    assert "use an http:// endpoint" in result.stop_reason
    assert connections[0] <= 2


@pytest.mark.parametrize("kind", KINDS)
async def test_tls_verification_can_be_turned_off(
    certs: Certs, clean_env: pytest.MonkeyPatch, kind: Kind
) -> None:
    """verify: false accepts a certificate of an unknown CA."""
    async with (
        hypercorn_serving(App(), certs=certs) as url,
        opened(url + "/plain/v1", kind, verify=False) as m,
    ):
        assert await m.ask() == "plain ok"


@pytest.mark.parametrize("kind", KINDS)
async def test_ssl_cert_file_from_the_environment(
    certs: Certs, clean_env: pytest.MonkeyPatch, kind: Kind
) -> None:
    """With trust_env (the default) SSL_CERT_FILE gives the CA bundle; trust_env: false
    ignores it."""
    clean_env.setenv("SSL_CERT_FILE", certs.ca_pem)
    async with hypercorn_serving(App(), certs=certs) as url:
        async with opened(url + "/plain/v1", kind) as m:
            assert await m.ask() == "plain ok"
        async with opened(url + "/plain/v1", kind, trust_env=False) as m:
            with pytest.raises(ConnectionFailed, match="unable to get local issuer"):
                await m.ask()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", ["pair", "single"])
async def test_client_certificate_asked_by_the_server(
    certs: Certs, clean_env: pytest.MonkeyPatch, kind: Kind, form: str
) -> None:
    """A server that requires a client certificate accepts the one given as cert: (a
    [certificate, key] pair, or one PEM holding both), and refuses a client without one."""
    cert: str | list[str] = (
        [certs.client_cert, certs.client_key] if form == "pair" else certs.client_both
    )
    async with hypercorn_serving(App(), certs=certs, client_cert=True) as url:
        async with opened(url + "/plain/v1", kind, verify=certs.ca_pem, cert=cert) as m:
            assert await m.ask() == "plain ok"
        async with opened(url + "/plain/v1", kind, verify=certs.ca_pem) as m:
            with pytest.raises(ConnectionFailed) as caught:
                await m.ask()
    # Over TLS 1.3 the server checks the certificate once the client's handshake is done, so
    # the refusal shows on the first read; hypercorn closes without the 'certificate required'
    # alert, so OpenSSL can only say the connection ended early (the fast transport says so).
    if kind == "fast":
        assert "EOF occurred in violation of protocol" in str(caught.value)


def test_unusable_tls_files_are_config_errors(tmp_path: Path) -> None:
    """A missing CA bundle or client certificate fails when the client is built, naming the
    provider and the field."""
    url = "https://127.0.0.1:9/v1"
    with pytest.raises(ConfigError, match="'p': the CA bundle cannot be used") as caught:
        model(url, verify=str(tmp_path / "missing.pem"))
    assert caught.value.field == "verify"
    with pytest.raises(ConfigError, match="'p': the client certificate cannot be used") as caught:
        model(url, cert=str(tmp_path / "missing.pem"))
    assert caught.value.field == "cert"
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="the client certificate cannot be used"):
        model(url, cert=str(tmp_path / "junk.pem"))


# --------------------------------------------------------------------------- (b) HTTP/2


async def test_http2_uses_httpx_transport_and_speaks_h2(
    certs: Certs, clean_env: pytest.MonkeyPatch
) -> None:
    """http2: true picks httpx's transport (the fast one speaks HTTP/1.1 only), and the
    server sees HTTP/2."""
    app = App()
    async with (
        hypercorn_serving(app, certs=certs) as url,
        opened(url + "/plain/v1", verify=certs.ca_pem, http2=True) as m,
    ):
        assert await m.ask() == "plain ok"
        assert await m.ask() == "plain ok"
    assert m.kind == "httpx"
    assert [seen["http_version"] for seen in app.seen] == ["2", "2"]
    plan = transport_plan(m.client.provider)
    assert plan.describe() == "httpx (http2: true)"
    with pytest.raises(ConfigError, match="cannot serve this provider"):
        model(url, "fast", http2=True)


# --------------------------------------------------------------------------- (b) proxies


async def test_proxy_setting_tunnels_https_with_credentials(
    certs: Certs, clean_env: pytest.MonkeyPatch
) -> None:
    """proxy: with credentials: HTTPS goes through a CONNECT tunnel on httpx's transport, the
    proxy gets the credentials, and no repr, plan or dumped config shows them."""
    app = App()
    async with hypercorn_serving(app, certs=certs) as url, proxying() as proxy:
        with_auth = proxy.url.replace("http://", "http://alice:s3cret-pw@")
        settings = {"verify": certs.ca_pem, "proxy": with_auth}
        async with opened(url + "/plain/v1", **settings) as m:
            assert await m.ask() == "plain ok"
            assert await m.ask() == "plain ok"
    assert m.kind == "httpx"
    port = url.rsplit(":", 1)[1]
    assert proxy.tunnels == [f"127.0.0.1:{port}"]  # one tunnel, kept alive
    assert proxy.auth == ["Basic " + base64.b64encode(b"alice:s3cret-pw").decode()]
    provider = m.client.provider
    plan = transport_plan(provider)
    assert plan.proxy_source == "proxy"
    shown = [
        repr(provider),
        repr(plan),
        plan.describe(),
        dump_config(
            PipelineConfig(
                providers=[provider],
                models=[ModelConfig(alias="m", provider="p", model="m-1")],
                columns=[LLMTextColumn(name="a", model="m", prompt="hi")],
            ),
            redact=True,
        ),
    ]
    for text in shown:
        assert "s3cret-pw" not in text
        assert "alice" not in text
    assert "<redacted>@127.0.0.1" in plan.describe()


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
async def test_https_proxy_from_the_environment(
    certs: Certs, clean_env: pytest.MonkeyPatch, variable: str
) -> None:
    """HTTPS_PROXY (any case) or ALL_PROXY tunnels HTTPS through the proxy; the plan names
    the variable."""
    async with hypercorn_serving(App(), certs=certs) as url, proxying() as proxy:
        clean_env.setenv(variable, proxy.url)
        async with opened(url + "/plain/v1", verify=certs.ca_pem) as m:
            assert await m.ask() == "plain ok"
        plan = transport_plan(m.client.provider)
    assert m.kind == "httpx"
    assert len(proxy.tunnels) == 1
    assert plan.describe() == f"httpx (proxy {proxy.url} from {variable})"


@pytest.mark.parametrize(
    ("no_proxy", "direct"),
    [
        ("*", True),
        ("127.0.0.1", True),
        ("example.com, 127.0.0.1", True),
        ("localhost", False),  # another name for the same host: httpx matches names
        ("127.0.0.2", False),
    ],
)
async def test_no_proxy_is_honoured(
    certs: Certs, clean_env: pytest.MonkeyPatch, no_proxy: str, direct: bool
) -> None:
    """NO_PROXY keeps the endpoints it names off the proxy (and on the fast transport)."""
    async with hypercorn_serving(App(), certs=certs) as url, proxying() as proxy:
        clean_env.setenv("HTTPS_PROXY", proxy.url)
        clean_env.setenv("NO_PROXY", no_proxy)
        async with opened(url + "/plain/v1", verify=certs.ca_pem) as m:
            assert await m.ask() == "plain ok"
    assert m.kind == ("fast" if direct else "httpx")
    assert len(proxy.tunnels) == (0 if direct else 1)


async def test_trust_env_false_ignores_environment_proxies(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """trust_env: false: HTTP_PROXY does not apply (and the fast transport is kept)."""
    app = App()
    async with hypercorn_serving(app) as url, proxying() as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        async with opened(url + "/plain/v1", trust_env=False) as m:
            assert await m.ask() == "plain ok"
    assert m.kind == "fast"
    assert proxy.forwarded == []


def test_environment_proxy_rules_match_httpx(clean_env: pytest.MonkeyPatch) -> None:
    """The proxy picked from the environment for a URL is the one httpx's own client picks,
    across NO_PROXY forms (domains and subdomains, IPs, ports, schemes) and variables."""
    cases = [
        ({"HTTP_PROXY": "http://p:1"}, "http://a.test/v1"),
        ({"HTTP_PROXY": "http://p:1"}, "https://a.test/v1"),
        ({"HTTPS_PROXY": "p:2"}, "https://a.test/v1"),
        ({"ALL_PROXY": "http://p:3", "HTTPS_PROXY": "http://p:2"}, "https://a.test/v1"),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "a.test"}, "https://api.a.test/v1"),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "a.test"}, "https://xa.test/v1"),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": ".a.test"}, "https://a.test/v1"),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": ".a.test"}, "https://b.a.test/v1"),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "10.0.0.1"}, "http://10.0.0.1:8000/v1"),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "::1"}, "http://[::1]:8000/v1"),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "a.test:8000"}, "http://a.test:8000/v1"),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "a.test:8000"}, "http://a.test:9000/v1"),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "http://a.test"}, "https://a.test/v1"),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "http://a.test"}, "http://a.test/v1"),
        ({"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"}, "https://a.test"),
        ({"HTTPS_PROXY": "http://p:2", "NO_PROXY": " , *"}, "https://a.test/v1"),
    ]
    for env, url in cases:
        for name in list(os.environ):
            if name.lower() in PROXY_VARIABLES:
                clean_env.delenv(name)
        for name, value in env.items():
            clean_env.setenv(name, value)
        ours, _source = environment_proxy(httpx.URL(url))
        theirs = httpx.AsyncClient(trust_env=True)._transport_for_url(httpx.URL(url))
        pool = getattr(theirs, "_pool", None)
        proxy_url = getattr(pool, "_proxy_url", None)
        expected = None
        if proxy_url is not None:
            expected = f"{proxy_url.scheme.decode()}://{proxy_url.host.decode()}:{proxy_url.port}"
        got = None if ours is None else str(httpx.URL(ours)).rstrip("/")
        assert got == expected, (env, url)


# --------------------------------------------------------------------------- (b) bodies


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["gzip", "chunked"])
async def test_gzip_and_chunked_bodies(
    clean_env: pytest.MonkeyPatch, kind: Kind, mode: str
) -> None:
    """A gzip-encoded body is decoded, a chunked one reassembled, on both transports; the
    request offers only gzip and deflate."""
    async with hypercorn_serving(App()) as url, opened(url + f"/{mode}/v1", kind) as m:
        text = await m.ask()
        assert text.startswith(f"{mode} ok")
        route = direct_route(m.http)
        assert route is not None
        assert route.headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("kind", KINDS)
async def test_close_delimited_body(clean_env: pytest.MonkeyPatch, kind: Kind) -> None:
    """A reply with neither Content-Length nor chunks ends when the server closes the
    connection; it is read whole, and the connection is not reused."""
    body = _chat(b"until close " + b"c" * 100_000)
    connections = 0

    async def serve(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        conn = h11.Connection(h11.SERVER)
        while not isinstance(await _next_event(conn, stream), h11.EndOfMessage):
            pass
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n")
        for i in range(0, len(body), 10_000):
            await stream.send_all(body[i : i + 10_000])
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        serve_tcp = functools.partial(trio.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve_tcp, serve, 0)
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/v1"
        async with opened(url, kind) as m:
            assert (await m.ask()).startswith("until close ccc")
            assert (await m.ask()).startswith("until close ccc")
        nursery.cancel_scope.cancel()
    assert connections == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_idle_connection_closed_by_the_server_is_replaced(
    clean_env: pytest.MonkeyPatch, kind: Kind, autojump_clock: trio.testing.MockClock
) -> None:
    """hypercorn closes an idle kept-alive connection after 1 s (below the client's own 4 s
    keep-alive); the next request opens a new one at once, without an error or a retry."""
    app = App()
    async with hypercorn_serving(app, keep_alive=1.0) as url, opened(url + "/plain/v1", kind) as m:
        assert await m.ask() == "plain ok"
        await trio.sleep(2.0)  # virtual time: the server has closed the connection by now
        assert await m.ask() == "plain ok"
        if m.wire is not None:
            assert m.wire.connections_opened == 2
    first, second = (seen["client"] for seen in app.seen)
    assert first != second  # two connections


# --------------------------------------------------------------------------- (b) size cap


async def _peak_while(call: Callable[[], Awaitable[object]]) -> tuple[int, BaseException | None]:
    """Peak traced memory (bytes) while ``call`` runs, and what it raised."""
    tracemalloc.start()
    error: BaseException | None = None
    try:
        await call()
    except ModelError as exc:
        error = exc
    finally:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, error


@pytest.mark.parametrize("kind", KINDS)
async def test_a_50_mb_answer_is_refused_with_bounded_memory(
    clean_env: pytest.MonkeyPatch, kind: Kind
) -> None:
    """A 50 MB answer streamed without a Content-Length, against the default cap (8 MiB):
    reading stops past the cap with ResponseTooLarge (never retried), and memory stays near
    the cap, not near 50 MB (twice over, once joined)."""
    async with hypercorn_serving(App()) as url, opened(url + "/big/v1", kind) as m:
        peak, error = await _peak_while(m.ask)
        assert isinstance(error, ResponseTooLarge)
        assert str(error) == (
            "p/m-1: reply too large: longer than max_response_bytes = 8388608 (8 MiB) of model"
            " alias 'm'; reading stopped there. If replies this long are expected, raise it"
            " (max_response_bytes: 33554432 on that model)"
        )
        assert peak < 3 * 8 * MiB
        # The refused reply's connection was closed, and the next request still works.
        m2 = model(url + "/plain/v1", kind)
        async with m2.http:
            assert await m2.ask() == "plain ok"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_50_mb_answer_is_accepted_when_the_cap_is_raised(
    clean_env: pytest.MonkeyPatch, kind: Kind
) -> None:
    """With max_response_bytes above it, the same 50 MB answer is read whole."""
    async with (
        hypercorn_serving(App()) as url,
        opened(url + "/big/v1", kind, max_response_bytes=64 * MiB) as m,
    ):
        text = await m.ask()
    assert len(text) == BIG


@pytest.mark.parametrize("kind", KINDS)
async def test_declared_length_over_the_cap_is_refused_before_reading(
    clean_env: pytest.MonkeyPatch, kind: Kind
) -> None:
    """A Content-Length above the cap is refused at once, its body never read."""
    async with hypercorn_serving(App()) as url, opened(url + "/biglen/v1", kind) as m:
        peak, error = await _peak_while(m.ask)
    assert isinstance(error, ResponseTooLarge)
    assert f"reply too large: {len(_chat(b'')) + BIG} bytes (its Content-Length), more" in str(
        error
    )
    assert peak < 4 * MiB


@pytest.mark.parametrize("kind", KINDS)
async def test_a_gzip_bomb_is_refused_with_bounded_memory(
    clean_env: pytest.MonkeyPatch, kind: Kind
) -> None:
    """50 KB of gzip that inflates to 50 MB: the cap counts inflated bytes, and inflating
    stops there."""
    _bomb()  # compressed once, outside the measurement
    async with (
        hypercorn_serving(App()) as url,
        opened(url + "/bomb/v1", kind, max_response_bytes=MiB) as m,
    ):
        peak, error = await _peak_while(m.ask)
    assert isinstance(error, ResponseTooLarge)
    assert "of model alias 'm' once decompressed; reading stopped there" in str(error)
    assert peak < 8 * MiB


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stacked_gzip_bomb_is_refused_with_bounded_memory(
    clean_env: pytest.MonkeyPatch, kind: Kind
) -> None:
    """``Content-Encoding: gzip, gzip`` around a 50 MB reply (a few KB on the wire): both
    transports undo the stacked codings in bounded pieces and stop at the cap, where httpx's
    own decoder used to inflate all 50 MB first."""
    _double_bomb()
    async with (
        hypercorn_serving(App()) as url,
        opened(url + "/gzgzbomb/v1", kind, max_response_bytes=MiB) as m,
    ):
        is_transport(m, kind)
        peak, error = await _peak_while(m.ask)
    assert isinstance(error, ResponseTooLarge)
    assert "of model alias 'm' once decompressed; reading stopped there" in str(error)
    assert peak < 8 * MiB


@pytest.mark.parametrize("kind", KINDS)
async def test_stacked_codings_are_undone_alike_on_both_transports(
    clean_env: pytest.MonkeyPatch, kind: Kind
) -> None:
    """``deflate, GZIP`` (deflate applied first) is undone last coding first on both
    transports; a coding gridloom does not ask for (``br``), or more than MAX_CODINGS
    stacked, is a MalformedResponse saying so, on both."""
    async with hypercorn_serving(App()) as url:
        async with opened(url + "/gzgz/v1", kind) as m:
            assert await m.ask() == "gzgz ok"
        for mode, match in (("br", "unsupported content-encoding 'br'"), ("gz4", "4 stacked")):
            async with opened(url + f"/{mode}/v1", kind) as m:
                with pytest.raises(MalformedResponse, match=match):
                    await m.ask()


def test_inflate_never_returns_more_than_the_room_plus_one() -> None:
    """The bounded inflater: whatever the input, at most room + 1 bytes come out per feed."""
    data = gzip.compress(b"\0" * (4 * MiB))
    inflate = _Inflate("gzip")
    out = inflate.feed(data, 1000)
    assert len(out) == 1001
    inflate = _Inflate("deflate")  # raw deflate, as some servers send it
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    stream = raw.compress(b"hello " * 10) + raw.flush()
    assert inflate.feed(stream, 1000) + inflate.flush() == b"hello " * 10


# --------------------------------------------------------------------------- check-models


async def test_check_models_names_the_transport_and_why(clean_env: pytest.MonkeyPatch) -> None:
    """check_models reports per alias the transport its provider uses and why: httpx for a
    proxy from HTTP_PROXY (credentials hidden), fast for the simulated endpoint."""
    async with serve_simulated(SimulationConfig()) as server, proxying() as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://bob:pw@"))
        config = PipelineConfig(
            providers=[
                ProviderConfig(name="remote", endpoint=server.url),
                ProviderConfig(name="sim", type="simulated"),
            ],
            models=[
                ModelConfig(alias="far", provider="remote", model="m"),
                ModelConfig(alias="near", provider="sim", model="m"),
            ],
            columns=[
                LLMTextColumn(name="a", model="far", prompt="hi"),
                LLMTextColumn(name="b", model="near", prompt="hi"),
            ],
        )
        rows = {row["alias"]: row for row in await gl.acheck_models(config)}
    assert rows["far"]["ok"], rows["far"]
    assert rows["far"]["transport"] == "httpx"
    hidden = proxy.url.replace("http://", "http://<redacted>@")
    assert rows["far"]["transport_reason"] == f"proxy {hidden} from HTTP_PROXY"
    assert (rows["near"]["transport"], rows["near"]["transport_reason"]) == (
        "fast",
        "simulated endpoint on loopback",
    )
    assert len(proxy.forwarded) == 1


def test_check_models_command_prints_the_transport(tmp_path: Path) -> None:
    """gridloom check-models prints a transport line under each model."""
    config = tmp_path / "p.yaml"
    config.write_text(
        "providers:\n  - {name: sim, type: simulated, simulation: {transport: asgi}}\n"
        "models:\n  - {alias: w, provider: sim, model: w}\n"
        "columns:\n  - {name: a, llm_text: {model: w, prompt: hi}}\n"
    )
    result = CliRunner().invoke(cli, ["check-models", str(config)])
    assert result.exit_code == 0, result.output
    assert "transport: asgi (in-process simulated endpoint)" in result.output
