"""``api_key_header``: how a provider's key is sent (Azure OpenAI's ``api-key``), validated at
load, left out of the hash, and never shown."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import string
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import h11
import httpx
import hypothesis.strategies as st
import pytest
import trio
import yaml
from hypothesis import HealthCheck, given, settings

import gridloom as gl
from gridloom.clients import (
    AnthropicClient,
    ChatRequest,
    Message,
    OpenAIClient,
    Secret,
    build_http_client,
)
from gridloom.config import (
    ModelConfig,
    ProviderConfig,
    config_hash,
    dump_config,
    load_config,
    structure_pipeline,
)
from gridloom.errors import ConfigError
from gridloom.run._models import cache_scope

KEY = "azkey-0123456789abcdef0123456789ab"
REQUEST = ChatRequest(model="gpt-4o", messages=[Message(role="user", content="Hi")])
AZURE = "https://res.openai.azure.com/openai/deployments/gpt-4o?api-version=2024-06-01"


def _reply(request: httpx.Request) -> httpx.Response:
    if "anthropic" in str(request.url):
        body: dict[str, Any] = {
            "id": "m1",
            "type": "message",
            "role": "assistant",
            "model": "c",
            "content": [{"type": "text", "text": "Hello."}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }
    else:
        body = {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
    return httpx.Response(200, json=body)


async def _sent(provider: ProviderConfig) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _reply(request)

    models = [ModelConfig(alias="m", provider=provider.name, model="gpt-4o")]
    http = build_http_client(provider, models, transport=httpx.MockTransport(handler))
    cls = AnthropicClient if provider.type == "anthropic" else OpenAIClient
    async with http:
        await cls(http, provider=provider, api_key=Secret(KEY)).chat(REQUEST)
    return seen[0]


async def test_azure_key_goes_raw_in_api_key_header() -> None:
    """``api_key_header: api-key`` sends the key as it is in that header, and no
    Authorization; Azure's deployment URL keeps its path and ``api-version``."""
    provider = ProviderConfig(
        name="az", endpoint=AZURE, api_key_env="AZ_KEY", api_key_header="api-key"
    )
    sent = await _sent(provider)
    assert sent.headers["api-key"] == KEY
    assert "authorization" not in sent.headers
    assert str(sent.url) == (
        "https://res.openai.azure.com/openai/deployments/gpt-4o/chat/completions"
        "?api-version=2024-06-01"
    )


async def test_default_stays_bearer() -> None:
    """Without ``api_key_header`` an OpenAI provider sends ``Authorization: Bearer``."""
    sent = await _sent(ProviderConfig(name="o", endpoint="http://o.test/v1", api_key_env="K"))
    assert sent.headers["authorization"] == f"Bearer {KEY}"


async def test_anthropic_honours_the_key_header() -> None:
    """An anthropic provider sends its key in the named header instead of ``x-api-key``."""
    provider = ProviderConfig(
        name="a",
        type="anthropic",
        endpoint="http://anthropic.test/v1",
        api_key_env="K",
        api_key_header="X-Gateway-Key",
    )
    sent = await _sent(provider)
    assert sent.headers["x-gateway-key"] == KEY
    assert "x-api-key" not in sent.headers
    assert "authorization" not in sent.headers


def _doc(**provider: Any) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "ok", "endpoint": "http://x.test/v1"},
            {"name": "az", "endpoint": AZURE, **provider},
        ],
        "models": [{"alias": "m", "provider": "az", "model": "gpt-4o"}],
        "columns": [{"name": "t", "category": {"values": ["a"]}}],
    }


@pytest.mark.parametrize(
    ("provider", "problem"),
    [
        ({"api_key_env": "K", "api_key_header": "api key"}, "HTTP header name"),
        ({"api_key_env": "K", "api_key_header": "api-key:"}, "HTTP header name"),
        ({"api_key_env": "K", "api_key_header": ""}, "HTTP header name"),
        ({"api_key_env": "K", "api_key_header": "x\nInjected: 1"}, "HTTP header name"),
        ({"api_key_header": "api-key"}, "names no api_key_env"),
        (
            {"api_key_env": "K", "api_key_header": "api-key", "headers": {"API-Key": "x"}},
            "also set in headers",
        ),
    ],
)
def test_bad_key_headers_are_refused_at_load(provider: dict[str, Any], problem: str) -> None:
    """An invalid ``api_key_header`` fails at load, naming ``providers[1].api_key_header``."""
    with pytest.raises(ConfigError, match=problem) as caught:
        structure_pipeline(_doc(**provider))
    assert "providers[1].api_key_header" in str(caught.value)


