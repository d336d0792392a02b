"""The AIMD controller's slow start: exact rules on a fake clock, and its wake-ups in trio."""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import ThrottleConfig, structure_pipeline
from gridloom.throttle import ThrottleRegistry
from gridloom.throttle._controller import AIMDController, Ticket

Clock = list[float]


def make(cap: int = 64, name: str = "", **config: Any) -> tuple[AIMDController, Clock]:
    """A controller on a fake clock whose slow start opens at 8 and doubles every 0.125 s
    (unless the test says)."""
    config.setdefault("initial_limit", 8)
    config.setdefault("slow_start_seconds", 0.125)
    clock = [0.0]
    controller = AIMDController(
        cap=cap, config=ThrottleConfig(**config), clock=lambda: clock[0], name=name
    )
    return controller, clock


def fill(controller: AIMDController) -> list[Ticket]:
    tickets = []
    while controller.can_admit():
        tickets.append(controller.admit())
    return tickets


# --------------------------------------------------------------------------- pure rules


def test_opens_at_initial_limit_and_doubles_each_period_while_used() -> None:
    """Limit 8 at t=0, then 16, 32, 64 at each 0.125 s while full, and 100 (the cap) ends it."""
    controller, clock = make(cap=100)
    assert controller.statistics().slow_start
    seen = []
    for step in range(5):
        clock[0] = step * 0.125
        seen.append(controller.limit)
        fill(controller)
        clock[0] = math.nextafter(clock[0] + 0.125, 0.0)
        assert controller.limit == seen[-1]  # not a moment before the period
    assert seen == [8, 16, 32, 64, 100]
    stats = controller.statistics()
    assert not stats.slow_start
    assert (stats.ceiling, stats.cuts) == (None, 0)


def test_no_doubling_while_unused_then_at_the_admission_that_uses_it() -> None:
    """With 7 of 8 in flight nothing doubles for a second; the 8th admission doubles it at
    once, and the next doubling is a period after that."""
    controller, clock = make()
    for _ in range(7):
        controller.admit()
    clock[0] = 1.0
    assert controller.limit == 8
    assert controller.next_slow_start_step_at() == 0.125  # due, waiting to be used
    controller.admit()
    assert controller.limit == 16
    assert controller.next_slow_start_step_at() == 1.125


def test_a_success_while_used_adds_one_slot() -> None:
    """A success handed back while the limit was full adds one; one that was not, none."""
    controller, clock = make()
    tickets = fill(controller)
    clock[0] = 0.05
    transition = controller.on_success(tickets.pop())
    assert transition is not None
    assert (transition.old_limit, transition.new_limit, transition.reason) == (
        8,
        9,
        "slow-start",
    )
    assert controller.on_success(tickets.pop()) is None  # 7 of 9 were in flight
    assert controller.limit == 9


@pytest.mark.parametrize("order", ["sent", "reversed", "shuffled"])
def test_a_refused_burst_leaves_what_the_provider_accepted_as_limit_and_ceiling(
    order: str,
) -> None:
    """Full at 8, doubled to 16, 8 more sent and refused, their refusals back in any order:
    the first sets 15 (the others in flight) and ends the slow start with one cut, each later
    one lowers the estimate by one (no cut): 8, what the provider accepted."""
    controller, clock = make(cap=32)
    fill(controller)
    clock[0] = 0.125
    burst = fill(controller)
    if order == "reversed":
        burst.reverse()
    elif order == "shuffled":
        random.Random(3).shuffle(burst)
    clock[0] = 0.13
    steps = []
    for ticket in burst:
        transition = controller.on_rate_limited(ticket, 1.0)
        assert transition is not None
        assert transition.cooldown_until == 1.13
        steps.append((transition.old_limit, transition.new_limit, transition.reason))
    assert steps == [(16, 15, "slow-start-ended")] + [
        (n + 1, n, "slow-start-estimate") for n in range(14, 7, -1)
    ]
    stats = controller.statistics()
    assert (stats.limit, stats.ceiling, stats.slow_start) == (8, 8, False)
    assert (stats.cuts, stats.rate_limited, stats.blocked_until) == (1, 8, 1.13)


