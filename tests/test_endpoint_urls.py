"""URL-valued config fields (a provider's ``endpoint`` and ``proxy``, an MCP tool's ``url``):
checked when the config is built, credentials never shown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import gridloom as gl
from gridloom.cli import cli
from gridloom.config import ProviderConfig, load_config
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
