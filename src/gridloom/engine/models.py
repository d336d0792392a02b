"""Opening the models a run uses: one HTTP client per provider, one handle per alias.

Providers of type ``simulated`` get gridloom's simulated endpoint, started for the run: over
real sockets on 127.0.0.1 (``transport: socket``) or mounted in-process (``transport: asgi``,
for runs on a virtual clock). Only providers that some column actually uses are opened, and a
missing API key fails here, before any row is generated.

Every handle of one :func:`open_models` shares one :class:`~gridloom.engine.health.HealthMonitor`
(``handle.health``), built from the run's ``shutdown_*`` settings, which whoever runs the
scheduler watches to stop the run when a model keeps failing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import trio

from ..clients import (
    AnthropicClient,
    ChatRequest,
    EmbeddingRequest,
    Message,
    ModelClient,
    ModelHandle,
    OpenAIClient,
    ThrottledModelClient,
    api_key_from_env,
    build_http_client,
    transport_plan,
)
from ..config import (
    EmbeddingColumn,
    ModelConfig,
    PipelineConfig,
    ProviderConfig,
    SimulationConfig,
)
from ..throttle import ThrottleRegistry, TokenBucket
from .health import HealthMonitor

__all__ = ["check_models", "open_models", "used_aliases"]


def used_aliases(config: PipelineConfig) -> set[str]:
    """Model aliases referenced by some column."""
    return {alias for column in config.columns for alias in column.model_aliases().values()}


async def _open_client(
    provider: ProviderConfig, models: list[ModelConfig], stack: contextlib.AsyncExitStack
) -> ModelClient:
    if provider.type == "simulated":
        # Imported here: the simulated endpoint (and its HTTP server) loads only when used.
        from ..simulated import SimulatedApp, serve_simulated

        simulation = provider.simulation or SimulationConfig()
        if simulation.transport == "asgi":
            app = SimulatedApp(simulation)
            http = build_http_client(
                provider,
                models,
                transport=httpx.ASGITransport(app=app),
                base_url="http://simulated.invalid/v1",
            )
        else:
            server = await stack.enter_async_context(serve_simulated(simulation))
            http = build_http_client(provider, models, base_url=server.url)
        stack.push_async_callback(http.aclose)
        return OpenAIClient(http, provider=provider, api_key=None)
    api_key = api_key_from_env(provider)
    http = build_http_client(provider, models)
    stack.push_async_callback(http.aclose)
    if provider.type == "anthropic":
        return AnthropicClient(http, provider=provider, api_key=api_key)
    return OpenAIClient(http, provider=provider, api_key=api_key)


@contextlib.asynccontextmanager
async def open_models(
    config: PipelineConfig, *, aliases: set[str] | None = None
) -> AsyncIterator[dict[str, ModelHandle]]:
    """Open clients for the aliases the pipeline uses; yield a handle per alias.

    Aliases that point at the same (provider, model) share one concurrency limit: the smallest
    ``max_parallel_requests`` among them. Every handle reports its outcomes to one
    :class:`HealthMonitor` (``handle.health``, on the virtual or real trio clock), configured by
    ``config.run``'s ``shutdown_*`` settings.

    Raises:
        ConfigError: a provider's API key variable is not set.
    """
    wanted = used_aliases(config) if aliases is None else aliases
    models = [m for m in config.models if m.alias in wanted]
    providers = {p.name: p for p in config.providers}
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, ModelClient] = {}
        for name in sorted({m.provider for m in models}):
            provider = providers[name]
            served = [m for m in config.models if m.provider == name]
            clients[name] = await _open_client(provider, served, stack)
        caps: dict[tuple[str, str], int] = {}
        for model in models:
            key = (model.provider, model.model)
            caps[key] = min(caps.get(key, model.max_parallel_requests), model.max_parallel_requests)
        limiters = {key: trio.CapacityLimiter(cap) for key, cap in caps.items()}
        registry = ThrottleRegistry(config.run.throttle)
        # Aliases of one (provider, model) share its budgets: the smallest published one.
        smallest: dict[tuple[str, str, str], float] = {}
        for model in models:
            for kind, value in (
                ("requests", model.requests_per_minute),
                ("tokens", model.tokens_per_minute),
            ):
                if value is not None:
                    slot = (model.provider, model.model, kind)
                    smallest[slot] = min(smallest.get(slot, value), value)

        def budget(model: ModelConfig, kind: str) -> TokenBucket | None:
            per_minute = smallest.get((model.provider, model.model, kind))
            return registry.budget(model.provider, model.model, kind, per_minute)

        health = HealthMonitor.from_run_config(config.run, clock=trio.current_time)
        handles: dict[str, ModelHandle] = {}
        for model in models:
            key = (model.provider, model.model)
            chat = registry.limiter(model.provider, model.model, "chat", caps[key])
            embedding = registry.limiter(model.provider, model.model, "embedding", caps[key])
            throttled = ThrottledModelClient(
                clients[model.provider],
                chat=chat,
                embedding=embedding,
                capacity_statuses=config.run.throttle.capacity_statuses,
                requests=budget(model, "requests"),
                tokens=budget(model, "tokens"),
            )
            health.register(
                model.alias,
                model=model.model,
                provider=model.provider,
                api_key_env=providers[model.provider].api_key_env,
            )
            handles[model.alias] = ModelHandle(
                model,
                throttled,
                limiters[key],
                throttles={"chat": chat, "embedding": embedding},
                health=health,
            )
        if config.run.throttle.rampup_seconds <= 0:
            yield handles
            return
        async with trio.open_nursery() as nursery:  # drives the start-up ramps
            await nursery.start(registry.run)
            yield handles
            nursery.cancel_scope.cancel()


async def check_models(config: PipelineConfig) -> list[dict[str, Any]]:
    """Send one tiny request per used alias; report latency or the error, per alias, and the
    transport its provider's requests go through and why (``transport``: ``fast``, ``httpx``
    or ``asgi``; ``transport_reason``, e.g. ``proxy http://proxy:3128 from HTTPS_PROXY``)."""
    providers = {p.name: p for p in config.providers}
    chat_aliases = {
        alias
        for column in config.columns
        if not isinstance(column, EmbeddingColumn)
        for alias in column.model_aliases().values()
    }
    embedding_only = used_aliases(config) - chat_aliases
    results: list[dict[str, Any]] = []
    async with open_models(config) as handles:
        for alias, handle in sorted(handles.items()):
            started = trio.current_time()
            plan = transport_plan(providers[handle.config.provider])
            entry: dict[str, Any] = {
                "alias": alias,
                "provider": handle.config.provider,
                "model": handle.model,
                "transport": plan.kind,
                "transport_reason": plan.reason,
            }
            try:
                if alias in embedding_only:
                    await handle.embed(
                        EmbeddingRequest(
                            model=handle.model, inputs=("ok",), timeout=handle.config.timeout
                        )
                    )
                else:
                    await handle.chat(
                        ChatRequest(
                            model=handle.model,
                            messages=(Message(role="user", content="Reply with OK."),),
                            max_tokens=8,
                            timeout=handle.config.timeout,
                        )
                    )
            except Exception as exc:  # reported, not raised: the point is to see them all
                entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            else:
                entry.update(ok=True, latency_s=round(trio.current_time() - started, 4))
            results.append(entry)
    return results
