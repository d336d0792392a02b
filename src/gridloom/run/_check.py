"""``check_models``: one tiny request to every model a pipeline uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from ..clients import (
    ChatRequest,
    EmbeddingRequest,
    Message,
    ModelHandle,
    TransportPlan,
    transport_plan,
)
from ..config import EmbeddingColumn, PipelineConfig
from ..errors import EmptyAnswer
from ._models import used_aliases

__all__ = ["probe_models"]


async def probe_models(
    config: PipelineConfig, handles: Mapping[str, ModelHandle]
) -> list[dict[str, Any]]:
    """Send one tiny request per handle; report latency or the error, per alias, and the
    transport its provider's requests go through and why (``transport``: ``fast``, ``httpx``
    or ``asgi``; ``transport_reason``, e.g. ``proxy http://proxy:3128 from HTTPS_PROXY``).

    An alias only embedding columns use gets an embedding request, any other a chat request
    with no ``max_tokens``: a reasoning model spends its tokens on reasoning before it answers,
    and OpenAI's refuse the parameter outright. A model that still runs out of tokens before
    answering (``finish_reason: length``) is reachable and serving, so it passes, with a
    ``note`` saying its columns will need a larger ``max_tokens``.

    The models are probed concurrently, each within its own ``timeout``; the entries come in
    the aliases' sorted order, as before.
    """
    providers = {p.name: p for p in config.providers}
    chat_aliases = {
        alias
        for column in config.columns
        if not isinstance(column, EmbeddingColumn)
        for alias in column.model_aliases().values()
    }
    embedding_only = used_aliases(config) - chat_aliases
    ordered = sorted(handles.items())
    results: list[dict[str, Any]] = [{} for _ in ordered]

    async def probe(index: int, alias: str, handle: ModelHandle) -> None:
        plan = transport_plan(providers[handle.config.provider])
        results[index] = await _probe(alias, handle, plan, embedding=alias in embedding_only)

    # All at once, each bounded by its own model's timeout: a check of N models that do not
    # answer takes one timeout, not N. The report keeps the aliases' order.
    async with trio.open_nursery() as nursery:
        for index, (alias, handle) in enumerate(ordered):
            nursery.start_soon(probe, index, alias, handle)
    return results


async def _probe(
    alias: str, handle: ModelHandle, plan: TransportPlan, *, embedding: bool
) -> dict[str, Any]:
    """One model's entry: one tiny request, its latency or its error (never raised)."""
    started = trio.current_time()
    entry: dict[str, Any] = {
        "alias": alias,
        "provider": handle.config.provider,
        "model": handle.model,
        "transport": plan.kind,
        "transport_reason": plan.reason,
    }
    try:
        if embedding:
            await handle.embed(
                EmbeddingRequest(model=handle.model, inputs=("ok",), timeout=handle.config.timeout)
            )
        else:
            await handle.chat(
                ChatRequest(
                    model=handle.model,
                    messages=(Message(role="user", content="Reply with OK."),),
                    timeout=handle.config.timeout,
                )
            )
    except EmptyAnswer as exc:
        if exc.reason != "length":
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        else:
            entry.update(
                ok=True,
                latency_s=round(trio.current_time() - started, 4),
                note=(
                    "answered, but ran out of tokens before any text (finish_reason:"
                    " length): give its columns a larger max_tokens"
                ),
            )
    except Exception as exc:  # reported, not raised: the point is to see them all
        entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    else:
        entry.update(ok=True, latency_s=round(trio.current_time() - started, 4))
    return entry
