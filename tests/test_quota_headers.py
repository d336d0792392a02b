"""Quota headers: parsing both formats, the adapters attaching them, the simulated endpoint
sending them, and the throttle holding admissions on them — in virtual time, exactly."""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import pytest
import trio

from gridloom.clients import (
    AnthropicClient,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    Message,
    OpenAIClient,
    RateLimitState,
    RetryPolicy,
    ThrottledModelClient,
    Usage,
    build_http_client,
    parse_rate_limit_headers,
)
from gridloom.clients._quota import parse_reset_duration
from gridloom.clients._throttled import MAX_QUOTA_HOLD_SECONDS
from gridloom.config import (
    LatencyConfig,
    ModelConfig,
    ProviderConfig,
    SimulatedModel,
    SimulationConfig,
    ThrottleConfig,
)
from gridloom.simulated import SimulatedApp
from gridloom.simulated._asgi import format_reset_duration, format_timestamp
from gridloom.throttle import AdaptiveLimiter, ThrottleRegistry

#: 2023-11-14T22:13:20Z, a wall-clock origin for exact Anthropic timestamps.
EPOCH = 1_700_000_000.0

REQUEST = ChatRequest(model="m", messages=(Message(role="user", content="hi"),))

OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-tokens": "6m0s",
}


def at(seconds: float) -> str:
    """The RFC 3339 timestamp ``seconds`` after :data:`EPOCH`."""
    when = datetime.datetime.fromtimestamp(EPOCH + seconds, datetime.UTC)
    return when.isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------- parsing


def test_openai_headers() -> None:
    """All six OpenAI headers become one state."""
    state = parse_rate_limit_headers(httpx.Headers(OPENAI_HEADERS))
    assert state == RateLimitState(
        limit_requests=60,
        remaining_requests=59,
        reset_requests=1.0,
        limit_tokens=150000,
        remaining_tokens=149984,
        reset_tokens=360.0,
    )


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1s", 1.0),
        ("20ms", 0.02),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("1m", 60.0),
        ("0s", 0.0),
        ("8.64s", 8.64),
        ("1.5ms", 0.0015),
        ("250us", 0.00025),
        ("0.5", 0.5),
        ("7", 7.0),
        (" 2s ", 2.0),
    ],
)
def test_reset_durations(value: str, seconds: float) -> None:
    """Go-style durations and bare numbers of seconds."""
    assert parse_reset_duration(value) == pytest.approx(seconds)
    state = parse_rate_limit_headers(httpx.Headers({"x-ratelimit-reset-tokens": value}))
    assert state is not None
    assert state.reset_tokens == pytest.approx(seconds)


def test_anthropic_headers_with_a_fixed_now() -> None:
    """Anthropic's resets are timestamps, measured from ``now``; a past one is 0."""
    headers = httpx.Headers(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": at(1.5),
            "anthropic-ratelimit-tokens-limit": "40000",
            "anthropic-ratelimit-tokens-remaining": "39000",
            "anthropic-ratelimit-tokens-reset": "2023-11-14T23:14:20+01:00",  # EPOCH + 60 s
        }
    )
    assert parse_rate_limit_headers(headers, now=EPOCH) == RateLimitState(
        limit_requests=50,
        remaining_requests=0,
        reset_requests=1.5,
        limit_tokens=40000,
        remaining_tokens=39000,
        reset_tokens=60.0,
    )
    later = parse_rate_limit_headers(headers, now=EPOCH + 100.0)
    assert later is not None
    assert (later.reset_requests, later.reset_tokens) == (0.0, 0.0)


def test_anthropic_reset_defaults_to_the_wall_clock() -> None:
    """Without ``now``, a timestamp is measured from ``time.time()``."""
    when = datetime.datetime.fromtimestamp(time.time() + 30.0, datetime.UTC)
    headers = httpx.Headers({"anthropic-ratelimit-tokens-reset": when.isoformat()})
    state = parse_rate_limit_headers(headers)
    assert state is not None
    assert state.reset_tokens == pytest.approx(30.0, abs=1.0)


