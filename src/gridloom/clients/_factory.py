"""Pick the adapter that speaks a provider's API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import ModelConfig, ProviderConfig
from ..config._urls import redact_url
from ..storage import Location
from ._openai import OpenAIClient
from ._retry import RetryPolicy
from ._secret import Secret

if TYPE_CHECKING:  # imported when a provider or a model needs them, not by every run
    import httpx

    from ._anthropic import AnthropicClient
    from ._batch import BatchingClient, BatchPolling

__all__ = ["adapter_for", "batching_client"]


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
        from ._anthropic import AnthropicClient

        return AnthropicClient(http, provider=provider, api_key=api_key, retry=retry)
    return OpenAIClient(http, provider=provider, api_key=api_key, retry=retry)


def batching_client(
    adapter: OpenAIClient | AnthropicClient,
    model: ModelConfig,
    *,
    output: Location | None = None,
    polling: BatchPolling | None = None,
) -> BatchingClient:
    """The batch-mode client of a model with ``batch: true`` (see docs/batch.md).

    Args:
        adapter: the provider's adapter.
        model: the alias; its ``batch_max_size`` and ``batch_wait`` apply.
        output: the run's folder: jobs are recorded in ``batches/<alias>.json`` there, and a
            resumed run re-attaches to them; ``None`` (a preview) records nothing.
        polling: the poll schedule (default: :class:`BatchPolling`'s).

    Returns:
        The client; run it within ``async with client.running():``.
    """
    from ._batch import BatchingClient
    from ._batch_journal import BatchJournal

    kind = "openai" if isinstance(adapter, OpenAIClient) else "anthropic"
    # A simulated provider's URL is a new port each run: its type stands for where it is.
    # (Credentials in the URL are redacted: the journal is a file of the run directory.)
    where = redact_url(adapter.provider.endpoint or adapter.provider.type)
    journal = None if output is None else BatchJournal(output, model.alias, kind, where=where)
    return BatchingClient(adapter, model, journal=journal, polling=polling)
