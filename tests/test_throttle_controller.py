"""The pure AIMD controller, with a fake clock: exact arithmetic and a hypothesis state machine."""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from gridloom.config import ThrottleConfig
from gridloom.throttle._controller import AIMDController, Ticket

Clock = list[float]


def make(
    cap: int = 16, now: Clock | None = None, name: str = "", **config: Any
) -> tuple[AIMDController, Clock]:
    """A controller on a fake clock. It opens at the cap (no slow start) unless the test
    passes ``slow_start_seconds``: most tests here are about the AIMD after the start."""
    config.setdefault("slow_start_seconds", 0.0)
    clock = [0.0] if now is None else now
    controller = AIMDController(
        cap=cap, config=ThrottleConfig(**config), clock=lambda: clock[0], name=name
    )
    return controller, clock


def floor(value: float) -> int:
    """``math.floor`` as the controller rounds: 12.999... meant as 13 counts as 13."""
    return math.floor(value + 1e-9)


def fill(controller: AIMDController) -> list[Ticket]:
    tickets = []
    while controller.can_admit():
        tickets.append(controller.admit())
    return tickets


# --------------------------------------------------------------------------- exact rules


def test_cut_arithmetic_follows_reduce_factor_down_to_one() -> None:
    """Each 429 admitted at the current limit cuts it by 0.75, never below 1. Refused one at a
    time with no success, the requests show an outage from the second on: the ceiling the
    first refusal set stays (the outage says nothing of the capacity)."""
    controller, clock = make(cap=16)
    seen = [controller.limit]
    for _ in range(8):
        ticket = controller.admit()
        transition = controller.on_rate_limited(ticket)
        assert transition is not None
        assert transition.reason == "rate-limited"
        seen.append(transition.new_limit)
        clock[0] = controller.blocked_until
    assert seen == [16, 12, 9, 6, 4, 3, 2, 1, 1]
    stats = controller.statistics()
    assert stats.cuts == stats.rate_limited == 8
    assert (stats.ceiling, stats.outage, stats.outages) == (16, True, 1)


def test_increase_after_exactly_success_window_successes() -> None:
    """The limit rises by additive_increase on the success_window-th success, not before."""
    controller, clock = make(cap=16, success_window=5, additive_increase=2)
    controller.on_rate_limited(controller.admit())  # 16 -> 12, ceiling 16
    clock[0] = controller.blocked_until
    for i in range(4):
        assert controller.on_success(controller.admit()) is None
        assert controller.statistics().success_streak == i + 1
    transition = controller.on_success(controller.admit())
    assert transition is not None
    assert (transition.old_limit, transition.new_limit, transition.reason) == (12, 14, "increase")
    assert transition.cooldown_until is None
    assert controller.statistics().success_streak == 0
    assert controller.statistics().increases == 1


def test_increase_stops_at_ceiling_with_overshoot() -> None:
    """After a cut from 10, increases stop at floor(10 * 1.1) = 11 although the cap is 32."""
    controller, clock = make(cap=32, success_window=1)
    controller.set_cap(10)
    controller.set_cap(32)  # the limit stays 10; only increases may raise it
    controller.on_rate_limited(controller.admit())  # 10 -> 7, ceiling 10
    clock[0] = controller.blocked_until
    assert controller.ceiling == 10
    limits = []
    for _ in range(10):
        controller.on_success(controller.admit())
        limits.append(controller.limit)
    assert limits == [8, 9, 10, 11, 11, 11, 11, 11, 11, 11]
    assert controller.statistics().increases == 4


def test_overshoot_bound_rounds_decimal_products_up_to_the_integer() -> None:
    """A ceiling of 10 with overshoot 0.3 allows 13 (10 * 1.3 is 12.999... in binary)."""
    controller, clock = make(cap=32, success_window=1, ceiling_overshoot=0.3)
    controller.set_cap(10)
    controller.set_cap(32)
    controller.on_rate_limited(controller.admit())
    clock[0] = controller.blocked_until
    for _ in range(10):
        controller.on_success(controller.admit())
    assert controller.limit == 13