def test_answers_during_the_burst_count_as_accepted() -> None:
    """A request of the slow start answered between two refusals of its burst was accepted:
    the estimate counts it (8, not 7)."""
    controller, clock = make(cap=32)
    accepted = fill(controller)
    clock[0] = 0.125
    burst = fill(controller)
    clock[0] = 0.13
    controller.on_rate_limited(burst[0], 1.0)
    controller.on_success(accepted[0])
    for ticket in burst[1:]:
        controller.on_rate_limited(ticket, 1.0)
    assert (controller.limit, controller.ceiling) == (8, 8)


def test_refusals_arriving_after_the_slow_start_reached_the_cap_set_the_estimate() -> None:
    """16 sent, then 16 more (the cap, 32) before any refusal came back, and 24 of them
    refused: the estimate is the 8 accepted (one cut), not a cascade of cuts."""
    controller, clock = make(cap=32, initial_limit=16)
    first = fill(controller)
    clock[0] = 0.125
    second = fill(controller)
    assert not controller.statistics().slow_start
    clock[0] = 0.2
    for ticket in first[8:] + second:
        controller.on_rate_limited(ticket, 1.0)
    stats = controller.statistics()
    assert (stats.limit, stats.ceiling, stats.cuts, stats.rate_limited) == (8, 8, 1, 24)


def test_the_estimate_is_refined_only_until_the_next_change() -> None:
    """Once the limit changes otherwise (here an increase), a late refusal of a request sent
    during the slow start is judged like any other (a cut)."""
    controller, clock = make(cap=32, success_window=1, ceiling_overshoot=1.0)
    first = fill(controller)
    clock[0] = 0.125
    burst = fill(controller)
    controller.on_rate_limited(burst[4], 0.0)  # 15 others in flight: limit 15
    controller.on_success(first[0])  # 15 -> 16 (increase)
    transition = controller.on_rate_limited(burst[0], 0.0)
    assert transition is not None
    assert (transition.old_limit, transition.new_limit, transition.reason) == (
        16,
        12,
        "rate-limited",
    )
    assert controller.statistics().cuts == 2


def test_after_the_slow_start_increases_stop_at_the_estimated_ceiling() -> None:
    """Once the estimate is the ceiling, successes hold the limit at floor(8 * 1.1) = 8."""
    controller, clock = make(cap=32, success_window=1, ceiling_probe_windows=0)
    fill(controller)
    clock[0] = 0.125
    for ticket in fill(controller):
        controller.on_rate_limited(ticket, 0.0)
    for ticket in fill(controller):
        clock[0] += 1.0
        controller.on_success(ticket)
    assert controller.limit == 8


def test_slowing_answers_end_the_slow_start_keeping_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """16 answers in 0.5 s, then 1.2 s each: the moving average passes twice the baseline at
    the 20th slow answer; the limit stays 8 and AIMD increases take over."""
    caplog.set_level(logging.INFO, logger="gridloom.throttle")
    controller, clock = make(cap=1000, name="sim/m chat", success_window=25)

    def answer(latency: float) -> None:
        ticket = controller.admit()
        clock[0] += latency
        controller.on_success(ticket)

    for _ in range(16):
        answer(0.5)
    for _ in range(19):
        answer(1.2)
    assert controller.statistics().slow_start
    answer(1.2)
    stats = controller.statistics()
    assert (stats.slow_start, stats.limit) == (False, 8)
    assert [r.getMessage() for r in caplog.records] == [
        "sim/m chat: slow start ended at limit 8: answers take 2.0 x as long as at first"
    ]
    for _ in range(13):
        answer(1.2)
    assert controller.limit == 8
    answer(1.2)
    assert controller.limit == 9  # the 50th success: the second full window


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sigma=st.sampled_from([0.25, 0.3]))
def test_latency_noise_alone_never_ends_the_slow_start(seed: int, sigma: float) -> None:
    """Lognormal latencies (sigma 0.25-0.3, no queueing) over 2,000 answers keep it on."""
    controller, clock = make(cap=1000)
    draw = random.Random(seed)
    for _ in range(2000):
        ticket = controller.admit()
        clock[0] += draw.lognormvariate(math.log(0.5), sigma)
        controller.on_success(ticket)
    stats = controller.statistics()
    assert stats.slow_start
    assert stats.limit == 8  # one request at a time never uses the limit


