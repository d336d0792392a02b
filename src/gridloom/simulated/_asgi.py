"""ASGI plumbing for the simulated endpoint: types, body reading, JSON and error responses."""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Literal

from ..errors import ConnectionFailed
from ._behaviour import Quota

__all__ = [
    "WATCH_DISCONNECT",
    "Api",
    "DroppedConnection",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "error_body",
    "format_reset_duration",
    "format_retry_after",
    "format_timestamp",
    "is_batch_route",
    "quota_headers",
    "read_body",
    "send_bytes",
    "send_json",
    "wait_for_disconnect",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: An ASGI scope extension of gridloom's own server (not ``httpx.ASGITransport``'s, nor other
#: servers'): ``scope["extensions"][WATCH_DISCONNECT]["watch"]()`` asks the server to cancel
#: the app's task if the client goes from then on (at once, if it has gone already), which
#: spares the app a task watching ``receive()`` for ``http.disconnect``.
WATCH_DISCONNECT = "gridloom.watch_disconnect"

#: Which API's error shape to answer with.
Api = Literal["openai", "anthropic"]

#: The batch APIs' routes (:mod:`._batches`): OpenAI's files and batches, Anthropic's message
#: batches. Here, not there, so an app tells a batch request apart without importing them.
FILES_ROUTE = "/v1/files"
BATCHES_ROUTE = "/v1/batches"
MESSAGE_BATCHES_ROUTE = "/v1/messages/batches"


def is_batch_route(path: str) -> bool:
    """Whether ``path`` is one of the batch routes (or under one)."""
    return any(
        path == p or path.startswith(p + "/")
        for p in (FILES_ROUTE, BATCHES_ROUTE, MESSAGE_BATCHES_ROUTE)
    )


class DroppedConnection(ConnectionFailed):
    """Raised by the app to drop a connection without answering (an injected fault).

    Mounted in-process (``httpx.ASGITransport``) this exception reaches the caller of the
    request; served over sockets, the connection is closed without an answer.
    """


async def read_body(receive: Receive) -> bytes:
    """Read the whole request body."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone (after the request body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a complete response."""
    raw_headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def dump_json(value: Any) -> bytes:
    """Compact, deterministic JSON bytes."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


async def send_json(
    send: Send, status: int, value: Any, *, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send ``value`` as a JSON response."""
    await send_bytes(send, status, dump_json(value), headers=headers)


_OPENAI_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "server_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}


def error_body(
    api: Api, status: int, message: str, *, param: str | None = None, code: str | None = None
) -> Any:
    """An error body in the shape of ``api`` (OpenAI: ``{"error": {...}}`` with ``code``
    (given, or the type of a 429); Anthropic adds ``"type": "error"``)."""
    if api == "anthropic":
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = _OPENAI_TYPES.get(status, "server_error")
    if code is None and status == 429:
        code = kind
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _millis_up(seconds: float) -> int:
    """``seconds`` in whole milliseconds, rounded up (binary noise below a nanosecond ignored)."""
    return math.ceil(round(seconds * 1000.0, 6))


def format_retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds as an integer, else a decimal rounded up to ms."""
    millis = _millis_up(max(seconds, 0.0))
    if millis % 1000 == 0:
        return str(millis // 1000)
    return repr(millis / 1000)


def format_reset_duration(seconds: float) -> str:
    """An OpenAI ``x-ratelimit-reset-*`` value: a Go-style duration rounded up to milliseconds
    (``"0s"``, ``"20ms"``, ``"1s"``, ``"1.5s"``, ``"6m0s"``, ``"1h2m3.5s"``)."""
    millis = _millis_up(max(seconds, 0.0))
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    text = f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis / 1000!r}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def format_timestamp(when: float) -> str:
    """An RFC 3339 UTC timestamp for ``when`` seconds since the epoch, rounded up to
    milliseconds (``"2024-05-01T12:00:00Z"``, ``"2024-05-01T12:00:00.250Z"``)."""
    millis = math.ceil(round(when * 1000.0, 3))
    seconds, millis = divmod(millis, 1000)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def quota_headers(api: Api, quotas: Iterable[Quota], now: float) -> list[tuple[bytes, bytes]]:
    """Quota headers for a 200 answer, three per bucket.

    OpenAI: ``x-ratelimit-limit-<kind>``, ``x-ratelimit-remaining-<kind>`` and
    ``x-ratelimit-reset-<kind>`` (a duration). Anthropic: ``anthropic-ratelimit-<kind>-limit``,
    ``-remaining`` and ``-reset``, the last an RFC 3339 timestamp: ``now`` plus the bucket's
    reset, so ``now`` must be wall-clock time (seconds since the epoch), even when the app runs
    on a virtual clock.

    Args:
        api: which API's format.
        quotas: the model's buckets.
        now: the current wall-clock time, for Anthropic's timestamps.
    """
    headers: list[tuple[bytes, bytes]] = []
    for quota in quotas:
        kind = quota.kind
        if api == "anthropic":
            names = [
                f"anthropic-ratelimit-{kind}-{part}" for part in ("limit", "remaining", "reset")
            ]
            reset = format_timestamp(now + quota.reset)
        else:
            names = [f"x-ratelimit-{part}-{kind}" for part in ("limit", "remaining", "reset")]
            reset = format_reset_duration(quota.reset)
        values = (str(quota.limit), str(quota.remaining), reset)
        headers.extend(
            (name.encode(), value.encode()) for name, value in zip(names, values, strict=True)
        )
    return headers
