"""The state of an AIMD controller: how it is built and read, and how time moves it.

:class:`ControllerState` holds what :class:`~gridloom.throttle.AIMDController` knows (limit,
ceiling, tickets in flight, counters, the ramp or slow start under way), answers the reading
calls, and applies the steps that time alone brings: the start-up ramp and the slow start's
doublings. The rules for answers (cuts, increases, probes, outages) are the controller's
(:mod:`._controller`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..config import ThrottleConfig
from ._history import History
from ._outage import StreakWatch
from ._ramp import floor, next_step_at, ramp_limit
from ._slowstart import SlowStart
from ._values import ControllerStatistics, Ticket, Transition

__all__ = ["ControllerState", "check_cap"]

log = logging.getLogger("gridloom.throttle")

#: History entries kept (the oldest are dropped first).
_HISTORY = 100_000


class ControllerState:
    """The state and the reading side of an AIMD controller (see
    :class:`~gridloom.throttle.AIMDController` for the arguments)."""

    def __init__(
        self,
        *,
        cap: int,
        config: ThrottleConfig,
        clock: Callable[[], float],
        name: str = "",
    ):
        check_cap(cap)
        self._config = config
        self._clock = clock
        self._name = name
        self._cap = cap
        self._start = clock()
        self._ramping = config.rampup_seconds > 0 and cap > 1
        initial = min(config.initial_limit, cap)
        self._slow: SlowStart | None = None
        # Where a slow start ends: the cap (None), or the limit before an outage.
        self._slow_target: int | None = None
        self._watch = StreakWatch()
        self._outages = 0
        # Tickets below this id were sent during the slow start, which has ended: their
        # refusals make (once) and then lower its capacity estimate, until the next change.
        self._slow_ids_below: int | None = None
        self._estimated = False
        self._answered = 0  # of those, successes since the estimate was made
        if not self._ramping and config.slow_start_seconds > 0 and initial < cap:
            self._slow = SlowStart(
                start=self._start,
                period=config.slow_start_seconds,
                factor=config.slow_start_latency_factor,
            )
        self._limit = 1 if self._ramping else initial if self._slow is not None else cap
        self._blocked_until = self._start
        self._ceiling: int | None = None
        self._streak = 0
        self._tickets: dict[int, Ticket] = {}
        self._next_id = 0
        self._succeeded = 0
        self._rate_limited = 0
        self._cuts = 0
        self._increases = 0
        self._holds = 0
        self._probes = 0
        self._probes_refused = 0
        self._probing = False
        self._windows_at_bound = 0
        self._probe_wait = config.ceiling_probe_windows
        self._history = History(_HISTORY, time=self._start, limit=self._limit)

    # ------------------------------------------------------------------ reading

    @property
    def limit(self) -> int:
        """Requests allowed in flight now (reading it advances the ramp)."""
        self._advance(self._clock())
        return self._limit

    @property
    def config(self) -> ThrottleConfig:
        """The tuning it follows."""
        return self._config

    @property
    def cap(self) -> int:
        """The hard upper bound of the limit."""
        return self._cap

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet handed back."""
        return len(self._tickets)

    @property
    def blocked_until(self) -> float:
        """No admission before this clock time (initially the construction time)."""
        return self._blocked_until

    @property
    def ceiling(self) -> int | None:
        """The lowest limit that was cut, or ``None`` before the first cut."""
        return self._ceiling

    def can_admit(self) -> bool:
        """Whether a request may start now: fewer than ``limit`` in flight and no cooldown."""
        now = self._clock()
        self._advance(now)
        return len(self._tickets) < self._limit and now >= self._blocked_until

    def next_ramp_step_at(self) -> float | None:
        """When the ramp next raises the limit (guaranteed risen by then: sleep until it with
        no margin), or ``None`` if no ramp is under way."""
        now = self._clock()
        self._advance(now)
        if not self._ramping:
            return None
        seconds = self._config.rampup_seconds
        return next_step_at(self._limit, start=self._start, seconds=seconds, cap=self._cap)

    def next_slow_start_step_at(self) -> float | None:
        """When a slow start may next double the limit, or ``None`` if none is under way. It
        doubles then if the limit has been in use by then; a time already past means the
        doubling waits for the limit to be used (every request in flight that it allows)."""
        self._advance(self._clock())
        return None if self._slow is None else self._slow.due

    def history(self) -> list[tuple[float, int, int]]:
        """``(time, limit, in_flight)`` after every change of either (the last 100,000)."""
        return self._history.entries()

    def history_sample(self, points: int) -> list[tuple[float, int, int]]:
        """At most ``points`` entries of :meth:`history`, evenly spread, the newest kept."""
        return self._history.sample(points)

    def statistics(self) -> ControllerStatistics:
        """A frozen snapshot of the state and the counters."""
        self._advance(self._clock())
        return ControllerStatistics(
            limit=self._limit,
            cap=self._cap,
            in_flight=len(self._tickets),
            blocked_until=self._blocked_until,
            ceiling=self._ceiling,
            success_streak=self._streak,
            ramping=self._ramping,
            admitted=self._next_id,
            succeeded=self._succeeded,
            rate_limited=self._rate_limited,
            cuts=self._cuts,
            increases=self._increases,
            holds=self._holds,
            probes=self._probes,
            probes_refused=self._probes_refused,
            probing=self._probing,
            slow_start=self._slow is not None,
            outage=self._watch.in_outage,
            outages=self._outages,
        )

    # ------------------------------------------------------------------ internals

    def _label(self) -> str:
        return f"{self._name}: " if self._name else ""

    def _ramp_limit(self, now: float) -> int:
        seconds = self._config.rampup_seconds
        return ramp_limit(now, start=self._start, seconds=seconds, cap=self._cap)

    def _advance(self, now: float) -> Transition | None:
        if self._slow is not None:
            if not self._slow.doubling_due(now):
                return None
            self._slow.doubled(now)
            return self._slow_start_step(now, 2 * self._limit)
        if not self._ramping:
            return None
        new = self._ramp_limit(now)
        if new >= self._cap:
            self._ramping = False
        if new == self._limit:
            return None
        return self._change(now, new, "ramp")

    def _slow_start_step(self, now: float, new: int) -> Transition:
        bound = self._cap if self._slow_target is None else min(self._slow_target, self._cap)
        new = min(new, bound)
        if new < bound:
            return self._change(now, new, "slow-start")
        where = "the cap" if bound >= self._cap else "the limit before the outage"
        self._stop_slow_start()
        return self._change(now, new, "slow-start", detail=f"slow-start, at {where}: ended")

    def _stop_slow_start(self) -> None:
        self._slow = None
        self._slow_target = None
        self._slow_ids_below = self._next_id

    def _increase_bound(self, ceiling: int | None = None) -> int:
        ceiling = self._ceiling if ceiling is None else ceiling
        if ceiling is None:
            return self._cap
        overshoot = floor(ceiling * (1.0 + self._config.ceiling_overshoot))
        return min(self._cap, overshoot)

    def _release(self, ticket: Ticket) -> float:
        if self._tickets.get(ticket.id) != ticket:
            raise RuntimeError(
                f"{self._label()}ticket {ticket.id} is not in flight "
                "(handed back twice, or from another controller)"
            )
        del self._tickets[ticket.id]
        now = self._clock()
        self._record(now)
        return now

    def _change(
        self,
        now: float,
        new: int,
        reason: str,
        *,
        cooldown_until: float | None = None,
        detail: str | None = None,
    ) -> Transition:
        transition = Transition(
            time=now,
            old_limit=self._limit,
            new_limit=new,
            reason=reason,
            cooldown_until=cooldown_until,
        )
        self._limit = new
        if reason not in ("slow-start", "slow-start-ended", "slow-start-estimate"):
            self._slow_ids_below = None  # the slow start's estimate stands until now
        self._record(now)
        detail = reason if detail is None else detail
        if cooldown_until is not None:
            detail = f"{reason}, cooldown {cooldown_until - now:.1f} s"
        log.info("%slimit %d → %d (%s)", self._label(), transition.old_limit, new, detail)
        return transition

    def _record(self, now: float) -> None:
        history, limit, in_flight = self._history, self._limit, len(self._tickets)
        if history.last_limit != limit or history.last_in_flight != in_flight:
            history.append(now, limit, in_flight)


def check_cap(cap: int) -> None:
    if cap < 1:
        raise ValueError(f"the concurrency cap must be at least 1, got {cap}")