def test_increase_never_passes_the_cap() -> None:
    """Without a ceiling, increases stop at the cap and report no transition there."""
    controller, _ = make(cap=4, success_window=1)
    assert controller.limit == 4
    assert controller.on_success(controller.admit()) is None
    assert controller.limit == 4


def test_ceiling_only_falls() -> None:
    """The ceiling is the lowest pre-cut limit seen; a refusal at or above it lowers it by one."""
    controller, clock = make(cap=32, success_window=1, ceiling_overshoot=0.5)
    controller.set_cap(8)
    controller.set_cap(32)
    controller.on_rate_limited(controller.admit())  # 8 -> 6, ceiling 8
    clock[0] = controller.blocked_until
    for _ in range(6):
        controller.on_success(controller.admit())
    assert controller.limit == 12  # floor(8 * 1.5)
    controller.on_rate_limited(controller.admit())  # 12 -> 9; refused above the ceiling: 7
    assert (controller.limit, controller.ceiling) == (9, 7)


def test_refusal_at_the_ceiling_lowers_it() -> None:
    """Refused at 9, then again at 9 after climbing back: the ceiling drops to 8, and the
    limit settles there instead of re-trying 9 after every cut."""
    controller, _ = make(
        cap=9, success_window=1, ceiling_overshoot=0.1, cooldown_seconds=0, ceiling_probe_windows=0
    )
    controller.on_rate_limited(controller.admit())  # 9 -> 6, ceiling 9
    assert (controller.limit, controller.ceiling) == (6, 9)
    for _ in range(3):
        controller.on_success(controller.admit())
    assert controller.limit == 9  # floor(9 * 1.1)
    controller.on_rate_limited(controller.admit())  # refused at the ceiling again
    assert (controller.limit, controller.ceiling) == (6, 8)
    for _ in range(10):
        controller.on_success(controller.admit())
    assert controller.limit == 8  # floor(8 * 1.1): 9 is not tried again


def test_probe_raises_a_quiet_ceiling_and_a_held_probe_lifts_it() -> None:
    """At the bound for ``ceiling_probe_windows`` windows, the ceiling rises by one; a window
    at the probed limit without a refusal forgets the ceiling, and the limit climbs to the cap."""
    controller, _ = make(
        cap=12, success_window=2, ceiling_overshoot=0.0, cooldown_seconds=0, ceiling_probe_windows=3
    )
    accepted = controller.admit()  # in flight through the refusals: a boundary, no outage
    controller.on_rate_limited(controller.admit())  # 12 -> 9, ceiling 12
    controller.on_rate_limited(controller.admit())  # 9 -> 6, ceiling 9
    assert (controller.limit, controller.ceiling) == (6, 9)
    reasons = []
    assert controller.on_success(accepted) is None
    for _ in range(2 * (3 + 3) - 2):  # 3 windows up to 9, 3 windows at 9, less one success
        transition = controller.on_success(controller.admit())
        if transition is not None:
            reasons.append(transition.reason)
    assert reasons == ["increase"] * 3
    assert (controller.limit, controller.ceiling) == (9, 9)
    probe = controller.on_success(controller.admit())
    assert probe is not None
    assert (probe.reason, probe.old_limit, probe.new_limit) == (
        "probe",
        9,
        10,
    )
    assert controller.ceiling == 10
    assert controller.statistics().probing
    controller.on_success(controller.admit())
    lifted = controller.on_success(controller.admit())
    assert lifted is not None
    assert (lifted.reason, lifted.new_limit) == ("ceiling-lifted", 11)
    stats = controller.statistics()
    assert (stats.ceiling, stats.probing, stats.probes) == (None, False, 1)
    for _ in range(2):
        controller.on_success(controller.admit())
    assert controller.limit == 12  # free to reach the cap


