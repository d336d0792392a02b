"""URL-valued config fields (a provider's ``endpoint`` and ``proxy``, an MCP tool's ``url``):
checked when the config is built, credentials never shown, and every request sent to exactly
the endpoint's path + the API path (+ the endpoint's query), checked against a real server on
127.0.0.1 that records each request line, over both transports.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import h11
import httpx
import pytest
import trio
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.cli import cli
from gridloom.clients import (
    AnthropicClient,
    ChatRequest,
    EmbeddingRequest,
    Message,
    OpenAIClient,
    RetryPolicy,
    build_http_client,
    http_limits,
)
from gridloom.clients._batch_wire import BatchWire
from gridloom.clients._http import api_url
from gridloom.clients._policy import network_transport
from gridloom.config import ModelConfig, ProviderConfig, load_config
from gridloom.config._tools import McpTool
from gridloom.errors import ConfigError

CANARY = "sk-CANARY123"
KINDS = ("fast", "httpx")


def pipeline(endpoint: Any, **provider: Any) -> dict[str, Any]:
    return {
        "providers": [{"name": "p", "endpoint": endpoint, **provider}],
        "models": [{"alias": "m", "provider": "p", "model": "x"}],
        "columns": [{"name": "a", "llm_text": {"model": "m", "prompt": "hi"}}],
    }


# --------------------------------------------------------------------------- validation

BAD_ENDPOINTS = [
    (f"http://user:{CANARY}@127.0.0.1:18431/ok/v1", "must not hold credentials"),
    (f"http://{CANARY}@127.0.0.1:18431/ok/v1", "must not hold credentials"),
    (f"https://user:{CANARY}@[::1]:8443/v1?x=1", "must not hold credentials"),
    ("localhost:18431/ok/v1", "must be a URL such as 'http://127.0.0.1:8000/v1'"),
    ("127.0.0.1:18431/ok/v1", "must be a URL such as"),
    ("//127.0.0.1:18431/v1", "must be a URL such as"),
    ("/v1", "must be a URL such as"),
    ("ftp://127.0.0.1/v1", "must start with http:// or https://, not ftp://"),
    ("ws://127.0.0.1/v1", "not ws://"),
    ("http:///v1", "has no host"),
    ("http://:8000/v1", "has no host"),
    ("http://", "has no host"),
    ("http://127.0.0.1 /v1", "spaces or control characters (one is at position 16)"),
    (" http://127.0.0.1/v1", "spaces or control characters"),
    ("http://127.0.0.1/v1\n", "spaces or control characters"),
    ("http://127.0.0.1/v\x001", "spaces or control characters"),
    ("http://127.0.0.1/v1\u200b", "spaces or control characters"),
    ("http://127.0.0.1/v1#top", "must not have a fragment"),
    ("http://127.0.0.1/v1?a=1#top", "must not have a fragment"),
    ("http://127.0.0.1:0/v1", "invalid port"),
    ("http://127.0.0.1:65536/v1", "invalid port"),
    ("http://127.0.0.1:80a/v1", "invalid port"),
    ("http://::1/v1", "an IPv6 address goes in brackets"),
    ("http://[::g]/v1", "invalid IPv6 address"),
    ("http://[::1/v1", "invalid IPv6 address"),
    ("http://[::1]x/v1", "invalid IPv6 address"),
    ("http://a!b/v1", "invalid host"),
    ("http://127.0.0.1/v%zz", "'%' that does not begin an escape"),
    ("http://127.0.0.1/v1?q=100%", "'%' that does not begin an escape"),
]


@pytest.mark.parametrize(("endpoint", "problem"), BAD_ENDPOINTS)
def test_bad_endpoints_are_config_errors(endpoint: str, problem: str) -> None:
    """An endpoint that is not an http(s) URL gridloom can send to is a ConfigError naming
    providers[0].endpoint and the problem, and the message never shows a password."""
    with pytest.raises(ConfigError) as caught:
        load_config(pipeline(endpoint))
    message = str(caught.value)
    assert "providers[0].endpoint" in message
    assert problem in message
    assert CANARY not in message


def test_credentials_refusal_says_what_to_use_instead() -> None:
    """The refusal points at api_key_env and headers, and shows the URL redacted."""
    with pytest.raises(ConfigError) as caught:
        load_config(pipeline(f"http://user:{CANARY}@127.0.0.1:18431/ok/v1"))
    message = str(caught.value)
    assert "api_key_env" in message
    assert "headers" in message
    assert "'http://<redacted>@127.0.0.1:18431/ok/v1'" in message


@pytest.mark.parametrize(
    "endpoint",
    [
        f"http://user:{CANARY}/x@127.0.0.1/v1",  # a '/' in the password: not userinfo by RFC
        f"http://user:{CANARY}?x@127.0.0.1/v1",
        f"http://user:{CANARY}#x@127.0.0.1/v1",
        f"http://user:{CANARY} @127.0.0.1/v1",
        f"user:{CANARY}@127.0.0.1/v1",
    ],
)
def test_malformed_credentials_are_never_echoed(endpoint: str) -> None:
    """However the credentials are misspelt, the error does not show them."""
    with pytest.raises(ConfigError) as caught:
        load_config(pipeline(endpoint))
    assert "providers[0].endpoint" in str(caught.value)
    assert CANARY not in str(caught.value)
    assert CANARY not in repr(caught.value)


def test_python_api_refuses_credentials_without_showing_them() -> None:
    """Built in Python, the provider is refused the same way (a ValueError, attrs style)."""
    with pytest.raises(ValueError, match="must not hold credentials") as caught:
        ProviderConfig(name="p", endpoint=f"http://u:{CANARY}@127.0.0.1/v1")
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8000/v1",
        "https://api.openai.com/v1/",
        "HTTPS://LLM.EXAMPLE:443/v1",
        "http://localhost:8000",
        "http://127.0.0.1:8000/ok/deployments/gpt4?api-version=2024-06-01",
        "http://[::1]:8000/v1",
        "http://[2001:db8::1]/v1",
        "http://my_host.internal/v1",
        "http://bücher.example/v1",
        "http://127.0.0.1/a%2Fb/v1",
        "http://127.0.0.1/v1?",
        "http://127.0.0.1:/v1",
    ],
)
def test_good_endpoints_are_accepted(endpoint: str) -> None:
    """Ordinary endpoints (ports, paths, queries, IPv6 literals, escapes, IDN hosts) load,
    and httpx parses each."""
    cfg = load_config(pipeline(endpoint))
    assert cfg.providers[0].endpoint == endpoint
    httpx.URL(endpoint)


def test_simulated_providers_need_no_endpoint() -> None:
    """A simulated provider still takes no endpoint (an empty one included)."""
    ProviderConfig(name="s", type="simulated")
    ProviderConfig(name="s", type="simulated", endpoint="")
    with pytest.raises(ValueError, match="has no host"):
        ProviderConfig(name="s", type="simulated", endpoint="http:///v1")


def _write(tmp_path: Path, endpoint: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(json.dumps(pipeline(endpoint)))  # JSON is YAML
    return path


@pytest.mark.parametrize(
    "endpoint",
    [
        "localhost:18431/ok/v1",
        "127.0.0.1:18431/ok/v1",
        "ftp://127.0.0.1:18431/ok/v1",
        "http://127.0.0.1:18431/ok v1",
        f"http://user:{CANARY}@127.0.0.1:18431/ok/v1",
    ],
)
def test_validate_command_refuses_bad_endpoints(tmp_path: Path, endpoint: str) -> None:
    """``gridloom validate`` exits 2 on such an endpoint, naming the field, no secret shown."""
    result = CliRunner().invoke(cli, ["validate", str(_write(tmp_path, endpoint))])
    assert result.exit_code == 2, result.output
    assert "providers[0].endpoint" in result.output
    assert CANARY not in result.output


async def test_create_refuses_credentials_before_writing_anything(tmp_path: Path) -> None:
    """A run with credentials in its endpoint fails before any request or output file: the
    password never reaches the output directory."""
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as caught:
        await gl.acreate(
            pipeline(f"http://user:{CANARY}@127.0.0.1:9/ok/v1"), num_records=2, output_dir=out
        )
    assert CANARY not in str(caught.value)
    written = [p.read_bytes() for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert all(CANARY.encode() not in data for data in written)


@pytest.mark.parametrize(
    ("proxy", "problem"),
    [
        ("proxy.example:3128", "proxy must be a URL such as 'http://proxy.example:3128'"),
        ("ftp://proxy.example", "not ftp://"),
        ("http://proxy.example:99999", "invalid port"),
        ("http://proxy example:3128", "spaces or control characters"),
        ("http://proxy.example:3128#x", "must not have a fragment"),
        ("http://:3128", "has no host"),
        (f"http://bob:{CANARY}@:3128", "has no host"),
    ],
)
def test_proxy_urls_follow_the_same_rule(proxy: str, problem: str) -> None:
    """A provider's proxy is checked by the same rule (credentials are allowed there: they
    are used, and redacted wherever the config is shown)."""
    with pytest.raises(ConfigError) as caught:
        load_config(pipeline("http://127.0.0.1:8000/v1", proxy=proxy))
    assert "providers[0].proxy" in str(caught.value)
    assert problem in str(caught.value)
    assert CANARY not in str(caught.value)
    ProviderConfig(name="p", endpoint="http://h/v1", proxy=f"socks5://bob:{CANARY}@[::1]:1080")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("127.0.0.1:8000/mcp", "url must be a URL such as"),
        ("ftp://127.0.0.1/mcp", "not ftp://"),
        (f"http://bob:{CANARY}@127.0.0.1/mcp", "headers_env"),
        ("http://127.0.0.1/mcp#x", "must not have a fragment"),
        ("http://127.0.0.1:0/mcp", "invalid port"),
        ("http://127.0.0.1/m cp", "spaces or control characters"),
    ],
)
def test_mcp_urls_follow_the_same_rule(url: str, problem: str) -> None:
    """An MCP tool's url is checked by the same rule, credentials refused (headers_env holds
    secrets)."""
    with pytest.raises(ValueError, match="url ") as caught:
        McpTool(url=url)
    assert problem in str(caught.value)
    assert CANARY not in str(caught.value)


# --------------------------------------------------------------------------- credentials in a query

#: Query parameters that carry a credential, as providers and gateways name them.
SECRET_PARAMS = [
    "key",
    "api_key",
    "api-key",
    "apikey",
    "x-api-key",
    "subscription-key",
    "access_token",
    "token",
    "auth",
    "client_secret",
    "password",
    "sig",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "code",
]
#: Ordinary ones, kept and sent.
PLAIN_PARAMS = ["api-version", "deployment", "model", "format", "beta", "region", "keys_only"]


def _spelt(name: str, upper: list[bool], separator: str, escape: bool) -> str:
    """``name`` with its letters' case from ``upper``, its separators replaced by
    ``separator``, and (if ``escape``) its first letter percent-escaped."""
    ups = (upper + [False] * len(name))[: len(name)]
    letters = [c.upper() if up else c.lower() for c, up in zip(name, ups, strict=True)]
    spelt = "".join(separator if c in "-_" else c for c in letters)
    return f"%{ord(spelt[0]):02X}{spelt[1:]}" if escape else spelt


@given(
    name=st.sampled_from(SECRET_PARAMS),
    upper=st.lists(st.booleans(), max_size=20),
    separator=st.sampled_from(["-", "_", ".", ""]),
    escape=st.booleans(),
    before=st.lists(st.sampled_from(PLAIN_PARAMS), max_size=2),
    joiner=st.sampled_from(["&", ";"]),
    value=st.sampled_from([CANARY, f"{CANARY}%3D%3D", f"{CANARY}=x", ""]),
)
@settings(max_examples=200, deadline=None)
def test_credentials_in_a_query_are_refused_unseen(
    name: str,
    upper: list[bool],
    separator: str,
    escape: bool,
    before: list[str],
    joiner: str,
    value: str,
) -> None:
    """An endpoint or MCP url whose query carries a parameter named like a credential
    (whatever its case, separators or escapes, wherever it stands) is refused before any
    request: config.yaml would show it. The message names the field and the parameter,
    points at headers, and never shows the value; nor do the repr and the run's copy of the
    config for a proxy, where such a URL is allowed (its credentials are used)."""
    param = _spelt(name, upper, separator, escape)
    query = joiner.join([*(f"{p}=1" for p in before), f"{param}={value}"])
    endpoint = f"https://llm.example/v1?{query}"
    with pytest.raises(ConfigError) as caught:
        load_config(pipeline(endpoint))
    message = str(caught.value)
    assert "providers[0].endpoint" in message
    assert f"must not hold a credential in its query ({param}=...)" in message
    assert "headers" in message
    assert CANARY not in message
    with pytest.raises(ValueError, match="headers_env") as refused:
        McpTool(url=f"http://127.0.0.1/mcp?{query}")
    assert CANARY not in str(refused.value)
    provider = ProviderConfig(name="p", endpoint="http://h/v1", proxy=f"http://px:3128?{query}")
    assert CANARY not in repr(provider)
    shown = load_config(pipeline("http://h/v1", proxy=f"http://px:3128?{query}"))
    assert CANARY not in gl.dump_config(shown, redact=True)  # as a run writes config.yaml


@given(
    names=st.lists(st.sampled_from(PLAIN_PARAMS), min_size=1, max_size=4),
    joiner=st.sampled_from(["&", ";"]),
)
@settings(max_examples=50, deadline=None)
def test_plain_query_parameters_are_kept(names: list[str], joiner: str) -> None:
    """Ordinary parameters (``api-version``, ``keys_only``...) are not taken for
    credentials: the endpoint loads and is kept whole."""
    endpoint = "https://llm.example/v1?" + joiner.join(f"{n}=2024" for n in names)
    assert load_config(pipeline(endpoint)).providers[0].endpoint == endpoint


def test_validate_command_refuses_a_key_in_the_query(tmp_path: Path) -> None:
    """``gridloom validate`` exits 2 on ``?key=...``, naming the field, the key unseen."""
    path = _write(tmp_path, f"https://generativelanguage.example/v1beta/openai?key={CANARY}")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "providers[0].endpoint" in result.output
    assert "credential in its query (key=...)" in result.output
    assert CANARY not in result.output


# --------------------------------------------------------------------------- the join


@pytest.mark.parametrize(
    ("endpoint", "path", "sent"),
    [
        ("http://h/v1", "chat/completions", "http://h/v1/chat/completions"),
        ("http://h/v1/", "chat/completions", "http://h/v1/chat/completions"),
        ("http://h/v1//", "chat/completions", "http://h/v1/chat/completions"),
        ("http://h", "chat/completions", "http://h/chat/completions"),
        ("http://h/", "messages", "http://h/messages"),
        ("http://h//v1", "embeddings", "http://h//v1/embeddings"),
        (
            "http://h/ok/deployments/gpt4?api-version=2024-06-01",
            "chat/completions",
            "http://h/ok/deployments/gpt4/chat/completions?api-version=2024-06-01",
        ),
        (
            "https://h:8443/openai/deployments/gpt4/?api-version=2024-06-01&x=%20y",
            "embeddings",
            "https://h:8443/openai/deployments/gpt4/embeddings?api-version=2024-06-01&x=%20y",
        ),
        ("http://[::1]:8000/a%2Fb/v1", "files", "http://[::1]:8000/a%2Fb/v1/files"),
        ("http://h/ä/v1", "batches/b_1", "http://h/%C3%A4/v1/batches/b_1"),
        ("http://h/v1?", "chat/completions", "http://h/v1/chat/completions?"),
    ],
)
def test_api_url_keeps_every_segment_and_the_query(endpoint: str, path: str, sent: str) -> None:
    """The API path is appended to the endpoint's whole path (trailing slashes dropped), and
    the endpoint's query follows."""
    assert str(api_url(httpx.URL(endpoint), path)) == sent


