"""How an answer ended: partial answers (abort, error, content_filter) are not stored as
complete; answers cut at max_tokens are kept and counted."""

from __future__ import annotations

from typing import Any

import pytest

from gridloom.errors import EmptyAnswer, IncompleteAnswer, is_retryable
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