def test_refused_probes_step_back_and_back_off_exponentially() -> None:
    """A refused probe restores the limit and the ceiling without a cut, blocks no other
    admission (the limit stepped back to was accepted; the refused request alone waits its
    Retry-After, see the limiter test), and doubles the windows before the next probe, up to
    8 times the base."""
    controller, clock = make(
        cap=32,
        success_window=1,
        ceiling_overshoot=0.0,
        cooldown_seconds=0,
        ceiling_probe_windows=2,
        reduce_factor=0.5,
    )
    accepted = controller.admit()  # in flight through the refusals: a boundary, no outage
    controller.on_rate_limited(controller.admit())  # 32 -> 16, ceiling 32
    controller.on_rate_limited(controller.admit())  # 16 -> 8, ceiling 16
    controller.on_rate_limited(controller.admit())  # 8 -> 4, ceiling 8
    controller.on_success(accepted)
    for _ in range(3):
        controller.on_success(controller.admit())
    assert controller.limit == 8
    waits = []
    for _ in range(6):
        successes = 0
        while not controller.statistics().probing:
            controller.on_success(controller.admit())
            successes += 1
        assert (controller.limit, controller.ceiling) == (9, 9)
        waits.append(successes)
        step = controller.on_rate_limited(controller.admit(), retry_after=1.5)
        assert step is not None
        assert (step.reason, step.new_limit) == ("probe-refused", 8)
        assert (controller.limit, controller.ceiling) == (8, 8)
        assert step.cooldown_until is None
        assert controller.can_admit()
        clock[0] += 2
    assert waits == [2, 4, 8, 16, 16, 16]
    stats = controller.statistics()
    assert (stats.probes, stats.probes_refused, stats.cuts) == (6, 6, 3)


def test_burst_of_concurrent_429s_cuts_once() -> None:
    """Requests admitted together at 16 and all refused cut the limit once, to 12."""
    controller, _ = make(cap=16)
    tickets = fill(controller)
    assert len(tickets) == 16
    transitions = [controller.on_rate_limited(t) for t in tickets]
    assert [t.new_limit for t in transitions if t is not None] == [12]
    stats = controller.statistics()
    assert (stats.limit, stats.cuts, stats.rate_limited, stats.in_flight) == (12, 1, 16, 0)


def test_non_cutting_429_honours_retry_after_but_keeps_the_streak() -> None:
    """A stale 429 extends the cooldown by its Retry-After, does not cut, keeps the streak."""
    controller, clock = make(cap=16)
    first, stale, fresh = controller.admit(), controller.admit(), controller.admit()
    controller.on_rate_limited(first, retry_after=1.0)  # 16 -> 12, blocked until 1
    clock[0] = 1.0
    controller.on_success(controller.admit())
    assert controller.on_rate_limited(stale) is None  # no Retry-After: no extension
    assert controller.blocked_until == 1.0
    assert controller.on_rate_limited(fresh, retry_after=5.0) is None
    stats = controller.statistics()
    assert (stats.limit, stats.cuts, stats.success_streak) == (12, 1, 1)
    assert stats.blocked_until == 6.0


def test_cooldown_from_retry_after_or_default() -> None:
    """A cut blocks admissions for Retry-After seconds if given, else cooldown_seconds."""
    controller, clock = make(cap=16, cooldown_seconds=2.0)
    clock[0] = 100.0
    transition = controller.on_rate_limited(controller.admit(), retry_after=7.0)
    assert transition is not None
    assert transition.cooldown_until == controller.blocked_until == 107.0
    clock[0] = 106.999
    assert not controller.can_admit()
    with pytest.raises(RuntimeError, match="cooldown"):
        controller.admit()
    clock[0] = 107.0
    assert controller.can_admit()
    transition = controller.on_rate_limited(controller.admit())
    assert transition is not None
    assert transition.cooldown_until == 109.0


