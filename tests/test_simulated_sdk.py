"""The official ``openai`` and ``anthropic`` SDKs as clients of the simulated endpoint over real
sockets: what ``gridloom simulate`` promises to any OpenAI- or Anthropic-compatible client."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pydantic
import pytest
import trio

from gridloom.config import LatencyConfig, SimulatedModel, SimulationConfig
from gridloom.simulated import SimulatedServer, serve_simulated

from .tool_helpers import TIME, WEATHER

CONFIG = SimulationConfig(
    models={
        # A few microseconds per token: streams go out as many writes, not one.
        "streamer": SimulatedModel(latency=LatencyConfig(per_token=0.0002)),
        "thinker": SimulatedModel(reasoning=True),
        # One request at a time, each streaming for ages once its first chunk is out.
        "busy": SimulatedModel(capacity=1, retry_after=7.0, latency=LatencyConfig(per_token=60)),
    }
)
PROMPT = [{"role": "user", "content": "Tell me about rivers, deltas and floodplains."}]
TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": TIME}},
]
ANTHROPIC_TOOLS: Any = [
    {"name": "get_weather", "description": "Weather.", "input_schema": WEATHER},
    {"name": "get_time", "description": "Time.", "input_schema": TIME},
]


@pytest.fixture
async def server() -> AsyncIterator[SimulatedServer]:
    async with serve_simulated(CONFIG) as running:
        yield running


@pytest.fixture
async def oai(server: SimulatedServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", max_retries=0)
    async with client:
        yield client


@pytest.fixture
async def claude(server: SimulatedServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    base = server.url.removesuffix("/v1")
    client = anthropic.AsyncAnthropic(base_url=base, api_key="sk-test", max_retries=0)
    async with client:
        yield client


async def stream_chunks(server: SimulatedServer, **request: Any) -> list[Any]:
    """The chunks of a streamed chat completion, read with the *sync* SDK in a thread.

    (The async SDK works under trio too, but it stops reading at ``[DONE]`` and leaves its
    async generators to the garbage collector, which trio reports as a ResourceWarning —
    an error under this suite's ``filterwarnings = error``.)
    """

    def read() -> list[Any]:
        with (
            openai.OpenAI(base_url=server.url, api_key="sk-test", max_retries=0) as client,
            client.chat.completions.create(stream=True, **request) as stream,
        ):
            return list(stream)

    return await trio.to_thread.run_sync(read)


def pieces(text: str) -> int:
    """How many deltas the endpoint cuts ``text`` into (at most 32, whole words each)."""
    words = len(text.split())
    return math.ceil(words / math.ceil(words / 32))


async def raw(server: SimulatedServer, path: str, body: Any) -> Any:
    """The endpoint's JSON answer to ``body`` without an SDK in between."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------- OpenAI


async def test_chat_completion(server: SimulatedServer, oai: openai.AsyncOpenAI) -> None:
    """``chat.completions.create`` parses the answer: text, finish reason, usage."""
    expected = await raw(server, "/chat/completions", {"model": "m", "messages": PROMPT})
    completion = await oai.chat.completions.create(model="m", messages=PROMPT)
    (choice,) = completion.choices
    assert choice.message.content == expected["choices"][0]["message"]["content"]
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 7
    assert completion.usage.completion_tokens == len(str(choice.message.content).split())


@pytest.mark.parametrize("model", ["m", "streamer"])
async def test_streaming_adds_up_to_the_answer(server: SimulatedServer, model: str) -> None:
    """``stream=True`` yields chunks whose deltas concatenate to the unstreamed answer; no
    usage unless asked for; the last choice chunk carries the finish reason."""
    expected = await raw(server, "/chat/completions", {"model": model, "messages": PROMPT})
    text = expected["choices"][0]["message"]["content"]
    chunks = await stream_chunks(server, model=model, messages=PROMPT)
    assert len(chunks) == 1 + pieces(text) + 1  # the role, the text, the finish reason
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks][-2:] == [None, "stop"]


