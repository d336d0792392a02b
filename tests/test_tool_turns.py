"""Multi-turn tool use against the simulated endpoint: ``tool_turns`` and
``tool_calls_per_turn``, then agent loops over real sockets with gridloom's clients (both
provider types) and with the official ``openai`` SDK (streaming, ``n: 2``), and the
``gridloom simulate`` flags."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest
import trio
from click.testing import CliRunner

from gridloom.cli._simulate import simulate
from gridloom.clients import ChatRequest, Message, ToolCall, build_http_client
from gridloom.config import SimulatedModel, SimulationConfig, structure_pipeline
from gridloom.errors import ConfigError
from gridloom.simulated import SimulatedApp, SimulatedServer, serve_simulated
from gridloom.simulated._requests import parse_anthropic_messages, parse_chat_completions

from .tool_helpers import KINDS, SCHEMAS, TOOLS, adapter, provider

AGENT = SimulatedModel(tool_turns=3, tool_calls_per_turn=2)
CONFIG = SimulationConfig(models={"agent": AGENT})


# --------------------------------------------------------------------- simulated endpoint


def test_tool_rounds_are_counted_since_the_last_user_message() -> None:
    """A run of tool messages (OpenAI) or a user message of tool results (Anthropic) is one
    round; a new user message starts the count again."""
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    result = {"role": "tool", "tool_call_id": "c", "content": "r"}
    user = {"role": "user", "content": "go"}

    def rounds(*messages: Any) -> int:
        return parse_chat_completions({"model": "m", "messages": list(messages)}).tool_rounds

    assert rounds(user) == 0
    assert rounds(user, assistant, result, result) == 1
    assert rounds(user, assistant, result, assistant, result, assistant, result) == 3
    assert rounds(user, assistant, result, user) == 0
    assert rounds(user, assistant, result, user, assistant, result) == 1

    use = {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
    }
    results = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}],
    }

    def anthropic_rounds(*messages: Any) -> int:
        body = {"model": "m", "max_tokens": 9, "messages": list(messages)}
        return parse_anthropic_messages(body).tool_rounds

    assert anthropic_rounds(user) == 0
    assert anthropic_rounds(user, use, results, use, results) == 2
    assert anthropic_rounds(user, use, results, {"role": "assistant", "content": "a"}, user) == 0


def tool_body(choice: Any = None, *, rounds: int = 0) -> dict[str, Any]:
    """A chat completion request offering the two tools after ``rounds`` tool rounds."""
    messages: list[Any] = [{"role": "user", "content": "Weather in Lyon, please."}]
    for index in range(rounds):
        call = {
            "id": f"c{index}",
            "type": "function",
            "function": {"name": "get_time", "arguments": "{}"},
        }
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{index}", "content": "10:00"})
    tools = [
        {"type": "function", "function": {"name": t.name, "parameters": dict(t.parameters)}}
        for t in TOOLS
    ]
    body: dict[str, Any] = {"model": "m", "messages": messages, "tools": tools}
    if choice is not None:
        body["tool_choice"] = choice
    return body


async def answer(model: SimulatedModel, body: dict[str, Any]) -> dict[str, Any]:
    """The simulated endpoint's message for ``body``, every model behaving as ``model``."""
    app = SimulatedApp(SimulationConfig(default=model))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://sim/v1"
    ) as http:
        response = await http.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()["choices"][0]["message"]
    return message


def names(message: dict[str, Any]) -> list[str]:
    return [call["function"]["name"] for call in message.get("tool_calls") or []]


async def test_tool_turns_bound_the_rounds_of_auto_calls(autojump_clock: Any) -> None:
    """With ``auto`` the model calls tools while fewer than ``tool_turns`` rounds of results
    are in the conversation, then answers text; 0 never calls on its own."""
    model = SimulatedModel(tool_turns=2)
    assert len(names(await answer(model, tool_body(rounds=0)))) == 1
    assert len(names(await answer(model, tool_body(rounds=1)))) == 1
    final = await answer(model, tool_body(rounds=2))
    assert names(final) == []
    assert final["content"]
    assert names(await answer(SimulatedModel(tool_turns=0), tool_body())) == []
    assert names(await answer(SimulatedModel(), tool_body(rounds=1))) == []  # the default: 1


async def test_forced_choices_call_whatever_the_rounds(autojump_clock: Any) -> None:
    """``required`` and a named tool call ``tool_calls_per_turn`` times even past
    ``tool_turns``; ``none`` never calls."""
    model = SimulatedModel(tool_turns=0, tool_calls_per_turn=3)
    assert len(names(await answer(model, tool_body("required", rounds=4)))) == 3
    named = {"type": "function", "function": {"name": "get_time"}}
    assert names(await answer(model, tool_body(named, rounds=4))) == ["get_time"] * 3
    assert names(await answer(SimulatedModel(tool_turns=5), tool_body("none"))) == []


