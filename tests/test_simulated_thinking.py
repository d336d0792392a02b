"""Anthropic's extended ``thinking`` request field on the simulated endpoint, over real
sockets with the official ``anthropic`` SDK (and raw HTTP for the error bodies), and through
a gridloom run whose Anthropic provider enables it in ``extra_body``."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import SimulatedModel, SimulationConfig, structure_pipeline
from gridloom.simulated import SimulatedServer, serve_simulated
from gridloom.simulated._app import SimulatedApp
from gridloom.simulated._http11 import serve_http
from gridloom.simulated._requests import RequestError, parse_anthropic_messages

CONFIG = SimulationConfig(
    models={
        "thinker": SimulatedModel(reasoning=True),
        # Long answers and long reasoning: the budget and max_tokens have something to cut.
        "verbose": SimulatedModel(output_tokens=20_000),
    }
)
PROMPT: Any = [{"role": "user", "content": "Tell me about rivers, deltas and floodplains."}]
ON: Any = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture
async def server() -> AsyncIterator[SimulatedServer]:
    async with serve_simulated(CONFIG) as running:
        yield running


@pytest.fixture
async def claude(server: SimulatedServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    base = server.url.removesuffix("/v1")
    client = anthropic.AsyncAnthropic(base_url=base, api_key="sk-test", max_retries=0)
    async with client:
        yield client


async def post(server: SimulatedServer, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.post("/messages", json=body)


def sdk_arguments(body: dict[str, Any]) -> Any:
    """``body`` as keyword arguments of ``messages.create``: the sampling parameters, which
    this SDK version no longer names, go through ``extra_body``."""
    sampling = {key: body[key] for key in ("temperature", "top_k", "top_p") if key in body}
    rest = {key: value for key, value in body.items() if key not in sampling}
    return rest | {"extra_body": sampling}


def words(text: str) -> int:
    return len(text.split())


async def test_enabled_thinking_gives_a_signed_thinking_block(
    claude: anthropic.AsyncAnthropic,
) -> None:
    """A model that does not reason by itself answers a thinking block first (signed), then
    the text; the thinking counts in ``usage.output_tokens``."""
    message = await claude.messages.create(
        model="plain", max_tokens=2000, messages=PROMPT, thinking=ON
    )
    thought, answer = message.content
    assert thought.type == "thinking"
    assert answer.type == "text"
    assert words(thought.thinking) > 0
    assert thought.signature
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == words(thought.thinking) + words(answer.text)
    # The same request without thinking: the same answer, no thinking block.
    bare = await claude.messages.create(model="plain", max_tokens=2000, messages=PROMPT)
    assert [block.type for block in bare.content] == ["text"]
    assert bare.content[0] == answer


async def test_enabled_thinking_streams(
    server: SimulatedServer, claude: anthropic.AsyncAnthropic
) -> None:
    """Streamed, the thinking arrives as ``thinking_delta`` events and a ``signature_delta``,
    and the final message equals the unstreamed one (usage included)."""
    body = {"model": "plain", "max_tokens": 2000, "messages": PROMPT, "thinking": ON}
    response = await post(server, body)
    assert response.status_code == 200, response.text
    expected = response.json()
    thinking, signatures = [], []
    async with claude.messages.stream(
        model="plain", max_tokens=2000, messages=PROMPT, thinking=ON
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "thinking_delta":
                thinking.append(event.delta.thinking)
            if event.type == "content_block_delta" and event.delta.type == "signature_delta":
                signatures.append(event.delta.signature)
        final = await stream.get_final_message()
    assert expected["content"][0]["type"] == "thinking"
    assert "".join(thinking) == expected["content"][0]["thinking"]
    assert signatures == [expected["content"][0]["signature"]]
    assert final.model_dump(exclude_none=True) == {
        key: value for key, value in expected.items() if value is not None
    }


@pytest.mark.parametrize("budget", [1024, 1500, 4096])
async def test_the_budget_bounds_the_thinking(
    claude: anthropic.AsyncAnthropic, budget: int
) -> None:
    """A model that would reason for ~10,000 words thinks at most ``budget_tokens``; the
    answer then gets what is left of ``max_tokens`` (cut: ``stop_reason: max_tokens``), so
    the usage is exactly ``max_tokens``."""
    max_tokens = budget + 100
    message = await claude.messages.create(
        model="verbose",
        max_tokens=max_tokens,
        messages=PROMPT,
        thinking={"type": "enabled", "budget_tokens": budget},
    )
    thought, answer = message.content
    assert thought.type == "thinking"
    assert answer.type == "text"
    assert budget - 10 <= words(thought.thinking) <= budget
    assert message.stop_reason == "max_tokens"
    assert words(thought.thinking) + words(answer.text) == max_tokens
    assert message.usage.output_tokens == max_tokens


async def test_disabled_thinking_silences_a_reasoning_model(
    claude: anthropic.AsyncAnthropic,
) -> None:
    """``disabled`` turns a ``reasoning: true`` model's thinking off; without the field it
    still thinks, as before; ``adaptive`` turns thinking on with no budget."""
    default = await claude.messages.create(model="thinker", max_tokens=200, messages=PROMPT)
    assert [block.type for block in default.content] == ["thinking", "text"]
    off = await claude.messages.create(
        model="thinker", max_tokens=200, messages=PROMPT, thinking={"type": "disabled"}
    )
    assert [block.type for block in off.content] == ["text"]
    assert off.usage.output_tokens == words(off.content[0].text)
    adaptive: Any = {"type": "adaptive"}
    chosen = await claude.messages.create(
        model="plain", max_tokens=200, messages=PROMPT, thinking=adaptive
    )
    assert [block.type for block in chosen.content] == ["thinking", "text"]


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"thinking": "enabled"}, "thinking"),
    ({"thinking": ["enabled"]}, "thinking"),
    ({"thinking": {"type": "on", "budget_tokens": 1024}}, "thinking.type"),
    ({"thinking": {"budget_tokens": 1024}}, "thinking.type"),
    ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": "2048"}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048.0}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": True}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1023}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": 5000}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "thinking.budget_tokens"),
    ({"thinking": ON, "temperature": 0.7}, "temperature"),
    ({"thinking": ON, "temperature": 0}, "temperature"),
    ({"thinking": ON, "top_k": 40}, "top_k"),
    ({"thinking": ON, "top_p": 0.9}, "top_p"),
    ({"thinking": {"type": "adaptive"}, "temperature": 0.5}, "temperature"),
]


@pytest.mark.parametrize(("extra", "field"), INVALID)
async def test_invalid_thinking_is_a_bad_request(
    server: SimulatedServer, claude: anthropic.AsyncAnthropic, extra: dict[str, Any], field: str
) -> None:
    """Each combination the API refuses is a 400 ``invalid_request_error`` whose message
    starts with the field; the SDK raises ``BadRequestError``."""
    body = {"model": "plain", "max_tokens": 4096, "messages": PROMPT} | extra
    response = await post(server, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{field}: ")
    with pytest.raises(anthropic.BadRequestError, match=field):
        await claude.messages.create(**sdk_arguments(body))


async def test_what_thinking_allows(claude: anthropic.AsyncAnthropic) -> None:
    """Thinking with ``temperature`` 1 and ``top_p`` from 0.95 to 1 is answered with a
    thinking block; any sampling settings with thinking disabled, without one."""
    for extra, blocks in (
        ({"thinking": ON, "temperature": 1, "top_p": 0.95}, ["thinking", "text"]),
        ({"thinking": ON, "top_p": 1}, ["thinking", "text"]),
        (
            {"thinking": {"type": "disabled"}, "temperature": 0.2, "top_k": 5, "top_p": 0.5},
            ["text"],
        ),
    ):
        # "plain" does not reason by itself: its thinking block is the field's doing
        body = {"model": "plain", "max_tokens": 2000, "messages": PROMPT} | extra
        message = await claude.messages.create(**sdk_arguments(body))
        assert [block.type for block in message.content] == blocks


def _invalid_thinking() -> st.SearchStrategy[Any]:
    """``thinking`` values the API refuses (with ``max_tokens`` 4096)."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    not_object = scalars.filter(lambda v: v is not None) | st.lists(scalars, max_size=3)
    bad_type = st.fixed_dictionaries(
        {"type": scalars.filter(lambda v: v not in ("enabled", "disabled", "adaptive"))}
    )
    bad_budget = st.one_of(
        st.integers(max_value=1023),
        st.integers(min_value=4096),
        st.integers(min_value=10**100),
        st.floats(allow_nan=False),
        st.text(),
        st.booleans(),
    )
    return (
        not_object
        | bad_type
        | st.fixed_dictionaries({"type": st.just("enabled")})
        | (st.fixed_dictionaries({"type": st.just("enabled"), "budget_tokens": bad_budget}))
    )


