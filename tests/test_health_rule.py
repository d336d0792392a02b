"""The model health rule judges the share of requests that fail, by when they were sent and
second by second: healthy runs with slow or fast failures never stop, failing ones always do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.errors import ProviderTimeout
from gridloom.run import SLICE_SECONDS, HealthMonitor

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
