"""Opening the models a run uses: one HTTP client per provider, one handle per alias.

Providers of type ``simulated`` get gridloom's simulated endpoint, started for the run: over
real sockets on 127.0.0.1 (``transport: socket``) or mounted in-process (``transport: asgi``,
for runs on a virtual clock). Only providers that some column actually uses are opened, and a
missing API key fails here, before any row is generated.

Every handle of one :func:`open_models` shares one :class:`~gridloom.run.HealthMonitor`
(``handle.health``), built from the run's ``shutdown_*`` settings, which the run watches to
stop when a model keeps failing; and every limiter comes from one
:class:`~gridloom.throttle.ThrottleRegistry`, whose start-up ramps and slow starts
(``throttle.rampup_seconds``, ``slow_start_seconds``) the run drives as a service of its
nursery (``await nursery.start(registry.run)``).

The response cache (docs/cache.md) is opened here too, in a worker thread, unless the caller
says ``cache=False`` (``--no-cache``), ``GRIDLOOM_NO_CACHE`` is set, or no model or column
could use it; a cache file that cannot be opened is one warning, and the run goes on without.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import trio

from ..clients import (
    AnthropicClient,
    CacheScope,
    ModelClient,
    ModelHandle,
    OpenAIClient,
    ThrottledModelClient,
    api_key_from_env,
    batching_client,
    build_http_client,
    scope_digest,
)
from ..config import ModelConfig, PipelineConfig, ProviderConfig, RunConfig, SimulationConfig
from ..errors import ConfigError
from ..storage import location_of
from ..throttle import ThrottleRegistry, TokenBucket
from ._health import HealthMonitor

if TYPE_CHECKING:
    from ..clients import ResponseCache

__all__ = [
    "PROBE_REFUSALS",
    "PROBE_REFUSAL_WAIT_SECONDS",
    "cache_scope",
    "cache_wanted",
    "open_cache",
    "open_models",
    "serve_models",
    "used_aliases",
    "with_llm_wait_room",
]

log = logging.getLogger("gridloom.cache")

#: Capacity refusals after which a probe's request gives up (``check-models``).
PROBE_REFUSALS = 3
#: A probe's request gives up at once on a refusal asking it to wait longer than this.
PROBE_REFUSAL_WAIT_SECONDS = 10.0


def used_aliases(config: PipelineConfig) -> set[str]:
    """Model aliases referenced by some column."""
    return {alias for column in config.columns for alias in column.model_aliases().values()}


def cache_wanted(config: PipelineConfig, models: list[ModelConfig]) -> bool:
    """Whether some of ``models`` may use the response cache: one whose ``cache`` is not
    ``false``, or a column that turns it on; never with ``GRIDLOOM_NO_CACHE`` set."""
    if os.environ.get("GRIDLOOM_NO_CACHE"):
        return False
    if any(model.cache is not False for model in models):
        return True
    return any(getattr(column, "cache", None) for column in config.columns)


async def open_cache(stack: contextlib.AsyncExitStack) -> ResponseCache | None:
    """The response cache at its default place, opened in a worker thread and closed with
    ``stack``; ``None`` (after one warning) when it cannot be used. The cache's module (and
    sqlite3) loads here, so a run without the cache never imports it."""
    from ..clients._cache import CacheUnavailable, ResponseCache

    try:
        cache = await trio.to_thread.run_sync(ResponseCache)
    except CacheUnavailable as exc:
        log.warning("%s", exc)
        return None

    async def close() -> None:
        await trio.to_thread.run_sync(cache.close)

    stack.push_async_callback(close)
    return cache


def cache_scope(provider: ProviderConfig) -> CacheScope:
    """What a provider's answers depend on besides the request: its type, its endpoint (a
    simulated one's settings, its port changing each run), its extra body fields and its
    headers (credentials among them are not keyed on)."""
    if provider.type == "simulated":
        simulation = attrs.evolve(provider.simulation or SimulationConfig(), transport="socket")
        endpoint = "simulated:" + scope_digest(simulation)
    else:
        endpoint = provider.endpoint or ""
    return CacheScope(
        provider_type=provider.type,
        endpoint=endpoint,
        extra_body=dict(provider.extra_body),
        headers=dict(provider.headers),
    )


def _key_header(provider: ProviderConfig) -> str | None:
    """How ``provider``'s key is sent (a header name, for messages), or ``None`` without a key."""
    if not provider.api_key_env or provider.type == "simulated":
        return None
    if provider.api_key_header:
        return provider.api_key_header
    return "x-api-key" if provider.type == "anthropic" else "Authorization (Bearer)"