# --------------------------------------------------------------------------- a real server


def _reply(target: str) -> bytes:
    path = target.partition("?")[0]
    if path.endswith("/messages"):
        return json.dumps(
            {
                "content": [{"type": "text", "text": "ok"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        ).encode()
    if path.endswith("/embeddings"):
        return json.dumps({"data": [{"index": 0, "embedding": [0.5, 0.25]}]}).encode()
    return json.dumps(
        {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
    ).encode()


@attrs.define
class Recorder:
    """A small HTTP/1.1 server answering every request, recording its target."""

    targets: list[str] = attrs.field(factory=list)
    ports: dict[str, int] = attrs.field(factory=dict)

    async def serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        with contextlib.suppress(trio.BrokenResourceError, h11.RemoteProtocolError):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    target = event.target.decode("ascii")
                    self.targets.append(target)
                elif isinstance(event, h11.EndOfMessage):
                    body = _reply(self.targets[-1])
                    head = [
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                    ]
                    await stream.send_all(
                        conn.send(h11.Response(status_code=200, headers=head)) or b""
                    )
                    await stream.send_all(conn.send(h11.Data(data=body)) or b"")
                    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return


@contextlib.asynccontextmanager
async def recording() -> AsyncIterator[Recorder]:
    """A :class:`Recorder` listening on 127.0.0.1 and on ::1."""
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        for family, host in (("v4", "127.0.0.1"), ("v6", "::1")):
            serve = functools.partial(trio.serve_tcp, host=host)
            listeners = await nursery.start(serve, recorder.serve, 0)
            recorder.ports[family] = listeners[0].socket.getsockname()[1]
        yield recorder
        nursery.cancel_scope.cancel()


def _adapter(
    endpoint: str, kind: str, provider_type: str = "openai"
) -> tuple[httpx.AsyncClient, OpenAIClient | AnthropicClient]:
    provider = ProviderConfig(name="p", type=provider_type, endpoint=endpoint, trust_env=False)  # type: ignore[arg-type]
    models = [ModelConfig(alias="m", provider="p", model="m-1")]
    transport, _ = network_transport(provider, endpoint, http_limits(provider, models), kind=kind)  # type: ignore[arg-type]
    http = build_http_client(provider, models, transport=transport)
    cls = AnthropicClient if provider_type == "anthropic" else OpenAIClient
    return http, cls(http, provider=provider, api_key=None, retry=RetryPolicy(max_attempts=1))


def _expected(endpoint_tail: str, api_path: str) -> str:
    """The documented join, done on the text as written: the endpoint's path without its
    trailing slashes, "/", the API path, then the endpoint's query ("?..." as written)."""
    path, question, query = endpoint_tail.partition("?")
    return path.rstrip("/") + "/" + api_path + question + query


_PCHARS = "abcXYZ019-._~!$&'()*+,;=:@"
_SEGMENT = (
    st.lists(
        st.one_of(
            st.sampled_from(_PCHARS), st.sampled_from(["%20", "%2F", "%2f", "%3F", "%23", "%25"])
        ),
        max_size=6,
    )
    .map("".join)
    .filter(lambda s: s not in (".", ".."))
)
_PATHS = st.lists(_SEGMENT, max_size=4).map(lambda parts: "".join("/" + p for p in parts))
_QUERIES = st.none() | st.lists(
    st.sampled_from([*"abc019-._~!$&'()*+,;=:@/?", "%20", "%26", "%3D"]), max_size=12
).map("".join)


@given(
    host=st.sampled_from(["127.0.0.1", "[::1]"]),
    zeros=st.sampled_from(["", "0"]),
    path=_PATHS,
    slashes=st.sampled_from(["", "/", "//"]),
    query=_QUERIES,
    api=st.sampled_from(["openai", "anthropic", "embeddings"]),
)
@settings(max_examples=40, deadline=None)
def test_requests_go_to_the_documented_url(
    host: str, zeros: str, path: str, slashes: str, query: str | None, api: str
) -> None:
    """Whatever the endpoint's spelling (path prefixes, trailing slashes, ``//``, escapes,
    queries, IPv6 literals, ports with leading zeros), a real server receives the request
    at exactly the endpoint's path + "/" + the API path + the endpoint's query, on both
    transports."""
    tail = path + slashes + ("" if query is None else "?" + query)
    api_path = {"openai": "chat/completions", "anthropic": "messages", "embeddings": "embeddings"}

    async def main() -> list[str]:
        async with recording() as server:
            port = server.ports["v6" if host.startswith("[") else "v4"]
            endpoint = f"http://{host}:{zeros}{port}{tail}"
            ProviderConfig(name="p", endpoint=endpoint)  # valid
            for kind in KINDS:
                provider_type = "anthropic" if api == "anthropic" else "openai"
                http, adapter = _adapter(endpoint, kind, provider_type)
                async with http:
                    if api == "embeddings":
                        assert isinstance(adapter, OpenAIClient)
                        await adapter.embed(EmbeddingRequest(model="m-1", inputs=["a"]))
                    else:
                        request = ChatRequest(
                            model="m-1", messages=[Message(role="user", content="hi")]
                        )
                        assert (await adapter.chat(request)).text == "ok"
            return server.targets

    expected = _expected(tail, api_path[api])
    assert trio.run(main) == [expected, expected]


async def test_azure_style_endpoint_end_to_end(tmp_path: Path) -> None:
    """The reviewer's case through the public API: every row's request goes to the
    deployment's chat/completions with the api-version query, the run completes."""
    async with recording() as server:
        endpoint = (
            f"http://127.0.0.1:{server.ports['v4']}/ok/deployments/gpt4?api-version=2024-06-01"
        )
        cfg = pipeline(endpoint, trust_env=False)
        result = await gl.acreate(cfg, num_records=3, output_dir=tmp_path / "out")
    assert result.table.column("a").to_pylist() == ["ok"] * 3
    assert server.targets == ["/ok/deployments/gpt4/chat/completions?api-version=2024-06-01"] * 3


async def test_batch_api_requests_keep_the_endpoint_path_and_query() -> None:
    """The batch API's calls (files, batches, their ids) are joined the same way."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"id": "file_1"})

    endpoint = "http://h/openai/deployments/gpt4?api-version=2024-06-01"
    provider = ProviderConfig(name="p", endpoint=endpoint)
    models = [ModelConfig(alias="m", provider="p", model="m-1")]
    http = build_http_client(provider, models, transport=httpx.MockTransport(handler))
    async with http:
        wire = BatchWire(OpenAIClient(http, provider=provider, api_key=None), "m-1")
        await wire.submit("/v1/chat/completions", [("g0", {"model": "m-1"})])
    assert seen == [
        "/openai/deployments/gpt4/files?api-version=2024-06-01",
        "/openai/deployments/gpt4/batches?api-version=2024-06-01",
    ]
