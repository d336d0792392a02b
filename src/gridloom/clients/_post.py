"""One JSON request to a provider: deadline, transport retry, reply size cap, error mapping,
JSON decoding.

Both adapters send every request through :func:`post_json`; they differ only in the path, the
body and the headers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import trio

from ..errors import MalformedResponse, ProviderTimeout
from ._exchange import Reply
from ._http import CONNECT_TIMEOUT, DirectRoute, api_url, direct_route
from ._limit import ResponseCap, read_body
from ._retry import RetryPolicy, send_with_retry
from ._secret import Secret
from ._wire import WireTransport

__all__ = ["post_json", "utf8_clean"]

#: One encoder for every request body (``json.dumps`` with options builds one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class _Chunk:
    """Iterates over one chunk of bytes: a plain async iterator, not an async generator, so a
    request cancelled while its body is being sent leaves nothing for the garbage collector to
    finalise (httpx's own ``ByteStream`` is a generator: encode/httpx#3686)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes):
        self._data: bytes | None = data

    def __aiter__(self) -> _Chunk:
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if data is None:
            raise StopAsyncIteration
        return data


class _JsonBody(httpx.AsyncByteStream):
    """A JSON request body sent as a single chunk."""

    def __init__(self, data: bytes):
        self._data = data

    def __aiter__(self) -> _Chunk:
        return _Chunk(self._data)


def _deadline(http: httpx.AsyncClient, time_limit: float | None) -> float:
    """Seconds one attempt may take: the request's limit, else the client's read timeout."""
    if time_limit is not None:
        return time_limit
    read = http.timeout.read
    return math.inf if read is None else read


async def post_json(
    http: httpx.AsyncClient,
    path: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    time_limit: float | None,
    retry: RetryPolicy,
    provider: str,
    model: str,
    secrets: Iterable[Secret] = (),
) -> tuple[Any, httpx.Headers]:
    """POST ``body`` as JSON to ``path`` (relative to the client's base URL); the decoded reply
    and its headers (which may report the provider's remaining quota).

    Each attempt is bounded by ``time_limit`` as a whole (a trio deadline, so it also holds for
    transports without timeouts of their own, and in virtual time), as well as by httpx's
    per-operation timeouts. The reply is read within the model's ``max_response_bytes`` (the
    cap the client was built with; the default cap for a client made elsewhere).

    Args:
        http: the provider's shared client.
        path: e.g. ``"chat/completions"``.
        body: the JSON body.
        headers: per-request headers (authentication goes here).
        time_limit: seconds one attempt may take; ``None`` uses the client's read timeout.
        retry: the transport retry policy.
        provider: the provider's name, for errors.
        model: the model name, for errors.
        secrets: values to redact from error messages.

    Returns:
        The JSON value of a 2xx response, and the response's headers.

    Raises:
        ModelError: the request failed, timed out, or the reply is not JSON;
            ``ResponseTooLarge`` (never retried) when it is longer than the cap.
    """
    secrets = tuple(secrets)
    deadline = _deadline(http, time_limit)
    if time_limit is None:
        request_timeout = http.timeout
        timeouts = request_timeout.as_dict()
    else:  # httpx.Timeout(time_limit, connect=...), without building one per request
        connect = min(CONNECT_TIMEOUT, time_limit)
        timeouts = {"connect": connect, "read": time_limit, "write": time_limit}
        timeouts["pool"] = time_limit
        request_timeout = None

    payload = _ENCODER.encode(body).encode()
    send_headers = {**headers, "content-type": "application/json"}
    route = direct_route(http)
    cap = route.cap(model) if route is not None else ResponseCap()

    async def direct_attempt(route: DirectRoute) -> httpx.Response:
        # What ``http.send`` does for this request, without the layers it does not use.
        request = httpx.Request(
            "POST",
            route.url(path),
            headers={**route.headers, **send_headers},
            content=payload,
            extensions={"timeout": timeouts},
        )
        request.stream = _JsonBody(payload)
        with trio.move_on_after(deadline):
            response = await route.transport.handle_async_request(request)
            response.request = request
            try:
                await read_body(response, cap, provider=provider, model=model)
            finally:
                await response.aclose()
            return response
        raise ProviderTimeout(f"no answer within {deadline:g} s", provider=provider, model=model)

    async def wire_attempt(route: DirectRoute, wire: WireTransport) -> httpx.Response | Reply:
        url = route.url(path)
        head = route.head(path, send_headers)
        reply = await wire.post(
            url,
            head,
            payload,
            timeouts=timeouts,
            until=trio.current_time() + deadline,
            cap=cap,
            where=(provider, model),
        )
        if reply is None:
            raise ProviderTimeout(
                f"no answer within {deadline:g} s", provider=provider, model=model
            )
        if reply.is_success:
            return reply
        # The rare path: errors are mapped from a real response.
        return reply.to_response(httpx.Request("POST", url))

    async def attempt() -> httpx.Response | Reply:
        if route is not None:
            wire = route.transport
            if isinstance(wire, WireTransport):
                return await wire_attempt(route, wire)
            return await direct_attempt(route)
        request = http.build_request(
            "POST",
            api_url(http.base_url, path),
            content=payload,
            headers=send_headers,
            timeout=httpx.Timeout(**timeouts) if request_timeout is None else request_timeout,
        )
        request.stream = _JsonBody(payload)  # httpx would wrap any stream passed as content
        with trio.move_on_after(deadline):
            response = await http.send(request, stream=True)
            try:
                await read_body(response, cap, provider=provider, model=model)
            finally:
                await response.aclose()
            return response
        raise ProviderTimeout(f"no answer within {deadline:g} s", provider=provider, model=model)

    response = await send_with_retry(
        attempt, policy=retry, provider=provider, model=model, secrets=secrets
    )
    if isinstance(response, Reply):
        return _decoded(response, provider, model), _quota_headers(response)
    try:
        data = response.json()
        # A lone surrogate can only come from a \udXXX escape: most replies have none.
        if b"\\ud" in response.content or b"\\uD" in response.content:
            data = utf8_clean(data)
        return data, response.headers
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        pass
    # Raised outside the except clause: no exception context to carry along.
    status = response.status_code
    raise MalformedResponse(
        not_json(status, response.content), status=status, provider=provider, model=model
    )


#: Headers that report a provider's quota (see :mod:`._quota`): the only ones a caller reads.
_QUOTA_PREFIXES = (b"x-ratelimit-", b"anthropic-ratelimit-", b"retry-after")
_NO_HEADERS = httpx.Headers()


def _quota_headers(reply: Reply) -> httpx.Headers:
    quota = [(k, v) for k, v in reply.headers if k.startswith(_QUOTA_PREFIXES)]
    return httpx.Headers(quota) if quota else _NO_HEADERS


def _decoded(reply: Reply, provider: str, model: str) -> Any:
    """The JSON value of a successful reply's body."""
    content = reply.content
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        pass
    else:
        # A lone surrogate can only come from a \udXXX escape: most replies have none.
        if b"\\ud" in content or b"\\uD" in content:
            data = utf8_clean(data)
        return data
    raise MalformedResponse(
        not_json(reply.status_code, content),
        provider=provider,
        model=model,
        status=reply.status_code,
    )


def not_json(status: int, content: bytes) -> str:
    """Why a reply's body is not JSON, in one bounded line: bytes that are not UTF-8 (a
    server that split a character between tokens), or where the JSON breaks off."""
    where = f"HTTP {status} reply is not JSON ({len(content)} bytes)"
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        span = (
            f"byte {exc.start} is"
            if exc.end - exc.start == 1
            else f"bytes {exc.start}-{exc.end - 1} are"
        )
        return f"{where}: {span} not UTF-8 (the server's encoding)"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{where}: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    except (ValueError, RecursionError):
        return f"{where}: nested deeper than a JSON parser reads"
    return where


#: A UTF-16 surrogate on its own (JSON decodes a valid pair to one character).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_clean(value: Any) -> Any:
    """``value`` (parsed JSON) with every string UTF-8 can encode: a lone surrogate a reply
    escapes (``"\\ud800"``) becomes U+FFFD, the replacement character, so it can never reach
    storage, where it could not be written, and the damage stays visible (``?`` passed for
    text). Walks iteratively (parsed JSON may be as deep as the parser allows)."""

    def fixed(text: str) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _LONE_SURROGATE.sub("\ufffd", text)
        return text

    if isinstance(value, str):
        return fixed(value)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in list(item.items()):
                if isinstance(inner, str):
                    item[key] = fixed(inner)
                elif isinstance(inner, dict | list):
                    stack.append(inner)
                if isinstance(key, str) and fixed(key) is not key:
                    item[fixed(key)] = item.pop(key)
        elif isinstance(item, list):
            for index, inner in enumerate(item):
                if isinstance(inner, str):
                    item[index] = fixed(inner)
                elif isinstance(inner, dict | list):
                    stack.append(inner)
    return value
