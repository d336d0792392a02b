"""A provider's HTTP policy: its proxy, its TLS settings, and the transport that can honour them.

The client owns policy and the transport only moves bytes (httpx's split). gridloom's own
transport (:class:`~gridloom.clients._wire.WireTransport`, HTTP/1.1 on trio) is the fast one;
it is used wherever it keeps the policy, httpx's own transport (``httpx.AsyncHTTPTransport``,
which runs on trio too) everywhere else:

===========================================  =====================================================
setting                                      served by
===========================================  =====================================================
no proxy for the endpoint, HTTP/1.1          fast
``verify`` (true, a CA bundle, false),       both: one ``ssl.SSLContext`` built here from the
``cert``, ``SSL_CERT_FILE``/``SSL_CERT_DIR``  settings (what ``httpx.create_ssl_context`` does)
a proxy (``proxy:``, or the environment's    httpx: plain-HTTP forwarding and ``CONNECT``
for the endpoint)                            tunnels, proxy credentials, SOCKS
``http2: true``                              httpx (with the ``h2`` package)
===========================================  =====================================================

Environment proxies follow httpx's rules (``trust_env``): ``HTTP_PROXY``, ``HTTPS_PROXY`` and
``ALL_PROXY`` (any case; lower case wins, as in :func:`urllib.request.getproxies`, which also
reads the system settings on macOS and Windows), and ``NO_PROXY``: ``*`` turns every proxy
off; an entry ``example.com`` excludes that host and its subdomains, ``.example.com`` only the
subdomains, an IP address (or ``localhost``) that very host; the most specific rule wins.
They never apply to ``simulated`` providers, which are served on loopback.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import ssl
import urllib.request
from typing import Literal

import attrs
import httpx

from .._attrs import frozen
from ..config import ProviderConfig
from ..config._urls import redact_url
from ..errors import ConfigError
from ._wire import WireTransport, ssl_error, tls_reason

__all__ = ["TransportPlan", "network_transport", "ssl_context", "transport_plan"]

TransportKind = Literal["fast", "httpx", "asgi"]


def _redacted(value: str | None) -> str:
    return repr(None if value is None else redact_url(value))


@frozen(kw_only=True)
class TransportPlan:
    """Which transport a provider's requests go through, and why.

    Attributes:
        kind: ``fast`` (gridloom's HTTP/1.1 transport), ``httpx`` (httpx's own, for proxies and
            HTTP/2) or ``asgi`` (the simulated endpoint mounted in-process).
        reason: why, in words (a proxy's credentials are never shown).
        proxy: the proxy URL requests go through, if any (credentials included: used, never
            shown).
        proxy_source: where that proxy comes from: ``proxy`` (the provider's setting) or the
            environment variable (``HTTPS_PROXY``, ...).
    """

    kind: TransportKind
    reason: str
    proxy: str | None = attrs.field(default=None, repr=_redacted)
    proxy_source: str | None = None

    def describe(self) -> str:
        """``kind (reason)``, e.g. ``httpx (proxy http://proxy:3128 from HTTPS_PROXY)``."""
        return f"{self.kind} ({self.reason})"


# --------------------------------------------------------------------------- proxies


@frozen
class _Pattern:
    """A proxy-map key as httpx matches it (``httpx._utils.URLPattern``)."""

    scheme: str
    host: str
    port: int | None
    regex: re.Pattern[str] | None

    @classmethod
    def parse(cls, pattern: str) -> _Pattern:
        url = httpx.URL(pattern)
        host = "" if url.host == "*" else url.host
        regex: re.Pattern[str] | None = None
        if host.startswith("*."):  # subdomains only
            regex = re.compile(f"^.+\\.{re.escape(host[2:])}$")
        elif host.startswith("*"):  # the domain and its subdomains
            regex = re.compile(f"^(.+\\.)?{re.escape(host[1:])}$")
        elif host:
            regex = re.compile(f"^{re.escape(host)}$")
        return cls("" if url.scheme == "all" else url.scheme, host, url.port, regex)

    def matches(self, url: httpx.URL) -> bool:
        if self.scheme and self.scheme != url.scheme:
            return False
        if self.regex is not None and not self.regex.match(url.host):
            return False
        return self.port is None or self.port == url.port

    @property
    def priority(self) -> tuple[int, int, int]:
        """Most specific first: a port, then a longer host, then a longer scheme."""
        return (0 if self.port is not None else 1, -len(self.host), -len(self.scheme))


def _variable(scheme: str) -> str:
    """The environment variable that set the proxy of ``scheme`` (lower case wins)."""
    wanted = f"{scheme}_proxy"
    names = [name for name, value in os.environ.items() if name.lower() == wanted and value]
    if wanted in names:
        return wanted
    return names[0] if names else "the system proxy settings"


def environment_proxy(url: httpx.URL) -> tuple[str | None, str | None]:
    """The proxy httpx would use for ``url`` from the environment (``trust_env``).

    Returns:
        ``(proxy URL, the variable it comes from)``; ``(None, why)`` when ``NO_PROXY`` excludes
        the URL (``why`` names the entry); ``(None, None)`` when no proxy is set for it.
    """
    found = urllib.request.getproxies()
    rules: dict[str, tuple[str | None, str]] = {}
    for scheme in ("http", "https", "all"):
        value = found.get(scheme)
        if value:
            url_of = value if "://" in value else f"http://{value}"
            rules[f"{scheme}://"] = (url_of, _variable(scheme))
    if not rules:
        return None, None
    for entry in (part.strip() for part in found.get("no", "").split(",")):
        if entry == "*":
            return None, "NO_PROXY=*"
        if not entry:
            continue
        if "://" in entry:
            key = entry
        elif _is_ip(entry, 4) or entry.lower() == "localhost":
            key = f"all://{entry}"
        elif _is_ip(entry, 6):
            key = f"all://[{entry}]"
        else:
            key = f"all://*{entry}"
        rules[key] = (None, f"NO_PROXY entry {entry!r}")
    matching: list[tuple[_Pattern, tuple[str | None, str]]] = []
    for key, rule in rules.items():
        try:
            pattern = _Pattern.parse(key)
        except (httpx.InvalidURL, ValueError):  # an entry httpx could not use either
            continue
        if pattern.matches(url):
            matching.append((pattern, rule))
    if not matching:
        return None, None
    return min(matching, key=lambda item: item[0].priority)[1]


def _is_ip(text: str, version: int) -> bool:
    try:
        address = ipaddress.ip_address(text.split("/")[0])
    except ValueError:
        return False
    return address.version == version


def transport_plan(provider: ProviderConfig, url: str | httpx.URL | None = None) -> TransportPlan:
    """The transport ``provider``'s requests to ``url`` go through, and why.

    Args:
        provider: the provider; its ``proxy``, ``trust_env`` and ``http2`` decide.
        url: where the requests go; ``provider.endpoint`` when ``None`` (a simulated
            provider's endpoint is on loopback).
    """
    simulation = provider.simulation if provider.type == "simulated" else None
    if simulation is not None and simulation.transport == "asgi":
        return TransportPlan(kind="asgi", reason="in-process simulated endpoint")
    target = httpx.URL(url if url is not None else provider.endpoint or "http://127.0.0.1/")
    proxy = provider.proxy
    source: str | None = "proxy" if proxy else None
    if proxy is None and provider.trust_env and provider.type != "simulated":
        proxy, source = environment_proxy(target)
    reasons: list[str] = []
    if proxy is not None:
        origin = "the provider's proxy setting" if source == "proxy" else source
        reasons.append(f"proxy {redact_url(proxy)} from {origin}")
    if provider.http2:
        reasons.append("http2: true")
    if reasons:
        return TransportPlan(
            kind="httpx", reason="; ".join(reasons), proxy=proxy, proxy_source=source
        )
    if source is not None:
        why = f"{source} excludes {target.host}"
    elif provider.type == "simulated":
        why = "simulated endpoint on loopback"
    else:
        why = "HTTP/1.1, no proxy"
    return TransportPlan(kind="fast", reason=why)


# --------------------------------------------------------------------------- TLS


def ssl_context(provider: ProviderConfig) -> ssl.SSLContext:
    """A new TLS context from the provider's ``verify``, ``cert`` and ``trust_env``: what
    ``httpx.create_ssl_context`` builds from the same settings (each transport gets its own,
    since each sets its own ALPN protocols on it).

    Raises:
        ConfigError: a CA bundle or client certificate cannot be read or used.
    """
    verify = provider.verify
    field = "verify"
    try:
        if isinstance(verify, bool):
            # certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR with trust_env; no checks at all
            # for verify=False.
            context = httpx.create_ssl_context(verify=verify, trust_env=provider.trust_env)
        elif os.path.isdir(verify):
            context = ssl.create_default_context(capath=verify)
        elif os.path.exists(verify):
            context = ssl.create_default_context(cafile=verify)
        else:
            raise FileNotFoundError(f"no such file or directory: {verify!r}")
        cert = provider.cert
        if cert is not None:
            field = "cert"
            certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
            for path in (certfile, keyfile):
                if path is not None and not os.path.exists(path):
                    raise FileNotFoundError(f"no such file: {path!r}")
            context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError, ValueError) as exc:
        what = "the CA bundle" if field == "verify" else "the client certificate"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"provider {provider.name!r}: {what} cannot be used: {reason}", field=field
        ) from None
    return context


# --------------------------------------------------------------------------- transports


class _HttpxTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, its TLS failures named as the fast transport names them: under
    trio, httpcore raises them with the text of trio's ``BrokenResourceError``, which is
    empty (a bare ``ConnectError``)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TransportError as exc:
            if ssl_error(exc) is None:
                raise
            failure = exc
        # Raised outside the except clause, with the same type (so retries see no difference).
        reason = tls_reason(failure)
        if isinstance(failure, httpx.ConnectError):
            reason = f"TLS handshake failed: {reason}"
        raise type(failure)(reason, request=request)


def network_transport(
    provider: ProviderConfig,
    url: str | httpx.URL,
    limits: httpx.Limits,
    *,
    kind: Literal["fast", "httpx"] | None = None,
) -> tuple[httpx.AsyncBaseTransport, TransportPlan]:
    """The transport for ``provider``'s requests to ``url``, with its plan.

    Args:
        provider: the provider (its HTTP settings).
        url: the base URL the requests go to.
        limits: the pool's size and keep-alive.
        kind: force a transport (tests run one contract suite against both); ``httpx`` may
            always replace ``fast``, not the other way round.

    Raises:
        ConfigError: a setting cannot be honoured: an unreadable CA bundle or certificate,
            ``http2`` without the ``h2`` package, a SOCKS proxy without ``socksio``, or
            ``kind="fast"`` where only httpx's transport keeps the policy.
    """
    target = httpx.URL(url)
    plan = transport_plan(provider, target)
    if plan.kind == "asgi":
        plan = transport_plan(attrs.evolve(provider, simulation=None), target)
    if kind is not None and kind != plan.kind:
        if kind == "fast":
            raise ConfigError(
                f"provider {provider.name!r}: the fast transport cannot serve this provider"
                f" ({plan.reason})"
            )
        plan = attrs.evolve(plan, kind=kind, reason=f"asked for; {plan.reason}")
    https = target.scheme == "https"
    if plan.kind == "fast":
        return WireTransport(limits, ssl_context=ssl_context(provider) if https else None), plan
    if provider.http2 and importlib.util.find_spec("h2") is None:
        raise ConfigError(
            f"provider {provider.name!r}: http2 needs the 'h2' package"
            " (pip install 'gridloom[http2]')",
            field="http2",
        )
    proxy = None
    if plan.proxy is not None:
        proxy_url = httpx.URL(plan.proxy)
        if proxy_url.scheme.startswith("socks") and importlib.util.find_spec("socksio") is None:
            raise ConfigError(
                f"provider {provider.name!r}: a SOCKS proxy needs the 'socksio' package"
                " (pip install 'httpx[socks]')",
                field="proxy",
            )
        try:
            proxy = httpx.Proxy(proxy_url)
        except ValueError:
            raise ConfigError(
                f"provider {provider.name!r}: unusable proxy {redact_url(plan.proxy)!r}"
                f" (from {plan.proxy_source})",
                field="proxy",
            ) from None
    transport = _HttpxTransport(
        verify=ssl_context(provider) if https else False,
        http1=True,
        http2=provider.http2,
        limits=limits,
        proxy=proxy,
        retries=0,
    )
    return transport, plan
