"""ASGI plumbing for the simulated endpoint: types, body reading, JSON and error responses."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from ..errors import ConnectionFailed

__all__ = [
    "Api",
    "DroppedConnection",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "error_body",
    "format_retry_after",
    "read_body",
    "send_bytes",
    "send_json",
    "wait_for_disconnect",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Which API's error shape to answer with.
Api = Literal["openai", "anthropic"]


class DroppedConnection(ConnectionFailed):
    """Raised by the app to drop a connection without answering (an injected fault).

    Mounted in-process (``httpx.ASGITransport``) this exception reaches the caller of the
    request; served by hypercorn, the server wrapper turns it into a closed socket.
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


def error_body(api: Api, status: int, message: str, *, param: str | None = None) -> Any:
    """An error body in the shape of ``api`` (OpenAI: ``{"error": {...}}``; Anthropic adds
    ``"type": "error"``)."""
    if api == "anthropic":
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = _OPENAI_TYPES.get(status, "server_error")
    code = kind if status == 429 else None
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def format_retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds as an integer, else a decimal rounded up to ms."""
    millis = math.ceil(round(max(seconds, 0.0) * 1000.0, 6))
    if millis % 1000 == 0:
        return str(millis // 1000)
    return repr(millis / 1000)
