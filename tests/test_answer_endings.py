"""How an answer ended: partial answers (abort, error, content_filter) are not stored as
complete; answers cut at max_tokens are kept and counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import gridloom as gl
from gridloom.errors import EmptyAnswer, IncompleteAnswer, is_retryable
from gridloom.progress import render_summary
from tests.test_content_parts import REQUEST, client


def reply(content: Any, finish: str | None) -> dict[str, Any]:
    return {
        "choices": [
            {"message": {"role": "assistant", "content": content}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }


@pytest.mark.parametrize(
    ("finish", "retryable", "text"),
    [
        ("abort", True, "the server stopped generating after 11 characters (finish_reason: abort)"),
        ("error", True, "(finish_reason: error): it gave up mid-answer"),
        ("content_filter", False, "content filter cut it after 11 characters"),
    ],
)
def test_partial_answers_are_refused(finish: str, retryable: bool, text: str) -> None:
    """Content with finish_reason abort or error (the server gave up: retryable) or
    content_filter (cut by a filter: final) is IncompleteAnswer, usage kept (was: stored as
    a complete answer)."""
    with pytest.raises(IncompleteAnswer) as info:
        client().decode_chat(reply("partial ans", finish), REQUEST)
    assert isinstance(info.value, EmptyAnswer)
    assert is_retryable(info.value) == retryable
    assert info.value.reason == finish
    assert text in str(info.value)
    assert (info.value.input_tokens, info.value.output_tokens) == (3, 4)


@pytest.mark.parametrize("finish", ["stop", "length", None, "tool_calls", "eos"])
def test_other_endings_with_content_are_kept(finish: str | None) -> None:
    """Content that ended otherwise (length included: kept, truncated) is the answer."""
    response = client().decode_chat(reply("an answer", finish), REQUEST)
    assert (response.text, response.finish_reason) == ("an answer", finish)


def _pipeline(max_tokens: int) -> gl.PipelineConfig:
    return gl.load_config(
        {
            "providers": [{"name": "sim", "type": "simulated", "simulation": {"seed": 3}}],
            "models": [{"alias": "m", "provider": "sim", "model": "w", "max_tokens": max_tokens}],
            "columns": [
                {"name": "topic", "category": {"values": ["rivers", "volcanoes"]}},
                {"name": "summary", "llm_text": {"model": "m", "prompt": "Explain {{ topic }}."}},
                {"name": "short", "llm_text": {"model": "m", "prompt": "Name {{ topic }}."}},
            ],
            "run": {"row_group_size": 4, "seed": 5},
        }
    )


async def test_truncated_answers_are_counted_per_column(tmp_path: Path) -> None:
    """Answers cut at max_tokens are kept and counted per column, in the summary, its
    rendering and metadata.json, and survive reading the run back (was: 'complete', no
    count)."""
    result = await gl.acreate(_pipeline(4), num_records=10, output_dir=tmp_path / "out")
    assert result.num_rows == 10
    columns = result.summary["columns"]
    assert columns["summary"]["truncated"] == 10
    assert "truncated" not in columns["topic"]
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert metadata["counts"]["summary"]["truncated"] == 10
    assert sum(g["counts"]["summary"]["truncated"] for g in metadata["row_groups"].values()) == 10
    text = render_summary(result.summary)
    assert "summary: 10 truncated (finish_reason length" in text
    whole = await gl.acreate(_pipeline(4000), num_records=4, output_dir=tmp_path / "whole")
    assert all("truncated" not in c for c in whole.summary["columns"].values())
    assert "truncated" not in render_summary(whole.summary).replace(str(tmp_path), "")


def test_the_anthropic_max_tokens_default_is_documented() -> None:
    """The reference says what an Anthropic request without max_tokens gets (was: 'the
    model's', though 1024 is sent)."""
    from gridloom.clients._anthropic import DEFAULT_MAX_TOKENS
    from gridloom.config import ModelConfig
    from gridloom.config._llm import LLMColumn

    for config in (LLMColumn, ModelConfig):
        assert (
            f"anthropic`` provider, whose API requires one: {DEFAULT_MAX_TOKENS} is sent"
            in " ".join((config.__doc__ or "").split())
        )
