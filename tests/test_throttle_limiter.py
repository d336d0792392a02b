"""The trio actuator and ThrottledModelClient, in virtual time with exact assertions."""

from __future__ import annotations

import json
import random
from typing import Any

import attrs
import httpx
import pytest
import trio

from gridloom.clients import (
    ChatRequest,
    ChatResponse,
    Message,
    OpenAIClient,
    RetryPolicy,
    ThrottledModelClient,
    Usage,
    build_http_client,
)
from gridloom.config import (
    CapacityStep,
    LatencyConfig,
    ModelConfig,
    ProviderConfig,
    SimulatedModel,
    SimulationConfig,
    ThrottleConfig,
)
from gridloom.errors import BadRequest, EmptyAnswer, RateLimited
from gridloom.simulated import SimulatedApp
from gridloom.throttle import (
    MAX_SERVER_HOLD_SECONDS,
    AdaptiveLimiter,
    ThrottleRegistry,
    TokenBucket,
)
from gridloom.throttle._bucket import MAX_DEBT_SECONDS


def limiter(cap: int, **config: Any) -> AdaptiveLimiter:
    """A registry's limiter. It opens at the cap (no slow start) unless the test passes
    ``slow_start_seconds``: most tests here are about the AIMD after the start."""
    config.setdefault("slow_start_seconds", 0.0)
    return ThrottleRegistry(ThrottleConfig(**config)).limiter("p", "m", "chat", cap)


async def test_cooldown_is_honoured_to_the_second(autojump_clock: Any) -> None:
    """After a 429 with Retry-After 7 at t=0, nothing is admitted before t=7, then at once."""
    lim = limiter(4)
    first = await lim.acquire()
    lim.rate_limited(first, 7.0)
    ticket = await lim.acquire()
    assert trio.current_time() == 7.0
    lim.succeeded(ticket)


async def test_default_cooldown_applies_without_retry_after(autojump_clock: Any) -> None:
    """A 429 without Retry-After blocks admissions for cooldown_seconds."""
    lim = limiter(4, cooldown_seconds=2.5)
    lim.rate_limited(await lim.acquire(), None)
    await lim.acquire()
    assert trio.current_time() == 2.5


async def test_lowering_the_limit_lets_requests_in_flight_finish(autojump_clock: Any) -> None:
    """After a cut, requests in flight keep their slots; new ones wait until below the limit."""
    lim = limiter(4, cooldown_seconds=0.0)
    tickets = [await lim.acquire() for _ in range(4)]
    lim.rate_limited(tickets.pop(), None)  # 4 → 3, three still in flight
    assert lim.statistics().limit == 3
    admitted: list[float] = []

    async def late() -> None:
        lim.succeeded(await lim.acquire())
        admitted.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late)
        await trio.sleep(5)
        assert admitted == []
        lim.succeeded(tickets.pop())
    assert admitted == [5.0]


async def test_ramp_reaches_the_cap_at_rampup_seconds(autojump_clock: Any) -> None:
    """With rampup 8 s and cap 5, admissions open one by one at t = 0, 2, 4, 6, 8."""
    registry = ThrottleRegistry(ThrottleConfig(rampup_seconds=8.0))
    lim = registry.limiter("p", "m", "chat", 5)
    times: list[float] = []
    held = []

    async def hold() -> None:
        held.append(await lim.acquire())
        times.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(registry.run)
        for _ in range(5):
            nursery.start_soon(hold)
    assert times == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert lim.statistics().limit == 5
    assert not lim.statistics().ramping


async def test_recovery_adds_one_slot_per_success_window(autojump_clock: Any) -> None:
    """After a cut to 3, every 5 successes add one slot back, up to the ceiling's overshoot."""
    lim = limiter(8, success_window=5, cooldown_seconds=0.0, ceiling_overshoot=0.0)
    tickets = [await lim.acquire() for _ in range(4)]
    for t in tickets[1:]:
        lim.released(t)
    lim.rate_limited(tickets[0], None)  # limit 8 → 6, ceiling 8
    limits = []
    for _ in range(30):
        lim.succeeded(await lim.acquire())
        limits.append(lim.statistics().limit)
    assert limits[4] == 7
    assert limits[9] == 8
    assert max(limits) == 8  # ceiling 8, no overshoot


