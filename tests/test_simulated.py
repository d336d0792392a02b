"""The simulated endpoint: API shapes, latency in virtual time, limits, faults, stats, serving."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jsonschema
import pytest
import trio
import trio.testing

import gridloom.simulated
from gridloom.config import CapacityStep, LatencyConfig, SimulatedModel, SimulationConfig
from gridloom.errors import ConnectionFailed
from gridloom.simulated import SimulatedApp, run_simulator, serve_simulated
from gridloom.simulated._asgi import format_retry_after
from gridloom.simulated._recorder import TIMELINE_LIMIT, Recorder, TimelineEntry

SCHEMA = {
    "type": "object",
    "properties": {
        "facts": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["facts", "score"],
    "additionalProperties": False,
}


def simulation(**settings: Any) -> SimulationConfig:
    """A simulation where every model behaves as ``settings`` say."""
    return SimulationConfig(default=SimulatedModel(**settings))


def client(app: SimulatedApp, base_url: str = "http://sim/v1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base_url)


def chat(content: str = "Tell me about rivers and deltas", model: str = "m", **extra: Any) -> Any:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def structured(content: str = "Three facts about deserts") -> Any:
    response_format = {"type": "json_schema", "json_schema": {"name": "facts", "schema": SCHEMA}}
    return chat(content, response_format=response_format)


# --------------------------------------------------------------------- API shapes


async def test_chat_completion_shape(autojump_clock: trio.testing.MockClock) -> None:
    """A chat completion has an assistant message, a finish reason and word-counted usage."""
    async with client(SimulatedApp(simulation())) as http:
        response = await http.post("/chat/completions", json=chat())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "m"
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert "reasoning_content" not in choice["message"]
    text = choice["message"]["content"]
    assert body["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": len(text.split()),
        "total_tokens": 6 + len(text.split()),
    }


async def test_chat_reasoning_content(autojump_clock: trio.testing.MockClock) -> None:
    """A reasoning model adds ``reasoning_content`` and counts it in the completion tokens."""
    async with client(SimulatedApp(simulation(reasoning=True))) as http:
        body = (await http.post("/chat/completions", json=chat())).json()
    message = body["choices"][0]["message"]
    reasoning = len(message["reasoning_content"].split())
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": reasoning}
    assert body["usage"]["completion_tokens"] == len(message["content"].split()) + reasoning


async def test_chat_response_format_json_schema(autojump_clock: trio.testing.MockClock) -> None:
    """A ``response_format`` JSON Schema is honoured; content parts are read as text."""
    request = structured()
    request["messages"][0]["content"] = [{"type": "text", "text": "Three facts about deserts"}]
    async with client(SimulatedApp(simulation())) as http:
        body = (await http.post("/chat/completions", json=request)).json()
    jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), SCHEMA)


async def test_anthropic_messages_shape(autojump_clock: trio.testing.MockClock) -> None:
    """Anthropic Messages: system prompt, text blocks in, thinking + text blocks and usage out."""
    request = {
        "model": "claude-sim",
        "max_tokens": 1000,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Describe glaciers"}]}],
    }
    async with client(SimulatedApp(simulation(reasoning=True))) as http:
        body = (await http.post("/messages", json=request)).json()
    assert body["type"] == "message"
    assert body["role"] == "assistant"
    assert body["stop_reason"] == "end_turn"
    thinking, text = body["content"]
    assert thinking["type"] == "thinking"
    assert thinking["signature"]
    assert text["type"] == "text"
    words = len(text["text"].split()) + len(thinking["thinking"].split())
    assert body["usage"] == {"input_tokens": 5, "output_tokens": words}


async def test_anthropic_messages_errors(autojump_clock: trio.testing.MockClock) -> None:
    """Messages without ``max_tokens`` are refused with an Anthropic-shaped 400."""
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with client(SimulatedApp(simulation())) as http:
        response = await http.post("/messages", json=request)
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


async def test_embeddings_shape(autojump_clock: trio.testing.MockClock) -> None:
    """Embeddings: one unit vector per input, of the configured or requested length."""
    async with client(SimulatedApp(simulation(embedding_dimensions=8))) as http:
        body = (await http.post("/embeddings", json={"model": "e", "input": ["a b", "c"]})).json()
        single = (await http.post("/embeddings", json={"model": "e", "input": "c"})).json()
        sized = (
            await http.post("/embeddings", json={"model": "e", "input": "c", "dimensions": 3})
        ).json()
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 8 for d in body["data"])
    assert sum(x * x for x in body["data"][0]["embedding"]) == pytest.approx(1.0, abs=1e-4)
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert single["data"][0]["embedding"] == body["data"][1]["embedding"]
    assert len(sized["data"][0]["embedding"]) == 3


async def test_models_list(autojump_clock: trio.testing.MockClock) -> None:
    """``GET /v1/models`` lists the configured model names and the default model."""
    config = SimulationConfig(models={"b": SimulatedModel(), "a": SimulatedModel()})
    async with client(SimulatedApp(config)) as http:
        body = (await http.get("/models")).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["a", "b", "gridloom-simulated"]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "param"),
    [
        ("GET", "/v1/nothing", None, 404, None),
        ("GET", "/v1/chat/completions", None, 405, None),
        ("POST", "/v1/models", None, 405, None),
        ("POST", "/v1/chat/completions", b"{not json", 400, None),
        ("POST", "/v1/chat/completions", b"[1]", 400, None),
        ("POST", "/v1/chat/completions", {"messages": []}, 400, "model"),
        ("POST", "/v1/chat/completions", {"model": "m", "messages": []}, 400, "messages"),
        ("POST", "/v1/chat/completions", {"model": "m", "messages": [{"role": "x"}]}, 400, None),
        ("POST", "/v1/embeddings", {"model": "m", "input": [1, 2]}, 400, "input"),
        (
            "POST",
            "/v1/chat/completions",
            {**structured(), "response_format": {"type": "json_schema", "json_schema": {}}},
            400,
            "response_format.json_schema.schema",
        ),
        ("POST", "/v1/chat/completions", chat(n=17), 400, "n"),
        ("POST", "/v1/chat/completions", chat(n=0), 400, "n"),
        ("POST", "/v1/chat/completions", chat(logprobs=True), 400, "logprobs"),
        ("POST", "/v1/chat/completions", chat(modalities=["audio"]), 400, "modalities"),
        ("POST", "/v1/chat/completions", chat(stream="yes"), 400, "stream"),
        (
            "POST",
            "/v1/chat/completions",
            chat(stream_options={"include_usage": True}),
            400,
            "stream_options",
        ),
        ("POST", "/v1/chat/completions", chat(tools=[{"type": "custom"}]), 400, "tools[0].type"),
        ("POST", "/v1/chat/completions", chat(tools=[TOOL] * 129), 400, "tools"),
        ("POST", "/v1/chat/completions", chat(tools=[TOOL, TOOL]), 400, "tools"),
        ("POST", "/v1/chat/completions", chat(tool_choice="required"), 400, "tool_choice"),
        ("POST", "/v1/responses", {"model": "m", "input": "Hi"}, 400, None),
        ("POST", "/v1/completions", {"model": "m", "prompt": "Hi"}, 400, None),
        ("GET", "/v1/models/" + "x" * 300, None, 404, "model"),
    ],
)
async def test_errors_in_openai_shape(
    autojump_clock: trio.testing.MockClock,
    method: str,
    path: str,
    payload: Any,
    status: int,
    param: str | None,
) -> None:
    """Unknown paths, wrong methods and bad bodies get 404/405/400 in OpenAI's error shape."""
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with client(SimulatedApp(simulation()), base_url="http://sim") as http:
        response = await http.request(method, path, content=content)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    if status == 405:
        assert response.headers["allow"] in ("GET", "POST")


