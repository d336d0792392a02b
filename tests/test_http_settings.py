"""The HTTP settings of a provider (proxy, trust_env, verify, cert, http2) and a model's
max_response_bytes as a config holds them: loading, checks, round trips, and proxy
credentials kept out of everything that shows a config."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gridloom.config import (
    ModelConfig,
    ProviderConfig,
    config_hash,
    dump_config,
    load_config,
)
from gridloom.config._models import redact_url
from gridloom.errors import ConfigError

SECRET = "pa55-w0rd-xyz"


def pipeline(**provider: Any) -> dict[str, Any]:
    return {
        "providers": [{"name": "p", "endpoint": "https://llm.example/v1", **provider}],
        "models": [{"alias": "m", "provider": "p", "model": "x"}],
        "columns": [{"name": "a", "llm_text": {"model": "m", "prompt": "hi"}}],
    }


def test_defaults_keep_httpx_behaviour() -> None:
    """By default: proxies and CA bundle from the environment, certificates verified, no
    client certificate, HTTP/1.1; replies up to 8 MiB."""
    provider = ProviderConfig(name="p", endpoint="https://llm.example/v1")
    assert (provider.proxy, provider.trust_env, provider.verify) == (None, True, True)
    assert (provider.cert, provider.http2) == (None, False)
    assert ModelConfig(alias="m", provider="p", model="x").max_response_bytes == 8 * 1024 * 1024


@pytest.mark.parametrize(
    "settings",
    [
        {"verify": False},
        {"verify": "/etc/ssl/corp-ca.pem", "cert": "/etc/ssl/me.pem"},
        {"cert": ["/etc/ssl/me.crt", "/etc/ssl/me.key"], "http2": True, "trust_env": False},
        {"proxy": f"http://alice:{SECRET}@proxy.example:3128"},
        {"proxy": "socks5://127.0.0.1:1080"},
    ],
)
def test_settings_load_and_round_trip(settings: dict[str, Any]) -> None:
    """Each setting loads from YAML/JSON data (a [cert, key] list as a pair) and a dump loads
    back to the same config."""
    cfg = load_config(pipeline(**settings))
    provider = cfg.providers[0]
    for key, value in settings.items():
        assert getattr(provider, key) == (tuple(value) if isinstance(value, list) else value)
    assert load_config(yaml.safe_load(dump_config(cfg))) == cfg


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"verify": 3}, "verify must be true, false or the path of a CA bundle"),
        ({"verify": ""}, "verify must be true, false or the path of a CA bundle"),
        ({"cert": ["only-one.pem"]}, "cert must be the path of a client certificate"),
        ({"cert": 7}, "cert must be the path of a client certificate"),
        ({"proxy": "proxy.example:3128"}, "proxy must be a URL such as"),
        ({"proxy": f"ftp://bob:{SECRET}@proxy.example"}, "got 'ftp://<redacted>@proxy.example'"),
        ({"http2": "yes"}, "http2"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any], message: str) -> None:
    """Wrong values are ConfigErrors that say what is expected, and never echo a proxy's
    credentials."""
    with pytest.raises(ConfigError) as caught:
        load_config(pipeline(**settings))
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


def test_max_response_bytes_must_be_positive() -> None:
    data = pipeline()
    data["models"][0]["max_response_bytes"] = 0
    with pytest.raises(ConfigError, match="max_response_bytes"):
        load_config(data)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://proxy:3128", "http://proxy:3128"),
        (f"http://alice:{SECRET}@proxy:3128", "http://<redacted>@proxy:3128"),
        (f"https://{SECRET}@proxy:3128/path", "https://<redacted>@proxy:3128/path"),
        ("socks5://a:b@c@proxy:1080", "socks5://<redacted>@proxy:1080"),
        ("http://proxy/with@in-path", "http://proxy/with@in-path"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    """A URL's credentials are replaced, the rest kept (an @ in the path is not userinfo)."""
    assert redact_url(url) == shown


def test_proxy_credentials_are_never_shown() -> None:
    """The repr of a provider and a redacted dump (the run's config.yaml) hide the proxy's
    credentials; a plain dump keeps them, so the file loads back as it was."""
    cfg = load_config(pipeline(proxy=f"http://alice:{SECRET}@proxy.example:3128"))
    assert SECRET not in repr(cfg.providers[0])
    assert SECRET not in repr(cfg)
    redacted = dump_config(cfg, redact=True)
    assert SECRET not in redacted
    assert "proxy: http://<redacted>@proxy.example:3128" in redacted
    assert SECRET in dump_config(cfg)


def test_http_settings_do_not_change_the_config_hash() -> None:
    """Transport settings and max_response_bytes change how requests are made, not what is
    generated: a run can be resumed with other ones."""
    base = load_config(pipeline())
    other = pipeline(proxy="http://proxy:3128", verify=False, http2=True, trust_env=False)
    other["models"][0]["max_response_bytes"] = 1024
    assert config_hash(load_config(other)) == config_hash(base)
