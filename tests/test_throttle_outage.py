"""A provider outage (capacity refusals with no success in between) against the AIMD
controller: the limit and ceiling in force before it come back after it, by a slow start, and
a capacity boundary (refusals while accepted requests are in flight) is never taken for one.

Pure-controller tests on an injected clock, and one run on trio's virtual clock against an
HTTP server on 127.0.0.1 that answers 529 for 20 s."""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import random
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import ThrottleConfig, structure_pipeline
from gridloom.throttle._controller import AIMDController, Ticket, Transition

from .test_shutdown import read_request, serving

Clock = list[float]


def make(cap: int, clock: Clock, **config: Any) -> AIMDController:
    return AIMDController(cap=cap, config=ThrottleConfig(**config), clock=lambda: clock[0])


def fill(controller: AIMDController) -> list[Ticket]:
    tickets = []
    while controller.can_admit():
        tickets.append(controller.admit())
    return tickets


def steps(transitions: list[Transition | None]) -> list[tuple[float, str, int, int]]:
    return [(t.time, t.reason, t.old_limit, t.new_limit) for t in transitions if t is not None]


# --------------------------------------------------------------------------- exact rules


def test_an_outage_is_climbed_back_from_by_a_slow_start() -> None:
    """Cap 16, a boundary cut (16 → 12, ceiling 16), then an outage from t=2: every request
    refused, the limit cut to 1. The first success at t=20 restores the ceiling 16 and starts
    a slow start (1 s periods) from 1 toward 12: +1 per success that used the limit, doubling
    at t=21, ended at 12; the additive increase goes on from there to the cap. (Before: 1 and
    a ceiling of 1 for good, +1 per 25 successes.)"""
    clock = [0.0]
    controller = make(16, clock, initial_limit=16, slow_start_seconds=1.0, cooldown_seconds=2.0)
    accepted = controller.admit()  # a boundary: refused while an accepted one is in flight
    controller.on_rate_limited(controller.admit())
    controller.on_success(accepted)
    assert (controller.limit, controller.ceiling) == (12, 16)
    clock[0] = 2.0
    for ticket in fill(controller):  # 12 at once, all refused: one cut, no outage yet
        controller.on_rate_limited(ticket)
    assert (controller.limit, controller.statistics().outage) == (9, False)
    limits = []
    while clock[0] < 18.0:  # each cooldown, every request admitted is refused
        clock[0] = controller.blocked_until
        for ticket in fill(controller):
            controller.on_rate_limited(ticket)
        limits.append(controller.limit)
    stats = controller.statistics()
    assert limits == [6, 4, 3, 2, 1, 1, 1, 1]
    assert (stats.outage, stats.outages) == (True, 1)
    clock[0] = 20.0
    transitions: list[Transition | None] = []
    while clock[0] < 23.0:
        transitions += [controller.on_success(t) for t in fill(controller)]
        clock[0] += 0.25
    assert steps(transitions) == [
        (20.0, "outage-recovery", 1, 2),
        (20.25, "slow-start", 2, 3),
        (20.5, "slow-start", 3, 4),
        (20.75, "slow-start", 4, 5),
        (21.0, "slow-start", 10, 11),  # doubled a period after the first success, +1
        (21.25, "slow-start", 11, 12),  # at the limit before the outage: ended
        (21.25, "increase", 12, 13),
        (21.75, "increase", 13, 14),
        (22.25, "increase", 14, 15),
        (22.75, "increase", 15, 16),
    ]
    stats = controller.statistics()
    assert (stats.limit, stats.ceiling, stats.slow_start, stats.outage) == (16, 16, False, False)


def test_the_recovery_logs_one_line(caplog: Any) -> None:
    """The outage and its end are told once each, naming what is kept and restored."""
    clock = [0.0]
    controller = AIMDController(
        cap=8,
        config=ThrottleConfig(slow_start_seconds=0.5, initial_limit=8),
        clock=lambda: clock[0],
        name="p/m chat",
    )
    caplog.set_level("INFO", logger="gridloom.throttle")
    for _ in range(3):
        clock[0] = controller.blocked_until
        for ticket in fill(controller):
            controller.on_rate_limited(ticket)
    clock[0] = controller.blocked_until
    controller.on_success(controller.admit())
    lines = [r.getMessage() for r in caplog.records]
    # One request in flight of 3 allowed: the limit was not in use, the slow start opens at 3.
    assert lines[-1] == "p/m chat: limit 3 → 3 (outage-recovery: slow start toward 8, ceiling None)"
    assert sum("an outage (limit 8, ceiling None kept" in line for line in lines) == 1


