"""Normalise provider failures (HTTP statuses, httpx exceptions) into gridloom's ModelError tree.

Messages carry the status and a short excerpt of the provider's own error message; never request
headers, and never a known secret (each is redacted should a provider echo it back).
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from ..errors import (
    AuthenticationFailed,
    BadRequest,
    CertificateRejected,
    ConnectionFailed,
    ContextLengthExceeded,
    MalformedResponse,
    ModelError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    TLSFailed,
)
from ._secret import Secret, redact

__all__ = ["error_from_exception", "error_from_response", "parse_retry_after"]

#: Longest excerpt of a provider's error message kept in an exception message.
EXCERPT_CHARS = 300

# Lower-case fragments by which OpenAI, Anthropic, vLLM and friends say "the prompt is too long".
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "too many input tokens",
)
_CONTEXT_STATUSES = frozenset({400, 413, 422})

# How providers say the account's quota, credit or billing is spent — final, unlike a rate
# limit, whatever the status (often 429): the ``code`` or ``type`` of an ``{"error": {...}}``
# body (OpenAI and Azure OpenAI: ``insufficient_quota`` on a 429, ``billing_not_active``,
# ``billing_hard_limit_reached``), or a phrase of its message (Anthropic: a 400 "Your credit
# balance is too low"). HTTP 402 (DeepSeek's "Insufficient Balance", OpenRouter's credits) is
# always one. A 429 that says neither stays a rate limit.
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_not_active", "billing_hard_limit_reached"})
_QUOTA_MARKERS = ("credit balance is too low",)
_QUOTA_STATUSES = frozenset({400, 429})


def parse_retry_after(
    value: str | None, *, now: float | None = None, date: str | None = None
) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value.

    An HTTP date is measured from the response's own ``Date`` header when it has a usable one
    (RFC 9110 §10.2.3: the server's clock, not ours, so a skewed clock changes nothing), else
    from the local clock.

    Args:
        value: the header value: delay-seconds (``"2"``, leniently also ``"1.5"``) or an HTTP
            date (``"Wed, 21 Oct 2015 07:28:00 GMT"``).
        now: the current wall-clock time (seconds since the epoch) an HTTP date is measured
            from when ``date`` is not usable; ``time.time()`` when ``None``.
        date: the response's ``Date`` header value, if any.

    Returns:
        The delay in seconds (``0.0`` for a date already past), or ``None`` when the value is
        missing, negative, not finite or not understood.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text[0] in "+-.0123456789":
        return _delay_seconds(text)
    when = _http_date(text)
    if when is None:
        return None
    current = _http_date(date.strip()) if date else None
    if current is None:
        current = time.time() if now is None else now
    return max(0.0, when - current)


def _http_date(text: str) -> float | None:
    """An HTTP date as seconds since the epoch, or ``None`` if it is not one."""
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; asctime-format dates carry no zone.
        when = when.replace(tzinfo=datetime.UTC)
    try:
        return when.timestamp()
    except (ValueError, OverflowError):
        return None


def _delay_seconds(text: str | None) -> float | None:
    """A non-negative, finite number of seconds, or ``None``."""
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _retry_after(headers: httpx.Headers, now: float | None) -> float | None:
    millis = _delay_seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    return parse_retry_after(headers.get("retry-after"), now=now, date=headers.get("date"))


def _error_detail(body: Any) -> str | None:
    """The human-readable message inside a JSON error body, in the common shapes."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return message
    if isinstance(error, str) and error:
        return error
    for key in ("message", "detail"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _quota_spent(status: int, body: Any, detail: str | None) -> bool:
    """Whether an error reply says the account's quota or credit is spent (see
    :data:`_QUOTA_CODES`)."""
    if status == 402:
        return True
    if status not in _QUOTA_STATUSES:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        for key in ("code", "type"):
            value = error.get(key)
            if isinstance(value, str) and value.lower() in _QUOTA_CODES:
                return True
    lowered = (detail or "").lower()
    return any(marker in lowered for marker in _QUOTA_MARKERS)


def _excerpt(text: str, secrets: Iterable[Secret] = ()) -> str:
    """The start of ``text`` (whitespace runs made single spaces), at most
    :data:`EXCERPT_CHARS` characters, with every secret redacted *before* it is cut: the head
    redacted runs a longest secret past the cut, so a secret straddling it is masked whole,
    never left as a prefix."""
    secrets = tuple(secrets)
    longest = max((len(secret.reveal()) for secret in secrets), default=0)
    text = redact(" ".join(text.split())[: EXCERPT_CHARS + longest + 1], secrets)
    if len(text) > EXCERPT_CHARS:
        return text[: EXCERPT_CHARS - 1] + "…"
    return text


def error_from_response(
    response: httpx.Response,
    *,
    provider: str | None,
    model: str | None,
    secrets: Iterable[Secret] = (),
    now: float | None = None,
) -> ModelError:
    """The :class:`~gridloom.errors.ModelError` for an unsuccessful response.

    ===========================================  ==========================================
    status                                       error
    ===========================================  ==========================================
    402; 400 or 429 saying the quota is spent    ``QuotaExhausted`` (see ``_QUOTA_CODES``)
    429                                          ``RateLimited(retry_after)``
    408                                          ``ProviderTimeout``
    401, 403                                     ``AuthenticationFailed``
    400, 413, 422 mentioning the context length  ``ContextLengthExceeded``
    other 4xx (and unexpected 1xx-3xx)           ``BadRequest``
    5xx, 529                                     ``ProviderUnavailable(retry_after)``
    ===========================================  ==========================================

    ``retry_after`` comes from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date).

    Args:
        response: the provider's response; its body must have been read.
        provider: the provider's name, for the message.
        model: the model name, for the message.
        secrets: values to redact should the provider echo them in its error message.
        now: wall-clock time to measure a ``Retry-After`` date from when the response has no
            usable ``Date`` header; ``time.time()`` if ``None``.

    Returns:
        The error to raise; it is not raised here.
    """
    status = response.status_code
    text = response.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    detail = _error_detail(body)
    # Redact before cutting: a secret cut at the excerpt's end would leak its prefix.
    excerpt = _excerpt(detail if detail is not None else text, secrets)
    reason = response.reason_phrase or ""
    message = f"HTTP {status}{' ' + reason if reason else ''}"
    if excerpt:
        message += f": {excerpt}"
    where: dict[str, Any] = {"status": status, "provider": provider, "model": model}

    if _quota_spent(status, body, detail):
        return QuotaExhausted(message, **where)
    if status == 429:
        return RateLimited(message, retry_after=_retry_after(response.headers, now), **where)
    if status >= 500:
        return ProviderUnavailable(
            message, retry_after=_retry_after(response.headers, now), **where
        )
    if status == 408:
        return ProviderTimeout(message, **where)
    if status in (401, 403):
        return AuthenticationFailed(message, **where)
    if status in _CONTEXT_STATUSES and any(m in text.lower() for m in _CONTEXT_MARKERS):
        return ContextLengthExceeded(message, **where)
    if status < 400:
        return BadRequest(f"{message} (unexpected; redirects are not followed)", **where)
    hint = next((hint for match, hint in _BAD_REQUEST_HINTS if match(text)), "")
    return BadRequest(message + hint, **where)


#: What a 400's body says → the model setting that fixes it (the first match is hinted).
_BAD_REQUEST_HINTS: tuple[tuple[Callable[[str], bool], str], ...] = (
    (
        lambda text: (
            "max_completion_tokens" in text and "max_tokens" in text.replace("max_completion", "")
        ),
        " (set max_tokens_param: max_completion_tokens on this model)",
    ),
    (
        # llama.cpp, Groq, DeepSeek, older vLLM: "Unsupported response_format type: json_schema"
        lambda text: "response_format" in text or "json_schema" in text,
        " (the endpoint does not take a JSON schema as response_format: set"
        " json_schema_mode: false on this model to put the schema in the prompt instead)",
    ),
)


def error_from_exception(
    exc: httpx.HTTPError,
    *,
    provider: str | None,
    model: str | None,
    secrets: Iterable[Secret] = (),
) -> ModelError:
    """The :class:`~gridloom.errors.ModelError` for an httpx exception.

    Timeouts become ``ProviderTimeout``; network and remote-protocol failures (refused, reset or
    dropped connections) become ``ConnectionFailed``; an undecodable body becomes
    ``MalformedResponse``; mistakes on our side (unsupported URL scheme, invalid request)
    become ``BadRequest``. The message holds the exception's type and text, never its request.

    Args:
        exc: what httpx raised.
        provider: the provider's name, for the message.
        model: the model name, for the message.
        secrets: values to redact from the message.

    Returns:
        The error to raise (callers raise it ``from None`` so the request, headers included,
        stays unreachable from the error).
    """
    if isinstance(exc, httpx.HTTPStatusError):
        return error_from_response(exc.response, provider=provider, model=model, secrets=secrets)
    message = _excerpt(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, secrets)
    where: dict[str, Any] = {"provider": provider, "model": model}
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(message, **where)
    if isinstance(exc, httpx.DecodingError):
        return MalformedResponse(message, **where)
    if isinstance(
        exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.TooManyRedirects
    ):
        return BadRequest(message, **where)
    if _certificate_rejected(exc):
        return CertificateRejected(message, **where)
    protocol = _tls_protocol_failure(exc)
    if protocol is not None:
        hint = (
            "; the server does not speak TLS there: if it serves plain HTTP, use an http://"
            " endpoint"
            if protocol == "plain"
            else "; the server and gridloom share no TLS version: check the server's TLS setup"
        )
        return TLSFailed(message + hint, **where)
    return ConnectionFailed(message, **where)


#: OpenSSL reasons of a handshake that cannot succeed however often it is tried: the peer
#: speaks plain HTTP (or something else than TLS), or there is no common protocol version.
_PLAIN_REASONS = (
    "WRONG_VERSION_NUMBER",
    "HTTP_REQUEST",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
)
_VERSION_REASONS = (
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "VERSION_TOO_LOW",
)


def _tls_protocol_failure(exc: BaseException) -> str | None:
    """``"plain"`` when ``exc`` (or what caused it) is a TLS handshake with a server that
    does not speak TLS, ``"version"`` when they share no protocol version, else ``None``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).upper().replace(" ", "_")
        reason = current.reason if isinstance(current, ssl.SSLError) else None
        for name in (reason or "", text):
            if any(r in name for r in _PLAIN_REASONS):
                return "plain"
            if any(r in name for r in _VERSION_REASONS):
                return "version"
        current = current.__cause__ or current.__context__
    return None


def _certificate_rejected(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failed TLS certificate verification."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if "certificate verify failed" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False