def test_cooldown_never_shortens_and_clamps_past_dates() -> None:
    """A shorter or negative Retry-After never moves blocked_until earlier; inf is refused."""
    controller, _ = make(cap=16)
    controller.on_rate_limited(controller.admit(), retry_after=-5.0)  # a date in the past
    assert controller.blocked_until == 0.0
    stale = controller.admit()
    controller.on_rate_limited(controller.admit(), retry_after=30.0)
    assert controller.blocked_until == 30.0
    controller.on_rate_limited(stale, retry_after=1.0)
    assert controller.blocked_until == 30.0
    with pytest.raises(ValueError, match="finite"):
        controller.on_rate_limited(stale, retry_after=math.inf)


def test_limit_decrease_cancels_nothing() -> None:
    """After a cut below in_flight, nothing is admitted until in_flight falls below the limit."""
    controller, _ = make(cap=4, cooldown_seconds=0.0)
    tickets = fill(controller)
    controller.on_rate_limited(tickets.pop())  # 4 -> 3 with 3 in flight
    assert (controller.limit, controller.in_flight) == (3, 3)
    assert not controller.can_admit()
    controller.on_release(tickets.pop())
    assert controller.can_admit()


def test_ramp_values_at_start_half_and_end() -> None:
    """The ramp runs 1 → cap linearly and is exactly the cap at rampup_seconds."""
    controller, clock = make(cap=9, now=[50.0], rampup_seconds=8.0)
    assert controller.limit == 1
    assert controller.statistics().ramping
    clock[0] = 52.0
    assert controller.limit == 3
    clock[0] = 54.0
    assert controller.limit == 5
    clock[0] = 57.999
    assert controller.limit == 8
    clock[0] = 58.0
    assert controller.limit == 9
    assert not controller.statistics().ramping


def test_ramp_is_exact_at_the_end_with_awkward_floats() -> None:
    """At elapsed == rampup_seconds the limit is the cap whatever the rounding."""
    for cap, rampup in [(32, 0.3), (7, 0.1), (100, 3.3)]:
        controller, clock = make(cap=cap, rampup_seconds=rampup)
        clock[0] = rampup
        assert controller.limit == cap


def test_ramp_next_step_time_is_reliable() -> None:
    """next_ramp_step_at returns a time at which the limit has risen, until the ramp ends."""
    controller, clock = make(cap=32, now=[0.1], rampup_seconds=0.7)
    limits = [controller.limit]
    while (at := controller.next_ramp_step_at()) is not None:
        assert at > clock[0]
        clock[0] = at
        limits.append(controller.limit)
    assert limits == list(range(1, 33))
    assert clock[0] <= 0.1 + 0.7


def test_ramp_ignores_additive_increase() -> None:
    """During a ramp successes are counted but the ramp alone sets the limit."""
    controller, _ = make(cap=10, rampup_seconds=9.0, success_window=1)
    for _ in range(3):
        assert controller.on_success(controller.admit()) is None
    assert controller.limit == 1
    assert controller.statistics().succeeded == 3


def test_ramp_aborted_by_first_429() -> None:
    """A 429 during the ramp cuts the then-effective limit and fixes it there."""
    controller, clock = make(cap=17, rampup_seconds=16.0)
    clock[0] = 7.0
    ticket = controller.admit()
    assert ticket.limit_at_admission == 8
    transition = controller.on_rate_limited(ticket)
    assert transition is not None
    assert (transition.old_limit, transition.new_limit, transition.reason) == (
        8,
        6,
        "ramp-aborted",
    )
    assert controller.ceiling == 8
    clock[0] = 100.0
    stats = controller.statistics()
    assert (stats.limit, stats.ramping) == (6, False)


def test_set_cap() -> None:
    """set_cap lowers the limit to the cap, reports it, and bounds later increases."""
    controller, _ = make(cap=16, success_window=1)
    transition = controller.set_cap(6)
    assert transition is not None
    assert (transition.old_limit, transition.new_limit, transition.reason) == (16, 6, "cap")
    assert controller.set_cap(8) is None
    assert (controller.limit, controller.cap) == (6, 8)
    for _ in range(5):
        controller.on_success(controller.admit())
    assert controller.limit == 8
    with pytest.raises(ValueError, match="at least 1"):
        controller.set_cap(0)