def test_without_slow_start_the_limit_comes_back_at_once() -> None:
    """``slow_start_seconds: 0`` opens at the cap; after an outage it opens at the limit
    before it, in one step."""
    clock = [0.0]
    controller = make(10, clock, slow_start_seconds=0.0)
    for _ in range(3):
        clock[0] = controller.blocked_until
        for ticket in fill(controller):
            controller.on_rate_limited(ticket)
    assert controller.limit == 3
    clock[0] = controller.blocked_until
    transition = controller.on_success(controller.admit())
    assert transition is not None
    assert (transition.reason, transition.old_limit, transition.new_limit) == (
        "outage-recovery",
        3,
        10,
    )
    assert not controller.statistics().slow_start


def test_a_capacity_that_really_shrank_is_found_by_the_slow_start() -> None:
    """After the outage the provider takes 3 at once: the recovery's slow start (toward 12)
    is refused beyond 3, and its rule sets the limit and the ceiling to what it accepted."""
    clock = [0.0]
    controller = make(12, clock, initial_limit=12, slow_start_seconds=1.0)
    for _ in range(5):
        clock[0] = controller.blocked_until
        for ticket in fill(controller):
            controller.on_rate_limited(ticket)
    assert controller.limit == 2
    clock[0] = controller.blocked_until
    in_flight = fill(controller)
    controller.on_success(in_flight.pop())  # 2 → 3, a slow start toward 12
    in_flight += fill(controller)
    clock[0] += 1.0
    in_flight += fill(controller)  # the doubling: 6 in flight
    assert (controller.limit, len(in_flight)) == (6, 6)
    for ticket in in_flight[3:]:
        controller.on_rate_limited(ticket)
    stats = controller.statistics()
    assert (stats.limit, stats.ceiling, stats.slow_start) == (3, 3, False)


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(
    cap=st.integers(2, 64),
    boundary=st.booleans(),
    rounds=st.integers(2, 12),
    period=st.sampled_from([0.1, 0.5, 1.0]),
    cooldown=st.sampled_from([0.0, 0.5, 2.0]),
    waits=st.lists(st.none() | st.floats(0.0, 5.0), min_size=12, max_size=12),
    order=st.randoms(use_true_random=False),
)
def test_the_limit_before_an_outage_is_back_within_its_doublings(
    cap: int,
    boundary: bool,
    rounds: int,
    period: float,
    cooldown: float,
    waits: list[float | None],
    order: random.Random,
) -> None:
    """Whatever the cap, the outage's length, the Retry-After and the order of its refusals:
    once the provider serves again, the limit before the outage (and its ceiling) is back
    within ceil(log2(before / after)) + 1 slow-start periods of answers, never above it."""
    clock = [0.0]
    controller = make(
        cap, clock, initial_limit=cap, slow_start_seconds=period, cooldown_seconds=cooldown
    )
    if boundary:  # a ceiling learnt at a boundary first
        accepted = controller.admit()
        controller.on_rate_limited(controller.admit())
        controller.on_success(accepted)
    before = controller.statistics()
    for wait in waits[:rounds]:
        clock[0] = max(clock[0], controller.blocked_until) + order.choice([0.0, 0.3, 7.0])
        burst = fill(controller)
        for ticket in order.sample(burst, len(burst)):
            controller.on_rate_limited(ticket, wait)
    assert controller.statistics().outage
    clock[0] = max(clock[0], controller.blocked_until)
    after = controller.limit
    deadline = clock[0] + (math.ceil(math.log2(before.limit / after)) + 1) * period
    while True:  # the first success ends the outage, even with the limit back already
        assert clock[0] <= deadline
        for ticket in fill(controller):
            controller.on_success(ticket)
            if controller.statistics().slow_start:
                assert controller.limit < before.limit
        clock[0] += period / 4
        if controller.limit >= before.limit:
            break
    stats = controller.statistics()
    assert (stats.ceiling, stats.outage, stats.slow_start) == (before.ceiling, False, False)