async def test_streaming_with_usage(server: SimulatedServer) -> None:
    """``stream_options.include_usage`` ends the stream with a chunk carrying the usage of the
    whole answer and no choices."""
    expected = await raw(server, "/chat/completions", {"model": "streamer", "messages": PROMPT})
    chunks = await stream_chunks(
        server, model="streamer", messages=PROMPT, stream_options={"include_usage": True}
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.model_dump(exclude_none=True) == expected["usage"]
    assert all(chunk.usage is None for chunk in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == expected["choices"][0]["message"]["content"]


async def test_streamed_reasoning(server: SimulatedServer) -> None:
    """A reasoning model streams ``reasoning_content`` deltas before the answer."""
    expected = await raw(server, "/chat/completions", {"model": "thinker", "messages": PROMPT})
    chunks = await stream_chunks(server, model="thinker", messages=PROMPT)
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks
    )
    assert reasoning == expected["choices"][0]["message"]["reasoning_content"]


async def test_n_choices(server: SimulatedServer, oai: openai.AsyncOpenAI) -> None:
    """``n=2`` answers two different choices, indexed 0 and 1; the first is the ``n=1``
    answer; usage counts both. Streamed, each choice adds up to its text."""
    single = await oai.chat.completions.create(model="m", messages=PROMPT)
    completion = await oai.chat.completions.create(model="m", messages=PROMPT, n=2)
    assert [choice.index for choice in completion.choices] == [0, 1]
    first, second = (str(choice.message.content) for choice in completion.choices)
    assert first == single.choices[0].message.content
    assert second != first
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(first.split()) + len(second.split())
    texts = ["", ""]
    for chunk in await stream_chunks(server, model="m", messages=PROMPT, n=2):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == [first, second]


async def test_too_many_choices_is_a_bad_request(oai: openai.AsyncOpenAI) -> None:
    """``n`` above 16 is refused with a 400 naming the parameter."""
    with pytest.raises(openai.BadRequestError) as info:
        await oai.chat.completions.create(model="m", messages=PROMPT, n=17)
    assert info.value.param == "n"
    assert "16" in info.value.message


async def test_forced_tool_call(oai: openai.AsyncOpenAI) -> None:
    """A forced tool is called, with arguments valid for its parameters schema."""
    completion = await oai.chat.completions.create(
        model="m",
        messages=PROMPT,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    (choice,) = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)


async def test_auto_tool_call_then_an_answer(
    server: SimulatedServer, oai: openai.AsyncOpenAI
) -> None:
    """With ``auto`` the model calls a tool; given the tool's result, it answers in text. A
    streamed call adds up to the same call."""
    first = await oai.chat.completions.create(model="m", messages=PROMPT, tools=TOOLS)
    (call,) = first.choices[0].message.tool_calls or []
    schema = WEATHER if call.function.name == "get_weather" else TIME
    jsonschema.validate(json.loads(call.function.arguments), schema)
    streamed = ""
    for chunk in await stream_chunks(server, model="m", messages=PROMPT, tools=TOOLS):
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.function is not None
            streamed += delta.function.arguments or ""
    assert streamed == call.function.arguments
    conversation: Any = [
        *PROMPT,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    second = await oai.chat.completions.create(model="m", messages=conversation, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.tool_calls is None
    assert second.choices[0].message.content


async def test_required_tool_needs_tools(oai: openai.AsyncOpenAI) -> None:
    """``tool_choice`` naming a tool that is not declared is a 400."""
    with pytest.raises(openai.BadRequestError) as info:
        await oai.chat.completions.create(
            model="m",
            messages=PROMPT,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert info.value.param == "tool_choice"


class Facts(pydantic.BaseModel):
    facts: list[str]
    year: int


async def test_structured_output(oai: openai.AsyncOpenAI) -> None:
    """``response_format: json_schema`` (here through the SDK's ``parse`` helper and a
    pydantic model) gets JSON valid for the schema."""
    completion = await oai.chat.completions.parse(model="m", messages=PROMPT, response_format=Facts)
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Facts)
    assert Facts.model_validate_json(str(completion.choices[0].message.content)) == parsed


async def test_embeddings(oai: openai.AsyncOpenAI) -> None:
    """Embeddings: one unit vector per input, of the configured or requested length."""
    response = await oai.embeddings.create(model="e", input=["rivers", "deserts"])
    assert [item.index for item in response.data] == [0, 1]
    assert [len(item.embedding) for item in response.data] == [32, 32]
    assert abs(sum(x * x for x in response.data[0].embedding) - 1.0) < 1e-3
    sized = await oai.embeddings.create(model="e", input="rivers", dimensions=8)
    assert len(sized.data[0].embedding) == 8


async def test_models_list_and_retrieve(oai: openai.AsyncOpenAI) -> None:
    """``models.list`` gives the configured models and the default one; ``models.retrieve``
    any model name (every name is served)."""
    names = [model.id async for model in oai.models.list()]
    assert names == ["busy", "gridloom-simulated", "streamer", "thinker"]
    model = await oai.models.retrieve("my-model")
    assert (model.id, model.object, model.owned_by) == ("my-model", "model", "gridloom-simulated")


async def test_the_anthropic_sdk_lists_and_retrieves_models(
    claude: anthropic.AsyncAnthropic,
) -> None:
    """Anthropic's ``models.list`` and ``models.retrieve`` read their own fields (``type``,
    ``display_name``, ``created_at``; the page's ``has_more``, ``first_id``, ``last_id``),
    which the endpoint sends beside OpenAI's (was: None, and the page fields missing)."""
    page = await claude.models.list()
    assert [model.id for model in page.data] == [
        "busy",
        "gridloom-simulated",
        "streamer",
        "thinker",
    ]
    assert all((m.type, m.display_name) == ("model", m.id) for m in page.data)
    assert all(m.created_at is not None for m in page.data)
    assert (page.has_more, page.first_id, page.last_id) == (False, "busy", "thinker")
    model = await claude.models.retrieve("my-model")
    assert (model.id, model.type, model.display_name) == ("my-model", "model", "my-model")


async def test_unsupported_requests_are_bad_requests(oai: openai.AsyncOpenAI) -> None:
    """The Responses API, legacy completions and ``logprobs`` get a 400 saying so."""
    with pytest.raises(openai.BadRequestError, match="not supported") as info:
        await oai.responses.create(model="m", input="Hi")
    assert "/v1/chat/completions" in info.value.message
    with pytest.raises(openai.BadRequestError, match="not supported"):
        await oai.completions.create(model="m", prompt="Hi")
    with pytest.raises(openai.BadRequestError, match="not supported") as info:
        await oai.chat.completions.create(model="m", messages=PROMPT, logprobs=True)
    assert (info.value.param, info.value.code) == ("logprobs", "unsupported_parameter")


async def test_unknown_path_is_not_found(oai: openai.AsyncOpenAI) -> None:
    """An unknown path is a JSON 404 that lists the endpoints served."""
    with pytest.raises(openai.NotFoundError) as info:
        await oai.get("/nothing/here", cast_to=object)
    assert info.value.type == "invalid_request_error"
    assert "POST /v1/chat/completions" in info.value.message


async def test_capacity_is_a_rate_limit_error(
    server: SimulatedServer, oai: openai.AsyncOpenAI
) -> None:
    """Beyond a model's capacity the SDK raises ``RateLimitError``, with ``Retry-After``."""
    body = {"model": "busy", "messages": PROMPT, "stream": True}
    async with (
        httpx.AsyncClient(base_url=server.url) as http,
        http.stream("POST", "/chat/completions", json=body) as holder,
    ):
        assert holder.status_code == 200  # streaming: it holds the model's one slot
        with pytest.raises(openai.RateLimitError) as info:
            await oai.chat.completions.create(model="busy", messages=PROMPT)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert "capacity" in info.value.message


# --------------------------------------------------------------------- Anthropic


async def test_anthropic_message(server: SimulatedServer, claude: anthropic.AsyncAnthropic) -> None:
    """``messages.create`` parses the answer: one text block, stop reason, usage."""
    body = {"model": "c", "max_tokens": 200, "messages": PROMPT}
    expected = await raw(server, "/messages", body)
    message = await claude.messages.create(model="c", max_tokens=200, messages=PROMPT)
    (block,) = message.content
    assert block.type == "text"
    assert block.text == expected["content"][0]["text"]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 7
    assert message.usage.output_tokens == len(block.text.split())


@pytest.mark.parametrize("model", ["streamer", "thinker"])
async def test_anthropic_stream(
    server: SimulatedServer, claude: anthropic.AsyncAnthropic, model: str
) -> None:
    """``messages.stream``: the text stream adds up to the unstreamed answer, and the final
    message equals it (thinking block and usage included)."""
    body = {"model": model, "max_tokens": 200, "messages": PROMPT}
    expected = await raw(server, "/messages", body)
    async with claude.messages.stream(model=model, max_tokens=200, messages=PROMPT) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == expected["content"][-1]["text"]
    assert final.model_dump(exclude_none=True) == {
        key: value for key, value in expected.items() if value is not None
    }


async def test_anthropic_forced_tool(
    server: SimulatedServer, claude: anthropic.AsyncAnthropic
) -> None:
    """A forced tool (``{"type": "tool"}``) is a ``tool_use`` block whose input is valid for
    the tool's schema; streamed, the final message has the same call."""
    choice: Any = {"type": "tool", "name": "get_weather"}
    kwargs: Any = {"model": "c", "max_tokens": 200, "messages": PROMPT, "tools": ANTHROPIC_TOOLS}
    message = await claude.messages.create(**kwargs, tool_choice=choice)
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.id.startswith("toolu_")
    jsonschema.validate(block.input, WEATHER)
    async with claude.messages.stream(**kwargs, tool_choice=choice) as stream:
        final = await stream.get_final_message()
    assert final.content == message.content
    # ``any`` calls some tool; after its result, the answer is text.
    forced = await claude.messages.create(**kwargs, tool_choice={"type": "any"})
    (call,) = forced.content
    assert call.type == "tool_use"
    result: Any = [
        *PROMPT,
        {"role": "assistant", "content": [call.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21 C"}],
        },
    ]
    answer = await claude.messages.create(**(kwargs | {"messages": result}))
    assert answer.stop_reason == "end_turn"
    assert [b.type for b in answer.content] == ["text"]


async def test_anthropic_errors(claude: anthropic.AsyncAnthropic) -> None:
    """Anthropic's rules: a forced tool with extended thinking, or a server tool, is a 400."""
    with pytest.raises(anthropic.BadRequestError, match="Thinking may not be enabled"):
        await claude.messages.create(
            model="c",
            max_tokens=2000,
            messages=PROMPT,
            tools=ANTHROPIC_TOOLS,
            tool_choice={"type": "any"},
            thinking={"type": "enabled", "budget_tokens": 1024},
        )
    with pytest.raises(anthropic.BadRequestError, match="server tools"):
        await claude.messages.create(
            model="c",
            max_tokens=200,
            messages=PROMPT,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
