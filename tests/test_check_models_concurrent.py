"""check-models probes every model at once, each within its own timeout: N models that never
answer take one timeout, not N, and the report keeps the aliases' order."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import gridloom as gl
from gridloom.config import structure_pipeline

from .test_shutdown import read_request, serving

TIMEOUT = 5.0


async def never_answer(stream: trio.SocketStream) -> None:
    """Read the request, then say nothing, ever."""
    await read_request(stream)
    await trio.sleep_forever()


def hanging_pipeline(url: str, aliases: list[str]) -> gl.PipelineConfig:
    """One text column per alias, every alias on the endpoint at ``url``."""
    return structure_pipeline(
        {
            "providers": [{"name": "cloud", "endpoint": url}],
            "models": [
                {"alias": alias, "provider": "cloud", "model": f"m-{alias}", "timeout": TIMEOUT}
                for alias in aliases
            ],
            "columns": [
                {"name": f"c_{alias}", "llm_text": {"model": alias, "prompt": "Say hi."}}
                for alias in aliases
            ],
        }
    )


async def _check(aliases: list[str]) -> tuple[float, list[dict[str, Any]]]:
    async with serving(never_answer) as url:
        started = trio.current_time()
        results = await gl.acheck_models(hanging_pipeline(url, aliases))
        return trio.current_time() - started, results


@pytest.mark.parametrize("count", [2, 3, 7])
async def test_hanging_models_take_one_timeout_not_n(count: int, autojump_clock: Any) -> None:
    """``count`` models that never answer take exactly one timeout, as one model does."""
    one, _ = await _check(["a"])
    assert one == TIMEOUT
    aliases = [f"m{i}" for i in reversed(range(count))]
    elapsed, results = await _check(aliases)
    assert elapsed == TIMEOUT  # was count * TIMEOUT, one probe after the other
    assert [row["alias"] for row in results] == sorted(aliases)
    for row in results:
        assert row["ok"] is False
        assert "Timeout" in row["error"], row["error"]
        assert row["provider"] == "cloud"
        assert row["model"] == f"m-{row['alias']}"


async def test_one_hanging_model_does_not_hold_up_the_others(autojump_clock: Any) -> None:
    """A model that answers is reported as passed next to one that hangs; its latency is its
    own, not the hanging one's timeout."""
    async with serving(never_answer) as url:
        config = structure_pipeline(
            {
                "providers": [
                    {"name": "cloud", "endpoint": url},
                    {
                        "name": "sim",
                        "type": "simulated",
                        "simulation": {
                            "transport": "asgi",
                            "models": {"fast": {"latency": {"fixed": 0.5}}},
                        },
                    },
                ],
                "models": [
                    {"alias": "slow", "provider": "cloud", "model": "m", "timeout": TIMEOUT},
                    {"alias": "quick", "provider": "sim", "model": "fast"},
                ],
                "columns": [
                    {"name": "a", "llm_text": {"model": "slow", "prompt": "hi"}},
                    {"name": "b", "llm_text": {"model": "quick", "prompt": "hi"}},
                ],
            }
        )
        results = await gl.acheck_models(config)
    assert [row["alias"] for row in results] == ["quick", "slow"]
    quick, slow = results
    assert quick["ok"] is True
    assert quick["latency_s"] < TIMEOUT
    assert slow["ok"] is False