@pytest.mark.parametrize(
    "headers",
    [
        {
            "x-ratelimit-limit-requests": "sixty",
            "x-ratelimit-remaining-requests": "-1",
            "x-ratelimit-reset-requests": "1sx",
            "x-ratelimit-limit-tokens": "1.5",
            "x-ratelimit-remaining-tokens": "",
            "x-ratelimit-reset-tokens": "-2s",
        },
        {
            "x-ratelimit-reset-requests": "nan",
            "x-ratelimit-reset-tokens": "inf",
            "x-ratelimit-remaining-tokens": "1_000",
        },
        {
            "x-ratelimit-reset-requests": "ms",
            "x-ratelimit-reset-tokens": "1d",
        },
        {
            "anthropic-ratelimit-requests-limit": "many",
            "anthropic-ratelimit-requests-reset": "tomorrow",
            "anthropic-ratelimit-tokens-reset": "2024-13-01T00:00:00Z",
            "anthropic-ratelimit-tokens-remaining": "0x10",
        },
        {"anthropic-ratelimit-requests-reset": "1", "anthropic-ratelimit-tokens-reset": ""},
    ],
)
def test_malformed_values_are_ignored(headers: dict[str, str]) -> None:
    """A value not understood leaves its field ``None``; nothing raises."""
    assert parse_rate_limit_headers(httpx.Headers(headers), now=EPOCH) == RateLimitState()


def test_absent_headers() -> None:
    """Without any quota header there is no state (other headers do not count)."""
    assert parse_rate_limit_headers(httpx.Headers()) is None
    headers = {"retry-after": "1", "x-request-id": "abc", "content-type": "application/json"}
    assert parse_rate_limit_headers(httpx.Headers(headers)) is None


def test_partial_and_mixed_headers() -> None:
    """Fields come from whichever format has them; OpenAI's wins where both do."""
    headers = httpx.Headers(
        {
            "x-ratelimit-remaining-requests": "3",
            "anthropic-ratelimit-requests-remaining": "9",
            "anthropic-ratelimit-tokens-remaining": "100",
        }
    )
    assert parse_rate_limit_headers(headers) == RateLimitState(
        remaining_requests=3, remaining_tokens=100
    )


# --------------------------------------------------------------------- adapters

OPENAI = ProviderConfig(name="oa", endpoint="http://openai.test/v1")
ANTHROPIC = ProviderConfig(name="an", type="anthropic", endpoint="http://anthropic.test/v1")


def mock_http(
    provider: ProviderConfig, handler: Callable[[httpx.Request], httpx.Response]
) -> httpx.AsyncClient:
    model = ModelConfig(alias="m", provider=provider.name, model="m")
    return build_http_client(provider, [model], transport=httpx.MockTransport(handler))


CHAT = {
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2},
}
EMBEDDINGS = {"data": [{"index": 0, "embedding": [0.5, 1.0]}], "usage": {"prompt_tokens": 2}}


async def test_openai_adapter_attaches_the_quota() -> None:
    """Chat and embedding responses carry the parsed ``x-ratelimit-*`` headers."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = EMBEDDINGS if request.url.path.endswith("embeddings") else CHAT
        return httpx.Response(200, json=body, headers=OPENAI_HEADERS)

    expected = parse_rate_limit_headers(httpx.Headers(OPENAI_HEADERS))
    async with mock_http(OPENAI, handler) as http:
        client = OpenAIClient(http, provider=OPENAI, api_key=None)
        chat = await client.chat(REQUEST)
        embedded = await client.embed(EmbeddingRequest(model="m", inputs=["a"]))
    assert chat.rate_limit == expected
    assert chat.rate_limit is not None
    assert chat.rate_limit.remaining_requests == 59
    assert embedded.rate_limit == expected


async def test_adapters_without_quota_headers() -> None:
    """No quota header, no state."""
    async with mock_http(OPENAI, lambda request: httpx.Response(200, json=CHAT)) as http:
        response = await OpenAIClient(http, provider=OPENAI, api_key=None).chat(REQUEST)
    assert response.rate_limit is None
    assert response == ChatResponse(
        text="Hi.", usage=Usage(input_tokens=5, output_tokens=2), model="m"
    )


async def test_anthropic_adapter_attaches_the_quota() -> None:
    """Anthropic's headers, resets measured from the wall clock."""
    reset = datetime.datetime.fromtimestamp(time.time() + 20.0, datetime.UTC).isoformat()
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
    }
    body = {"content": [{"type": "text", "text": "Hi."}], "usage": {"input_tokens": 3}}
    async with mock_http(
        ANTHROPIC, lambda request: httpx.Response(200, json=body, headers=headers)
    ) as http:
        response = await AnthropicClient(http, provider=ANTHROPIC, api_key=None).chat(REQUEST)
    state = response.rate_limit
    assert state is not None
    assert (state.limit_requests, state.remaining_requests) == (50, 0)
    assert state.reset_requests == pytest.approx(20.0, abs=1.0)
    assert state.limit_tokens is None


