"""What the provider adapters share: construction, a safe repr, sending, shape checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ..config import ProviderConfig
from ..config._urls import redact_url
from ..errors import MalformedResponse
from ._http import direct_route
from ._post import post_json
from ._quota import parse_rate_limit_headers
from ._retry import RetryPolicy
from ._secret import Secret
from ._types import RateLimitState

__all__ = ["AdapterBase", "as_tokens", "optional_str"]


class AdapterBase:
    """Common part of :class:`OpenAIClient` and :class:`AnthropicClient`.

    Args:
        http: the provider's shared client (see :func:`build_http_client`); its base URL ends
            with the API version, e.g. ``https://api.openai.com/v1``.
        provider: the provider's config; its ``extra_body`` is merged into every request body.
        api_key: the API key, or ``None`` for servers without authentication.
        retry: the transport retry policy; ``RetryPolicy()`` when ``None``.
    """

    __slots__ = ("_api_key", "_http", "_provider", "_retry", "_secrets")

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        provider: ProviderConfig,
        api_key: Secret | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = http
        self._provider = provider
        self._api_key = api_key
        self._retry = RetryPolicy() if retry is None else retry
        # Redacted from every error message: the key and every configured header value.
        self._secrets = tuple(
            [*([] if api_key is None else [api_key])]
            + [Secret(value) for value in provider.headers.values() if value]
        )

    @property
    def provider(self) -> ProviderConfig:
        """The provider's config."""
        return self._provider

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self._provider.name!r},"
            f" base_url={redact_url(str(self._endpoint()))!r})"
        )

    def _endpoint(self) -> httpx.URL:
        route = direct_route(self._http)
        return route.base_url if route is not None else self._http.base_url

    def _auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _body(self, base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        """``base`` with the provider's then the request's extra fields merged over it."""
        return {**base, **self._provider.extra_body, **extra}

    async def _post(
        self, path: str, body: Mapping[str, Any], *, model: str, time_limit: float | None
    ) -> tuple[Any, RateLimitState | None]:
        """POST ``body``; the decoded reply and the quota its headers report (if any)."""
        data, headers = await post_json(
            self._http,
            path,
            body,
            headers=self._auth_headers(),
            time_limit=time_limit,
            retry=self._retry,
            provider=self._provider.name,
            model=model,
            secrets=self._secrets,
        )
        return data, parse_rate_limit_headers(headers)

    def _malformed(self, model: str, what: str) -> MalformedResponse:
        return MalformedResponse(
            f"reply is not the API's documented shape: {what}",
            provider=self._provider.name,
            model=model,
        )


def as_tokens(value: Any) -> int:
    """A token count from a usage block; 0 when absent or not a count."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


def optional_str(value: Any) -> str | None:
    """``value`` when it is a non-empty string, else ``None``."""
    return value if isinstance(value, str) and value else None
