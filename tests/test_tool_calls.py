"""Tool calling in gridloom's model clients: the OpenAI and Anthropic adapters' wire form of
tools, calls and results (httpx.MockTransport), and round trips through the simulated
endpoint (hypothesis)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.clients import (
    ChatRequest,
    ChatResponse,
    Message,
    ResponseFormat,
    ToolCall,
    ToolSpec,
    build_http_client,
)
from gridloom.clients._tool_wire import MAX_TOOL_ARGUMENTS, MAX_TOOL_CALLS, MAX_TOOL_NAME
from gridloom.config import SimulatedModel, SimulationConfig
from gridloom.errors import EmptyAnswer, MalformedResponse
from gridloom.simulated import SimulatedApp

from .strategies import identifiers, json_schemas
from .tool_helpers import KINDS, TIME, TOOLS, WEATHER, adapter, provider


async def exchange(kind: str, request: ChatRequest, reply: Any) -> tuple[Any, ChatResponse]:
    """Send ``request`` to a mock answering ``reply``: the body sent, and the response."""
    sent: list[Any] = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(http_request.content))
        return httpx.Response(200, json=reply)

    config = provider(kind)
    http = build_http_client(config, [], transport=httpx.MockTransport(handler))
    async with http:
        response = await adapter(kind, http, config).chat(request)
    return sent[0], response


def completion(message: dict[str, Any], finish: str = "tool_calls") -> dict[str, Any]:
    return {
        "model": "gpt-x",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }


def calls_reply(calls: Any) -> dict[str, Any]:
    return completion({"role": "assistant", "content": None, "tool_calls": calls})


#: A text block: a reply with no text and no tool call is an EmptyAnswer.
_TEXT = {"type": "text", "text": "ok"}


def anthropic_reply(*blocks: Any, stop: str = "tool_use") -> dict[str, Any]:
    return {
        "model": "claude-x",
        "role": "assistant",
        "content": list(blocks),
        "stop_reason": stop,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }


def conversation() -> list[Message]:
    """System, user, an assistant turn of two calls (one with text), their two results, a
    turn whose call's arguments are not a JSON object, and its result."""
    return [
        Message(role="system", content="Use the tools."),
        Message(role="user", content="Weather and time in Lyon?"),
        Message(
            role="assistant",
            content="",
            tool_calls=[
                ToolCall(id="c1", name="get_weather", arguments='{"city": "Lyon"}'),
                ToolCall(id="c2", name="get_time", arguments='{"zone": "CET"}'),
            ],
        ),
        Message(role="tool", content="21 C", tool_call_id="c1", name="get_weather"),
        Message(role="tool", content="10:00", tool_call_id="c2", name="get_time"),
        Message(
            role="assistant",
            content="Checking again.",
            tool_calls=[ToolCall(id="c3", name="get_time", arguments="[1, 2")],
        ),
        Message(role="tool", content="bad arguments", tool_call_id="c3"),
    ]


# --------------------------------------------------------------------- OpenAI wire


async def test_openai_encodes_tools_calls_and_results() -> None:
    """Tools, ``tool_choice``, an assistant's calls (content null without text) and tool
    results go in OpenAI's documented shape."""
    request = ChatRequest(
        model="gpt-x", messages=conversation(), tools=TOOLS, tool_choice="required"
    )
    body, _ = await exchange("openai", request, completion({"content": "ok"}, "stop"))
    assert body == {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "Use the tools."},
            {"role": "user", "content": "Weather and time in Lyon?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"zone": "CET"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
            {"role": "tool", "tool_call_id": "c2", "content": "10:00"},
            {
                "role": "assistant",
                "content": "Checking again.",
                "tool_calls": [
                    {
                        "id": "c3",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "[1, 2"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c3", "content": "bad arguments"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The forecast.",
                    "parameters": WEATHER,
                },
            },
            {
                "type": "function",
                "function": {"name": "get_time", "description": "The time.", "parameters": TIME},
            },
        ],
        "tool_choice": "required",
    }


async def test_openai_sends_no_tool_fields_without_tools() -> None:
    """A request without tools has neither ``tools`` nor ``tool_choice`` (OpenAI refuses a
    choice without tools)."""
    request = ChatRequest(
        model="m", messages=[Message(role="user", content="hi")], tool_choice="auto"
    )
    body, response = await exchange("openai", request, completion({"content": "yo"}, "stop"))
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert response.tool_calls == ()
    assert response.text == "yo"


