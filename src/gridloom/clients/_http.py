"""One shared ``httpx.AsyncClient`` per provider, with timeouts and pool limits from the config.

httpx's defaults (5 s timeouts, 100 connections) are never used: the read timeout is the longest
``timeout`` of the provider's models and the pool holds as many connections as those models may
have requests in flight. The transport follows the provider's HTTP policy (proxies, TLS,
HTTP/2: :mod:`._policy`), and replies are read within each model's ``max_response_bytes``
(:mod:`._limit`).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from urllib.parse import quote

import attrs
import httpx

from .._attrs import define
from .._version import __version__
from ..config import ModelConfig, ProviderConfig
from ..errors import ConfigError
from ._exchange import request_head
from ._limit import ResponseCap
from ._policy import TransportPlan, network_transport
from ._secret import Secret

__all__ = [
    "CONNECT_TIMEOUT",
    "KEEPALIVE_EXPIRY",
    "DirectRoute",
    "api_key_from_env",
    "api_url",
    "build_http_client",
    "direct_route",
    "env_headers",
    "http_limits",
    "http_timeout",
    "request_url",
    "response_caps",
]

#: Seconds allowed to open a connection (capped by the models' own timeout).
CONNECT_TIMEOUT = 10.0
#: Seconds an idle pooled connection is kept; below common servers' keep-alive timeouts, so a
#: connection is not reused just as the server closes it.
KEEPALIVE_EXPIRY = 4.0

#: Characters of an API path sent as they are (RFC 3986 pchar, "/" and escapes).
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"

_DEFAULT = attrs.fields(ModelConfig).timeout.default
_DEFAULT_MODEL_TIMEOUT: float = _DEFAULT if isinstance(_DEFAULT, float) else 120.0


def _user_agent() -> str:
    return f"gridloom/{__version__}"


def _provider_models(provider: ProviderConfig, models: Sequence[ModelConfig]) -> list[ModelConfig]:
    return [m for m in models if m.provider == provider.name]


def http_timeout(provider: ProviderConfig, models: Sequence[ModelConfig]) -> httpx.Timeout:
    """The client's timeouts: read/write/pool = the longest ``timeout`` of the provider's models.

    Args:
        provider: the provider.
        models: model configs; those naming another provider are ignored.

    Returns:
        ``httpx.Timeout`` with ``connect`` = min(:data:`CONNECT_TIMEOUT`, that longest timeout).
    """
    mine = _provider_models(provider, models)
    longest = max((m.timeout for m in mine), default=_DEFAULT_MODEL_TIMEOUT)
    return httpx.Timeout(longest, connect=min(CONNECT_TIMEOUT, longest))


def http_limits(provider: ProviderConfig, models: Sequence[ModelConfig]) -> httpx.Limits:
    """The client's pool size: the sum of ``max_parallel_requests`` of the provider's models.

    Args:
        provider: the provider.
        models: model configs; those naming another provider are ignored.

    Returns:
        ``httpx.Limits`` with that many connections (at least one), all of them kept alive.
    """
    total = max(1, sum(m.max_parallel_requests for m in _provider_models(provider, models)))
    return httpx.Limits(
        max_connections=total, max_keepalive_connections=total, keepalive_expiry=KEEPALIVE_EXPIRY
    )


def response_caps(
    provider: ProviderConfig, models: Sequence[ModelConfig]
) -> dict[str, ResponseCap]:
    """The reply size cap per model name of ``provider``: the largest ``max_response_bytes``
    of the aliases that point at it."""
    caps: dict[str, ResponseCap] = {}
    for m in _provider_models(provider, models):
        known = caps.get(m.model)
        if known is None:
            caps[m.model] = ResponseCap(limit=m.max_response_bytes, aliases=(m.alias,))
        else:
            limit = max(known.limit, m.max_response_bytes)
            caps[m.model] = ResponseCap(limit=limit, aliases=(*known.aliases, m.alias))
    return caps


def api_url(endpoint: httpx.URL, path: str) -> httpx.URL:
    """The URL of the API ``path`` (e.g. ``chat/completions``) under ``endpoint``: the
    endpoint's path with its trailing slashes removed, ``/``, then ``path``, then the
    endpoint's query (``?...``) if it has one. Every path segment of the endpoint is kept
    (``.../deployments/gpt4?api-version=...`` gives
    ``.../deployments/gpt4/chat/completions?api-version=...``), unlike a relative reference's
    resolution, which drops the last segment of a base without a trailing slash and the query.
    """
    raw_path, question, query = endpoint.raw_path.partition(b"?")
    tail = quote(path.lstrip("/"), safe=_PATH_SAFE).encode("ascii")
    joined = raw_path.rstrip(b"/") + b"/" + tail
    return endpoint.copy_with(raw_path=joined + question + query)


def request_url(http: httpx.AsyncClient, path: str) -> httpx.URL:
    """The URL a request to the API ``path`` goes to with ``http``: :func:`api_url` of the
    endpoint the client was made for (its ``base_url`` if :func:`build_http_client` did not
    make it)."""
    route = _DIRECT.get(http)
    return api_url(route.base_url if route is not None else http.base_url, path)


def build_http_client(
    provider: ProviderConfig,
    models: Sequence[ModelConfig],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    base_url: str | None = None,
) -> httpx.AsyncClient:
    """The one ``httpx.AsyncClient`` shared by every model of ``provider``.

    The API key is not set here: adapters add it to each request, so it never sits in the
    client's default headers.

    Args:
        provider: the provider; its ``headers`` are sent with every request.
        models: model configs; those naming another provider are ignored.
        transport: a transport to use instead of the network one the provider's HTTP policy
            picks (:func:`~gridloom.clients._policy.network_transport`: gridloom's fast
            HTTP/1.1 one, or httpx's own for a proxy or HTTP/2), e.g. ``httpx.MockTransport``
            or ``httpx.ASGITransport`` in tests and virtual-time runs; it then manages its own
            connections.
        base_url: overrides ``provider.endpoint``, e.g. the URL of a simulated server.

    Returns:
        An unopened client; use it as ``async with`` (or ``aclose()`` it) when done.

    Raises:
        ConfigError: neither ``base_url`` nor ``provider.endpoint`` is set, or a setting of
            the provider cannot be honoured (an unreadable CA bundle or client certificate,
            ``http2`` without the ``h2`` package).
    """
    url = base_url or provider.endpoint
    if not url:
        raise ConfigError(
            f"provider {provider.name!r} has no endpoint and none was given", field="endpoint"
        )
    limits = http_limits(provider, models)
    plan: TransportPlan | None = None
    if transport is None:
        transport, plan = network_transport(provider, url, limits)
    # Only the encodings the reply size cap can inflate in bounded pieces (see _limit.py).
    headers = {
        "user-agent": _user_agent(),
        "accept-encoding": "gzip, deflate",
        **provider.headers,
        **{name: secret.reveal() for name, secret in env_headers(provider).items()},
    }
    client = httpx.AsyncClient(
        base_url=url,
        headers=headers,
        timeout=http_timeout(provider, models),
        limits=limits,
        transport=transport,
        follow_redirects=False,
    )
    _DIRECT[client] = DirectRoute(
        transport,
        dict(client.headers),
        # The endpoint as written (httpx's base_url gets a "/" added, after any query).
        httpx.URL(url),
        caps=response_caps(provider, models),
        plan=plan,
    )
    return client


@define(eq=False)
class DirectRoute:
    """How a client made by :func:`build_http_client` sends model requests: straight to its
    transport, with the client's own headers and endpoint (joined once per path, by
    :func:`api_url`).

    Model requests use none of what the client adds per request (cookies, an auth flow,
    redirects, event hooks); skipping it saves a large share of the client-side CPU per request.

    Attributes:
        caps: the reply size cap per model name (others get the default cap).
        plan: the transport the provider's HTTP policy picked and why (``None`` when the
            caller gave the transport).
    """

    transport: httpx.AsyncBaseTransport
    headers: dict[str, str]
    base_url: httpx.URL
    caps: dict[str, ResponseCap] = attrs.field(factory=dict)
    plan: TransportPlan | None = None
    _urls: dict[str, httpx.URL] = attrs.field(factory=dict)
    # Heads hold the API key: never in a repr.
    _heads: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = attrs.field(
        factory=dict, repr=False
    )
    _default_cap: ResponseCap = attrs.field(factory=ResponseCap)

    def cap(self, model: str) -> ResponseCap:
        """The reply size cap of ``model`` (a provider's model name)."""
        return self.caps.get(model, self._default_cap)

    def url(self, path: str) -> httpx.URL:
        """The absolute URL of the API ``path`` under the endpoint (:func:`api_url`)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = api_url(self.base_url, path)
        return url

    def head(self, path: str, headers: Mapping[str, str]) -> bytes:
        """The request head of a JSON ``POST`` to ``path`` with the client's headers and then
        ``headers`` (:func:`~gridloom.clients._exchange.request_head`), made once per path and
        header set (an API key rarely changes; at most :data:`_HEADS` sets are kept)."""
        key = (path, tuple(headers.items()))
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= _HEADS:
                self._heads.clear()
            # Merged as httpx merges: a later value replaces one of the same name in any case.
            merged = {k.lower(): (k, v) for k, v in self.headers.items()}
            merged.update((k.lower(), (k, v)) for k, v in headers.items())
            head = self._heads[key] = request_head(self.url(path), dict(merged.values()))
        return head


#: Request heads a route keeps (per path and header set).
_HEADS = 64

#: The direct route of each client made by :func:`build_http_client`.
_DIRECT: weakref.WeakKeyDictionary[httpx.AsyncClient, DirectRoute] = weakref.WeakKeyDictionary()


def direct_route(client: httpx.AsyncClient) -> DirectRoute | None:
    """The :class:`DirectRoute` of ``client`` if :func:`build_http_client` made it, else ``None``
    (any other client is used through its public API)."""
    return _DIRECT.get(client)


def api_key_from_env(provider: ProviderConfig) -> Secret | None:
    """The provider's API key, read from the environment variable its config names.

    Args:
        provider: the provider; ``api_key_env`` names the variable.

    Returns:
        The key wrapped in a :class:`Secret`, or ``None`` when the provider names no variable
        (local servers without authentication, the simulated endpoint).

    Surrounding whitespace (a trailing newline, from a key read from a file) is stripped.

    Raises:
        ConfigError: the named variable is unset or empty (or only whitespace), or the key
            holds a character an HTTP header cannot carry (a control character such as an
            inner line break, or one outside Latin-1). The message names the provider and the
            variable, never a value.
    """
    name = provider.api_key_env
    if not name:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(
            f"provider {provider.name!r}: environment variable {name!r} holding the API key"
            " is not set (or empty)",
            field="api_key_env",
        )
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127 or ord(c) > 255), None)
    if bad is not None:
        what = "a control" if ord(bad) < 32 or ord(bad) == 127 else "a non-Latin-1"
        raise ConfigError(
            f"provider {provider.name!r}: the API key in environment variable {name!r} holds"
            f" {what} character (U+{ord(bad):04X}) an HTTP header cannot carry; check how the"
            " variable is set",
            field="api_key_env",
        )
    return Secret(value)


def env_headers(provider: ProviderConfig) -> dict[str, Secret]:
    """The provider's ``headers_env`` headers, their values read from the environment.

    Raises:
        ConfigError: a variable is unset or empty, or its value holds a character an HTTP
            header cannot carry. The message names the header and the variable, never a value.
    """
    found = {}
    for header, name in provider.headers_env.items():
        value = os.environ.get(name, "").strip()
        if not value:
            raise ConfigError(
                f"provider {provider.name!r}: environment variable {name!r} holding header"
                f" {header!r} is not set (or empty)",
                field=f"headers_env.{header}",
            )
        if any(ord(c) < 32 or ord(c) == 127 or ord(c) > 255 for c in value):
            raise ConfigError(
                f"provider {provider.name!r}: the value of header {header!r} in environment"
                f" variable {name!r} holds a character an HTTP header cannot carry",
                field=f"headers_env.{header}",
            )
        found[header] = Secret(value)
    return found