def _at_provider(error: ConfigError, index: int) -> ConfigError:
    """``error``, raised opening the client of ``providers[index]`` (whose fields it names as
    the provider's: ``api_key_env``), with its fields located from the config's root
    (``providers[1].api_key_env``), as the config's other errors are."""
    prefix = f"providers[{index}]"
    issues = [
        attrs.evolve(issue, field=f"{prefix}.{issue.field}" if issue.field else prefix)
        for issue in error.issues
    ]
    return type(error).from_issues(issues)


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
    config: PipelineConfig,
    *,
    aliases: set[str] | None = None,
    registry: ThrottleRegistry | None = None,
    health: HealthMonitor | None = None,
    cache: bool = True,
    output: str | os.PathLike[str] | None = None,
    probe: bool = False,
) -> AsyncIterator[dict[str, ModelHandle]]:
    """Open clients for the aliases the pipeline uses; yield a handle per alias.

    Aliases that point at the same (provider, model) share one concurrency limit: the smallest
    ``max_parallel_requests`` among them. Every handle reports its outcomes to one
    :class:`HealthMonitor` (``handle.health``, on the virtual or real trio clock), configured by
    ``config.run``'s ``shutdown_*`` settings unless ``health`` is given. The limiters come from
    ``registry`` (default: a new one for ``config.run.throttle``); with a start-up ramp or a slow
    start (``throttle.rampup_seconds``, ``slow_start_seconds``), the caller drives it:
    ``await nursery.start(registry.run)`` (without it a slow start grows only as answers come
    back).
    With ``cache`` (and see the module's notes), the handles share the response cache.
    A model with ``batch: true`` gets a :class:`~gridloom.clients.BatchingClient` instead of a
    throttled client (docs/batch.md); with ``output`` (the run's folder) its jobs are recorded
    there, so that a resumed run re-attaches to them instead of paying again.
    With ``probe`` (``check-models``), a request gives up after :data:`PROBE_REFUSALS`
    capacity refusals, or at once on one asking to wait more than
    :data:`PROBE_REFUSAL_WAIT_SECONDS`, rather than waiting the provider out as a run does.

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
            try:
                clients[name] = await _open_client(provider, served, stack)
            except ConfigError as exc:
                raise _at_provider(exc, config.providers.index(provider)) from None
        responses = (
            await open_cache(stack) if cache and models and cache_wanted(config, models) else None
        )
        caps: dict[tuple[str, str], int] = {}
        for model in models:
            key = (model.provider, model.model)
            caps[key] = min(caps.get(key, model.max_parallel_requests), model.max_parallel_requests)
        limiters = {key: trio.CapacityLimiter(cap) for key, cap in caps.items()}
        throttles = ThrottleRegistry(config.run.throttle) if registry is None else registry
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
            return throttles.budget(model.provider, model.model, kind, per_minute)

        monitor = (
            HealthMonitor.from_run_config(config.run, clock=trio.current_time)
            if health is None
            else health
        )
        probing: dict[str, Any] = (
            {
                "max_rate_limited_attempts": PROBE_REFUSALS,
                "max_refusal_wait": PROBE_REFUSAL_WAIT_SECONDS,
            }
            if probe
            else {}
        )
        handles: dict[str, ModelHandle] = {}
        location = None
        if output is not None and any(m.batch for m in models):
            location = await trio.to_thread.run_sync(location_of, output)
        for model in models:
            key = (model.provider, model.model)
            chat = throttles.limiter(model.provider, model.model, "chat", caps[key])
            embedding = throttles.limiter(model.provider, model.model, "embedding", caps[key])
            throttled: ModelClient = ThrottledModelClient(
                clients[model.provider],
                chat=chat,
                embedding=embedding,
                capacity_statuses=config.run.throttle.capacity_statuses,
                **probing,
                requests=budget(model, "requests"),
                tokens=budget(model, "tokens"),
            )
            adapter = clients[model.provider]
            if model.batch and isinstance(adapter, OpenAIClient | AnthropicClient):
                batching = batching_client(adapter, model, output=location)
                throttled = await stack.enter_async_context(batching.running())
            monitor.register(
                model.alias,
                model=model.model,
                provider=model.provider,
                api_key_env=providers[model.provider].api_key_env,
                key_header=_key_header(providers[model.provider]),
            )
            handles[model.alias] = ModelHandle(
                model,
                throttled,
                limiters[key],
                throttles={"chat": chat, "embedding": embedding},
                health=monitor,
                cache=responses,
                scope=cache_scope(providers[model.provider]),
            )
        yield handles


async def serve_models(
    config: PipelineConfig,
    *,
    registry: ThrottleRegistry,
    health: HealthMonitor,
    stop: trio.Event,
    cache: bool = True,
    output: str | os.PathLike[str] | None = None,
    probe: bool = False,
    task_status: trio.TaskStatus[dict[str, ModelHandle]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The models as a service of a run's nursery: open them (:func:`open_models`; ``cache``:
    with the response cache; ``output``: where batch jobs are recorded), report the handles as
    started, and close them once ``stop`` is set — normally, not cancelled, so connections and
    a simulated endpoint shut down cleanly; ``probe``: see :func:`open_models`)."""
    async with open_models(
        config, registry=registry, health=health, cache=cache, output=output, probe=probe
    ) as handles:
        task_status.started(handles)
        await stop.wait()


def with_llm_wait_room(cfg: PipelineConfig) -> RunConfig:
    """``cfg.run`` with ``max_llm_wait_tasks`` raised, if need be, to twice the models'
    ``max_parallel_requests`` summed: below that, some of the requests the models allow could
    never be in flight (their lanes dispatch up to twice a model's cap)."""
    room = 2 * sum(model.max_parallel_requests for model in cfg.models)
    if cfg.run.max_llm_wait_tasks >= room:
        return cfg.run
    return attrs.evolve(cfg.run, max_llm_wait_tasks=room)