async def test_non_capacity_errors_only_release(autojump_clock: Any) -> None:
    """A 400 frees the slot without touching the limit or the cooldown."""
    lim = limiter(2)

    @attrs.define
    class Failing:
        async def chat(self, request: ChatRequest) -> Any:
            raise BadRequest("nope", status=400)

        async def embed(self, request: Any) -> Any:
            raise AssertionError

    client = ThrottledModelClient(Failing(), chat=lim, embedding=limiter(2))
    with pytest.raises(BadRequest):
        await client.chat(ChatRequest(model="m", messages=()))
    stats = lim.statistics()
    assert (stats.limit, stats.in_flight, stats.rate_limited) == (2, 0, 0)
    assert trio.current_time() == 0.0


async def test_rate_limited_requests_retry_behind_the_cooldown(autojump_clock: Any) -> None:
    """A 429 goes back through the limiter (after its Retry-After) instead of failing."""
    answers = iter([RateLimited("busy", retry_after=3.0), RateLimited("busy", retry_after=1.0)])

    @attrs.define
    class Flaky:
        calls: list[float] = attrs.Factory(list)

        async def chat(self, request: ChatRequest) -> Any:
            self.calls.append(trio.current_time())
            error = next(answers, None)
            if error is not None:
                raise error
            return "ok"

        async def embed(self, request: Any) -> Any:
            raise AssertionError

    inner = Flaky()
    client = ThrottledModelClient(inner, chat=limiter(4), embedding=limiter(4))
    assert await client.chat(ChatRequest(model="m", messages=())) == "ok"
    assert inner.calls == [0.0, 3.0, 4.0]


class _LongestWait(random.Random):
    """Backoff jitter that always draws the ceiling, for exact times."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_transport_retry_waits_outside_the_limiter_slot(autojump_clock: Any) -> None:
    """With one slot, a request whose 503 is retried after a 4 s backoff gives its slot to the
    next request while it waits, then queues for one again: B is answered at t=0, A at t=4 —
    not B at t=4, as if A had held the slot through its wait."""
    answers = iter([503])
    sent: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        prompt = json.loads(request.content)["messages"][0]["content"]
        sent.append((prompt, trio.current_time()))
        status = next(answers, 200)
        if status != 200:
            return httpx.Response(status, json={"error": {"message": "overloaded"}})
        reply = {
            "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
        return httpx.Response(200, json=reply)

    provider = ProviderConfig(name="p", type="openai", endpoint="http://p.test/v1")
    model = ModelConfig(alias="m", provider="p", model="m", max_parallel_requests=1)
    http = build_http_client(provider, [model], transport=httpx.MockTransport(handler))
    retry = RetryPolicy(max_attempts=3, base=4.0, cap=4.0, rng=_LongestWait())
    inner = OpenAIClient(http, provider=provider, api_key=None, retry=retry)
    lim = limiter(1)
    client = ThrottledModelClient(inner, chat=lim, embedding=limiter(1))
    answered: dict[str, float] = {}

    async def ask(prompt: str) -> None:
        await client.chat(ChatRequest(model="m", messages=[Message(role="user", content=prompt)]))
        answered[prompt] = trio.current_time()

    async with http, trio.open_nursery() as nursery:
        nursery.start_soon(ask, "A")
        await trio.sleep(0)
        nursery.start_soon(ask, "B")
    assert sent == [("A", 0.0), ("B", 0.0), ("A", 4.0)]
    assert answered == {"B": 0.0, "A": 4.0}
    stats = lim.statistics()
    assert (stats.in_flight, stats.limit) == (0, 1)


async def test_cancelled_during_a_retry_wait_holds_no_slot(autojump_clock: Any) -> None:
    """A request cancelled while it sleeps outside its slot leaves the limiter balanced."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": "overloaded"}})

    provider = ProviderConfig(name="p", type="openai", endpoint="http://p.test/v1")
    model = ModelConfig(alias="m", provider="p", model="m", max_parallel_requests=1)
    http = build_http_client(provider, [model], transport=httpx.MockTransport(handler))
    retry = RetryPolicy(max_attempts=3, base=4.0, cap=4.0, rng=_LongestWait())
    lim = limiter(1)
    client = ThrottledModelClient(
        OpenAIClient(http, provider=provider, api_key=None, retry=retry),
        chat=lim,
        embedding=limiter(1),
    )
    async with http:
        with trio.move_on_after(2.0):
            await client.chat(ChatRequest(model="m", messages=[Message(role="user", content="x")]))
    assert trio.current_time() == 2.0
    assert lim.statistics().in_flight == 0
    lim.succeeded(await lim.acquire())  # the one slot is free
    assert trio.current_time() == 2.0