@pytest.mark.parametrize(
    ("cap", "config", "limit", "ramping"),
    [
        (64, {"slow_start_seconds": 0.0}, 64, False),
        (64, {"rampup_seconds": 8.0}, 1, True),
        (8, {}, 8, False),
        (16, {"initial_limit": 16}, 16, False),
    ],
)
def test_no_slow_start_when_disabled_replaced_by_a_ramp_or_at_the_cap(
    cap: int, config: dict[str, float], limit: int, ramping: bool
) -> None:
    """slow_start_seconds 0 opens at the cap; a ramp takes precedence; an initial limit at or
    above the cap is the cap."""
    controller, _ = make(cap=cap, **config)
    stats = controller.statistics()
    assert (stats.limit, stats.ramping, stats.slow_start) == (limit, ramping, False)
    assert controller.next_slow_start_step_at() is None


def test_set_cap_during_a_slow_start() -> None:
    """A cap above the limit leaves the slow start on, beneath it; a lift raising the cap
    raises the limit as much (slow start on); a cap at or below the limit ends it."""
    controller, clock = make(cap=64)
    controller.set_cap(32)
    assert (controller.limit, controller.statistics().slow_start) == (8, True)
    controller.set_cap(40, lift=True)
    assert (controller.limit, controller.statistics().slow_start) == (16, True)
    fill(controller)
    clock[0] = 0.125
    assert controller.limit == 32
    controller.set_cap(24, lift=True)
    stats = controller.statistics()
    assert (stats.limit, stats.cap, stats.slow_start, stats.ceiling) == (24, 24, False, None)


def test_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    """Each doubling is one INFO line; the one reaching the cap says the slow start ended."""
    caplog.set_level(logging.INFO, logger="gridloom.throttle")
    controller, clock = make(cap=32, name="sim/m chat")
    fill(controller)
    clock[0] = 0.125
    fill(controller)
    clock[0] = 0.25
    controller.can_admit()
    controller2, clock2 = make(cap=12, name="sim/n chat")
    fill(controller2)
    clock2[0] = 0.125
    controller2.can_admit()
    assert [r.getMessage() for r in caplog.records] == [
        "sim/m chat: limit 8 → 16 (slow-start)",
        "sim/m chat: limit 16 → 32 (slow-start, at the cap: ended)",
        "sim/n chat: limit 8 → 12 (slow-start, at the cap: ended)",
    ]


def test_log_line_of_the_refusal(caplog: pytest.LogCaptureFixture) -> None:
    """The refusal that ends a slow start logs the estimate and the cooldown."""
    caplog.set_level(logging.INFO, logger="gridloom.throttle")
    controller, _ = make(cap=32, name="sim/m chat")
    tickets = fill(controller)
    controller.on_rate_limited(tickets[-1], 1.0)
    assert [r.getMessage() for r in caplog.records] == [
        "sim/m chat: limit 8 → 7 (slow-start-ended, cooldown 1.0 s)"
    ]


# --------------------------------------------------------------------------- trio shell


