"""The Anthropic client enforces ``ChatRequest.response_format`` with a forced tool (or, with
extended thinking on, with the schema in the system prompt), over httpx.MockTransport."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gridloom.clients import (
    AnthropicClient,
    ChatRequest,
    Message,
    ResponseFormat,
    Secret,
    build_http_client,
)
from gridloom.config import ProviderConfig

FACTS = {"type": "object", "properties": {"facts": {"type": "array"}}, "required": ["facts"]}
LIST = {"type": "array", "items": {"type": "integer"}}


def provider(**extra_body: Any) -> ProviderConfig:
    return ProviderConfig(
        name="an", type="anthropic", endpoint="http://anthropic.test/v1", extra_body=extra_body
    )


async def exchange(
    request: ChatRequest, reply: dict[str, Any], **extra_body: Any
) -> tuple[dict[str, Any], str]:
    """Send ``request``; the body that went out and the response text that came back."""
    sent: list[Any] = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(http_request.content))
        return httpx.Response(200, json=reply)

    config = provider(**extra_body)
    http = build_http_client(config, [], transport=httpx.MockTransport(handler))
    async with http:
        client = AnthropicClient(http, provider=config, api_key=Secret("sk-test"))
        response = await client.chat(request)
    return sent[0], response.text


def message(*blocks: dict[str, Any], stop: str = "tool_use") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": list(blocks),
        "stop_reason": stop,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


def ask(schema: dict[str, Any], **extra_body: Any) -> ChatRequest:
    return ChatRequest(
        model="claude-x",
        messages=[Message(role="system", content="Be exact."), Message(role="user", content="?")],
        response_format=ResponseFormat(name="facts", schema=schema),
        extra_body=extra_body,
    )


async def test_schema_is_a_forced_tool_and_its_input_is_the_answer() -> None:
    """The schema goes as one tool's ``input_schema`` with ``tool_choice`` forcing it; the
    ``tool_use`` input comes back as JSON text."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "facts", "input": {"facts": ["a"]}}
    body, text = await exchange(ask(FACTS), message(call))
    assert body["tools"] == [
        {
            "name": "facts",
            "description": "Record the answer: the tool's input is the whole answer.",
            "input_schema": FACTS,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "facts"}
    assert body["system"] == "Be exact."
    assert json.loads(text) == {"facts": ["a"]}


async def test_a_schema_that_is_not_an_object_is_wrapped() -> None:
    """A tool's input is an object: a schema of another type is wrapped as its property
    ``value``, and unwrapped from the answer."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "facts", "input": {"value": [1, 2]}}
    body, text = await exchange(ask(LIST), message(call))
    assert body["tools"][0]["input_schema"] == {
        "type": "object",
        "properties": {"value": LIST},
        "required": ["value"],
        "additionalProperties": False,
    }
    assert json.loads(text) == [1, 2]


async def test_with_extended_thinking_the_schema_goes_in_the_system_prompt() -> None:
    """Anthropic forbids a forced tool with thinking on (from the request's or the provider's
    ``extra_body``): no tool is sent, the system prompt ends with the schema, and the text
    answer is returned as it is."""
    thinking = {"type": "enabled", "budget_tokens": 1024}
    reply = message({"type": "text", "text": '{"facts": []}'}, stop="end_turn")
    for request, extra in (
        (ask(FACTS, thinking=thinking), {}),
        (ask(FACTS), {"thinking": thinking}),
    ):
        body, text = await exchange(request, reply, **extra)
        assert "tools" not in body
        assert "tool_choice" not in body
        schema_text = json.dumps(FACTS, indent=2)
        assert body["system"] == (
            "Be exact.\n\nRespond with JSON only, valid against this JSON Schema:\n"
            f"```json\n{schema_text}\n```"
        )
        assert text == '{"facts": []}'


async def test_thinking_disabled_still_forces_the_tool() -> None:
    """``thinking: {type: disabled}`` is not thinking: the tool is forced."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "facts", "input": {"facts": []}}
    body, _ = await exchange(ask(FACTS, thinking={"type": "disabled"}), message(call))
    assert body["tool_choice"] == {"type": "tool", "name": "facts"}


async def test_without_a_tool_call_the_text_is_returned() -> None:
    """A reply that ignores the tool (no ``tool_use`` block) gives its text, for the
    structured generator to judge and correct."""
    reply = message({"type": "text", "text": "no JSON here"}, stop="end_turn")
    _, text = await exchange(ask(FACTS), reply)
    assert text == "no JSON here"


@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    )
)
@settings(max_examples=60, deadline=None)
async def test_a_tool_input_sent_as_json_text_is_read_as_its_object(value: Any) -> None:
    """Some gateways (Bedrock or LiteLLM proxies) send a ``tool_use`` block's ``input`` as
    its JSON text: it is read as the object it holds, for a forced schema tool, wrapped or
    not, the same answer as the object itself (was: refused, then corrected twice)."""
    for schema, tool_input in ((FACTS, {"facts": value}), (LIST, {"value": value})):
        direct = {"type": "tool_use", "id": "t1", "name": "facts", "input": tool_input}
        as_text = {**direct, "input": json.dumps(tool_input)}
        _, expected = await exchange(ask(schema), message(direct))
        _, got = await exchange(ask(schema), message(as_text))
        assert json.loads(got) == json.loads(expected)


@settings(max_examples=40, deadline=None)
@given(
    first=st.dictionaries(st.sampled_from(["facts", "x"]), st.integers(), min_size=1),
    second=st.dictionaries(st.sampled_from(["facts", "x"]), st.integers(), min_size=1),
)
@example(first={"facts": 1}, second={"facts": 1})
@example(first={"facts": 0, "x": 0}, second={"x": 0, "facts": 0})  # key order is no difference
@example(first={"facts": 1}, second={"facts": True})
async def test_two_answers_to_the_forced_tool_agree_or_the_reply_is_malformed(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    """A reply with two ``tool_use`` blocks for the forced tool: the same input twice is that
    answer; two different inputs are a malformed, retryable reply (was: the last one kept)."""
    from gridloom.errors import MalformedResponse, is_retryable

    blocks = [
        {"type": "tool_use", "id": f"toolu_{i}", "name": "facts", "input": value}
        for i, value in enumerate((first, second))
    ]
    if json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True):  # 1 is not true
        _, text = await exchange(ask(FACTS), message(*blocks))
        assert json.loads(text) == first
        return
    with pytest.raises(MalformedResponse) as info:
        await exchange(ask(FACTS), message(*blocks))
    assert "two different answers to the forced tool" in str(info.value)
    assert is_retryable(info.value)
