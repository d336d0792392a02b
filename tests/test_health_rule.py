"""The model health rule judges the share of requests that fail, by when they were sent and
second by second: healthy runs with slow or fast failures never stop, failing ones always do."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
import trio
from hypothesis import given, settings

import gridloom as gl
from gridloom.clients import (
    ChatRequest,
    ChatResponse,
    Message,
    ModelHandle,
    ThrottledModelClient,
    Usage,
)
from gridloom.config import ModelConfig, RunConfig, structure_pipeline
from gridloom.engine import ShutdownReason
from gridloom.errors import ModelError, ProviderTimeout, ProviderUnavailable, RateLimited
from gridloom.run import SLICE_SECONDS, HealthMonitor
from gridloom.throttle import ThrottleRegistry

RATE = 0.5
MIN_OUTCOMES = 5
MIN_SECONDS = 3.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


#: One request: (send time, seconds until its outcome, outcome: "ok", "fail" or "cancel").
Request = tuple[float, float, str]


@st.composite
def scripts(draw: st.DrawFn, *, failing: bool) -> list[Request]:
    """Requests over whole seconds of sends, every second's failure share below RATE
    (``failing=False``) or above it (``failing=True``); any durations (a burst of requests
    that all hang then fail together included), some cancelled."""
    keys = draw(st.lists(st.integers(0, 30), min_size=1, max_size=8, unique=True))
    requests: list[Request] = []
    for key in sorted(keys):
        total = draw(st.integers(1, 12))
        if failing:
            failed = draw(st.integers(total // 2 + 1, total))
        else:
            failed = draw(st.integers(0, (total - 1) // 2))
        cancelled = draw(st.integers(0, 3))
        outcomes = ["fail"] * failed + ["ok"] * (total - failed) + ["cancel"] * cancelled
        outcomes = draw(st.permutations(outcomes))
        for outcome in outcomes:
            offset = draw(st.sampled_from([0.0, 0.25, 0.5, 0.999]))
            duration = draw(st.sampled_from([0.0, 0.01, 0.5, 2.0, 10.0, 30.0]))
            requests.append((key * SLICE_SECONDS + offset, duration, outcome))
    return requests


def play(requests: list[Request]) -> HealthMonitor:
    """Send and settle ``requests`` in time order on a monitor, as a run would."""
    clock = Clock()
    health = HealthMonitor(
        error_rate=RATE,
        window=100_000,
        window_seconds=1_000.0,
        min_outcomes=MIN_OUTCOMES,
        min_seconds=MIN_SECONDS,
        clock=clock,
    )
    events: list[tuple[float, int, int]] = []  # (time, 0 send / 1 settle, index)
    for i, (sent, duration, _) in enumerate(requests):
        events.append((sent, 0, i))
        events.append((sent + duration, 1, i))
    tickets: dict[int, int] = {}
    for when, kind, i in sorted(events):
        clock.now = when
        if kind == 0:
            tickets[i] = health.sent("m")
            continue
        outcome = requests[i][2]
        if outcome == "cancel":
            health.forget("m", tickets[i])
        elif outcome == "ok":
            health.record("m", True, ticket=tickets[i])
        else:
            health.record("m", False, ProviderTimeout("timed out"), ticket=tickets[i])
    clock.now += SLICE_SECONDS  # the last second is complete now
    health.check("m")
    return health


@settings(max_examples=300, deadline=None)
@given(scripts(failing=False))
def test_a_run_whose_failures_stay_below_the_rate_never_stops(requests: list[Request]) -> None:
    """Every second of sends below the rate: never stopped, whatever the latencies, bursts of
    hung requests failing together, fast failures racing slow successes, or cancellations."""
    assert play(requests).tripped is None


@settings(max_examples=300, deadline=None)
@given(scripts(failing=True))
def test_a_run_whose_failures_stay_above_the_rate_always_stops(requests: list[Request]) -> None:
    """Every second of sends above the rate, over enough requests and seconds: stopped."""
    judged = [r for r in requests if r[2] != "cancel"]
    sends = [r[0] for r in judged]
    enough = len(judged) >= MIN_OUTCOMES and max(sends) - min(sends) >= MIN_SECONDS
    health = play(requests)
    if enough:
        assert health.tripped is not None
        assert "ProviderTimeout" in health.tripped.message
    else:
        assert health.tripped is None  # too few requests, or over too short a time


def test_a_burst_of_hung_requests_weighs_as_one_second() -> None:
    """32 requests sent at once all time out 10 s later, among requests that succeed every
    second: the rate counts that second once (it used to stop the run: 26 of 50 failed)."""
    requests: list[Request] = [(0.0, 10.0, "fail")] * 32
    requests += [(float(t) + 0.5, 0.5, "ok") for t in range(1, 40) for _ in range(3)]
    health = play(requests)
    assert health.tripped is None
    assert health.rate("m") == pytest.approx(1 / 40)


def test_fast_failures_do_not_outrun_slow_successes() -> None:
    """Sent together, a tenth fail at once and the rest succeed 0.5 s later: judged in send
    order, the early failures cannot make a majority of what was seen first."""
    clock = Clock()
    health = HealthMonitor(
        error_rate=RATE, window=1000, window_seconds=120, min_outcomes=5, clock=clock
    )
    tickets = [health.sent("m") for _ in range(40)]
    for ticket in tickets[::10]:
        health.record("m", False, ProviderTimeout("x"), ticket=ticket)
    assert health.recent("m") == (1, 1)  # only the first was judged: the rest wait for 0.5 s
    clock.now = 0.5
    for ticket in tickets:
        if ticket % 10:
            health.record("m", True, ticket=ticket)
    assert health.recent("m") == (4, 40)
    assert health.tripped is None


def first_trip(rate: float, start: float, *, window: int = 1000) -> float | None:
    """When a monitor trips on a model whose every request fails at once, sent ``rate`` a
    second from ``start`` (``None``: not within 20 s)."""
    clock = Clock()
    health = HealthMonitor(
        error_rate=RATE,
        window=window,
        window_seconds=60.0,
        min_outcomes=MIN_OUTCOMES,
        min_seconds=5.0,
        clock=clock,
    )
    for i in range(int(20 * rate)):
        clock.now = start + i / rate
        health.record("m", False, ProviderTimeout("timed out"), ticket=health.sent("m"))
        if health.tripped is not None:
            return clock.now
    return None


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(1.0, 10_000.0),
    start=st.floats(0.0, 100.0),
)
def test_a_failing_model_is_stopped_at_min_seconds_whatever_its_request_rate(
    rate: float, start: float
) -> None:
    """Every request failing, from 1 to 10,000 a second: stopped once its requests were sent
    over min_seconds (5 s), within one request, never before — the window of 1000 requests
    spans only 0.1 s at 10,000/s (above ~200/s it used to never stop)."""
    tripped = first_trip(rate, start)
    assert tripped is not None
    assert start + 5.0 - 1e-9 <= tripped <= start + 5.0 + 1 / rate + 1e-9


def test_a_burst_sent_at_once_cannot_stop_a_run_on_its_own() -> None:
    """40 requests sent together at the start, all failing 30 s later, nothing sent since:
    sent over no time at all, they are not judged however long they took."""
    clock = Clock()
    health = HealthMonitor(
        error_rate=RATE,
        window=1000,
        window_seconds=60.0,
        min_outcomes=5,
        min_seconds=5.0,
        clock=clock,
    )
    tickets = [health.sent("m") for _ in range(40)]
    clock.now = 30.0
    for ticket in tickets:
        health.record("m", False, ProviderTimeout("timed out"), ticket=ticket)
    health.check("m")
    assert health.tripped is None
    assert health.recent("m") == (40, 40)


def test_min_seconds_starts_again_after_an_idle_window() -> None:
    """A model idle for longer than window_seconds starts its min_seconds again: a later
    failing stretch is stopped min_seconds after its own first request."""
    clock = Clock()
    health = HealthMonitor(
        error_rate=RATE,
        window=1000,
        window_seconds=60.0,
        min_outcomes=5,
        min_seconds=5.0,
        clock=clock,
    )
    for i in range(10):
        clock.now = i * 0.5
        health.record("m", True, ticket=health.sent("m"))
    for i in range(2000):
        clock.now = 200.0 + i / 100
        health.record("m", False, ProviderTimeout("timed out"), ticket=health.sent("m"))
        if health.tripped is not None:
            break
    assert clock.now == pytest.approx(205.0)


# ---------------------------------------------------------------------- whole runs


def pipeline(fault: dict[str, Any], seed: int) -> gl.PipelineConfig:
    return structure_pipeline(
        {
            "providers": [
                {
                    "name": "sim",
                    "type": "simulated",
                    "simulation": {
                        "seed": seed,
                        "default": {"latency": {"median": 0.5, "sigma": 0.3}, **fault},
                        "transport": "asgi",
                    },
                }
            ],
            "models": [
                {
                    "alias": "w",
                    "provider": "sim",
                    "model": "w-8b",
                    "max_parallel_requests": 32,
                    "timeout": 10.0,
                }
            ],
            "columns": [
                {"name": "topic", "category": {"values": ["a", "b", "c"]}},
                {"name": "text", "llm_text": {"model": "w", "prompt": "On {{ topic }}."}},
            ],
            "run": {"seed": seed, "row_group_size": 50, "progress": "off"},
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("fault", [{"hang_rate": 0.1}, {"error_500_rate": 0.1}])
async def test_healthy_runs_with_a_tenth_failing_complete(
    tmp_path: Path, autojump_clock: Any, fault: dict[str, Any], seed: int
) -> None:
    """10 % of requests hang until their 10 s timeout, or fail at once with a 500: with the
    default settings the run completes with every row (it was stopped with 50 of 200 rows
    written, and the fast 500s stopped 1 of 4 seeds with none)."""
    result = await gl.acreate(pipeline(fault, seed), num_records=200, output_dir=tmp_path / "o")
    assert result.status == "complete", result.stop_reason
    assert result.num_rows == 200
    usage = result.summary["models"]["w"]
    assert usage["failed"] > 0  # the faults were there


async def test_a_model_failing_most_requests_is_stopped(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """The same run with 70 % of requests failing at once is stopped, naming the model."""
    result = await gl.acreate(
        pipeline({"error_500_rate": 0.7}, 0), num_records=200, output_dir=tmp_path / "o"
    )
    assert result.status == "stopped"
    assert (result.stop_reason or "").startswith("model 'w' failed ")


# ------------------------------------------------- an endpoint that has never served a request

ASK = ChatRequest(model="w-8b", messages=(Message(role="user", content="hi"),))


@attrs.define
class Gateway:
    """An inner client whose answer depends on when the request comes: ``answer(t)`` is the
    status (200: a success) of a request arriving at trio time ``t``; each answer takes
    ``latency`` seconds. Notes the time of every refusal (an answer that is not a 200)."""

    answer: Callable[[float], int]
    latency: float = 0.25
    refusals: list[float] = attrs.Factory(list)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        await trio.sleep(self.latency)
        now = trio.current_time()
        status = self.answer(now)
        if status == 200:
            return ChatResponse(text="ok", usage=Usage(output_tokens=1))
        self.refusals.append(now)
        if status == 429:
            raise RateLimited("p/w-8b: HTTP 429 Too Many Requests: slow down", status=429)
        raise ProviderUnavailable(
            f"p/w-8b: HTTP {status}: <html><h1>{status} Bad Gateway</h1>nginx</html> #{now:g}",
            status=status,
        )

    async def embed(self, request: Any) -> Any:
        raise AssertionError


async def stop_time(
    gateway: Gateway, run: RunConfig, *, horizon: float = 3_000.0
) -> tuple[float | None, ShutdownReason | None]:
    """8 cells call ``gateway`` through the throttle (the run's ``run.throttle``) and a model
    handle watched by the run's health monitor, each calling again 1 s after its request
    ends (as a cell's retry would), until the monitor trips or ``horizon`` seconds pass:
    when it tripped, and why."""
    health = HealthMonitor.from_run_config(run, clock=trio.current_time)
    health.register("w", model="w-8b", provider="p")
    registry = ThrottleRegistry(run.throttle)
    client = ThrottledModelClient(
        gateway,
        chat=registry.limiter("p", "w-8b", "chat", 8),
        embedding=registry.limiter("p", "w-8b", "embedding", 8),
        capacity_statuses=run.throttle.capacity_statuses,
    )
    model = ModelConfig(alias="w", provider="p", model="w-8b")
    handle = ModelHandle(model, client, trio.CapacityLimiter(8), health=health)
    stopped: list[float] = []

    async def cell() -> None:
        while True:
            with contextlib.suppress(ModelError):
                await handle.chat(ASK)
            await trio.sleep(1.0)

    with trio.move_on_after(horizon):
        async with trio.open_nursery() as nursery:

            def stop(_: ShutdownReason) -> None:
                stopped.append(trio.current_time())
                nursery.cancel_scope.cancel()

            health.on_trip(stop)
            for _ in range(8):
                nursery.start_soon(cell)
    return (stopped[0] if stopped else None), health.tripped


def first_at_or_after(times: list[float], moment: float) -> float:
    """The first of ``times`` at or after ``moment``."""
    return min(t for t in times if t >= moment)


@pytest.mark.parametrize("status", [502, 503])
async def test_an_endpoint_down_from_the_start_stops_at_unavailable_seconds(
    autojump_clock: Any, status: int
) -> None:
    """Every request answered 502 (503) from the first one, no Retry-After: the run is
    stopped by the refusal that comes shutdown_unavailable_seconds (90 s by default) after
    the first refusal — not one refusal sooner, not the 600 s of shutdown_refused_seconds —
    and the reason says no request ever succeeded, names the status, quotes the latest
    answer and says what to check."""
    gateway = Gateway(lambda _: status)
    when, reason = await stop_time(gateway, RunConfig())
    first = gateway.refusals[0]
    assert first == 0.25
    assert when == first_at_or_after(gateway.refusals, first + 90.0)
    assert when is not None
    assert 90.0 <= when - first < 92.5  # within one cooldown (2 s) and one answer
    assert gateway.refusals[-1] == when  # that very refusal stopped it
    assert reason is not None
    assert (reason.alias, reason.model, reason.top_error) == ("w", "w-8b", "ProviderUnavailable")
    assert reason.failed == reason.total == len(gateway.refusals)
    assert reason.window_seconds == 90.0
    latest = f"p/w-8b: HTTP {status}: <html><h1>{status} Bad Gateway</h1>nginx</html> #{when:g}"
    assert reason.example == latest
    assert reason.message == (
        f"model 'w': no request of this model has succeeded in this run: its requests were"
        f" refused with HTTP {status} for {round(when - first, 1):g} s since the first refusal"
        f" ({len(gateway.refusals)} refusals (ProviderUnavailable)); the latest: {latest};"
        " check the provider's endpoint (its base URL) and any gateway or proxy in front of"
        " it, as one that has never served a request is likely down or misconfigured;"
        " run.shutdown_unavailable_seconds sets this check; stopping the run — completed row"
        " groups are kept; resume it to generate the rest"
    )


def test_the_unavailable_setting_is_checked_and_reaches_the_monitor() -> None:
    """shutdown_unavailable_seconds: 90 by default, 0 turns the rule off; a negative or
    non-finite value fails before any request, naming the field."""
    assert RunConfig().shutdown_unavailable_seconds == 90.0
    on = HealthMonitor.from_run_config(RunConfig(), clock=Clock())
    assert on.unavailable_seconds == 90.0
    off = RunConfig(shutdown_unavailable_seconds=0)
    assert HealthMonitor.from_run_config(off, clock=Clock()).unavailable_seconds is None
    columns = [{"name": "a", "category": {"values": ["x"]}}]
    for value, problem in [
        (-1, "must be >= 0"),
        (float("inf"), "expected a finite number"),
        (float("nan"), "expected a finite number"),
    ]:
        with pytest.raises(gl.ConfigError) as caught:
            structure_pipeline({"columns": columns, "run": {"shutdown_unavailable_seconds": value}})
        assert "field 'run.shutdown_unavailable_seconds'" in str(caught.value)
        assert problem in str(caught.value)
    with pytest.raises(ValueError, match="unavailable_seconds must be > 0 or None"):
        HealthMonitor(
            error_rate=None,
            window=10,
            window_seconds=60.0,
            min_outcomes=4,
            clock=Clock(),
            unavailable_seconds=0.0,
        )


@pytest.mark.parametrize(
    ("run", "limit"),
    [
        ({"shutdown_unavailable_seconds": 0}, 600.0),  # off: shutdown_refused_seconds
        ({"shutdown_unavailable_seconds": 15.5}, 15.5),
        ({"shutdown_unavailable_seconds": 900, "shutdown_refused_seconds": 300}, 300.0),
    ],
)
async def test_the_unavailable_rule_follows_its_setting(
    autojump_clock: Any, run: dict[str, Any], limit: float
) -> None:
    """A permanent 502: stopped at shutdown_unavailable_seconds, or at
    shutdown_refused_seconds when that comes first or the rule is off (0)."""
    gateway = Gateway(lambda _: 502)
    when, reason = await stop_time(gateway, RunConfig(**run))
    first = gateway.refusals[0]
    assert when == first_at_or_after(gateway.refusals, first + limit)
    assert reason is not None
    assert reason.window_seconds == limit


async def test_refused_seconds_zero_means_capacity_refusals_never_stop_a_run(
    autojump_clock: Any,
) -> None:
    """``shutdown_refused_seconds: 0`` says capacity refusals never stop the run: a server
    still loading (503 from the first request) is waited out past the 90 s of the
    never-served rule too (it stopped the run there before)."""
    gateway = Gateway(lambda _: 503)
    when, reason = await stop_time(gateway, RunConfig(shutdown_refused_seconds=0), horizon=900.0)
    assert (when, reason) == (None, None)
    assert gateway.refusals[-1] > 800.0
    monitor = HealthMonitor.from_run_config(RunConfig(shutdown_refused_seconds=0), clock=Clock())
    assert (monitor.refused_seconds, monitor.unavailable_seconds) == (None, None)


async def test_one_success_before_the_outage_waits_out_shutdown_refused_seconds(
    autojump_clock: Any,
) -> None:
    """The first requests succeed, then every answer is 502 from t=5: a model that has been
    served in this run is in an outage, not misconfigured, so only shutdown_refused_seconds
    (600 s) stops it, counted from the first refusal — not shutdown_unavailable_seconds (30 s
    here)."""
    gateway = Gateway(lambda t: 200 if t < 5.0 else 502)
    when, reason = await stop_time(gateway, RunConfig(shutdown_unavailable_seconds=30.0))
    first = gateway.refusals[0]
    assert first >= 5.0
    assert when == first_at_or_after(gateway.refusals, first + 600.0)
    assert reason is not None
    assert "run.shutdown_refused_seconds sets this check" in reason.message
    assert "has succeeded" not in reason.message


@pytest.mark.parametrize(("first", "later"), [(429, None), (429, 502), (529, None), (529, 502)])
async def test_a_429_from_the_start_is_a_live_provider(
    autojump_clock: Any, first: int, later: int | None
) -> None:
    """429s from the first request (a provider asking to slow down), or 529s (Anthropic's
    API itself saying it is overloaded), maybe 502s after them: the unavailable rule (30 s
    here) does not apply, only shutdown_refused_seconds does (a 529 stopped the run after
    shutdown_unavailable_seconds before)."""
    gateway = Gateway(lambda t: first if later is None or t < 10.0 else later)
    when, reason = await stop_time(gateway, RunConfig(shutdown_unavailable_seconds=30.0))
    first = gateway.refusals[0]
    assert when == first_at_or_after(gateway.refusals, first + 600.0)
    assert reason is not None
    assert reason.message.startswith(
        "model 'w': the provider refused all of its requests for capacity for"
    )


#: One scripted event for the monitor: (seconds since the previous event, status); 200 is a
#: success, 500 a failure of another kind (recorded, not a refusal), the rest refusals.
Event = tuple[float, int]
UNAVAILABLE, REFUSED = 30.0, 100.0


def expected_stop(events: list[Event]) -> tuple[float, str] | None:
    """When, and by which rule, the monitor should stop on ``events``, from the rules as
    documented: at a refusal, when no success, 429 or 529 has come so far and the first
    refusal came ``UNAVAILABLE`` s or more before; or when the first refusal since the last
    success (or the start) came ``REFUSED`` s or more before."""
    now = 0.0
    history: list[tuple[float, int]] = []  # (time, status), in order
    for gap, status in events:
        now += gap
        history.append((now, status))
        if status in (200, 500):
            continue
        refusals = [t for t, s in history if s not in (200, 500)]
        if all(s not in (200, 429, 529) for _, s in history) and now - refusals[0] >= UNAVAILABLE:
            return now, "unavailable"
        last_success = max((i for i, (_, s) in enumerate(history) if s == 200), default=-1)
        streak = [t for t, s in history[last_success + 1 :] if s not in (200, 500)]
        if now - streak[0] >= REFUSED:
            return now, "refused"
    return None


events = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.5, 1.0, 2.0, 7.5, 29.0, 31.0]),
        st.sampled_from([200, 429, 500, 502, 503, 529]),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        events,
        # long runs of one capacity status, the case the rule is for
        st.builds(
            lambda head, status, gap, n: head + [(gap, status)] * n,
            events,
            st.sampled_from([429, 502, 503, 529]),
            st.sampled_from([0.5, 1.0, 2.0, 5.0]),
            st.integers(0, 250),
        ),
    )
)
def test_when_refusals_stop_a_run(script: list[Event]) -> None:
    """Any sequence of successes, 429s, 502/503/529s and other failures over time: the run
    stops at the first refusal that comes UNAVAILABLE s or more after the first refusal while
    no success, 429 or 529 has come yet, or REFUSED s or more after the first refusal since the
    last success; never otherwise, and the reason names the rule."""
    clock = Clock()
    health = HealthMonitor(
        error_rate=None,
        window=100,
        window_seconds=60.0,
        min_outcomes=5,
        clock=clock,
        refused_seconds=REFUSED,
        unavailable_seconds=UNAVAILABLE,
    )
    stopped: list[float] = []
    health.on_trip(lambda _: stopped.append(clock.now))
    for gap, status in script:
        clock.now += gap
        if status == 200:
            health.record("m", True)
        elif status == 500:
            health.record("m", False, ProviderUnavailable("HTTP 500", status=500))
        elif status == 429:
            health.refused("m", RateLimited("HTTP 429", status=429))
        else:
            health.refused("m", ProviderUnavailable(f"HTTP {status}", status=status))
    expected = expected_stop(script)
    if expected is None:
        assert health.tripped is None
        return
    reason = health.tripped
    assert reason is not None
    assert stopped[0] == expected[0]
    assert f"run.shutdown_{expected[1]}_seconds sets this check" in reason.message