async def test_the_quota_comes_from_the_successful_attempt(autojump_clock: Any) -> None:
    """After a transport retry, the state is that of the response that succeeded."""
    replies = [
        httpx.Response(503, json={}, headers={"x-ratelimit-remaining-requests": "7"}),
        httpx.Response(200, json=CHAT, headers={"x-ratelimit-remaining-requests": "5"}),
    ]
    async with mock_http(OPENAI, lambda request: replies.pop(0)) as http:
        client = OpenAIClient(
            http, provider=OPENAI, api_key=None, retry=RetryPolicy(rng=random.Random(0))
        )
        response = await client.chat(REQUEST)
    assert response.rate_limit == RateLimitState(remaining_requests=5)


# --------------------------------------------------------------------- simulated endpoint


def sim_http(app: SimulatedApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim/v1")


def chat_body(model: str = "m") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Tell me about rivers"}]}


def requests_quota(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    headers = response.headers
    return (
        headers.get("x-ratelimit-limit-requests"),
        headers.get("x-ratelimit-remaining-requests"),
        headers.get("x-ratelimit-reset-requests"),
    )


def test_reset_duration_format() -> None:
    """Go-style durations, rounded up to milliseconds, which the parser reads back."""
    cases = {
        0.0: "0s",
        0.0004: "1ms",
        0.02: "20ms",
        0.5: "500ms",
        1.0: "1s",
        1.25: "1.25s",
        360.0: "6m0s",
        3723.5: "1h2m3.5s",
    }
    for seconds, text in cases.items():
        assert format_reset_duration(seconds) == text
        assert parse_reset_duration(text) == pytest.approx(seconds, abs=0.001)
    assert format_timestamp(EPOCH) == "2023-11-14T22:13:20Z"
    assert format_timestamp(EPOCH + 0.25) == "2023-11-14T22:13:20.250Z"


async def test_simulated_requests_quota_is_exact(autojump_clock: Any) -> None:
    """requests_per_second=2: a bucket of 2 refilling 2 per second, reported as it stands when
    each answer is sent; a 429 carries no quota headers."""
    app = SimulatedApp(
        SimulationConfig(default=SimulatedModel(requests_per_second=2.0, rate_limit_headers=True))
    )
    async with sim_http(app) as http:

        async def post() -> httpx.Response:
            return await http.post("/chat/completions", json=chat_body())

        assert requests_quota(await post()) == ("2", "1", "500ms")
        assert requests_quota(await post()) == ("2", "0", "1s")
        refused = await post()
        assert refused.status_code == 429
        assert requests_quota(refused) == (None, None, None)
        await trio.sleep(0.5)
        assert requests_quota(await post()) == ("2", "0", "1s")
        await trio.sleep(0.75)  # 1.5 back, one taken
        assert requests_quota(await post()) == ("2", "0", "750ms")
        await trio.sleep(10)
        assert requests_quota(await post()) == ("2", "1", "500ms")
        embedded = await http.post("/embeddings", json={"model": "m", "input": ["a"]})
        assert requests_quota(embedded) == ("2", "0", "1s")
    assert "x-ratelimit-limit-tokens" not in embedded.headers


async def test_simulated_quota_is_read_when_the_answer_is_sent(autojump_clock: Any) -> None:
    """With 0.25 s of latency the bucket has refilled by half a request when answering."""
    model = SimulatedModel(
        latency=LatencyConfig(fixed=0.25), requests_per_second=2.0, rate_limit_headers=True
    )
    async with sim_http(SimulatedApp(SimulationConfig(default=model))) as http:
        first = await http.post("/chat/completions", json=chat_body())
    assert requests_quota(first) == ("2", "1", "250ms")


async def test_simulated_tokens_quota_is_exact(autojump_clock: Any) -> None:
    """tokens_per_minute=600: output tokens leave a bucket refilling 10 per second."""
    app = SimulatedApp(
        SimulationConfig(default=SimulatedModel(tokens_per_minute=600.0, rate_limit_headers=True))
    )
    async with sim_http(app) as http:
        response = await http.post("/chat/completions", json=chat_body())
    tokens = response.json()["usage"]["completion_tokens"]
    headers = response.headers
    assert headers["x-ratelimit-limit-tokens"] == "600"
    assert headers["x-ratelimit-remaining-tokens"] == str(600 - tokens)
    assert headers["x-ratelimit-reset-tokens"] == format_reset_duration(tokens / 10.0)
    assert "x-ratelimit-limit-requests" not in headers


async def test_simulated_anthropic_quota_uses_timestamps(autojump_clock: Any) -> None:
    """On /v1/messages the resets are RFC 3339 timestamps from the wall clock."""
    model = SimulatedModel(
        requests_per_second=2.0, tokens_per_minute=600.0, rate_limit_headers=True
    )
    app = SimulatedApp(
        SimulationConfig(default=model), wall_clock=lambda: EPOCH + trio.current_time()
    )
    body = chat_body() | {"max_tokens": 100}
    async with sim_http(app) as http:
        await trio.sleep(1.0)
        response = await http.post("/messages", json=body)
    headers = response.headers
    tokens = response.json()["usage"]["output_tokens"]
    assert headers["anthropic-ratelimit-requests-limit"] == "2"
    assert headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert headers["anthropic-ratelimit-requests-reset"] == "2023-11-14T22:13:21.500Z"
    assert headers["anthropic-ratelimit-tokens-remaining"] == str(600 - tokens)
    assert "x-ratelimit-remaining-requests" not in headers
    state = parse_rate_limit_headers(headers, now=EPOCH + 1.0)
    assert state is not None
    assert state.reset_tokens == pytest.approx(tokens / 10.0, abs=0.001)
    assert attrs.evolve(state, reset_tokens=None) == RateLimitState(
        limit_requests=2,
        remaining_requests=1,
        reset_requests=0.5,
        limit_tokens=600,
        remaining_tokens=600 - tokens,
    )


async def test_simulated_quota_headers_are_off_by_default(autojump_clock: Any) -> None:
    """Without ``rate_limit_headers`` the buckets are not reported."""
    app = SimulatedApp(SimulationConfig(default=SimulatedModel(requests_per_second=2.0)))
    async with sim_http(app) as http:
        response = await http.post("/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert not any(name.startswith("x-ratelimit") for name in response.headers)


# --------------------------------------------------------------------- throttle


def limiter(cap: int) -> AdaptiveLimiter:
    return ThrottleRegistry(ThrottleConfig()).limiter("p", "m", "chat", cap)


@attrs.define
class Quoting:
    """An inner client answering every request with the next of ``replies`` (the last one
    repeats), and noting when each request started."""

    replies: list[ChatResponse]
    starts: list[float] = attrs.Factory(list)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.starts.append(trio.current_time())
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    async def embed(self, request: Any) -> Any:
        raise AssertionError


def reply(state: RateLimitState | None, tokens: int = 0) -> ChatResponse:
    return ChatResponse(text="ok", usage=Usage(output_tokens=tokens), rate_limit=state)


async def run(client: ThrottledModelClient, n: int) -> None:
    for _ in range(n):
        await client.chat(REQUEST)


async def test_spent_requests_hold_until_one_is_back(autojump_clock: Any) -> None:
    """Remaining 0 of 2, full in 1 s: one request is back in 0.5 s; the limit stays."""
    spent = RateLimitState(limit_requests=2, remaining_requests=0, reset_requests=1.0)
    inner = Quoting([reply(spent)])
    lim = limiter(4)
    await run(ThrottledModelClient(inner, chat=lim, embedding=limiter(4)), 3)
    assert inner.starts == [0.0, 0.5, 1.0]
    stats = lim.statistics()
    assert (stats.holds, stats.limit, stats.cuts, stats.rate_limited) == (3, 4, 0, 0)
    assert stats.blocked_until == 1.5


async def test_unknown_limit_waits_the_whole_reset(autojump_clock: Any) -> None:
    """Without the limit, the hold lasts the whole reset."""
    inner = Quoting([reply(RateLimitState(remaining_requests=0, reset_requests=2.0)), reply(None)])
    await run(ThrottledModelClient(inner, chat=limiter(4), embedding=limiter(4)), 2)
    assert inner.starts == [0.0, 2.0]


async def test_tokens_hold_for_the_mean_cost(autojump_clock: Any) -> None:
    """The expected cost is the mean usage so far: 10 then (10 + 30) / 2 = 20. With 15 of 115
    tokens left and a reset of 10 s, 5 more come back in 10 * 5 / 100 = 0.5 s."""
    state = RateLimitState(limit_tokens=115, remaining_tokens=15, reset_tokens=10.0)
    inner = Quoting([reply(state, tokens=10), reply(state, tokens=30), reply(None)])
    lim = limiter(4)
    await run(ThrottledModelClient(inner, chat=lim, embedding=limiter(4)), 3)
    assert inner.starts == [0.0, 0.0, 0.5]
    assert lim.statistics().holds == 1


async def test_the_longer_wait_wins_and_holds_are_capped(autojump_clock: Any) -> None:
    """Requests and tokens both spent: the longer wait holds, at most 60 s."""
    state = RateLimitState(
        remaining_requests=0, reset_requests=1.0, remaining_tokens=0, reset_tokens=3600.0
    )
    inner = Quoting([reply(state, tokens=10), reply(None)])
    await run(ThrottledModelClient(inner, chat=limiter(4), embedding=limiter(4)), 2)
    assert inner.starts == [0.0, MAX_QUOTA_HOLD_SECONDS]


@pytest.mark.parametrize(
    "state",
    [
        None,
        RateLimitState(),
        RateLimitState(limit_requests=2, remaining_requests=0),  # reset unknown
        RateLimitState(remaining_requests=1, reset_requests=1.0),
        RateLimitState(remaining_tokens=1, reset_tokens=5.0),  # enough for the mean cost, 1
        RateLimitState(remaining_tokens=0),  # reset unknown
    ],
)
async def test_no_hold(state: RateLimitState | None, autojump_clock: Any) -> None:
    """Nothing is held without a spent quota whose reset is known."""
    inner = Quoting([reply(state, tokens=1)])
    lim = limiter(4)
    await run(ThrottledModelClient(inner, chat=lim, embedding=limiter(4)), 3)
    assert inner.starts == [0.0, 0.0, 0.0]
    assert lim.statistics().holds == 0


async def test_quota_headers_can_be_ignored(autojump_clock: Any) -> None:
    """``respect_quota_headers=False`` holds nothing."""
    spent = RateLimitState(limit_requests=2, remaining_requests=0, reset_requests=1.0)
    inner = Quoting([reply(spent)])
    lim = limiter(4)
    client = ThrottledModelClient(
        inner, chat=lim, embedding=limiter(4), respect_quota_headers=False
    )
    await run(client, 3)
    assert inner.starts == [0.0, 0.0, 0.0]
    assert lim.statistics().holds == 0


async def burst(respect: bool) -> tuple[int, AdaptiveLimiter, SimulatedApp]:
    """40 requests at once through a cap of 8 against 2 requests per second (latency 0);
    returns how many were answered 429, the chat limiter, and the app."""
    model = SimulatedModel(requests_per_second=2.0, rate_limit_headers=True)
    app = SimulatedApp(SimulationConfig(default=model))
    provider = ProviderConfig(name="sim", type="simulated")
    config = ModelConfig(alias="m", provider="sim", model="m", max_parallel_requests=8)
    registry = ThrottleRegistry(ThrottleConfig())
    chat = registry.limiter("sim", "m", "chat", 8)
    http = build_http_client(
        provider, [config], transport=httpx.ASGITransport(app=app), base_url="http://sim/v1"
    )
    client = ThrottledModelClient(
        OpenAIClient(http, provider=provider, api_key=None),
        chat=chat,
        embedding=registry.limiter("sim", "m", "embedding", 8),
        respect_quota_headers=respect,
    )
    async with http, trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(client.chat, REQUEST)
    refused = sum(1 for entry in app.timeline() if entry.status == 429)
    assert sum(1 for entry in app.timeline() if entry.status == 200) == 40
    return refused, chat, app


async def test_quota_headers_prevent_refusals(autojump_clock: Any) -> None:
    """Respecting the headers, only the opening burst (8 at once against a bucket of 2, and
    the cuts that follow it) is refused: 6 refusals instead of 38, the same 19 s in all,
    and every cut of the limit is a refusal's, never a hold's."""
    start = trio.current_time()
    refused, chat, _ = await burst(respect=True)
    assert trio.current_time() - start == 19.0
    stats = chat.statistics()
    assert refused == 6
    assert stats.holds == 33
    assert stats.rate_limited == stats.cuts == refused

    start = trio.current_time()
    ignored, chat, _ = await burst(respect=False)
    assert trio.current_time() - start == 19.0
    assert ignored == 38
    assert chat.statistics().holds == 0
    assert refused < ignored