def test_set_cap_during_ramp_reevaluates_the_ramp() -> None:
    """During a ramp, the ramp formula is re-evaluated with the new cap."""
    controller, clock = make(cap=33, rampup_seconds=8.0)
    clock[0] = 4.0
    assert controller.limit == 17
    transition = controller.set_cap(9)
    assert transition is not None
    assert (transition.new_limit, transition.reason) == (5, "cap")
    clock[0] = 8.0
    assert controller.limit == 9


def test_tickets_are_checked() -> None:
    """Ticket ids increase; handing back a ticket twice or an unknown one raises."""
    controller, _ = make(cap=4)
    a, b = controller.admit(), controller.admit()
    assert (a.id, b.id) == (0, 1)
    controller.on_success(a)
    with pytest.raises(RuntimeError, match="not in flight"):
        controller.on_release(a)
    with pytest.raises(RuntimeError, match="not in flight"):
        controller.on_rate_limited(Ticket(id=7, admitted_at=0.0, limit_at_admission=4))
    other, _ = make(cap=4)
    with pytest.raises(RuntimeError, match="not in flight"):
        other.on_success(b)
    assert controller.in_flight == 1


def test_admit_beyond_limit_raises() -> None:
    """admit() without can_admit() is an actuator bug and raises."""
    controller, _ = make(cap=2)
    fill(controller)
    with pytest.raises(RuntimeError, match="beyond the limit"):
        controller.admit()


def test_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    """Each transition is one INFO line on gridloom.throttle: name, old → new, reason."""
    caplog.set_level(logging.INFO, logger="gridloom.throttle")
    controller, clock = make(cap=16, name="sim/m chat", success_window=1)
    controller.on_rate_limited(controller.admit(), retry_after=7.0)
    clock[0] = 7.0
    controller.on_success(controller.admit())
    controller.set_cap(5)
    assert [(r.name, r.levelno) for r in caplog.records] == [
        ("gridloom.throttle", logging.INFO)
    ] * 3
    assert [r.getMessage() for r in caplog.records] == [
        "sim/m chat: limit 16 → 12 (rate-limited, cooldown 7.0 s)",
        "sim/m chat: limit 12 → 13 (increase)",
        "sim/m chat: limit 13 → 5 (cap)",
    ]


def test_history_entries() -> None:
    """History records (time, limit, in_flight) at every change of either."""
    controller, clock = make(cap=4, cooldown_seconds=1.0)
    a = controller.admit()
    clock[0] = 0.5
    b = controller.admit()
    clock[0] = 1.0
    controller.on_rate_limited(a)
    controller.can_admit()  # a read changes nothing and records nothing
    clock[0] = 3.0
    controller.on_release(b)
    assert controller.history() == [
        (0.0, 4, 0),
        (0.0, 4, 1),
        (0.5, 4, 2),
        (1.0, 4, 1),
        (1.0, 3, 1),
        (3.0, 3, 0),
    ]


def test_history_is_bounded() -> None:
    """Only the last 100,000 history entries are kept."""
    controller, clock = make(cap=1)
    for i in range(60_000):
        clock[0] = float(i)
        controller.on_success(controller.admit())
    history = controller.history()
    assert len(history) == 100_000
    assert history[-1] == (59_999.0, 1, 0)


# --------------------------------------------------------------------------- state machine

configs = st.builds(
    ThrottleConfig,
    reduce_factor=st.floats(0.05, 0.95),
    additive_increase=st.integers(1, 4),
    success_window=st.integers(1, 6),
    cooldown_seconds=st.sampled_from([0.0, 0.5, 2.0]),
    ceiling_overshoot=st.sampled_from([0.0, 0.1, 0.25, 0.5]),
    rampup_seconds=st.sampled_from([0.0, 0.0, 3.0, 10.0]),
    ceiling_probe_windows=st.sampled_from([0, 1, 2, 8]),
    initial_limit=st.integers(1, 12),
    slow_start_seconds=st.sampled_from([0.0, 0.125, 1.0]),
    slow_start_latency_factor=st.sampled_from([1.5, 2.0]),
)
retry_afters = st.none() | st.floats(0.0, 10.0)