async def test_parallel_calls_are_distinct_valid_and_deterministic(autojump_clock: Any) -> None:
    """``tool_calls_per_turn`` calls have distinct ids and schema-valid arguments, pick both
    tools across requests, and the same request gets the same calls; one call per turn is
    the first of them (the answer of before)."""
    model = SimulatedModel(tool_calls_per_turn=16)
    seen: set[str] = set()
    for topic in ("Lyon", "Nice"):
        body = tool_body("required") | {"messages": [{"role": "user", "content": topic}]}
        message = await answer(model, body)
        calls = message["tool_calls"]
        assert len(calls) == 16
        assert len({call["id"] for call in calls}) == 16
        for call in calls:
            jsonschema.validate(
                json.loads(call["function"]["arguments"]), SCHEMAS[call["function"]["name"]]
            )
        seen.update(names(message))
        assert await answer(model, body) == message
        single = await answer(SimulatedModel(), body)
        assert single["tool_calls"] == calls[:1]
    assert seen == {"get_weather", "get_time"}


def test_tool_settings_are_validated_at_load() -> None:
    """``tool_calls_per_turn`` out of 1..16 and a negative ``tool_turns`` fail when the config
    is loaded, naming the field."""
    for field, value in (
        ("tool_calls_per_turn", 17),
        ("tool_calls_per_turn", 0),
        ("tool_turns", -1),
    ):
        raw = {
            "providers": [
                {"name": "sim", "type": "simulated", "simulation": {"default": {field: value}}}
            ],
            "models": [{"alias": "m", "provider": "sim", "model": "x"}],
            "columns": [{"name": "a", "category": {"values": ["x"]}}],
        }
        with pytest.raises(ConfigError, match=field):
            structure_pipeline(raw)


# --------------------------------------------------------------------- multi-turn over sockets


@pytest.fixture
async def server() -> AsyncIterator[SimulatedServer]:
    async with serve_simulated(CONFIG) as running:
        yield running


def check_calls(calls: Sequence[ToolCall], ids: set[str]) -> None:
    """Two calls of offered tools, arguments valid for their schemas, ids never seen before
    (added to ``ids``)."""
    assert len(calls) == 2
    for call in calls:
        jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
        assert call.id not in ids
        ids.add(call.id)


@pytest.mark.parametrize("kind", KINDS)
async def test_agent_loop_over_sockets(server: SimulatedServer, kind: str) -> None:
    """gridloom's client in a loop (send, run the calls, send their results back) against
    ``tool_turns: 3`` and ``tool_calls_per_turn: 2`` gets 3 rounds of 2 valid calls, then a
    text answer; each round's results go as one message per call."""
    config = provider(kind, server.url)
    messages = [Message(role="user", content="Plan a weekend in Lyon.")]
    ids: set[str] = set()
    async with build_http_client(config, []) as http:
        client = adapter(kind, http, config)
        for _ in range(3):
            request = ChatRequest(model="agent", messages=messages, tools=TOOLS, tool_choice="auto")
            response = await client.chat(request)
            assert response.finish_reason == "tool_calls"
            assert response.text == ""
            check_calls(response.tool_calls, ids)
            messages.append(Message(role="assistant", content="", tool_calls=response.tool_calls))
            messages.extend(
                Message(role="tool", content=f"result of {call.name}", tool_call_id=call.id)
                for call in response.tool_calls
            )
        final = await client.chat(ChatRequest(model="agent", messages=messages, tools=TOOLS))
    assert final.tool_calls == ()
    assert final.text
    assert final.finish_reason == ("stop" if kind == "openai" else "end_turn")
    assert [entry.status for entry in server.app.timeline()] == [200] * 4


def _history(messages: list[Any], calls: list[dict[str, Any]]) -> None:
    """Append the assistant's ``calls`` and a result for each to ``messages``."""
    messages.append({"role": "assistant", "content": None, "tool_calls": calls})
    messages.extend({"role": "tool", "tool_call_id": call["id"], "content": "ok"} for call in calls)


def _sdk_calls(calls: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.function.name, "arguments": c.function.arguments},
        }
        for c in calls or []
    ]


def _checked(calls: list[dict[str, Any]], ids: set[str]) -> list[dict[str, Any]]:
    check_calls(
        [
            ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"])
            for c in calls
        ],
        ids,
    )
    return calls


WIRE_TOOLS: Any = [
    {"type": "function", "function": {"name": t.name, "parameters": dict(t.parameters)}}
    for t in TOOLS
]