@given(thinking=_invalid_thinking())
@settings(max_examples=300, deadline=None)
def test_every_invalid_thinking_is_refused_naming_the_field(thinking: Any) -> None:
    """Whatever invalid ``thinking`` a request carries, parsing it (what the endpoint does
    before answering 400) fails naming ``thinking`` or one of its fields."""
    body = {"model": "plain", "max_tokens": 4096, "messages": PROMPT, "thinking": thinking}
    with pytest.raises(RequestError) as info:
        parse_anthropic_messages(body)
    assert info.value.param is not None
    assert info.value.param.startswith("thinking")
    assert info.value.message.startswith(f"{info.value.param}: ")
    assert len(info.value.message) <= 200  # the value shown cut short, whatever it is


@given(
    budget=st.none() | st.integers(min_value=1024, max_value=40_000),
    room=st.integers(min_value=1, max_value=45_000),
    model=st.sampled_from(["verbose", "plain", "thinker"]),
)
@settings(max_examples=100, deadline=None)
def test_thinking_stays_within_any_budget(budget: int | None, room: int, model: str) -> None:
    """For any ``enabled`` budget and ``max_tokens`` above it, or ``adaptive`` thinking and
    any ``max_tokens``, the thinking is at most its bound (the budget, or ``max_tokens``)
    and the whole answer at most ``max_tokens``; ``adaptive`` leaves room for an answer."""
    from gridloom.simulated._replies import build_reply
    from gridloom.simulated._thinking import fit_to_max_tokens

    if budget is None:
        thinking: dict[str, Any] = {"type": "adaptive"}
        max_tokens = bound = room
    else:
        thinking = {"type": "enabled", "budget_tokens": budget}
        max_tokens, bound = budget + room, budget
    body = {"model": model, "max_tokens": max_tokens, "messages": PROMPT}
    request = parse_anthropic_messages(body | {"thinking": thinking})
    settings = CONFIG.for_model(model)
    reply = fit_to_max_tokens(build_reply(request, settings), request.thinking, max_tokens)
    assert reply.reasoning is not None
    assert 0 < words(reply.reasoning) <= bound
    assert reply.reasoning_tokens == words(reply.reasoning)
    assert reply.output_tokens == words(reply.reasoning) + words(reply.text) <= max_tokens
    if budget is None and max_tokens >= 100:
        assert words(reply.text) > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_adaptive_thinking_stays_within_max_tokens(
    claude: anthropic.AsyncAnthropic, stream: bool
) -> None:
    """``adaptive`` thinking has no budget of its own, but ``max_tokens`` bounds it and the
    answer together, streamed or not: a model that would think for ~10,000 words thinks for
    part of ``max_tokens`` and answers, cut, in the rest."""
    arguments: Any = {
        "model": "verbose",
        "max_tokens": 300,
        "messages": PROMPT,
        "thinking": {"type": "adaptive"},
    }
    if stream:
        async with claude.messages.stream(**arguments) as events:
            message = await events.get_final_message()
    else:
        message = await claude.messages.create(**arguments)
    thought, answer = message.content
    assert thought.type == "thinking"
    assert answer.type == "text"
    assert 0 < words(thought.thinking) < 300
    assert words(answer.text) > 0
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == words(thought.thinking) + words(answer.text) == 300


