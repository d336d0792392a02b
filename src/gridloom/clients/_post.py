"""One JSON request to a provider: deadline, transport retry, error mapping, JSON decoding.

Both adapters send every request through :func:`post_json`; they differ only in the path, the
body and the headers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import trio

from ..errors import MalformedResponse, ProviderTimeout
from ._http import CONNECT_TIMEOUT
from ._retry import RetryPolicy, send_with_retry
from ._secret import Secret

__all__ = ["post_json"]


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
    per-operation timeouts.

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
        ModelError: the request failed, timed out, or the reply is not JSON.
    """
    secrets = tuple(secrets)
    deadline = _deadline(http, time_limit)
    request_timeout = http.timeout
    if time_limit is not None:
        request_timeout = httpx.Timeout(time_limit, connect=min(CONNECT_TIMEOUT, time_limit))

    async def attempt() -> httpx.Response:
        with trio.move_on_after(deadline):
            return await http.post(path, json=body, headers=dict(headers), timeout=request_timeout)
        raise ProviderTimeout(f"no answer within {deadline:g} s", provider=provider, model=model)

    response = await send_with_retry(
        attempt, policy=retry, provider=provider, model=model, secrets=secrets
    )
    try:
        return response.json(), response.headers
    except ValueError:
        pass
    # Raised outside the except clause: no exception context to carry along.
    status = response.status_code
    raise MalformedResponse(
        f"HTTP {status} reply is not JSON ({len(response.content)} bytes)",
        status=status,
        provider=provider,
        model=model,
    )