def test_key_header_is_not_hashed_and_round_trips() -> None:
    """Changing how the key is sent keeps the config hash; load → dump → load is lossless."""
    plain = structure_pipeline(_doc(api_key_env="K"))
    azure = structure_pipeline(_doc(api_key_env="K", api_key_header="api-key"))
    assert config_hash(plain) == config_hash(azure)
    text = dump_config(azure, redact=True)
    assert "api_key_header: api-key" in text
    assert load_config(yaml.safe_load(text)) == azure


# ---------------------------------------------------------------------- over a socket


@attrs.define
class KeyServer:
    """An HTTP/1.1 server that answers 200 when the ``api-key`` header holds ``key``, else 401
    with the request's headers echoed in the error (as some gateways do)."""

    key: str
    seen: list[dict[str, str]] = attrs.field(factory=list)

    async def serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        headers: dict[str, str] = {}
        with contextlib.suppress(trio.BrokenResourceError, h11.RemoteProtocolError):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    headers = {k.decode(): v.decode("latin-1") for k, v in event.headers}
                    self.seen.append(headers)
                elif isinstance(event, h11.EndOfMessage):
                    if headers.get("api-key") == self.key:
                        code, body = 200, _reply(httpx.Request("POST", "http://x/")).content
                    else:
                        code = 401
                        body = json.dumps(
                            {"error": {"message": f"Unauthorized; you sent {headers}"}}
                        ).encode()
                    head = [
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                    ]
                    await stream.send_all(
                        conn.send(h11.Response(status_code=code, headers=head)) or b""
                    )
                    await stream.send_all(conn.send(h11.Data(data=body)) or b"")
                    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return


@contextlib.asynccontextmanager
async def key_server(key: str) -> AsyncIterator[tuple[KeyServer, int]]:
    server = KeyServer(key)
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, server.serve, 0)
        yield server, listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def _pipeline(port: int) -> gl.PipelineConfig:
    return structure_pipeline(
        {
            "providers": [
                {
                    "name": "az",
                    "endpoint": f"http://127.0.0.1:{port}/openai/deployments/gpt-4o"
                    "?api-version=2024-06-01",
                    "api_key_env": "GRIDLOOM_AZ_KEY",
                    "api_key_header": "api-key",
                    "trust_env": False,
                }
            ],
            "models": [{"alias": "m", "provider": "az", "model": "gpt-4o"}],
            "columns": [
                {"name": "t", "category": {"values": ["a", "b"]}},
                {"name": "x", "llm_text": {"model": "m", "prompt": "On {{ t }}"}},
            ],
            "run": {"seed": 1, "trace": True, "progress": "off"},
        }
    )


def _outputs(out: Path) -> list[str]:
    files = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    return [p.read_text("utf-8", "replace") for p in files]