async def test_reaches_512_in_flight_half_a_second_in(autojump_clock: Any) -> None:
    """The self-hosted case with the defaults: cap 512, answers after 1 s. Admissions open 16
    at t=0, then doubling every 0.1 s: all 512 in flight at t=0.5, before any answer."""
    registry = ThrottleRegistry(ThrottleConfig())
    lim = registry.limiter("p", "m", "chat", 512)
    admitted: list[float] = []

    async def request() -> None:
        ticket = await lim.acquire()
        admitted.append(trio.current_time())
        await trio.sleep(1.0)
        lim.succeeded(ticket)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(registry.run)
        for _ in range(600):
            nursery.start_soon(request)
        await trio.sleep(0.9)
        assert lim.statistics().in_flight == 512
    counts = [sum(1 for t in admitted if t == pytest.approx(0.1 * k)) for k in range(6)]
    assert counts == [16, 16, 32, 64, 128, 256]
    assert not lim.statistics().slow_start


async def test_a_due_doubling_waits_for_the_limit_to_be_used(autojump_clock: Any) -> None:
    """7 of 8 in flight from t=0; 10 more requests at t=1: the first uses the limit, which
    doubles there and then (16 in flight at t=1); the last waits for the next doubling."""
    registry = ThrottleRegistry(ThrottleConfig(initial_limit=8, slow_start_seconds=0.125))
    lim = registry.limiter("p", "m", "chat", 64)
    admitted: list[float] = []

    async def request() -> None:
        ticket = await lim.acquire()
        admitted.append(trio.current_time())
        await trio.sleep(5.0)
        lim.succeeded(ticket)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(registry.run)
        for _ in range(7):
            nursery.start_soon(request)
        await trio.sleep(1.0)
        assert lim.statistics().limit == 8
        for _ in range(10):
            nursery.start_soon(request)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert admitted == [0.0] * 7 + [1.0] * 9 + [1.125]


async def test_the_wake_up_service_ends_with_the_slow_start(autojump_clock: Any) -> None:
    """A refusal ends the slow start: the service returns at the next due doubling; with no
    slow start it returns at once."""
    registry = ThrottleRegistry(ThrottleConfig(initial_limit=8, slow_start_seconds=0.125))
    lim = registry.limiter("p", "m", "chat", 64)
    tickets = [await lim.acquire() for _ in range(8)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lim.run_slow_start)
        await trio.sleep(0.05)
        lim.rate_limited(tickets[-1], 1.0)
    assert trio.current_time() == 0.125
    assert lim.statistics().limit == 7
    off = ThrottleRegistry(ThrottleConfig(slow_start_seconds=0.0))
    assert not off.drives
    await off.limiter("p", "m", "chat", 64).run_slow_start()
    assert trio.current_time() == 0.125


async def test_a_run_drives_the_slow_start(autojump_clock: Any) -> None:
    """A run starts the wake-up service: with 64 rows, a cap of 64 and 1 s answers the limit
    goes 16, 32, 64 at 0.1 s steps, and the run ends within 1.5 s (without the service the
    limit would grow only as answers come back, after 1 s)."""
    config = structure_pipeline(
        {
            "providers": [
                {
                    "name": "sim",
                    "type": "simulated",
                    "simulation": {"transport": "asgi", "default": {"latency": {"fixed": 1.0}}},
                }
            ],
            "models": [
                {"alias": "m", "provider": "sim", "model": "m", "max_parallel_requests": 64}
            ],
            "columns": [{"name": "c", "llm_text": {"model": "m", "prompt": "hi"}}],
        }
    )
    started = trio.current_time()
    result = await gl.apreview(config, num_records=64, cache=False)
    assert trio.current_time() - started < 1.5
    history = result.summary["models"]["m"]["throttle"]["chat"]["history"]
    limits = sorted({limit for _, limit, _ in history})
    assert limits == [16, 32, 64]
    reached = min(t for t, limit, _ in history if limit == 64) - history[0][0]
    assert reached == pytest.approx(0.2)