async def test_openai_decodes_tool_calls() -> None:
    """``choices[0].message.tool_calls`` become tool calls (an object of arguments, as some
    servers send, as JSON text); the finish reason is kept as sent."""
    calls = [
        {"id": "a", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        {"id": "b", "function": {"name": "get_weather", "arguments": {"city": "Nice"}}},
    ]
    request = ChatRequest(model="gpt-x", messages=[Message(role="user", content="?")], tools=TOOLS)
    _, response = await exchange("openai", request, calls_reply(calls))
    assert response.tool_calls == (
        ToolCall(id="a", name="get_time", arguments="{}"),
        ToolCall(id="b", name="get_weather", arguments='{"city": "Nice"}'),
    )
    assert response.text == ""
    assert response.finish_reason == "tool_calls"


def _call(**fields: Any) -> dict[str, Any]:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    return call | fields


_OPENAI_MALFORMED = [
    ("x", "'choices[0].message.tool_calls' is not a list"),
    ([1], "'choices[0].message.tool_calls[0]' is not an object"),
    ([_call(type="custom")], "'choices[0].message.tool_calls[0]' is of type 'custom'"),
    ([_call(function=None)], "'choices[0].message.tool_calls[0]' has no 'function' object"),
    (
        [_call(function={"name": "f", "arguments": 3})],
        "'choices[0].message.tool_calls[0].function.arguments' is not a string",
    ),
    ([_call(), _call(id=3)], "'choices[0].message.tool_calls[1]' has no id"),
    ([_call(function={"arguments": "{}"})], "'choices[0].message.tool_calls[0]' has no name"),
    (
        [_call(id="i" * (MAX_TOOL_NAME + 1))],
        f"the id of 'choices[0].message.tool_calls[0]' is over {MAX_TOOL_NAME} characters",
    ),
    (
        [_call(function={"name": "f", "arguments": " " * (MAX_TOOL_ARGUMENTS + 1)})],
        f"the arguments of 'choices[0].message.tool_calls[0]' ('f') are over"
        f" {MAX_TOOL_ARGUMENTS} characters",
    ),
    (
        [_call(id=f"c{i}") for i in range(MAX_TOOL_CALLS + 1)],
        f"'choices[0].message.tool_calls' holds {MAX_TOOL_CALLS + 1} calls, more than"
        f" {MAX_TOOL_CALLS}",
    ),
]


@pytest.mark.parametrize(("calls", "what"), _OPENAI_MALFORMED)
async def test_openai_refuses_malformed_tool_calls(calls: Any, what: str) -> None:
    """A malformed or oversized ``tool_calls`` is a MalformedResponse saying what is wrong."""
    request = ChatRequest(model="gpt-x", messages=[Message(role="user", content="?")], tools=TOOLS)
    with pytest.raises(MalformedResponse, match=re.escape(what)):
        await exchange("openai", request, calls_reply(calls))


async def test_openai_names_calls_without_id_and_reads_null_arguments() -> None:
    """A call without an id (absent, null or empty, as some OpenAI-compatible servers send)
    is named by its place; ``arguments: null`` is a call without arguments."""
    request = ChatRequest(model="gpt-x", messages=[Message(role="user", content="?")], tools=TOOLS)
    bare = {"type": "function", "function": {"name": "f", "arguments": None}}
    calls = [bare, _call(id=None), _call(id=""), _call(id="kept")]
    _, response = await exchange("openai", request, calls_reply(calls))
    assert [(c.id, c.arguments) for c in response.tool_calls] == [
        ("call_0", "{}"),
        ("call_1", "{}"),
        ("call_2", "{}"),
        ("kept", "{}"),
    ]


async def test_openai_accepts_the_most_tool_calls_and_the_longest_arguments() -> None:
    """Exactly :data:`MAX_TOOL_CALLS` calls, and arguments of exactly
    :data:`MAX_TOOL_ARGUMENTS` characters, are accepted."""
    request = ChatRequest(model="gpt-x", messages=[Message(role="user", content="?")], tools=TOOLS)
    calls = [_call(id=f"c{i}") for i in range(MAX_TOOL_CALLS)]
    _, response = await exchange("openai", request, calls_reply(calls))
    assert len(response.tool_calls) == MAX_TOOL_CALLS
    arguments = " " * (MAX_TOOL_ARGUMENTS - 2) + "{}"
    longest = [_call(function={"name": "f", "arguments": arguments})]
    _, response = await exchange("openai", request, calls_reply(longest))
    assert response.tool_calls[0].arguments == arguments


@pytest.mark.parametrize("kind", KINDS)
async def test_a_tool_message_without_call_id_is_refused(kind: str) -> None:
    """A ``tool`` message must name the call it answers: ValueError before any request."""
    messages = [Message(role="user", content="?"), Message(role="tool", content="r")]
    with pytest.raises(ValueError, match="tool_call_id"):
        await exchange(kind, ChatRequest(model="m", messages=messages, tools=TOOLS), {})


# --------------------------------------------------------------------- Anthropic wire


async def test_anthropic_encodes_tool_use_and_merges_tool_results() -> None:
    """Calls become ``tool_use`` blocks after the text (arguments that are not a JSON object
    as ``{}``); each run of tool messages is ONE user message of ``tool_result`` blocks."""
    request = ChatRequest(
        model="claude-x", messages=conversation(), tools=TOOLS, tool_choice="required"
    )
    reply = anthropic_reply({"type": "text", "text": "ok"}, stop="end_turn")
    body, _ = await exchange("anthropic", request, reply)
    assert body == {
        "model": "claude-x",
        "max_tokens": 1024,
        "system": "Use the tools.",
        "messages": [
            {"role": "user", "content": "Weather and time in Lyon?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "c1",
                        "name": "get_weather",
                        "input": {"city": "Lyon"},
                    },
                    {"type": "tool_use", "id": "c2", "name": "get_time", "input": {"zone": "CET"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "21 C"},
                    {"type": "tool_result", "tool_use_id": "c2", "content": "10:00"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking again."},
                    {"type": "tool_use", "id": "c3", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "c3", "content": "bad arguments"}
                ],
            },
        ],
        "tools": [
            {"name": "get_weather", "description": "The forecast.", "input_schema": WEATHER},
            {"name": "get_time", "description": "The time.", "input_schema": TIME},
        ],
        "tool_choice": {"type": "any"},
    }


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (None, None),
    ],
)
async def test_anthropic_tool_choice(choice: Any, wire: Any) -> None:
    """``auto``, ``required`` and ``none`` map to Anthropic's choices; ``None`` sends none."""
    request = ChatRequest(
        model="c", messages=[Message(role="user", content="?")], tools=TOOLS, tool_choice=choice
    )
    body, _ = await exchange("anthropic", request, anthropic_reply(_TEXT, stop="end_turn"))
    assert body.get("tool_choice") == wire