async def _run(key: str, sent: str, out: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Run against a server expecting ``key`` with ``sent`` in the environment; every text the
    run produced (files, logs, summary, error message)."""
    texts = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRIDLOOM_AZ_KEY", sent)
        async with key_server(key) as (server, port):
            with caplog.at_level(logging.DEBUG):
                try:
                    result = await gl.acreate(_pipeline(port), num_records=4, output_dir=out)
                    texts += [json.dumps(result.summary), repr(result)]
                except gl.GridloomError as error:
                    texts.append(str(error))
                    texts.append(repr(error))
    assert server.seen
    assert all(h.get("api-key") == sent for h in server.seen)
    assert all("authorization" not in h for h in server.seen)
    return [*texts, caplog.text, *_outputs(out)]


async def test_refused_key_message_names_header_and_variable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 stop names the header the key went in and the variable it came from."""
    texts = await _run(KEY, "wrong-" + KEY[6:], tmp_path / "o", caplog)
    assert any(
        "environment variable GRIDLOOM_AZ_KEY, sent in the header api-key" in t for t in texts
    ), texts[0]


KEYS = st.text(alphabet=string.ascii_letters + string.digits + "-_.~+/=", min_size=12, max_size=60)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=KEYS, good=st.booleans())
def test_the_key_never_appears_in_any_output(
    key: str, good: bool, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the key, a succeeding and a failing run (the server echoing the headers)
    leave no trace of it in files, logs, the summary or the error."""
    caplog.clear()
    out = tmp_path_factory.mktemp("run") / "o"
    expected = key if good else key + "x"
    texts = trio.run(_run, expected, key, out, caplog)
    assert (out / "config.yaml").exists()
    for text in texts:
        assert key not in text


@pytest.mark.parametrize("good", [True, False])
async def test_cli_output_never_shows_the_key(tmp_path: Path, good: bool) -> None:
    """``gridloom create --json`` against an Azure-style server (echoing headers on 401):
    stdout, stderr and every file of the run hold no trace of the key."""
    key = "azk-" + "Q7v2" * 8
    async with key_server(key if good else key + "x") as (server, port):
        config = tmp_path / "pipeline.yaml"
        config.write_text(dump_config(_pipeline(port)))
        env = {
            **os.environ,
            "GRIDLOOM_AZ_KEY": key,
            "PYTHONPATH": os.pathsep.join([str(Path(gl.__file__).parents[1])]),
        }
        out = ["-o", str(tmp_path / "o"), "--json"]
        done = await trio.run_process(
            [sys.executable, "-m", "gridloom", "create", str(config), "-n", "3", *out],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert (done.returncode == 0) == good, stderr
    assert server.seen
    if not good:
        assert "api-key" in stdout + stderr
    for text in [stdout, stderr, *_outputs(tmp_path / "o")]:
        assert key not in text
        assert key[4:] not in text


# ---------------------------------------------------------------------- headers_env


async def test_headers_env_sends_the_variable_and_never_shows_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``headers_env`` header goes out with the variable's value; an echo of it in an error
    body is redacted; the cache scope, the saved config and the hash hold no value."""
    secret = "apim-" + "Z8k3" * 8
    monkeypatch.setenv("GRIDLOOM_APIM", secret)
    provider = ProviderConfig(
        name="gw",
        endpoint=AZURE,
        headers_env={"Ocp-Apim-Subscription-Key": "GRIDLOOM_APIM"},
    )
    seen: list[httpx.Request] = []

    def echo(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(400, json={"error": {"message": f"bad: {dict(request.headers)}"}})

    models = [ModelConfig(alias="m", provider="gw", model="gpt-4o")]
    http = build_http_client(provider, models, transport=httpx.MockTransport(echo))
    async with http:
        with pytest.raises(gl.GridloomError) as caught:
            await OpenAIClient(http, provider=provider, api_key=None).chat(REQUEST)
    assert seen[0].headers["ocp-apim-subscription-key"] == secret
    assert "bad:" in str(caught.value)
    assert secret not in str(caught.value)
    assert secret not in json.dumps(dict(cache_scope(provider).headers))
    doc = _doc(api_key_env="K", headers_env={"Ocp-Apim-Subscription-Key": "GRIDLOOM_APIM"})
    cfg = structure_pipeline(doc)
    text = dump_config(cfg, redact=True)
    assert secret not in text
    assert "GRIDLOOM_APIM" in text
    assert load_config(yaml.safe_load(text)) == cfg
    assert config_hash(cfg) == config_hash(structure_pipeline(_doc(api_key_env="K")))


@pytest.mark.parametrize(
    ("headers_env", "problem"),
    [
        ({"bad header": "V"}, "not an HTTP header name"),
        ({"X-Key": ""}, "needs the name of an environment variable"),
        ({"api-key": "V"}, "also set in headers or api_key_header"),
    ],
)
def test_bad_headers_env_is_refused_at_load(headers_env: dict[str, str], problem: str) -> None:
    """An invalid ``headers_env`` fails at load, naming ``providers[1].headers_env``."""
    doc = _doc(api_key_env="K", api_key_header="api-key", headers_env=headers_env)
    with pytest.raises(ConfigError, match=problem) as caught:
        structure_pipeline(doc)
    assert "providers[1].headers_env" in str(caught.value)


async def test_an_unset_headers_env_variable_fails_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset variable stops the run before any request, naming the header's field."""
    monkeypatch.delenv("GRIDLOOM_UNSET_HDR", raising=False)
    async with key_server(KEY) as (server, port):
        cfg = _pipeline(port)
        provider = attrs.evolve(
            cfg.providers[0],
            api_key_env=None,
            api_key_header=None,
            headers_env={"X-Team-Key": "GRIDLOOM_UNSET_HDR"},
        )
        cfg = attrs.evolve(cfg, providers=[provider])
        with pytest.raises(ConfigError, match="GRIDLOOM_UNSET_HDR") as caught:
            await gl.acreate(cfg, num_records=2, output_dir=tmp_path / "o")
    assert "providers[0].headers_env.X-Team-Key" in str(caught.value)
    assert server.seen == []