async def test_giving_up_after_too_many_refusals(autojump_clock: Any) -> None:
    """After max_rate_limited_attempts refusals in a row the RateLimited error is raised."""

    @attrs.define
    class Refusing:
        async def chat(self, request: ChatRequest) -> Any:
            raise RateLimited("busy", retry_after=0.5)

        async def embed(self, request: Any) -> Any:
            raise AssertionError

    client = ThrottledModelClient(
        Refusing(), chat=limiter(4), embedding=limiter(4), max_rate_limited_attempts=3
    )
    with pytest.raises(RateLimited):
        await client.chat(ChatRequest(model="m", messages=()))
    assert trio.current_time() == 1.0


def simulated_client(
    capacity: int, latency: float = 1.0, schedule: tuple[CapacityStep, ...] = ()
) -> tuple[OpenAIClient, SimulatedApp]:
    app = SimulatedApp(
        SimulationConfig(
            default=SimulatedModel(
                latency=LatencyConfig(fixed=latency),
                capacity=capacity,
                capacity_schedule=schedule,
                retry_after=1.0,
            )
        )
    )
    provider = ProviderConfig(name="sim", type="simulated")
    model = ModelConfig(alias="m", provider="sim", model="m", max_parallel_requests=32)
    http = build_http_client(
        provider, [model], transport=httpx.ASGITransport(app=app), base_url="http://sim/v1"
    )
    return OpenAIClient(http, provider=provider, api_key=None), app


REQUEST = ChatRequest(model="m", messages=(Message(role="user", content="hi"),))


async def test_converges_to_the_endpoint_capacity(autojump_clock: Any) -> None:
    """Capacity 8 behind max_parallel_requests 32: the limit settles in [6, 10] and, after
    the first 30 s, fewer than 3% of requests are answered 429."""
    inner, app = simulated_client(capacity=8)
    lim = limiter(32)
    client = ThrottledModelClient(inner, chat=lim, embedding=limiter(32))
    sem = trio.CapacityLimiter(32)

    async def one() -> None:
        async with sem:
            await client.chat(REQUEST)

    async with trio.open_nursery() as nursery:
        for _ in range(2000):
            nursery.start_soon(one)
    timeline = app.timeline()
    late = [e for e in timeline if e.start >= 30.0]
    refused = sum(1 for e in late if e.status == 429)
    assert refused / len(late) < 0.03
    settled = [limit for t, limit, _ in lim.controller.history() if t >= 30.0]
    assert min(settled) >= 6
    assert max(settled) <= 10
    ok = sum(1 for e in timeline if e.status == 200)
    assert ok == 2000
    # Goodput against the capacity bound (8 requests per second of latency 1 s).
    assert 2000 / trio.current_time() > 0.85 * 8