async def test_anthropic_decodes_tool_use() -> None:
    """``tool_use`` blocks become calls with the input as JSON text, beside the text;
    ``stop_reason: tool_use`` is ``finish_reason: tool_calls``."""
    reply = anthropic_reply(
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Nice"}},
        {"type": "tool_use", "id": "t2", "name": "get_time", "input": {}},
    )
    request = ChatRequest(model="c", messages=[Message(role="user", content="?")], tools=TOOLS)
    _, response = await exchange("anthropic", request, reply)
    assert response.text == "Let me look."
    assert response.tool_calls == (
        ToolCall(id="t1", name="get_weather", arguments='{"city": "Nice"}'),
        ToolCall(id="t2", name="get_time", arguments="{}"),
    )
    assert response.finish_reason == "tool_calls"
    _, answer = await exchange("anthropic", request, anthropic_reply(_TEXT, stop="end_turn"))
    assert answer.finish_reason == "end_turn"


def _use(**fields: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": "t", "name": "f", "input": {}} | fields


@pytest.mark.parametrize(
    ("blocks", "what"),
    [
        ([_use(input="x")], "the 'input' of tool_use block 'content[0]' is not an object"),
        ([{"type": "text", "text": ""}, _use(id=None)], "'content[1]' has no id"),
        ([_use(name="")], "'content[0]' has no name"),
        (
            [_use(id=f"t{i}") for i in range(MAX_TOOL_CALLS + 1)],
            f"holds {MAX_TOOL_CALLS + 1} calls, more than {MAX_TOOL_CALLS}",
        ),
        (
            [_use(input={"k": "x" * MAX_TOOL_ARGUMENTS})],
            f"the arguments of 'content[0]' ('f') are over {MAX_TOOL_ARGUMENTS} characters",
        ),
    ],
)
async def test_anthropic_refuses_malformed_tool_use(blocks: Any, what: str) -> None:
    """A malformed or oversized ``tool_use`` block is a MalformedResponse saying what."""
    request = ChatRequest(model="c", messages=[Message(role="user", content="?")], tools=TOOLS)
    with pytest.raises(MalformedResponse, match=re.escape(what)):
        await exchange("anthropic", request, anthropic_reply(*blocks))


async def test_anthropic_refuses_tools_with_a_response_format() -> None:
    """Tools and a response format in one Anthropic request are a ValueError, before any
    request (the schema would be a forced tool, keeping the model from the others)."""
    request = ChatRequest(
        model="c",
        messages=[Message(role="user", content="?")],
        tools=TOOLS,
        response_format=ResponseFormat(name="r", schema=TIME),
    )
    with pytest.raises(ValueError, match="tools and a response_format"):
        await exchange("anthropic", request, {})


# --------------------------------------------------------------------- round trips


class Capture(httpx.AsyncBaseTransport):
    """Records each request body, then hands the request to the simulated app."""

    def __init__(self, app: SimulatedApp) -> None:
        self.inner = httpx.ASGITransport(app)
        self.bodies: list[Any] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return await self.inner.handle_async_request(request)


def _parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """An object schema whose one required property ``arg`` has ``schema`` (its ``$defs``
    moved to the root, where its references point)."""
    body = {k: v for k, v in schema.items() if k != "$defs"}
    wrapped: dict[str, Any] = {"type": "object", "properties": {"arg": body}, "required": ["arg"]}
    return wrapped | ({"$defs": schema["$defs"]} if "$defs" in schema else {})


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
_tool_specs = st.lists(
    st.builds(
        lambda name, schema: ToolSpec(name=name, description=name, parameters=_parameters(schema)),
        identifiers,
        json_schemas(),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda tool: tool.name,
)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    tools=_tool_specs,
    earlier=st.lists(st.dictionaries(identifiers, _json_values, max_size=3), max_size=3),
    per_turn=st.integers(1, 4),
)
def test_tools_round_trip_through_the_simulated_endpoint(
    kind: str, tools: list[ToolSpec], earlier: list[dict[str, Any]], per_turn: int
) -> None:
    """Whatever the tools and the earlier calls' arguments: the specs and the arguments reach
    the endpoint intact, and its ``per_turn`` calls come back decoded, each of an offered tool
    with arguments valid for its schema and its own id."""
    earlier_calls = [
        ToolCall(id=f"e{i}", name=tools[i % len(tools)].name, arguments=json.dumps(arguments))
        for i, arguments in enumerate(earlier)
    ]
    messages = [Message(role="user", content="Use the tools on rivers and deltas.")]
    if earlier_calls:
        messages.append(Message(role="assistant", content="", tool_calls=earlier_calls))
        messages.extend(
            Message(role="tool", content="done", tool_call_id=call.id) for call in earlier_calls
        )
    request = ChatRequest(model="m", messages=messages, tools=tools, tool_choice="required")
    app = SimulatedApp(SimulationConfig(default=SimulatedModel(tool_calls_per_turn=per_turn)))
    capture = Capture(app)

    async def send() -> ChatResponse:
        config = provider(kind, "http://sim/v1")
        async with build_http_client(config, [], transport=capture) as http:
            return await adapter(kind, http, config).chat(request)

    response = trio.run(send)
    (body,) = capture.bodies
    if kind == "openai":
        sent_schemas = [tool["function"]["parameters"] for tool in body["tools"]]
        sent_calls = [
            (call["id"], call["function"]["arguments"])
            for message in body["messages"]
            for call in message.get("tool_calls", [])
        ]
        assert sent_calls == [(call.id, call.arguments) for call in earlier_calls]
    else:
        sent_schemas = [tool["input_schema"] for tool in body["tools"]]
        sent_inputs = [
            (block["id"], block["input"])
            for message in body["messages"]
            if isinstance(message["content"], list)
            for block in message["content"]
            if block["type"] == "tool_use"
        ]
        assert sent_inputs == [(call.id, json.loads(call.arguments)) for call in earlier_calls]
        assert [m["role"] for m in body["messages"]][-1:] == ["user"]
    assert sent_schemas == [dict(tool.parameters) for tool in tools]
    assert response.finish_reason == "tool_calls"
    assert len(response.tool_calls) == per_turn
    assert len({call.id for call in response.tool_calls}) == per_turn
    offered = {tool.name: tool.parameters for tool in tools}
    for call in response.tool_calls:
        jsonschema.validate(json.loads(call.arguments), offered[call.name])


_JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
#: A tool call as odd servers send it: the documented keys with any JSON value, or none.
_ODD_CALL = st.fixed_dictionaries(
    {},
    optional={
        "id": _JSON,
        "type": st.just("function") | _JSON,
        "function": st.fixed_dictionaries(
            {}, optional={"name": st.text(min_size=1) | _JSON, "arguments": _JSON}
        )
        | _JSON,
    },
)


@settings(max_examples=150, deadline=None)
@given(calls=st.lists(_ODD_CALL, max_size=4) | _JSON, content=_JSON)
def test_any_openai_tool_calls_decode_or_are_malformed(calls: Any, content: Any) -> None:
    """Whatever JSON a server puts in ``tool_calls`` and ``content``, the adapter gives
    calls whose fields are text (arguments as JSON text) or raises MalformedResponse (or
    EmptyAnswer: no content, no calls) — never another exception."""
    request = ChatRequest(model="gpt-x", messages=[Message(role="user", content="?")], tools=TOOLS)
    reply = completion({"role": "assistant", "content": content, "tool_calls": calls})
    try:
        _, response = trio.run(exchange, "openai", request, reply)
    except (MalformedResponse, EmptyAnswer) as exc:
        message = str(exc)
    else:
        message = ""
    assert "\n" not in message
    if message:
        return
    for call in response.tool_calls:
        assert call.id
        assert call.name
        assert isinstance(call.arguments, str)
        json.dumps([call.id, call.name, call.arguments]).encode("utf-8")


#: A content block as odd servers send it: tool_use or text with any JSON in its fields.
_ODD_BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["tool_use", "text", "thinking"]) | _JSON},
    optional={"id": _JSON, "name": st.text(min_size=1) | _JSON, "input": _JSON, "text": _JSON},
)