# ---------------------------------------------------------------------- through gridloom


@contextlib.asynccontextmanager
async def recording_server(
    config: SimulationConfig,
) -> AsyncIterator[tuple[str, SimulatedApp, list[dict[str, Any]]]]:
    """The simulated endpoint on a real socket, recording the JSON body of every POST it is
    sent: (its base URL, the app, the bodies so far)."""
    app = SimulatedApp(config)
    bodies: list[dict[str, Any]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        chunks: list[bytes] = []

        async def tee() -> Any:
            message = await receive()
            if message["type"] == "http.request" and scope.get("method") == "POST":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    bodies.append(json.loads(b"".join(chunks)))
            return message

        await app(scope, tee, send)

    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            functools.partial(serve_http, recording, "127.0.0.1", 0, shutdown=shutdown)
        )
        try:
            yield f"http://{host}:{port}/v1", app, bodies
        finally:
            shutdown.set()


def run_config(url: str, columns: list[dict[str, Any]]) -> dict[str, Any]:
    """A pipeline on an ``anthropic`` provider at ``url`` whose ``extra_body`` enables
    thinking, with a ``topic`` category and ``columns``."""
    thinking = {"type": "enabled", "budget_tokens": 1024}
    return {
        "providers": [
            {
                "name": "claude",
                "type": "anthropic",
                "endpoint": url,
                "api_key_env": "GRIDLOOM_TEST_KEY",
                "extra_body": {"thinking": thinking},
            }
        ],
        "models": [{"alias": "m", "provider": "claude", "model": "sim", "max_tokens": 2048}],
        "columns": [{"name": "topic", "category": {"values": ["rivers", "deserts"]}}, *columns],
        "run": {"seed": 3},
    }


