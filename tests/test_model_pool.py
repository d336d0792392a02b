"""Opening a run's models: shared caps, independent throttles, missing keys."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from gridloom.clients import ChatRequest, EmbeddingRequest, Message
from gridloom.config import structure_pipeline
from gridloom.errors import ConfigError
from gridloom.run import open_models


def pipeline(
    models: list[dict[str, Any]], simulation: dict[str, Any], run: dict[str, Any] | None = None
) -> Any:
    return structure_pipeline(
        ({"run": run} if run else {})
        | {
            "providers": [
                {
                    "name": "sim",
                    "type": "simulated",
                    "simulation": simulation | {"transport": "asgi"},
                }
            ],
            "models": models,
            "columns": [
                {"name": f"c{i}", "llm_text": {"model": m["alias"], "prompt": "hi"}}
                for i, m in enumerate(models)
            ],
        }
    )


def ask(model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=(Message(role="user", content="hi"),))


async def test_aliases_of_one_model_share_the_smallest_cap(autojump_clock: Any) -> None:
    """Two aliases of one (provider, model) share one cap (the smaller) and one throttle."""
    config = pipeline(
        [
            {"alias": "x", "provider": "sim", "model": "m", "max_parallel_requests": 4},
            {"alias": "y", "provider": "sim", "model": "m", "max_parallel_requests": 6},
        ],
        {"default": {"latency": {"fixed": 1.0}}},
    )
    async with open_models(config) as handles:
        x, y = handles["x"], handles["y"]
        assert x.limiter is y.limiter
        assert x.limiter.total_tokens == 4
        assert x.throttles["chat"] is y.throttles["chat"]
        assert x.throttles["chat"] is not x.throttles["embedding"]
        async with trio.open_nursery() as nursery:
            for handle in (x, y) * 4:
                nursery.start_soon(handle.chat, ask("m"))
        # Eight requests through one cap of 4 at 1 s each.
        assert trio.current_time() == 2.0


async def test_a_429_storm_on_one_model_does_not_slow_another(autojump_clock: Any) -> None:
    """Model a (capacity 1) is throttled hard; model b on the same provider is not slowed
    (no slow start: both open at their cap of 10)."""
    config = pipeline(
        [
            {"alias": "a", "provider": "sim", "model": "a", "max_parallel_requests": 10},
            {"alias": "b", "provider": "sim", "model": "b", "max_parallel_requests": 10},
        ],
        {
            "default": {"latency": {"fixed": 1.0}},
            "models": {"a": {"latency": {"fixed": 1.0}, "capacity": 1, "retry_after": 5.0}},
        },
        run={"throttle": {"slow_start_seconds": 0}},
    )
    finished_b: list[float] = []

    async def ask_b(handle: Any) -> None:
        await handle.chat(ask("b"))
        finished_b.append(trio.current_time())

    async with open_models(config) as handles:
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(handles["a"].chat, ask("a"))
                nursery.start_soon(ask_b, handles["b"])
        a_usage, b_usage = handles["a"].usage(), handles["b"].usage()
        # The counts progress reads at every poll are usage()'s, without building it.
        for handle, usage in ((handles["a"], a_usage), (handles["b"], b_usage)):
            assert (handle.requests, handle.rate_limited) == (usage.requests, usage.rate_limited)
        history = handles["a"].throttles["chat"].controller.history()
    assert a_usage.throttle["chat"]["history"] == [[round(t, 6), lim, n] for t, lim, n in history]
    assert finished_b == [1.0] * 10
    assert b_usage.rate_limited == 0
    assert a_usage.rate_limited > 0
    assert a_usage.succeeded == 10
    assert a_usage.throttle["chat"]["limit"] < 10


async def test_embeddings_adapt_apart_from_chat(autojump_clock: Any) -> None:
    """The embedding domain has its own limiter beneath the same cap."""
    config = pipeline(
        [{"alias": "e", "provider": "sim", "model": "m", "max_parallel_requests": 3}],
        {"default": {"latency": {"fixed": 0.5}}},
    )
    async with open_models(config) as handles:
        handle = handles["e"]
        await handle.embed(EmbeddingRequest(model="m", inputs=("x",)))
        usage = handle.usage()
    assert set(usage.throttle) == {"embedding"}
    assert usage.throttle["embedding"]["cap"] == 3


async def test_a_missing_api_key_fails_before_any_request() -> None:
    """A provider whose key variable is unset fails when the models are opened."""
    config = structure_pipeline(
        {
            "providers": [
                {
                    "name": "cloud",
                    "endpoint": "http://127.0.0.1:9/v1",
                    "api_key_env": "GRIDLOOM_TEST_KEY_THAT_IS_NOT_SET",
                }
            ],
            "models": [{"alias": "w", "provider": "cloud", "model": "m"}],
            "columns": [{"name": "t", "llm_text": {"model": "w", "prompt": "hi"}}],
        }
    )
    with pytest.raises(ConfigError, match="GRIDLOOM_TEST_KEY_THAT_IS_NOT_SET"):
        async with open_models(config):
            pass


async def test_latency_is_the_models_own_without_queueing(autojump_clock: Any) -> None:
    """Reported latency is the time from passing the limits to the answer: 16 requests to a
    model serving 2 at once take 8 s in all, yet each one's latency is its 1 s; throttle
    queueing and 429 retries are not counted as latency."""
    config = pipeline(
        [{"alias": "x", "provider": "sim", "model": "m", "max_parallel_requests": 8}],
        {"default": {"latency": {"fixed": 1.0}, "capacity": 2, "retry_after": 0.5}},
    )
    async with open_models(config) as handles:
        x = handles["x"]
        async with trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(x.chat, ask("m"))
        usage = x.usage()
    assert trio.current_time() >= 8.0
    assert usage.rate_limited > 0
    assert usage.mean_latency == usage.p95_latency == 1.0