@settings(max_examples=150, deadline=None)
@given(blocks=st.lists(_ODD_BLOCK, max_size=4) | _JSON)
def test_any_anthropic_content_decodes_or_is_malformed(blocks: Any) -> None:
    """Whatever JSON a server puts in ``content``, the Anthropic adapter gives calls whose
    fields are text or raises MalformedResponse (or EmptyAnswer: no text, no calls) — never
    another exception."""
    request = ChatRequest(model="gpt-x", messages=[Message(role="user", content="?")], tools=TOOLS)
    reply = {
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": blocks,
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    try:
        _, response = trio.run(exchange, "anthropic", request, reply)
    except (MalformedResponse, EmptyAnswer) as exc:
        message = str(exc)
    else:
        message = ""
    assert "\n" not in message
    if message:
        return
    assert isinstance(response.text, str)
    for call in response.tool_calls:
        assert call.id
        assert call.name
        assert isinstance(call.arguments, str)


@pytest.mark.parametrize(
    ("blocks", "stop", "reason"),
    [
        ([{"type": "thinking", "thinking": "hmm"}], "max_tokens", "length"),
        ([], "refusal", "refusal"),
        ([{"type": "text", "text": " "}], "end_turn", "empty"),
    ],
)
async def test_anthropic_reply_without_text_or_calls_is_an_empty_answer(
    blocks: list[Any], stop: str, reason: str
) -> None:
    """No text and no tool_use is EmptyAnswer: ``stop_reason: max_tokens`` names max_tokens
    (1024 by default), ``refusal`` says the model refused; only an unexplained one retries."""
    request = ChatRequest(model="c", messages=[Message(role="user", content="?")])
    with pytest.raises(EmptyAnswer) as info:
        await exchange("anthropic", request, anthropic_reply(*blocks, stop=stop))
    assert info.value.reason == reason
    assert info.value.retryable == (reason == "empty")
    if reason == "length":
        assert "spent on 3 characters of reasoning; raise max_tokens (now 1024)" in str(info.value)