async def test_invalid_schema_is_a_bad_request(autojump_clock: trio.testing.MockClock) -> None:
    """A ``response_format`` schema that is not a valid JSON Schema gets a 400."""
    request = structured()
    request["response_format"]["json_schema"]["schema"] = {"type": 12}
    async with client(SimulatedApp(simulation())) as http:
        response = await http.post("/chat/completions", json=request)
    assert response.status_code == 400
    assert "invalid JSON Schema" in response.json()["error"]["message"]


async def test_lifespan() -> None:
    """The app completes the ASGI lifespan protocol."""
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Any] = []

    async def receive() -> Any:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await SimulatedApp(simulation())({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


# --------------------------------------------------------------------- latency


async def test_fixed_latency_is_exact(autojump_clock: trio.testing.MockClock) -> None:
    """With a fixed latency of 2 s the answer arrives at exactly t = 2.0."""
    app = SimulatedApp(simulation(latency=LatencyConfig(fixed=2.0)))
    async with client(app) as http:
        response = await http.post("/chat/completions", json=chat())
        assert response.status_code == 200
        assert trio.current_time() == 2.0
    (entry,) = app.timeline()
    assert (entry.start, entry.end, entry.status) == (0.0, 2.0, 200)


async def test_latency_counts_from_the_requests_arrival(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The time the server spends on a request before it waits (parsing it, drafting the
    answer) is part of the latency, not added to it: on a clock that moves on while the app
    works, the answer comes sooner than the fixed latency in trio time, and never before the
    latency has passed on the app's clock."""
    worked = [0.0]

    def working_clock() -> float:
        worked[0] += 0.125  # each reading comes after a little work
        return trio.current_time() + worked[0]

    app = SimulatedApp(simulation(latency=LatencyConfig(fixed=2.0)), clock=working_clock)
    async with client(app) as http:
        response = await http.post("/chat/completions", json=chat())
        assert response.status_code == 200
        waited = trio.current_time()
    (entry,) = app.timeline()
    assert 0 < waited < 2.0
    assert entry.end - entry.start >= 2.0


async def test_per_token_latency(autojump_clock: trio.testing.MockClock) -> None:
    """Per-token latency adds ``per_token`` seconds per output token to the fixed part."""
    app = SimulatedApp(simulation(latency=LatencyConfig(fixed=1.0, per_token=0.25)))
    async with client(app) as http:
        body = (await http.post("/chat/completions", json=chat())).json()
    assert trio.current_time() == 1.0 + 0.25 * body["usage"]["completion_tokens"]


async def test_lognormal_latency_is_seeded(autojump_clock: trio.testing.MockClock) -> None:
    """Lognormal latencies repeat for the same seed and model, and change with the seed."""

    async def latencies(seed: int, model: str) -> list[float]:
        latency = LatencyConfig(median=1.0, sigma=0.5)
        app = SimulatedApp(SimulationConfig(seed=seed, default=SimulatedModel(latency=latency)))
        async with client(app) as http:
            for _ in range(3):
                await http.post("/chat/completions", json=chat(model=model))
        return [e.end - e.start for e in app.timeline()]

    first = await latencies(1, "m")
    # Same draws; durations differ only by float rounding of the clock's later start.
    assert await latencies(1, "m") == pytest.approx(first, rel=1e-12)
    assert await latencies(2, "m") != first
    assert await latencies(1, "other") != first
    assert len(set(first)) == 3


async def test_zero_sigma_is_the_median(autojump_clock: trio.testing.MockClock) -> None:
    """A lognormal with sigma 0 is exactly its median."""
    app = SimulatedApp(simulation(latency=LatencyConfig(fixed=0.5, median=1.5)))
    async with client(app) as http:
        await http.post("/chat/completions", json=chat())
    assert trio.current_time() == 2.0


# --------------------------------------------------------------------- limits


async def test_capacity_answers_429(autojump_clock: trio.testing.MockClock) -> None:
    """With capacity 2, the third of three concurrent requests gets a 429 at once."""
    app = SimulatedApp(simulation(capacity=2, retry_after=1.5, latency=LatencyConfig(fixed=1.0)))
    results: list[tuple[float, httpx.Response]] = []
    async with client(app) as http:

        async def one(index: int) -> None:
            response = await http.post("/chat/completions", json=chat(f"request {index}"))
            results.append((trio.current_time(), response))

        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(one, index)
    limited = [(t, r) for t, r in results if r.status_code == 429]
    assert len(limited) == 1
    when, response = limited[0]
    assert when == 0.0
    assert response.headers["retry-after"] == "1.5"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert sorted(t for t, r in results if r.status_code == 200) == [1.0, 1.0]
    stats = app.statistics().models["m"]
    assert stats.peak_in_flight == 2
    assert stats.by_status == {"200": 2, "429": 1}


async def test_capacity_schedule(autojump_clock: trio.testing.MockClock) -> None:
    """Capacity follows its schedule, counted from the endpoint's first request."""
    app = SimulatedApp(
        simulation(
            capacity=1,
            capacity_schedule=[CapacityStep(at=10, capacity=3), CapacityStep(at=20, capacity=2)],
            latency=LatencyConfig(fixed=1.0),
        )
    )
    await trio.sleep(5)  # the schedule starts with the first request, not the app

    async def burst(size: int) -> list[int]:
        statuses: list[int] = []
        async with client(app) as http:

            async def one(index: int) -> None:
                response = await http.post("/chat/completions", json=chat(f"r{index}"))
                statuses.append(response.status_code)

            async with trio.open_nursery() as nursery:
                for index in range(size):
                    nursery.start_soon(one, index)
        return sorted(statuses)

    assert await burst(4) == [200, 429, 429, 429]  # t = 5: capacity 1
    await trio.sleep_until(5 + 9.5)
    assert await burst(4) == [200, 429, 429, 429]  # 9.5 s after the first request: still 1
    await trio.sleep_until(5 + 10)
    assert await burst(4) == [200, 200, 200, 429]  # from 10 s: 3
    await trio.sleep_until(5 + 20)
    assert await burst(4) == [200, 200, 429, 429]  # from 20 s: 2


def test_capacity_schedule_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="increasing order"):
        SimulatedModel(
            capacity_schedule=[CapacityStep(at=5, capacity=2), CapacityStep(at=1, capacity=3)]
        )


async def test_requests_per_second_bucket(autojump_clock: trio.testing.MockClock) -> None:
    """An empty requests-per-second bucket answers 429 with the time until it refills."""
    app = SimulatedApp(simulation(requests_per_second=2.0))
    async with client(app) as http:
        statuses = [(await http.post("/chat/completions", json=chat())).status_code for _ in "ab"]
        limited = await http.post("/chat/completions", json=chat())
        assert statuses == [200, 200]
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "0.5"
        await trio.sleep(0.5)
        assert (await http.post("/chat/completions", json=chat())).status_code == 200


async def test_tokens_per_minute_bucket(autojump_clock: trio.testing.MockClock) -> None:
    """An empty tokens-per-minute bucket answers 429 until enough tokens have refilled."""
    async with client(SimulatedApp(simulation())) as http:
        tokens = (await http.post("/chat/completions", json=chat())).json()["usage"][
            "completion_tokens"
        ]
    per_minute = float(tokens + tokens // 2)
    app = SimulatedApp(simulation(tokens_per_minute=per_minute))
    async with client(app) as http:
        assert (await http.post("/chat/completions", json=chat())).status_code == 200
        limited = await http.post("/chat/completions", json=chat())
    assert limited.status_code == 429
    wait = (tokens - (per_minute - tokens)) / (per_minute / 60.0)
    assert limited.headers["retry-after"] == format_retry_after(wait)


def test_retry_after_format() -> None:
    """Retry-After is whole seconds when whole, else a decimal rounded up to milliseconds."""
    assert format_retry_after(1.0) == "1"
    assert format_retry_after(0.5) == "0.5"
    assert format_retry_after(1 / 3) == "0.334"
    assert format_retry_after(0.9999) == "1"
    assert format_retry_after(0.0) == "0"


# --------------------------------------------------------------------- faults


@pytest.mark.parametrize(("rate", "status"), [("error_500_rate", 500), ("error_503_rate", 503)])
async def test_server_errors(
    autojump_clock: trio.testing.MockClock, rate: str, status: int
) -> None:
    """At rate 1.0 every request gets the injected 500 or 503 (503 with Retry-After), at once."""
    app = SimulatedApp(simulation(**{rate: 1.0}, retry_after=2.0, latency=LatencyConfig(fixed=5)))
    async with client(app) as http:
        response = await http.post("/chat/completions", json=chat())
    assert response.status_code == status
    assert response.json()["error"]["type"] == "server_error"
    assert response.headers.get("retry-after") == ("2" if status == 503 else None)
    assert trio.current_time() == 0.0


async def test_hang_until_client_gives_up(autojump_clock: trio.testing.MockClock) -> None:
    """A hung request never answers; the client's timeout ends it and it is recorded."""
    app = SimulatedApp(simulation(hang_rate=1.0))
    async with client(app) as http:
        with trio.move_on_after(30) as scope:
            await http.post("/chat/completions", json=chat())
    assert scope.cancelled_caught
    assert trio.current_time() == 30.0
    (entry,) = app.timeline()
    assert (entry.start, entry.end, entry.status, entry.outcome) == (0.0, 30.0, None, "hang")
    stats = app.statistics().models["m"]
    assert (stats.in_flight, stats.by_status) == (0, {"hang": 1})


async def test_malformed_body(autojump_clock: trio.testing.MockClock) -> None:
    """A malformed answer is a 200 whose body is not JSON, after the usual latency."""
    app = SimulatedApp(simulation(malformed_rate=1.0, latency=LatencyConfig(fixed=1.0)))
    async with client(app) as http:
        response = await http.post("/chat/completions", json=chat())
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert trio.current_time() == 1.0
    assert app.timeline()[0].outcome == "malformed"


async def test_dropped_connection_in_process(autojump_clock: trio.testing.MockClock) -> None:
    """Mounted in-process, a dropped connection raises ConnectionFailed to the caller."""
    app = SimulatedApp(simulation(disconnect_rate=1.0, latency=LatencyConfig(fixed=1.0)))
    async with client(app) as http:
        with pytest.raises(ConnectionFailed):
            await http.post("/chat/completions", json=chat())
    assert trio.current_time() == 1.0
    (entry,) = app.timeline()
    assert (entry.status, entry.outcome) == (None, "disconnect")


async def test_invalid_output(autojump_clock: trio.testing.MockClock) -> None:
    """At invalid_output_rate 1.0 structured answers break their schema; text is untouched."""
    app = SimulatedApp(simulation(invalid_output_rate=1.0))
    async with client(app) as http:
        for topic in ("deserts", "rivers", "volcanoes", "glaciers", "forests", "caves"):
            body = (await http.post("/chat/completions", json=structured(topic))).json()
            content = body["choices"][0]["message"]["content"]
            try:
                value = json.loads(content)
            except json.JSONDecodeError:
                continue
            assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(value)
        text = await http.post("/chat/completions", json=chat())
    assert text.status_code == 200
    outcomes = [e.outcome for e in app.timeline()]
    assert outcomes == ["invalid_output"] * 6 + ["ok"]


async def test_faults_follow_the_seed(autojump_clock: trio.testing.MockClock) -> None:
    """Which requests fail depends only on the seed and the model, at the configured share."""

    async def statuses(seed: int) -> list[int]:
        app = SimulatedApp(SimulationConfig(seed=seed, default=SimulatedModel(error_500_rate=0.5)))
        async with client(app) as http:
            return [
                (await http.post("/chat/completions", json=chat())).status_code for _ in range(40)
            ]

    first = await statuses(7)
    assert await statuses(7) == first
    assert await statuses(8) != first
    assert 5 < first.count(500) < 35


# --------------------------------------------------------------------- determinism


async def test_same_request_same_body(autojump_clock: trio.testing.MockClock) -> None:
    """The same request always gets the same body, whatever the seed; a different one does not."""
    apps = [SimulatedApp(SimulationConfig(seed=s)) for s in (1, 2)]
    bodies = []
    for app in apps:
        async with client(app) as http:
            for request in (structured(), structured(), chat(), chat("Tell me about lakes")):
                bodies.append((await http.post("/chat/completions", json=request)).content)
    assert bodies[0] == bodies[1] == bodies[4] == bodies[5]
    assert bodies[2] == bodies[6]
    assert bodies[2] != bodies[3]
    assert bodies[0] != bodies[2]


# --------------------------------------------------------------------- stats and timeline


async def test_stats_and_timeline(autojump_clock: trio.testing.MockClock) -> None:
    """``/stats`` counts requests per model, status, in flight and tokens; ``/timeline`` lists
    each request with its times on the app's clock."""
    config = SimulationConfig(
        default=SimulatedModel(latency=LatencyConfig(fixed=1.0)),
        models={"busy": SimulatedModel(capacity=1, latency=LatencyConfig(fixed=2.0))},
    )
    app = SimulatedApp(config)
    async with client(app, base_url="http://sim") as http:

        async def post(model: str) -> None:
            await http.post("/v1/chat/completions", json=chat(model=model))

        async with trio.open_nursery() as nursery:
            for model in ("m", "busy", "busy"):
                nursery.start_soon(post, model)
            await trio.sleep(0.5)
            during = (await http.get("/stats")).json()
        await http.post("/v1/chat/completions", content=b"nope")
        stats = (await http.get("/stats")).json()
        timeline = (await http.get("/timeline")).json()
    assert during["models"]["busy"]["in_flight"] == 1
    assert during["models"]["m"]["in_flight"] == 1
    busy = stats["models"]["busy"]
    assert busy["requests"] == 2
    assert busy["by_status"] == {"200": 1, "429": 1}
    assert (busy["in_flight"], busy["peak_in_flight"]) == (0, 1)
    assert busy["input_tokens"] == 6
    assert busy["output_tokens"] > 0
    assert stats["models"][""]["by_status"] == {"400": 1}
    assert sorted((e["model"], e["start"], e["end"], e["status"]) for e in timeline) == [
        ("", 2.0, 2.0, 400),
        ("busy", 0.0, 0.0, 429),
        ("busy", 0.0, 2.0, 200),
        ("m", 0.0, 1.0, 200),
    ]
    assert {e["path"] for e in timeline} == {"/v1/chat/completions"}
    assert [e.to_json() for e in app.timeline()] == timeline


def test_timeline_is_bounded() -> None:
    """The timeline keeps only the most recent 100,000 requests."""
    recorder = Recorder()
    for index in range(TIMELINE_LIMIT + 5):
        entry = TimelineEntry(
            model="m", path="/p", start=index, end=index, status=200, outcome="ok"
        )
        recorder.finished(entry, admitted=False)
    timeline = recorder.timeline()
    assert len(timeline) == TIMELINE_LIMIT
    assert timeline[0].start == 5


def test_public_api() -> None:
    """``gridloom.simulated`` exports a sorted ``__all__`` of names it defines."""
    names = gridloom.simulated.__all__
    assert names == sorted(names)
    assert all(hasattr(gridloom.simulated, name) for name in names)


# --------------------------------------------------------------------- real sockets


async def test_serve_over_real_sockets() -> None:
    """``serve_simulated`` answers over loopback, and a dropped connection is a transport
    error for the client (real time, no latency)."""
    config = SimulationConfig(models={"drop": SimulatedModel(disconnect_rate=1.0)})
    started = time.perf_counter()
    async with serve_simulated(config) as server:
        startup = time.perf_counter() - started
        assert server.host == "127.0.0.1"
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/v1"
        limits = httpx.Limits(max_connections=4)
        async with httpx.AsyncClient(base_url=server.url, timeout=10.0, limits=limits) as http:
            ok = await http.post("/chat/completions", json=chat())
            assert ok.status_code == 200
            assert ok.json()["choices"][0]["message"]["content"]
            with pytest.raises(httpx.TransportError):
                await http.post("/chat/completions", json=chat(model="drop"))
            again = await http.post("/chat/completions", json=chat())
            assert again.content == ok.content
            stats = (await http.get(server.url.removesuffix("/v1") + "/stats")).json()
    print(f"serve_simulated started in {startup * 1000:.1f} ms")
    with pytest.raises(LookupError):  # the block's own exception, not an exception group
        async with serve_simulated(config):
            raise LookupError
    assert stats["models"]["drop"]["by_status"] == {"disconnect": 1}
    assert stats["models"]["m"]["by_status"] == {"200": 2}
    assert [e.outcome for e in server.app.timeline()] == ["ok", "disconnect", "ok"]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
async def test_serve_refuses_non_loopback(host: str) -> None:
    """Only loopback addresses may be served on."""
    with pytest.raises(ValueError, match="loopback"):
        async with serve_simulated(SimulationConfig(), host=host):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="loopback"):
        run_simulator(SimulationConfig(), host=host, port=0)


# --------------------------------------------------------------------- streaming


async def call(
    app: SimulatedApp, path: str, body: Any, *, leave_at: float | None = None
) -> list[tuple[float, Any]]:
    """Run one request through the ASGI app: the messages it sends, each with its time. With
    ``leave_at``, the client disconnects at that time."""
    sent: list[tuple[float, Any]] = []
    delivered = False

    async def receive() -> Any:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": json.dumps(body).encode()}
        if leave_at is None:
            await trio.sleep_forever()
        await trio.sleep_until(leave_at)
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append((trio.current_time(), message))

    await app({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send)
    return sent


def sse_data(sent: list[tuple[float, Any]]) -> list[Any]:
    """The ``data:`` payloads of a streamed response (``[DONE]`` kept as text)."""
    raw = b"".join(m.get("body", b"") for _, m in sent if m["type"] == "http.response.body")
    out = []
    for event in raw.decode().split("\n\n"):
        for line in event.splitlines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def test_stream_spends_the_latency_between_its_chunks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A streamed completion: head and first chunk after the fixed latency, each later delta
    after ``per_token`` x its words, the end when the unstreamed answer would come."""
    app = SimulatedApp(simulation(latency=LatencyConfig(fixed=1.0, per_token=0.25)))
    sent = await call(app, "/v1/chat/completions", chat(stream=True))
    (start, head), *bodies = sent
    assert (start, head["status"]) == (1.0, 200)
    assert dict(head["headers"])[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert [m.get("more_body") for _, m in bodies] == [True] * (len(bodies) - 1) + [False]
    chunks = sse_data(sent)
    assert chunks[-1] == "[DONE]"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    deltas = [c for c in chunks[:-1] if c["choices"][0]["delta"].get("content")]
    # The role goes at once; each delta once its words' latency is spent; the last write
    # also carries the finish reason and [DONE].
    assert len(bodies) == 1 + len(deltas)
    times = [t for t, _ in bodies]
    assert times[0] == 1.0
    assert times == sorted(set(times))
    words = len(text.split())
    assert times[-1] == pytest.approx(1.0 + 0.25 * words, abs=1e-9)
    unstreamed = SimulatedApp(simulation(latency=LatencyConfig(fixed=1.0, per_token=0.25)))
    start_plain = trio.current_time()
    plain = await call(unstreamed, "/v1/chat/completions", chat())
    body = json.loads(plain[1][1]["body"])
    assert body["choices"][0]["message"]["content"] == text
    assert plain[-1][0] - start_plain == pytest.approx(times[-1], abs=1e-9)
    (entry,) = app.timeline()
    assert (entry.status, entry.outcome) == (200, "ok")
    assert entry.end == times[-1]
    assert app.statistics().models["m"].output_tokens == words


async def test_anthropic_stream_events(autojump_clock: trio.testing.MockClock) -> None:
    """A streamed message is message_start, one block's start/deltas/stop, message_delta
    (stop reason, usage), message_stop; its text deltas make the unstreamed text."""
    app = SimulatedApp(simulation(latency=LatencyConfig(per_token=0.5)))
    body = {"model": "c", "max_tokens": 300, "messages": [{"role": "user", "content": "Hi"}]}
    sent = await call(app, "/v1/messages", body | {"stream": True})
    events = sse_data(sent)
    kinds = [e["type"] for e in events]
    deltas = kinds.count("content_block_delta")
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    plain = json.loads((await call(app, "/v1/messages", body))[1][1]["body"])
    assert text == plain["content"][0]["text"]
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert events[-2]["usage"] == {"output_tokens": len(text.split())}
    assert sent[-1][0] == 0.5 * len(text.split())


async def test_a_stream_holds_its_capacity_slot(autojump_clock: trio.testing.MockClock) -> None:
    """While a stream is still sending, the model's one slot is taken: another request gets
    429; once the stream ended, requests are admitted again."""
    app = SimulatedApp(simulation(capacity=1, latency=LatencyConfig(per_token=1.0)))
    statuses: list[tuple[float, int]] = []

    async def plain(at: float) -> None:
        await trio.sleep_until(at)
        (_, head), *_ = await call(app, "/v1/chat/completions", chat())
        statuses.append((at, head["status"]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(plain, 5.0)
        sent = await call(app, "/v1/chat/completions", chat(stream=True))
        ended = sent[-1][0]
        nursery.start_soon(plain, ended)
    assert ended > 5.0
    assert statuses[0] == (5.0, 429)
    assert statuses[1] == (ended, 200)


@pytest.mark.parametrize(
    ("fault", "status"), [("error_500_rate", 500), ("error_503_rate", 503), ("hang_rate", None)]
)
async def test_stream_faults_before_the_first_byte(
    autojump_clock: trio.testing.MockClock, fault: str, status: int | None
) -> None:
    """Faults that strike before the answer are ordinary HTTP errors (JSON, not a stream);
    a hung stream sends nothing."""
    app = SimulatedApp(simulation(**{fault: 1.0}))
    sent = await call(app, "/v1/chat/completions", chat(stream=True), leave_at=10.0)
    if status is None:
        assert sent == []
        assert app.timeline()[0].outcome == "hang"
        return
    (_, head), (_, body) = sent
    assert head["status"] == status
    assert dict(head["headers"])[b"content-type"] == b"application/json"
    assert json.loads(body["body"])["error"]["type"] == "server_error"


async def test_malformed_stream_is_cut_short(autojump_clock: trio.testing.MockClock) -> None:
    """A malformed stream is a 200 event stream that ends in the middle (no ``[DONE]``)."""
    app = SimulatedApp(simulation(malformed_rate=1.0))
    sent = await call(app, "/v1/chat/completions", chat(stream=True))
    raw = b"".join(m.get("body", b"") for _, m in sent[1:])
    assert sent[0][1]["status"] == 200
    assert raw.startswith(b"data: {")
    assert b"[DONE]" not in raw
    assert app.timeline()[0].outcome == "malformed"


async def test_a_client_leaving_mid_stream_frees_the_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that disconnects in the middle of a stream ends it; it is recorded as
    ``client_closed`` and its capacity is released."""
    app = SimulatedApp(simulation(capacity=1, latency=LatencyConfig(per_token=1.0)))
    sent = await call(app, "/v1/chat/completions", chat(stream=True), leave_at=3.5)
    assert sent[-1][1]["more_body"] is True  # the stream never ended
    assert trio.current_time() == 3.5
    (entry,) = app.timeline()
    assert (entry.end, entry.status, entry.outcome) == (3.5, None, "client_closed")
    assert app.statistics().models["m"].in_flight == 0


async def test_unknown_path_lists_the_routes(autojump_clock: trio.testing.MockClock) -> None:
    """An unknown path is a JSON 404 naming the endpoints that are served; a model is
    retrieved by any name."""
    async with client(SimulatedApp(simulation()), base_url="http://sim") as http:
        missing = await http.post("/v1/chat/complete", json=chat())
        model = await http.get("/v1/models/some%2Fmodel")
    assert missing.status_code == 404
    assert "POST /v1/chat/completions" in missing.json()["error"]["message"]
    assert model.json() == {
        "id": "some/model",
        "object": "model",
        "created": 0,
        "owned_by": "gridloom-simulated",
        "type": "model",
        "display_name": "some/model",
        "created_at": "1970-01-01T00:00:00Z",
    }