async def test_tracks_capacity_that_changes_mid_run(autojump_clock: Any) -> None:
    """Capacity 8, then 16 from t = 60 s, then 4 from t = 200 s, under constant demand of 32:
    the limit holds 8, finds 16 by probing its ceiling, and falls to 4 — each time with
    goodput near the capacity and few refusals once settled."""
    steps = (CapacityStep(at=60, capacity=16), CapacityStep(at=200, capacity=4))
    inner, app = simulated_client(capacity=8, schedule=steps)
    lim = limiter(32)
    client = ThrottledModelClient(inner, chat=lim, embedding=limiter(32))

    async def worker() -> None:
        while trio.current_time() < 280:
            await client.chat(REQUEST)

    async with trio.open_nursery() as nursery:
        for _ in range(32):
            nursery.start_soon(worker)
    timeline = app.timeline()
    history = lim.controller.history()

    def window(start: float, end: float) -> tuple[float, int, range]:
        entries = [e for e in timeline if start <= e.start < end]
        served = sum(1 for e in entries if e.status == 200) / (end - start)
        refused = sum(1 for e in entries if e.status == 429)
        limits = [limit for t, limit, _ in history if start <= t < end]
        return served, refused, range(min(limits), max(limits) + 1)

    served, refused, limits = window(30, 60)  # settled at 8
    assert served >= 0.9 * 8
    assert refused <= 2
    assert limits.start >= 6
    assert limits.stop <= 11
    served, refused, limits = window(150, 200)  # found 16 (the rise is seen within 60 s)
    assert served >= 0.9 * 16
    assert refused <= 3
    assert limits.start >= 12
    assert min(t for t, limit, _ in history if t >= 60 and limit > 10) < 120
    served, refused, limits = window(230, 280)  # back down to 4
    assert served >= 0.9 * 4
    assert refused == 0
    assert limits.start >= 3
    assert limits.stop <= 7
    stats = lim.statistics()
    assert stats.probes >= 2
    assert stats.ceiling is not None
    assert stats.ceiling <= 5


def test_token_bucket_spends_evenly_and_queues_in_order() -> None:
    """120 per minute: two at once, then one every half second, in the order reserved."""
    now = [0.0]
    bucket = TokenBucket.per_minute(120, lambda: now[0])
    assert [bucket.reserve() for _ in range(5)] == [0.0, 0.0, 0.5, 1.0, 1.5]
    now[0] = 10.0
    assert bucket.level == 2.0
    bucket.debit(5)
    assert bucket.available_at() == 11.5


async def test_published_budgets_pace_requests_and_tokens(autojump_clock: Any) -> None:
    """requests_per_minute paces attempts; tokens_per_minute holds requests while overdrawn."""
    starts: list[float] = []

    @attrs.define
    class Counting:
        async def chat(self, request: ChatRequest) -> Any:
            starts.append(trio.current_time())
            return ChatResponse(text="ok", usage=Usage(input_tokens=10, output_tokens=20))

        async def embed(self, request: Any) -> Any:
            raise AssertionError

    paced = ThrottledModelClient(
        Counting(),
        chat=limiter(8),
        embedding=limiter(8),
        requests=TokenBucket.per_minute(60, trio.current_time),
    )
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(paced.chat, REQUEST)
    assert starts == [0.0, 1.0, 2.0, 3.0]

    starts.clear()
    tokens = TokenBucket.per_minute(1800, trio.current_time)  # 30 tokens per second
    budgeted = ThrottledModelClient(
        Counting(), chat=limiter(8), embedding=limiter(8), tokens=tokens
    )
    begin = trio.current_time()
    for _ in range(3):
        await budgeted.chat(REQUEST)
    # Each answer costs 30 tokens, one second's budget. The bucket starts full, so the first
    # answer leaves it at 0 (the second may go at once) and the second overdraws it by 30.
    assert [t - begin for t in starts] == [0.0, 0.0, 1.0]


async def test_a_refused_probe_delays_only_the_refused_request(autojump_clock: object) -> None:
    """After a refused probe the others are admitted at once at the limit stepped back to,
    while the refused request is told to wait its Retry-After."""
    gate = limiter(32, success_window=1, ceiling_overshoot=0.0, ceiling_probe_windows=1)
    controller = gate.controller
    accepted = await gate.acquire()  # in flight through the refusals: a boundary, no outage
    gate.rate_limited(await gate.acquire(), retry_after=0.0)  # 32 -> 24, ceiling 32
    gate.rate_limited(await gate.acquire(), retry_after=0.0)  # 24 -> 18, ceiling 24
    gate.succeeded(accepted)
    for _ in range(40):  # climbs to the ceiling, then probes above it
        gate.succeeded(await gate.acquire())
        if controller.statistics().probing:
            break
    assert controller.statistics().probing
    probe = await gate.acquire()
    start = trio.current_time()
    again = gate.rate_limited(probe, retry_after=2.0)
    assert again == start + 2.0
    other = await gate.acquire()
    assert trio.current_time() == start
    gate.succeeded(other)


