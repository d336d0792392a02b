"""Error normalisation of the client layer: statuses, httpx exceptions, Retry-After."""

from __future__ import annotations

import email.utils
from typing import Any

import httpx
import pytest

from gridloom.clients import Secret, error_from_exception, error_from_response, parse_retry_after
from gridloom.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionFailed,
    ContextLengthExceeded,
    MalformedResponse,
    ModelError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ResponseTooLarge,
    is_retryable,
)

NOW = 1_700_000_000.0
REQUEST = httpx.Request("POST", "http://provider.test/v1/chat/completions")


def _response(
    status: int, body: Any = None, *, text: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=REQUEST)
    return httpx.Response(status, json=body, headers=headers, request=REQUEST)


def _map(response: httpx.Response, **kwargs: Any) -> ModelError:
    return error_from_response(response, provider="acme", model="m-1", now=NOW, **kwargs)


def _openai_error(message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


# --------------------------------------------------------------------------- status table


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "retry_after"),
    [
        (429, _openai_error("Rate limit reached"), {"retry-after": "3"}, RateLimited, 3.0),
        (429, _openai_error("slow down"), {}, RateLimited, None),
        (429, {}, {"retry-after-ms": "250", "retry-after": "9"}, RateLimited, 0.25),
        (408, {"error": "request timeout"}, {}, ProviderTimeout, None),
        (401, _openai_error("Incorrect API key provided"), {}, AuthenticationFailed, None),
        (
            403,
            {"type": "error", "error": {"type": "permission_error"}},
            {},
            AuthenticationFailed,
            None,
        ),
        (
            400,
            _openai_error("This model's maximum context length is 8192 tokens", None),
            {},
            ContextLengthExceeded,
            None,
        ),
        (
            400,
            _openai_error("too long", "context_length_exceeded"),
            {},
            ContextLengthExceeded,
            None,
        ),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000",
                },
            },
            {},
            ContextLengthExceeded,
            None,
        ),
        (413, {"detail": "Context length exceeded"}, {}, ContextLengthExceeded, None),
        (
            422,
            {"object": "error", "message": "exceeds the model's context window"},
            {},
            ContextLengthExceeded,
            None,
        ),
        (400, _openai_error("temperature must be <= 2"), {}, BadRequest, None),
        (404, _openai_error("The model `nope` does not exist"), {}, BadRequest, None),
        (422, {"detail": "field required"}, {}, BadRequest, None),
        (500, _openai_error("internal"), {}, ProviderUnavailable, None),
        (502, None, {}, ProviderUnavailable, None),
        (503, _openai_error("overloaded"), {"retry-after": "7"}, ProviderUnavailable, 7.0),
        (504, None, {}, ProviderUnavailable, None),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error"}},
            {},
            ProviderUnavailable,
            None,
        ),
        (302, None, {"location": "http://elsewhere.test/"}, BadRequest, None),
    ],
)
def test_status_mapping(
    status: int,
    body: Any,
    headers: dict[str, str],
    expected: type[ModelError],
    retry_after: float | None,
) -> None:
    """Each status (and body, for context length) maps to the documented ModelError subclass."""
    err = _map(_response(status, body, headers=headers))
    assert type(err) is expected
    assert err.status == status
    assert (err.provider, err.model) == ("acme", "m-1")
    assert getattr(err, "retry_after", None) == retry_after
    assert str(err).startswith(f"acme/m-1: HTTP {status}")


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (RateLimited, True),
        (ProviderUnavailable, True),
        (ProviderTimeout, True),
        (ConnectionFailed, True),
        (MalformedResponse, True),
        (BadRequest, False),
        (AuthenticationFailed, False),
        (ContextLengthExceeded, False),
        (ResponseTooLarge, False),
    ],
)
def test_retryable_flags(error: type[ModelError], retryable: bool) -> None:
    """Each mapped error says whether trying again later may succeed."""
    assert error.retryable is retryable


def test_a_reply_too_large_is_final() -> None:
    """ResponseTooLarge is a ModelError no retry can cure: its row is dropped."""
    error = ResponseTooLarge("reply too large", limit=10, provider="acme", model="m-1")
    assert isinstance(error, ModelError)
    assert not is_retryable(error)
    assert error.limit == 10
    assert str(error) == "acme/m-1: reply too large"


def test_context_length_is_only_detected_on_client_errors() -> None:
    """A 5xx that mentions the context length is still an unavailable provider."""
    err = _map(_response(500, _openai_error("context length bookkeeping crashed")))
    assert type(err) is ProviderUnavailable


def test_message_holds_the_provider_message_not_the_raw_body() -> None:
    """The message quotes the JSON error's message rather than the whole body."""
    err = _map(_response(400, _openai_error("temperature must be <= 2", "bad_temp")))
    assert str(err) == "acme/m-1: HTTP 400 Bad Request: temperature must be <= 2"