class ControllerMachine(RuleBasedStateMachine):
    """Random admissions, outcomes, clock moves and cap changes keep every invariant."""

    tickets = Bundle("tickets")

    def __init__(self) -> None:
        super().__init__()
        self.clock = [0.0]
        self.controller: AIMDController
        self.config: ThrottleConfig
        self.in_flight = 0
        self.last_blocked_until = -math.inf

    @initialize(cap=st.integers(1, 48), config=configs, start=st.floats(0.0, 1e6))
    def start(self, cap: int, config: ThrottleConfig, start: float) -> None:
        self.clock[0] = start
        self.config = config
        self.controller = AIMDController(cap=cap, config=config, clock=lambda: self.clock[0])

    @precondition(lambda self: self.controller.can_admit())
    @rule(target=tickets)
    def admit(self) -> Ticket:
        return self.admit_one()

    def admit_one(self) -> Ticket:
        limit = self.controller.limit
        assert self.controller.in_flight < limit
        ticket = self.controller.admit()
        assert ticket.limit_at_admission == limit
        self.in_flight += 1
        return ticket

    @rule(ticket=consumes(tickets))
    def succeed(self, ticket: Ticket) -> None:
        self.succeed_one(ticket)

    def succeed_one(self, ticket: Ticket) -> None:
        before = self.controller.statistics()
        transition = self.controller.on_success(ticket)
        self.in_flight -= 1
        if transition is not None and transition.reason == "increase":
            assert before.success_streak + 1 == self.config.success_window
            assert not before.ramping
            assert 0 < transition.new_limit - transition.old_limit <= self.config.additive_increase
        after = self.controller.statistics()
        if transition is not None and transition.reason == "slow-start":
            assert before.slow_start
            assert transition.old_limit < transition.new_limit <= 2 * transition.old_limit
            # It ends at the cap, or, after an outage, at the limit before it.
            assert not after.slow_start or after.limit < after.cap
        # A success ends any refusal streak; the first after an outage starts the recovery.
        assert not after.outage
        assert after.outages == before.outages
        if transition is not None and transition.reason == "outage-recovery":
            assert before.outage
            # One more slot if the limit was in use; the slow start's steps follow.
            assert transition.old_limit <= transition.new_limit <= after.cap
            assert after.cuts == before.cuts
        if transition is not None and transition.reason == "probe":
            assert before.ceiling is not None
            assert after.ceiling == before.ceiling + 1
            assert after.probing
            assert after.probes == before.probes + 1
        if transition is not None and transition.reason == "ceiling-lifted":
            assert before.probing
            assert after.ceiling is None

    @rule(ticket=consumes(tickets), retry_after=retry_afters)
    def rate_limited(self, ticket: Ticket, retry_after: float | None) -> None:
        before = self.controller.statistics()
        transition = self.controller.on_rate_limited(ticket, retry_after)
        self.in_flight -= 1
        after = self.controller.statistics()
        if before.ceiling is not None:
            assert after.ceiling is not None
            assert after.ceiling <= before.ceiling
        may_cut = ticket.limit_at_admission <= before.limit
        if before.slow_start:
            # The first refusal that may cut ends the slow start; the others leave it on.
            assert after.slow_start == (not may_cut)
        if transition is not None and transition.reason == "slow-start-ended":
            # A request sent during the slow start (which may have reached the cap since).
            assert after.cuts == before.cuts + 1
            assert 1 <= transition.new_limit <= transition.old_limit
            assert transition.new_limit == after.ceiling
            assert transition.new_limit <= max(1, after.in_flight)
            assert after.success_streak == 0
            assert not after.slow_start
        elif before.slow_start and may_cut:
            raise AssertionError(f"a refusal during the slow start gave {transition}")
        elif after.cuts > before.cuts:
            assert transition is not None
            assert transition.reason in ("rate-limited", "ramp-aborted")
            old = transition.old_limit
            assert ticket.limit_at_admission <= old
            if after.outage:  # refusals in an outage say nothing of the capacity
                assert after.ceiling == before.ceiling
            else:
                assert after.ceiling is not None
            bound = (
                after.cap
                if after.ceiling is None
                else floor(after.ceiling * (1 + self.config.ceiling_overshoot))
            )
            assert transition.new_limit == max(
                1, min(floor(old * self.config.reduce_factor), bound)
            )
            assert after.success_streak == 0
            assert not after.ramping
        elif transition is not None and transition.reason == "probe-refused":
            assert before.probing
            assert not after.probing
            assert before.ceiling is not None
            assert after.ceiling == before.ceiling - 1
            assert after.limit == min(
                after.cap, floor(after.ceiling * (1 + self.config.ceiling_overshoot))
            )
            assert after.probes_refused == before.probes_refused + 1
        else:
            assert after.success_streak == before.success_streak
        probe_refused = transition is not None and transition.reason == "probe-refused"
        if retry_after is not None and not probe_refused:
            assert after.blocked_until >= self.clock[0] + retry_after
        if probe_refused:  # the others go on at the limit stepped back to
            assert after.blocked_until == before.blocked_until

    @rule(ticket=consumes(tickets))
    def release(self, ticket: Ticket) -> None:
        self.controller.on_release(ticket)
        self.in_flight -= 1

    @precondition(lambda self: self.controller.can_admit())
    @rule(
        size=st.integers(1, 20),
        retry_afters=st.lists(retry_afters, min_size=20, max_size=20),
        order=st.randoms(use_true_random=False),
    )
    def burst(self, size: int, retry_afters: list[float | None], order: random.Random) -> None:
        burst = [self.controller.admit()]
        # A slow start's doubling, due, happens at the admission that uses the limit: the
        # burst is what was admitted at one limit.
        while len(burst) < size and self.controller.can_admit():
            if self.controller.limit != burst[0].limit_at_admission:
                break
            burst.append(self.controller.admit())
        before = self.controller.statistics()
        # Refusals come back in any order: their requests were in flight together.
        for ticket, retry_after in zip(order.sample(burst, len(burst)), retry_afters, strict=False):
            self.controller.on_rate_limited(ticket, retry_after)
        after = self.controller.statistics()
        # One reaction per burst: a cut, or stepping back from a probe.
        reactions = after.cuts + after.probes_refused - before.cuts - before.probes_refused
        assert reactions == 1
        if before.slow_start:
            # The estimate: what stays in flight once the burst is refused, whatever the order
            # its refusals came back in.
            assert not after.slow_start
            assert after.limit == after.ceiling == max(1, min(self.in_flight, before.limit))
            assert after.cuts == before.cuts + 1

    @rule(count=st.integers(1, 60))
    def steady(self, count: int) -> None:
        for _ in range(count):
            if not self.controller.can_admit():
                break
            self.succeed_one(self.admit_one())

    @rule(seconds=st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0]) | st.floats(0.0, 12.0))
    def advance(self, seconds: float) -> None:
        self.clock[0] += seconds

    @rule(cap=st.integers(1, 48))
    def set_cap(self, cap: int) -> None:
        before = self.controller.statistics()
        transition = self.controller.set_cap(cap)
        after = self.controller.statistics()
        assert after.cap == cap
        if not before.ramping:
            assert after.limit == min(before.limit, cap)
        assert (transition is None) == (after.limit == before.limit)

    @precondition(lambda self: self.controller.statistics().slow_start)
    @rule(periods=st.integers(1, 4))
    def idle(self, periods: int) -> None:
        """No doubling while the limit is not used, however long (past the one due, which
        may double it if the limit was used before)."""
        self.clock[0] += self.config.slow_start_seconds
        stats = self.controller.statistics()
        if not stats.slow_start or stats.in_flight >= stats.limit:
            return
        self.clock[0] += periods * self.config.slow_start_seconds
        assert self.controller.statistics().limit == stats.limit
        self.clock[0] += periods * self.config.slow_start_seconds
        assert self.controller.statistics().limit == stats.limit

    @invariant()
    def limit_within_bounds(self) -> None:
        stats = self.controller.statistics()
        assert 1 <= stats.limit <= stats.cap
        assert stats.in_flight == self.in_flight

    @invariant()
    def limit_within_ceiling_overshoot(self) -> None:
        stats = self.controller.statistics()
        if stats.ceiling is not None:
            assert stats.limit <= floor(stats.ceiling * (1 + self.config.ceiling_overshoot))

    @invariant()
    def blocked_until_never_decreases(self) -> None:
        blocked_until = self.controller.blocked_until
        assert blocked_until >= self.last_blocked_until
        self.last_blocked_until = blocked_until

    @invariant()
    def history_ends_at_the_current_state(self) -> None:
        stats = self.controller.statistics()  # advances the ramp first
        _, limit, in_flight = self.controller.history()[-1]
        assert (limit, in_flight) == (stats.limit, stats.in_flight)


ControllerMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)
TestControllerMachine = ControllerMachine.TestCase


@given(
    st.integers(1, 32),
    st.lists(st.tuples(st.integers(1, 32), st.booleans(), st.booleans()), max_size=40),
    st.sampled_from([0.0, 0.5]),
)
def test_a_lifted_cap_moves_the_limit_with_it_and_never_past_it(
    cap: int, steps: list[tuple[int, bool, bool]], slow_start: float
) -> None:
    """``set_cap(c, lift=True)`` (a sharded run's share of the board's ceiling): the limit
    never exceeds the cap; a raise forgets the controller's own ceiling and raises the limit
    by as much as the cap rose (up to it); a cut lowers the limit to the cap as without. A
    slow start goes on beneath the new cap until the limit reaches it."""
    controller, clock = make(cap=cap, success_window=1, slow_start_seconds=slow_start)
    for new_cap, refuse, lift in steps:
        if refuse and controller.can_admit():
            controller.on_rate_limited(controller.admit(), 0.0)
        if controller.can_admit():
            controller.on_success(controller.admit())
        old_cap, old_limit = controller.cap, controller.limit
        slow = controller.statistics().slow_start
        controller.set_cap(new_cap, lift=lift)
        assert controller.limit <= new_cap
        assert controller.statistics().slow_start == (slow and controller.limit < new_cap)
        if lift:
            assert controller.ceiling is None
        if lift and new_cap > old_cap:
            assert controller.limit == min(new_cap, old_limit + new_cap - old_cap)
        else:
            assert controller.limit == min(old_limit, new_cap)
        clock[0] += 1.0


def test_a_probe_the_cap_undid_gets_one_reaction_per_burst() -> None:
    """A probe whose raised limit a lower cap took away, then refused by a burst: the
    burst cuts once (was: a step back that changed nothing, then a cut from the burst's
    second refusal — two reactions to one burst; found by the state machine)."""
    controller, _ = make(
        cap=25,
        reduce_factor=0.875,
        success_window=1,
        cooldown_seconds=0.0,
        ceiling_overshoot=0.25,
        ceiling_probe_windows=1,
        initial_limit=1,
    )
    controller.set_cap(32)
    controller.on_rate_limited(controller.admit())
    for _ in range(11):
        if not controller.can_admit():
            break
        controller.on_success(controller.admit())
    controller.set_cap(26)
    assert controller.statistics().probing
    burst = [controller.admit(), controller.admit()]
    reactions = [controller.on_rate_limited(ticket) for ticket in burst]
    assert [(t.old_limit, t.new_limit, t.reason) for t in reactions if t is not None] == [
        (26, 22, "rate-limited")
    ]
    assert controller.statistics().limit == 22