@pytest.mark.parametrize("n", [1, 2])
async def test_openai_sdk_agent_loop(server: SimulatedServer, n: int) -> None:
    """The official SDK, not streaming, with ``n`` choices: every choice of the first 3 turns
    holds 2 valid calls, every choice of the 4th is text."""
    messages: list[Any] = [{"role": "user", "content": "Plan a weekend in Lyon."}]
    ids: set[str] = set()
    async with openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", max_retries=0) as sdk:
        for turn in range(4):
            completion = await sdk.chat.completions.create(
                model="agent", messages=messages, tools=WIRE_TOOLS, n=n
            )
            assert len(completion.choices) == n
            if turn == 3:
                break
            for choice in completion.choices:
                assert choice.finish_reason == "tool_calls"
                _checked(_sdk_calls(choice.message.tool_calls), ids)
            _history(messages, _sdk_calls(completion.choices[0].message.tool_calls))
    for choice in completion.choices:
        assert choice.finish_reason == "stop"
        assert choice.message.tool_calls is None
        assert choice.message.content


def _streamed(url: str, messages: list[Any]) -> tuple[list[dict[str, Any]], str, str | None]:
    """One streamed turn with the sync SDK: the calls put together from their deltas, the
    text and the finish reason."""
    calls: dict[int, dict[str, Any]] = {}
    text = ""
    finish = None
    with (
        openai.OpenAI(base_url=url, api_key="sk-test", max_retries=0) as sdk,
        sdk.chat.completions.create(
            model="agent", messages=messages, tools=WIRE_TOOLS, stream=True
        ) as stream,
    ):
        for chunk in stream:
            (choice,) = chunk.choices
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(
                    delta.index,
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["function"]["name"] += delta.function.name or ""
                    call["function"]["arguments"] += delta.function.arguments or ""
    return [calls[index] for index in sorted(calls)], text, finish


async def test_openai_sdk_streamed_agent_loop(server: SimulatedServer) -> None:
    """The official SDK streaming: 3 turns whose deltas put together 2 valid calls each (the
    same as unstreamed), then a streamed text answer."""
    messages: list[Any] = [{"role": "user", "content": "Plan a weekend in Lyon."}]
    ids: set[str] = set()
    async with openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", max_retries=0) as sdk:
        for _ in range(3):
            calls, text, finish = await trio.to_thread.run_sync(_streamed, server.url, messages)
            assert (text, finish) == ("", "tool_calls")
            whole = await sdk.chat.completions.create(
                model="agent", messages=messages, tools=WIRE_TOOLS
            )
            assert _sdk_calls(whole.choices[0].message.tool_calls) == calls
            _history(messages, _checked(calls, ids))
    calls, text, finish = await trio.to_thread.run_sync(_streamed, server.url, messages)
    assert calls == []
    assert text
    assert finish == "stop"


def test_simulate_flags_set_the_tool_behaviour(monkeypatch: pytest.MonkeyPatch) -> None:
    """``gridloom simulate --tool-turns 3 --tool-calls-per-turn 2`` serves models behaving so;
    17 calls per turn is refused as a usage error."""
    served: list[SimulationConfig] = []

    def run(_serve: Any, config: SimulationConfig, *_args: Any) -> int:
        served.append(config)
        return 2

    monkeypatch.setattr(trio, "run", run)
    runner = CliRunner()
    result = runner.invoke(simulate, ["--tool-turns", "3", "--tool-calls-per-turn", "2"])
    assert result.exit_code == 0, result.output
    (config,) = served
    assert (config.default.tool_turns, config.default.tool_calls_per_turn) == (3, 2)
    refused = runner.invoke(simulate, ["--tool-calls-per-turn", "17"])
    assert refused.exit_code == 2
    assert "--tool-calls-per-turn" in refused.output


async def test_anthropic_sdk_streams_parallel_tool_use(server: SimulatedServer) -> None:
    """Streamed with the official ``anthropic`` SDK, an answer of 2 calls is 2 ``tool_use``
    blocks, the same as unstreamed."""
    base = server.url.removesuffix("/v1")
    tools: Any = [
        {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
        for t in TOOLS
    ]
    messages: Any = [{"role": "user", "content": "Plan a weekend in Lyon."}]
    kwargs: Any = {"model": "agent", "max_tokens": 200, "messages": messages, "tools": tools}
    async with anthropic.AsyncAnthropic(base_url=base, api_key="sk-test", max_retries=0) as sdk:
        whole = await sdk.messages.create(**kwargs)
        async with sdk.messages.stream(**kwargs) as stream:
            streamed = await stream.get_final_message()
    uses = [block for block in streamed.content if block.type == "tool_use"]
    assert len(uses) == 2
    assert len({block.id for block in uses}) == 2
    for block in uses:
        jsonschema.validate(block.input, SCHEMAS[block.name])
    assert streamed.content == whole.content
    assert streamed.stop_reason == "tool_use"
