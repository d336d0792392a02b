"""OpenAI-compatible replies whose ``message.content`` is a list of parts (Mistral)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.clients import ChatRequest, Message, OpenAIClient, build_http_client
from gridloom.clients._content_parts import MAX_CONTENT_PARTS
from gridloom.config import ModelConfig, ProviderConfig
from gridloom.errors import EmptyAnswer, MalformedResponse

PROVIDER = ProviderConfig(name="mi", endpoint="http://mistral.test/v1")
MODEL = ModelConfig(alias="m", provider="mi", model="magistral")
REQUEST = ChatRequest(model="magistral", messages=[Message(role="user", content="Hi")])


def client() -> OpenAIClient:
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    http = build_http_client(PROVIDER, [MODEL], transport=transport)
    return OpenAIClient(http, provider=PROVIDER, api_key=None)


def reply(content: Any, **message: Any) -> dict[str, Any]:
    return {
        "choices": [
            {
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }


def test_magistral_content_parts_are_answer_and_reasoning() -> None:
    """Mistral's thinking part (a list of text parts) is the reasoning, text parts the answer
    (was: MalformedResponse 'is not a string', retried until the run stopped)."""
    content = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
        {"type": "text", "text": "The "},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "answer."},
    ]
    response = client().decode_chat(reply(content), REQUEST)
    assert (response.text, response.reasoning) == ("The answer.", "hmm")


def test_separate_reasoning_field_wins_over_thinking_parts() -> None:
    """reasoning_content, when sent, stays the reasoning; a thinking part given as a string
    is read too."""
    content = [{"type": "thinking", "thinking": "parts"}, {"type": "text", "text": "A."}]
    c = client()
    assert c.decode_chat(reply(content, reasoning_content="field"), REQUEST).reasoning == "field"
    assert c.decode_chat(reply(content), REQUEST).reasoning == "parts"


def test_parts_without_text_are_an_empty_answer() -> None:
    """Only thinking parts (no text part) is the usual EmptyAnswer, not a malformed reply."""
    content = [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}]
    with pytest.raises(EmptyAnswer) as info:
        client().decode_chat(reply(content), REQUEST)
    assert info.value.reason == "empty"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (42, "neither a string nor a list of parts"),
        (["text"], "'choices[0].message.content[0]' is not an object"),
        ([{"type": "text"}], "text part without a 'text' string"),
        ([{"type": "thinking", "thinking": 3}], "neither text nor a list of parts"),
        ([{"type": "text", "text": "a"}] * (MAX_CONTENT_PARTS + 1), "more than 1024"),
        (
            [{"type": "thinking", "thinking": [{"type": "text", "text": ""}] * 1025}],
            "content[0].thinking' holds 1025 parts",
        ),
    ],
)
def test_malformed_part_lists_are_refused_with_the_place(content: Any, message: str) -> None:
    """A content of another type, a part that is not an object or lacks its text, or a list
    over MAX_CONTENT_PARTS is MalformedResponse naming where."""
    with pytest.raises(MalformedResponse) as info:
        client().decode_chat(reply(content), REQUEST)
    assert message in str(info.value)


_text = st.text(max_size=20)
_parts = st.lists(
    st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, _text),
        st.builds(lambda t: {"type": "thinking", "thinking": t}, _text),
        st.builds(
            lambda ts: {"type": "thinking", "thinking": [{"type": "text", "text": t} for t in ts]},
            st.lists(_text, max_size=3),
        ),
        st.builds(lambda t: {"type": "reasoning", "reasoning": t}, _text),
        st.fixed_dictionaries({"type": st.sampled_from(["image_url", "reference", "audio"])}),
    ),
    max_size=8,
)


def _expected(parts: list[dict[str, Any]]) -> tuple[str, str | None]:
    text = "".join(p["text"] for p in parts if p["type"] == "text")
    thoughts = []
    for p in parts:
        if p["type"] in ("thinking", "reasoning"):
            value = p[p["type"]]
            thoughts += [value] if isinstance(value, str) else [v["text"] for v in value]
    return text, "".join(thoughts) or None


@given(_parts)
def test_any_part_list_splits_into_text_and_reasoning(parts: list[dict[str, Any]]) -> None:
    """Any list of text, thinking, reasoning and unknown parts: the text parts joined are the
    answer and the thinking parts the reasoning, or EmptyAnswer when the text is blank."""
    text, reasoning = _expected(parts)
    if not text.strip():
        with pytest.raises(EmptyAnswer):
            client().decode_chat(reply(parts), REQUEST)
        return
    response = client().decode_chat(reply(parts), REQUEST)
    assert (response.text, response.reasoning) == (text, reasoning)