def boundary_run(
    seed: int, cap: int, capacity: int, config: ThrottleConfig, answers: int = 400
) -> AIMDController:
    """A provider serving ``capacity`` requests at once and refusing the others, answers in
    random order (a refusal may come back after successes sent later)."""
    rng = random.Random(seed)
    clock = [0.0]
    controller = AIMDController(cap=cap, config=config, clock=lambda: clock[0])
    pending: list[tuple[float, int, Ticket, bool]] = []
    accepted = 0
    for _ in range(answers):
        for ticket in fill(controller):
            ok = accepted < capacity
            accepted += ok
            latency = rng.uniform(0.2, 0.8) if ok else rng.uniform(0.0, 1.0)
            heapq.heappush(pending, (clock[0] + latency, ticket.id, ticket, ok))
        if not pending:  # all answered during a cooldown
            clock[0] = controller.blocked_until
            continue
        when, _, ticket, ok = heapq.heappop(pending)
        if clock[0] < controller.blocked_until < when:  # admissions resume first
            heapq.heappush(pending, (when, ticket.id, ticket, ok))
            clock[0] = controller.blocked_until
            continue
        clock[0] = max(clock[0], when)
        if ok:
            accepted -= 1
            controller.on_success(ticket)
        else:
            controller.on_rate_limited(ticket, rng.choice([None, 0.0, 1.0]))
    return controller


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    cap=st.integers(2, 48),
    share=st.floats(0.0, 0.9),
    config=st.builds(
        ThrottleConfig,
        success_window=st.integers(1, 25),
        cooldown_seconds=st.sampled_from([0.0, 0.5, 2.0]),
        ceiling_probe_windows=st.sampled_from([0, 1, 8]),
        initial_limit=st.integers(1, 32),
        slow_start_seconds=st.sampled_from([0.0, 0.1, 1.0]),
    ),
)
def test_a_capacity_boundary_is_never_an_outage(
    seed: int, cap: int, share: float, config: ThrottleConfig
) -> None:
    """Refusals while requests the provider accepted are in flight — however the answers
    are ordered or delayed — never make an outage."""
    capacity = max(1, int(cap * share))
    controller = boundary_run(seed, cap, capacity, config)
    assert controller.statistics().outages == 0


def digest(controller: AIMDController) -> str:
    return hashlib.sha256(json.dumps(controller.history()).encode()).hexdigest()[:16]


def test_a_capacity_boundary_behaves_exactly_as_before() -> None:
    """The limit's whole history (time, limit, in flight) at a boundary is the one recorded
    from the controller before outages were told apart (main at 95460ab): capacity 8 behind a
    cap of 32 with the defaults (the shape of bench/throttle.py), and capacity 3 behind 12
    with quick windows and probes."""
    quick = ThrottleConfig(success_window=5, ceiling_probe_windows=1, cooldown_seconds=0.5)
    cases = [(0, 32, 8, ThrottleConfig()), (1, 32, 8, ThrottleConfig()), (2, 12, 3, quick)]
    runs = [boundary_run(*case, answers=3000) for case in cases]
    stats = [r.statistics() for r in runs]
    assert [(s.cuts, s.probes_refused, s.outages) for s in stats] == CUTS_PROBES_OUTAGES
    assert [digest(r) for r in runs] == RECORDED


#: Recorded by running :func:`boundary_run` on the controller of main at 95460ab.
CUTS_PROBES_OUTAGES = [(1, 3, 0), (1, 3, 0), (67, 71, 0)]
RECORDED = ["4758a395eaeacc6e", "a2a07c5c3cf7e09d", "5a62c9ce3c70e3e3"]


# --------------------------------------------------------------------------- end to end


async def test_throughput_comes_back_after_a_529_outage(autojump_clock: Any) -> None:
    """An HTTP server on 127.0.0.1 answering in 0.3 s, and 529 overloaded to every request
    arriving between t=8 and t=28; max_parallel_requests 8. In the 10 s after the outage
    232 requests are served, against 216 in the 8 s before it (before this fix: 31, the limit
    and the ceiling stuck near 1)."""
    arrivals: list[tuple[float, int]] = []
    reply = json.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    ).encode()
    overloaded = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    started = trio.current_time()

    async def serve(stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            while True:
                try:
                    request = await read_request(stream, buffer)
                except trio.BrokenResourceError:
                    return
                if request is None:
                    return
                buffer = request[2]
                now = trio.current_time() - started
                down = 8.0 <= now < 28.0
                arrivals.append((now, 529 if down else 200))
                await trio.sleep(0.3)
                status, body = (b"529 Overloaded", overloaded) if down else (b"200 OK", reply)
                head = (
                    b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                )
                try:
                    await stream.send_all(head % (status, len(body)) + body)
                except trio.BrokenResourceError:
                    return

    async with serving(serve) as url:
        config = structure_pipeline(
            {
                "providers": [{"name": "p", "endpoint": url}],
                "models": [
                    {"alias": "m", "provider": "p", "model": "m", "max_parallel_requests": 8}
                ],
                "columns": [
                    {"name": "topic", "category": {"values": ["rivers", "deserts"]}},
                    {"name": "text", "llm_text": {"model": "m", "prompt": "On {{ topic }}."}},
                ],
                "run": {"seed": 4, "row_group_size": 10},
            }
        )
        result = await gl.apreview(config, num_records=600)
    assert result.status == "complete"
    served = [t for t, status in arrivals if status == 200]
    before = sum(1 for t in served if t < 8.0)
    after = sum(1 for t in served if 28.0 <= t < 38.0)
    assert (before, after) == (216, 232)
    [domain] = result.summary["models"]["m"]["throttle"].values()
    assert domain["outages"] == 1  # the summary says an outage was climbed back from