@pytest.mark.parametrize(
    ("header", "value", "waited"),
    [
        ("retry-after", "100000", 60.0),
        ("retry-after", "3600", 60.0),
        ("retry-after", "Fri, 31 Dec 2100 23:59:59 GMT", 60.0),
        ("retry-after-ms", "100000000", 60.0),
        ("retry-after", "12", 12.0),
        ("retry-after", "3", 3.0),
    ],
)
async def test_a_servers_hold_is_capped_and_logged(
    header: str,
    value: str,
    waited: float,
    autojump_clock: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 429's Retry-After (seconds, HTTP date, retry-after-ms) holds the request at most
    MAX_SERVER_HOLD_SECONDS (60 s), then it is sent again; the hold is logged naming the
    model: a warning when capped (saying what the server asked) or long, DEBUG when short."""
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(trio.current_time())
        if len(sent) == 1:
            return httpx.Response(429, json={"error": {"message": "slow"}}, headers={header: value})
        reply = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
        return httpx.Response(200, json=reply)

    provider = ProviderConfig(name="p", type="openai", endpoint="http://p.test/v1")
    model = ModelConfig(alias="m", provider="p", model="m", max_parallel_requests=2)
    http = build_http_client(provider, [model], transport=httpx.MockTransport(handler))
    lim = limiter(2)
    client = ThrottledModelClient(
        OpenAIClient(http, provider=provider, api_key=None), chat=lim, embedding=limiter(1)
    )
    caplog.set_level("DEBUG", logger="gridloom.throttle")
    async with http:
        response = await client.chat(
            ChatRequest(model="m", messages=[Message(role="user", content="x")])
        )
    assert response.text == "ok"
    assert sent == [0.0, waited]
    assert MAX_SERVER_HOLD_SECONDS == 60.0
    holds = [r for r in caplog.records if "hold of" in r.getMessage()]
    assert len(holds) == 1
    message = holds[0].getMessage()
    assert message.startswith("p/m [chat]: a hold of ")
    if waited == 60.0:
        assert holds[0].levelname == "WARNING"
        assert "a hold of 60 s is in effect: the server asked to wait" in message
        assert "capped at MAX_SERVER_HOLD_SECONDS = 60 s" in message
    else:
        assert holds[0].levelname == ("WARNING" if waited >= 10 else "DEBUG")
        assert f"a hold of {waited:.1f} s is in effect, as the server asked" in message


@pytest.mark.parametrize("usage", [10**12, 10**30, float("inf"), -5.0])
async def test_one_absurd_debit_never_blocks_a_token_budget_for_long(
    usage: float, autojump_clock: Any
) -> None:
    """A debit of any size delays the next request at most MAX_DEBT_SECONDS (60 s), and a
    non-finite or negative one is ignored (was: a reply reporting 10**30 tokens stalled the
    run forever)."""
    tokens = TokenBucket.per_minute(1800, trio.current_time)
    tokens.debit(usage)
    wait = tokens.available_at() - trio.current_time()
    if usage > 0 and usage != float("inf"):
        assert wait == MAX_DEBT_SECONDS
    else:
        assert wait == 0.0
    await trio.sleep_until(tokens.available_at())
    assert trio.current_time() <= MAX_DEBT_SECONDS


async def test_an_empty_answer_is_charged_to_the_token_budget(autojump_clock: Any) -> None:
    """A reply with no answer (a reasoning model out of tokens) was served and billed: its
    reported usage is charged to tokens_per_minute like an answer's, so the next request
    waits for the budget to refill."""
    starts: list[float] = []

    @attrs.define
    class Thinking:
        async def chat(self, request: ChatRequest) -> Any:
            starts.append(trio.current_time())
            raise EmptyAnswer("no answer", reason="length", input_tokens=30, output_tokens=60)

        async def embed(self, request: Any) -> Any:
            raise AssertionError

    tokens = TokenBucket.per_minute(1800, trio.current_time)  # 30 tokens per second, 30 held
    budgeted = ThrottledModelClient(
        Thinking(), chat=limiter(8), embedding=limiter(8), tokens=tokens
    )
    for _ in range(3):
        with pytest.raises(EmptyAnswer):
            await budgeted.chat(REQUEST)
    # 90 tokens each, 3 seconds' budget: the first goes at once and overdraws the bucket by
    # 60 (2 s), the second by 90 more (3 s).
    assert starts == [0.0, 2.0, 5.0]
