"""Pick the adapter that speaks a provider's API."""

from __future__ import annotations

import httpx

from ..config import ProviderConfig
from ._anthropic import AnthropicClient
from ._openai import OpenAIClient
from ._retry import RetryPolicy
from ._secret import Secret

__all__ = ["adapter_for"]


def adapter_for(
    provider: ProviderConfig,
    http: httpx.AsyncClient,
    *,
    api_key: Secret | None,
    retry: RetryPolicy | None = None,
) -> OpenAIClient | AnthropicClient:
    """The adapter for ``provider.type``.

    ``openai`` and ``simulated`` providers (the simulated endpoint speaks the OpenAI API) get an
    :class:`OpenAIClient`; ``anthropic`` providers an :class:`AnthropicClient`.

    Args:
        provider: the provider's config.
        http: its shared client (see :func:`build_http_client`).
        api_key: its key (see :func:`api_key_from_env`), or ``None``.
        retry: the transport retry policy; ``RetryPolicy()`` when ``None``.

    Returns:
        A :class:`~gridloom.clients.ModelClient`.
    """
    if provider.type == "anthropic":
        return AnthropicClient(http, provider=provider, api_key=api_key, retry=retry)
    return OpenAIClient(http, provider=provider, api_key=api_key, retry=retry)
