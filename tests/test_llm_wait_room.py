"""A run leaves room for every request its models allow: max_llm_wait_tasks is raised to twice
the models' max_parallel_requests summed (a self-hosted model at 2,048 in flight got 1,024)."""

from __future__ import annotations

from gridloom.config import PipelineConfig, load_config
from gridloom.run._models import with_llm_wait_room


def pipeline(caps: list[int], llm_wait: int | None = None) -> PipelineConfig:
    run: dict[str, object] = {} if llm_wait is None else {"max_llm_wait_tasks": llm_wait}
    return load_config(
        {
            "providers": [{"name": "p", "type": "openai", "endpoint": "http://127.0.0.1:9/v1"}],
            "models": [
                {"alias": f"m{i}", "provider": "p", "model": f"x{i}", "max_parallel_requests": c}
                for i, c in enumerate(caps)
            ],
            "columns": [{"name": "t", "category": {"values": ["a"]}}],
            "run": run,
        }
    )


def test_raised_to_twice_the_summed_caps() -> None:
    """2,048 + 100 in flight allowed: 4,296 tasks may wait on the models."""
    assert with_llm_wait_room(pipeline([2048, 100])).max_llm_wait_tasks == 4296


def test_a_larger_setting_is_kept() -> None:
    """The default 1,024 stays when the models allow fewer; a larger setting stays too."""
    assert with_llm_wait_room(pipeline([16, 4])).max_llm_wait_tasks == 1024
    assert with_llm_wait_room(pipeline([600], llm_wait=5000)).max_llm_wait_tasks == 5000
