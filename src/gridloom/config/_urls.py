"""URL-valued config fields: a provider's ``endpoint`` and ``proxy``, an MCP tool's ``url``.

One rule for all of them, checked when the config is built (so before any request): a
scheme from the field's list followed by ``://``, a host (a name, an IPv4 address, or an
IPv6 address in brackets), an optional port from 1 to 65535, then an optional path and (where
the field allows it) a query; no fragment, no space or control character anywhere, and every
``%`` the start of an escape such as ``%20``. Credentials (``user:password@``) are allowed only
where gridloom uses and hides them (a proxy); elsewhere they are refused, since the run's
``config.yaml`` would show them (and a provider's endpoint would not even send them). For the
same reason, where credentials are refused, so is a query parameter named like one
(``?key=...``, ``api_key``, ``access_token``, ``sig``...; see :func:`secret_param`).

Messages never show a URL's credentials, nor the value of such a query parameter: they go
through :func:`shown_url`.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import unquote

__all__ = ["URL_CREDENTIALS_REDACTED", "check_url", "redact_url", "secret_param", "shown_url"]

#: What the credentials of a URL read as where a config is shown (see :func:`redact_url`).
URL_CREDENTIALS_REDACTED = "<redacted>"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
#: A host name: letters (any script, as IDNA encodes them), digits, ``-``, ``.``, ``_``, ``~``.
_HOST = re.compile(r"[\w.\-~]+")
_PORT = re.compile(r"0*[0-9]{1,5}")
#: A ``%`` that does not begin a two-digit hex escape.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: Character categories never allowed in a URL: controls, format characters (zero-width,
#: bidi overrides), and separators (spaces).
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
#: Query parameter names (lower case, letters and digits only) that carry a credential.
_SECRET_NAMES = frozenset(
    {
        "key",
        "auth",
        "authorization",
        "bearer",
        "code",
        "jwt",
        "pass",
        "passwd",
        "pwd",
        "sig",
        "signature",
        "session",
        "sessionid",
    }
)
#: Endings of such names (``api_key``, ``x-api-key``, ``subscription-key``, ``access_token``,
#: ``client_secret``, ``X-Amz-Signature``, ``X-Amz-Credential``...).
_SECRET_ENDINGS = ("key", "token", "secret", "password", "signature", "credential", "credentials")
_QUERY_SEPARATORS = re.compile(r"[&;]")


def secret_param(name: str) -> bool:
    """Whether a query parameter called ``name`` (as written in the URL, escapes and all)
    carries a credential: ``key``, ``sig``, or a name ending in key, token, secret, password,
    signature or credential(s), whatever its case and separators (``API-Key``,
    ``access_token``, ``X-Amz-Signature``)."""
    normal = "".join(c for c in unquote(name).lower() if c.isalnum())
    return normal in _SECRET_NAMES or normal.endswith(_SECRET_ENDINGS)


def _redact_query(url: str) -> str:
    """``url`` with the value of each query parameter named like a credential replaced by
    ``<redacted>``."""
    head, mark, query = url.partition("?")
    if not mark:
        return url
    query, hash_mark, fragment = query.partition("#")
    parts = []
    for part, sep in _query_parts(query):
        name = part.partition("=")[0]
        parts.append((f"{name}={URL_CREDENTIALS_REDACTED}" if secret_param(name) else part) + sep)
    return f"{head}?{''.join(parts)}{hash_mark}{fragment}"


def _query_parts(query: str) -> list[tuple[str, str]]:
    """The parameters of ``query``, each with the separator that follows it."""
    pieces = _QUERY_SEPARATORS.split(query)
    separators = [*_QUERY_SEPARATORS.findall(query), ""]
    return list(zip(pieces, separators, strict=True))


def redact_url(url: str) -> str:
    """``url`` with its credentials (``user:password@``), if any, and the values of query
    parameters named like credentials replaced by ``<redacted>``: a proxy URL may carry them,
    and it is shown in reprs, dumped configs and messages."""
    url = _redact_query(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return url
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}{URL_CREDENTIALS_REDACTED}@{host}{slash}{tail}"


def shown_url(url: str) -> str:
    """``url`` as an error message may show it: everything before its last ``@`` (where a
    password would be, however malformed the URL) and the values of query parameters named
    like credentials replaced by ``<redacted>``."""
    url = _redact_query(url)
    if "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme + sep):
        scheme, sep, rest = "", "", url
    return f"{scheme}{sep}{URL_CREDENTIALS_REDACTED}@{rest.rpartition('@')[2]}"


def check_url(
    value: object,
    *,
    field: str,
    schemes: tuple[str, ...],
    example: str,
    credentials: str | None = None,
    query: bool = True,
) -> None:
    """Check a URL-valued field's ``value``; raise a ``ValueError`` (``TypeError`` for a
    value that is not a string) saying what is wrong, never showing credentials.

    Args:
        value: the field's value.
        field: the field's name, for messages (e.g. ``endpoint``).
        schemes: the schemes allowed, lower case.
        example: a URL of the right shape, shown when the scheme is missing.
        credentials: ``None`` if credentials (``user:password@``, or a query parameter
            named like one, see :func:`secret_param`) are allowed; else why not and what to
            use instead, said in the message refusing them.
        query: a query (``?...``) is allowed.
    """
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a URL string, got {type(value).__name__}")
    shown = shown_url(value)
    for index, char in enumerate(value):
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise ValueError(
                f"{field} must not hold spaces or control characters (one is at position"
                f" {index}), got {shown!r}"
            )
    allowed = " or ".join(f"{s}://" for s in schemes)
    match = _SCHEME.match(value)
    if match is None:
        raise ValueError(
            f"{field} must be a URL such as {example!r} (starting with {allowed}), got {shown!r}"
        )
    scheme = match.group(1).lower()
    if scheme not in schemes:
        raise ValueError(f"{field} must start with {allowed}, not {scheme}://: got {shown!r}")
    rest = value[match.end() :]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    after = rest[len(authority) :]
    userinfo, at, hostport = authority.rpartition("@")
    if at and credentials is not None:
        raise ValueError(
            f"{field} must not hold credentials (user:password@): {credentials}. Got {shown!r}"
        )
    _check_host(hostport, field, shown)
    if "#" in after:
        raise ValueError(
            f"{field} must not have a fragment ('#...'; it is never sent to a server),"
            f" got {shown!r}"
        )
    if not query and "?" in after:
        raise ValueError(f"{field} must not have a query ('?...'), got {shown!r}")
    if credentials is not None and "?" in after:
        for part, _sep in _query_parts(after.partition("?")[2]):
            name = part.partition("=")[0]
            if secret_param(name):
                raise ValueError(
                    f"{field} must not hold a credential in its query ({name}=...):"
                    f" {credentials}. Got {shown!r}"
                )
    if _BAD_ESCAPE.search(after) or _BAD_ESCAPE.search(userinfo):
        raise ValueError(
            f"{field} has a '%' that does not begin an escape such as %20 (write a '%' as"
            f" %25), got {shown!r}"
        )


def _check_host(hostport: str, field: str, shown: str) -> None:
    if hostport.startswith("["):
        host, bracket, port = hostport[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            bracket = ""
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(
                f"{field} has an invalid IPv6 address (write it in brackets, such as"
                f" http://[::1]:8000/v1), got {shown!r}"
            )
        port = port[1:]
    else:
        if hostport.count(":") > 1:
            raise ValueError(
                f"{field} has an invalid host (an IPv6 address goes in brackets, such as"
                f" http://[::1]:8000/v1), got {shown!r}"
            )
        host, _, port = hostport.partition(":")
        if not host:
            raise ValueError(f"{field} has no host, got {shown!r}")
        if not _HOST.fullmatch(host) or not _idna_ok(host):
            raise ValueError(
                f"{field} has an invalid host (letters, digits, '-', '.', '_' and '~' only),"
                f" got {shown!r}"
            )
    if port and (not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535):
        raise ValueError(f"{field} has an invalid port (1 to 65535), got {shown!r}")


def _idna_ok(host: str) -> bool:
    """An ASCII host, or one IDNA encodes (as httpx does before connecting)."""
    if host.isascii():
        return True
    import idna  # httpx's own dependency; needed only for such hosts

    try:
        idna.encode(host.lower())
    except idna.IDNAError:
        return False
    return True