async def test_a_run_keeps_the_thinking_as_reasoning(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``anthropic`` provider whose ``extra_body`` enables thinking, pointed at the
    simulated endpoint: an ``llm_text`` column ``with_reasoning`` gets the thinking in its
    ``__reasoning`` column, and every request carried the field."""
    monkeypatch.setenv("GRIDLOOM_TEST_KEY", "sk-test")
    async with recording_server(SimulationConfig(seed=1)) as (url, app, bodies):
        note = {"model": "m", "prompt": "Write about {{ topic }}.", "with_reasoning": True}
        config = structure_pipeline(run_config(url, [{"name": "note", "llm_text": note}]))
        result = await gl.apreview(config, 4)
        timeline = app.timeline()
    rows = result.table.to_pylist()
    assert len(rows) == 4
    for row in rows:
        assert row["note"]
        assert words(row["note__reasoning"]) > 0
        assert row["note__reasoning"] != row["note"]
    assert {entry.path for entry in timeline} == {"/v1/messages"}
    assert len(bodies) == len(timeline) >= 4
    assert all(body["thinking"] == {"type": "enabled", "budget_tokens": 1024} for body in bodies)


async def test_a_columns_null_thinking_turns_its_providers_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``extra_body: {thinking: null}`` on a column turns its provider's thinking off for
    that column: the config loads, its requests carry no ``thinking`` (the field left out, as
    the simulated endpoint also reads a null), and its model does not think; the other
    column's requests still carry the provider's."""
    monkeypatch.setenv("GRIDLOOM_TEST_KEY", "sk-test")
    async with recording_server(SimulationConfig(seed=1)) as (url, _app, bodies):
        columns: list[dict[str, Any]] = [
            {
                "name": "note",
                "llm_text": {
                    "model": "m",
                    "prompt": "Write about {{ topic }}.",
                    "with_reasoning": True,
                },
            },
            {
                "name": "plain",
                "llm_text": {
                    "model": "m",
                    "prompt": "List facts about {{ topic }}.",
                    "with_reasoning": True,
                    "extra_body": {"thinking": None},
                },
            },
        ]
        result = await gl.apreview(structure_pipeline(run_config(url, columns)), 4)
        async with httpx.AsyncClient(base_url=url) as http:
            body = {"model": "plain", "max_tokens": 200, "messages": PROMPT, "thinking": None}
            response = await http.post("/messages", json=body)
    for row in result.table.to_pylist():
        assert words(row["note__reasoning"]) > 0
        assert row["plain"]
        assert row["plain__reasoning"] is None
    facts = [body for body in bodies if "List facts" in json.dumps(body["messages"])]
    notes = [body for body in bodies if "Write about" in json.dumps(body["messages"])]
    assert len(facts) >= 4
    assert len(notes) >= 4
    assert all("thinking" not in body for body in facts)
    assert all(body["thinking"]["type"] == "enabled" for body in notes)
    assert response.status_code == 200
    assert [block["type"] for block in response.json()["content"]] == ["text"]