def test_message_falls_back_to_text_and_is_truncated() -> None:
    """A non-JSON error body is quoted as text, whitespace-collapsed and cut to ~300 chars."""
    err = _map(_response(500, text="<html>\n  " + "x" * 1000 + "</html>"))
    message = str(err)
    assert "<html> xxx" in message
    assert message.endswith("…")
    assert len(message) < 360


def test_message_never_holds_headers() -> None:
    """Response headers (and echoed secrets in the body) never reach the message."""
    key = Secret("sk-echo-SECRET-42")
    response = _response(
        401,
        _openai_error("Incorrect API key provided: sk-echo-SECRET-42"),
        headers={"x-request-id": "req-HEADER-VALUE", "set-cookie": "session=COOKIE"},
    )
    err = _map(response, secrets=[key])
    text = str(err) + repr(err)
    for fragment in ("SECRET", "HEADER-VALUE", "COOKIE"):
        assert fragment not in text
    assert "Incorrect API key provided: ***" in str(err)


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 12 ", 12.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        (email.utils.formatdate(NOW + 3600, usegmt=True).replace("GMT", "+0000"), 3600.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("Thu, 99 Foo 2023 25:61:00 GMT", None),
        ("-3", None),
        ("-0.5", None),
        ("nan", None),
        ("inf", None),
        ("1e999", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After as seconds or an HTTP date (relative to now); junk and negatives give None."""
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_date_defaults_to_wall_clock() -> None:
    """Without ``now``, an HTTP date is measured from the wall clock."""
    import time

    value = email.utils.formatdate(time.time() + 120, usegmt=True)
    seconds = parse_retry_after(value)
    assert seconds is not None
    assert 110 < seconds <= 120


def test_bad_retry_after_ms_falls_back_to_retry_after() -> None:
    """An unusable ``retry-after-ms`` leaves ``Retry-After`` in charge."""
    err = _map(_response(429, {}, headers={"retry-after-ms": "soon", "retry-after": "4"}))
    assert isinstance(err, RateLimited)
    assert err.retry_after == 4.0


# --------------------------------------------------------------------------- exceptions


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ReadTimeout("timed out", request=REQUEST), ProviderTimeout),
        (httpx.ConnectTimeout("timed out", request=REQUEST), ProviderTimeout),
        (httpx.PoolTimeout("no connection free", request=REQUEST), ProviderTimeout),
        (httpx.WriteTimeout("timed out", request=REQUEST), ProviderTimeout),
        (httpx.ConnectError("[Errno 111] Connection refused", request=REQUEST), ConnectionFailed),
        (httpx.ReadError("connection reset", request=REQUEST), ConnectionFailed),
        (httpx.WriteError("broken pipe", request=REQUEST), ConnectionFailed),
        (httpx.RemoteProtocolError("peer closed connection", request=REQUEST), ConnectionFailed),
        (httpx.DecodingError("bad gzip", request=REQUEST), MalformedResponse),
        (httpx.UnsupportedProtocol("ftp://", request=REQUEST), BadRequest),
    ],
)
def test_exception_mapping(exc: httpx.HTTPError, expected: type[ModelError]) -> None:
    """httpx exceptions map to timeouts, connection failures, malformed or bad requests."""
    err = error_from_exception(exc, provider="acme", model="m-1")
    assert type(err) is expected
    assert err.status is None
    assert type(exc).__name__ in str(err)


def test_status_error_exception_maps_like_its_response() -> None:
    """An ``HTTPStatusError`` maps through its response."""
    response = _response(429, {}, headers={"retry-after": "2"})
    exc = httpx.HTTPStatusError("429", request=REQUEST, response=response)
    err = error_from_exception(exc, provider="acme", model="m-1")
    assert isinstance(err, RateLimited)
    assert err.retry_after == 2.0


def test_exception_message_redacts_secrets() -> None:
    """A secret inside an httpx exception's text is redacted from the mapped message."""
    exc = httpx.ConnectError("proxy http://user:sk-LEAK-1@proxy failed", request=REQUEST)
    err = error_from_exception(exc, provider="acme", model="m-1", secrets=[Secret("sk-LEAK-1")])
    assert "sk-LEAK-1" not in str(err)
    assert "***" in str(err)


@pytest.mark.parametrize(
    "message",
    [
        "Unsupported response_format type: json_schema",  # llama.cpp, older vLLM
        "response_format json_schema is not supported by this model",  # Groq, DeepSeek
    ],
)
def test_a_400_refusing_the_json_schema_names_the_setting(message: str) -> None:
    """A 400 about response_format/json_schema tells to set json_schema_mode: false."""
    err = _map(_response(400, _openai_error(message)))
    assert type(err) is BadRequest
    assert "set json_schema_mode: false on this model" in str(err)
    assert message in str(err)


def test_a_400_about_something_else_has_no_hint() -> None:
    """A 400 naming neither max_tokens nor response_format carries no setting hint."""
    err = _map(_response(400, _openai_error("temperature must be <= 2")))
    assert "set " not in str(err)
