"""The AIMD controller: how many requests one (provider, model, domain) may have in flight.

A pure class driven by explicit calls and an injected clock (no trio, no I/O), so hypothesis can
test it exhaustively; the trio actuator resizes its ``CapacityLimiter`` after each
:class:`Transition`. Rules (numbers from :class:`~gridloom.config.ThrottleConfig`):

* **Slow start** (``slow_start_seconds > 0``) at ``min(initial_limit, cap)``: the limit doubles
  every ``slow_start_seconds`` and grows by one per success while in use (:mod:`._slowstart`),
  up to the cap. The first refusal that may cut of a request sent during it (if it reached the
  cap meanwhile, too) ends it: the requests sent during it and still in flight become the
  limit and the ceiling (``"slow-start-ended"``); each later refusal of one of them lowers both
  to those still in flight plus those answered since (``"slow-start-estimate"``), so once the
  burst's refusals are back the estimate is what the provider accepted — in whatever order
  they arrive (requests reach it in another order than they were admitted, so the count at
  admission can be far too low); slowing answers end it too, keeping the limit. Or with
  ``rampup_seconds > 0`` a linear ramp from 1:
  ``min(cap, 1 + floor((cap - 1) * elapsed / rampup_seconds))``; with neither, the cap.
* **Rate limited**: limit → ``max(1, floor(limit * reduce_factor))``; the pre-cut limit is
  remembered as the ceiling (the lowest seen) — and a refusal at or above the ceiling shows the
  ceiling itself too high, so it drops to one below that limit (in an outage the ceiling
  stays, see below); no admission until the ``Retry-After`` — else ``cooldown_seconds`` —
  has passed. The first cut ends a ramp.
* **Cascade dampening**: only a request admitted at or below the current limit can cut it. A
  refusal that may not cut still honours its ``Retry-After`` but keeps the success streak: it
  speaks of a limit already gone.
* **Success**: every ``success_window`` successes in a row add ``additive_increase``, up to the
  cap and, once a ceiling exists, ``floor(ceiling * (1 + ceiling_overshoot))``. A ramp, while it
  lasts, alone sets the limit, and so does a slow start.
* **Probing**: capacity can grow during a run (another tenant leaves, a quota is raised). After
  ``ceiling_probe_windows`` windows at that bound with no refusal, the ceiling rises by one
  (reason ``"probe"``). A probe that holds for one more window shows the ceiling stale: it is
  forgotten and the limit climbs again (``"ceiling-lifted"``). A refused probe
  (``"probe-refused"``) steps the limit and the ceiling back — no multiplicative cut: it only
  confirms the limit before it — honours the cooldown, and doubles the wait before the next
  probe, up to 8 times the base; a steady capacity costs one refusal per ever longer interval.
* **Outage** (:mod:`._outage`): capacity refusals with no success in between form a streak;
  its first refusal records the limit and the ceiling in force. It becomes an outage at a
  refusal of a request sent after the streak began that leaves nothing in flight — at a
  capacity boundary accepted requests are still in flight then, so a boundary never is one.
  Refusals in an outage still cut the limit (fewer requests wasted on a provider that is
  down) but leave the ceiling alone. The first success after it (``"outage-recovery"``)
  restores the ceiling recorded and starts a slow start from the current limit back to the
  limit recorded, not beyond it (+1 for that success if the limit was in use; with
  ``slow_start_seconds: 0``, that limit at once). If the start-up slow start was under way
  when the streak began, the recovery resumes it, up to the cap, with no ceiling. A recovery
  is a slow start like the first: its first refusal sets the limit and the ceiling to what
  the provider accepted (a capacity that really shrank is found there), and a streak that
  begins during it records the limit it was heading for. It ends a ramp, as any cut does,
  and never restarts it; probing goes on from the restored ceiling (an unconfirmed probe is
  recorded as the ceiling below it). The trio service that wakes slow starts on time drives
  the start-up one only: a recovery doubles at the next admission or answer after a period.
* A lower limit cancels nothing: none is admitted until fewer than ``limit`` are in flight.

Each change of the limit is one INFO line on ``gridloom.throttle``, e.g.
``openai/gpt-4o chat: limit 16 → 12 (rate-limited, cooldown 7.0 s)``.
"""

from __future__ import annotations

import logging
import math

from ._holds import LONG_HOLD_SECONDS, MAX_SERVER_HOLD_SECONDS, log_hold, server_hold
from ._outage import Streak
from ._ramp import floor
from ._slowstart import SlowStart
from ._state import ControllerState, check_cap
from ._values import ControllerStatistics, Ticket, Transition

__all__ = [
    "LONG_HOLD_SECONDS",
    "MAX_SERVER_HOLD_SECONDS",
    "AIMDController",
    "ControllerStatistics",
    "Ticket",
    "Transition",
    "server_hold",
]

log = logging.getLogger("gridloom.throttle")

#: A refused probe doubles the wait before the next, up to this many times the base.
_PROBE_BACKOFF = 8


class AIMDController(ControllerState):
    """Additive-increase, multiplicative-decrease limit on concurrent requests.

    Args:
        cap: the limit never exceeds this (the smallest ``max_parallel_requests`` of the
            aliases sharing the model).
        config: the tuning (reduce factor, window, cooldown, ceiling overshoot, ramp, slow
            start).
        clock: returns the current time in seconds (``trio.current_time`` in a run).
        name: prefix of log lines, e.g. ``"openai/gpt-4o chat"``.

    Raises:
        ValueError: if ``cap`` is below 1.

    Handing back a ticket that is not in flight (twice, or another controller's) raises
    ``RuntimeError``, and so does :meth:`admit` when :meth:`can_admit` is false: both are bugs
    of the caller.
    """

    # ------------------------------------------------------------------ driving

    def admit(self) -> Ticket:
        """Admit one request (only when :meth:`can_admit`)."""
        now = self._clock()
        self._advance(now)
        if now < self._blocked_until:
            raise RuntimeError(f"{self._label()}admission during a cooldown")
        if len(self._tickets) >= self._limit:
            raise RuntimeError(f"{self._label()}admission beyond the limit of {self._limit}")
        ticket = Ticket(id=self._next_id, admitted_at=now, limit_at_admission=self._limit)
        self._next_id += 1
        self._tickets[ticket.id] = ticket
        if self._slow is not None and len(self._tickets) >= self._limit:
            self._slow.used = True
        self._record(now)
        return ticket

    def on_success(self, ticket: Ticket) -> Transition | None:
        """The request succeeded; may raise the limit.

        Returns:
            The transition (an increase, or a ramp or slow-start step), or ``None``.
        """
        used = len(self._tickets) >= self._limit
        now = self._release(ticket)
        transition = self._advance(now)
        self._succeeded += 1
        self._streak += 1
        if (
            self._estimated
            and self._slow_ids_below is not None
            and ticket.id < self._slow_ids_below
        ):
            self._answered += 1
        outage = self._watch.succeeded()
        if outage is not None:
            return self._recover(now, outage, used) or transition
        if self._slow is not None:
            grown = self._slow_start_success(now, now - ticket.admitted_at, used)
            transition = transition if grown is None else grown
        if self._streak < self._config.success_window:
            return transition
        self._streak = 0
        if self._ramping or self._slow is not None:
            return transition
        step = self._config.additive_increase
        bound = self._increase_bound()
        if self._limit < bound:
            self._increases += 1
            return self._change(now, min(self._limit + step, bound), "increase")
        if self._ceiling is None or bound >= self._cap or self._config.ceiling_probe_windows == 0:
            return transition
        if self._probing:
            # A whole window at the probed limit without a refusal: the ceiling is stale.
            self._ceiling = None
            self._probing = False
            self._probe_wait = self._config.ceiling_probe_windows
            self._increases += 1
            return self._change(now, min(self._limit + step, self._cap), "ceiling-lifted")
        self._windows_at_bound += 1
        if self._windows_at_bound < self._probe_wait:
            return transition
        self._windows_at_bound = 0
        self._ceiling += 1
        self._probing = True
        self._probes += 1
        new = min(self._limit + step, self._increase_bound())
        return self._change(now, new, "probe") if new > self._limit else transition

    def on_rate_limited(
        self, ticket: Ticket, retry_after: float | None = None
    ) -> Transition | None:
        """The provider refused the request for capacity; may cut the limit.

        Args:
            ticket: the refused request's ticket.
            retry_after: the provider's ``Retry-After`` in seconds (a negative value, from a
                date in the past, counts as 0; at most :data:`MAX_SERVER_HOLD_SECONDS` is
                honoured, and a hold is logged), or ``None`` to use ``cooldown_seconds``.

        Returns:
            The cut (``"rate-limited"``, ``"ramp-aborted"`` or ``"slow-start-ended"``) if this
            refusal may cut — even at limit 1, where it only starts a cooldown — else a ramp
            or slow-start step seen now, or ``None``.

        Raises:
            ValueError: if ``retry_after`` is not finite.
        """
        if retry_after is not None and not math.isfinite(retry_after):
            raise ValueError(f"Retry-After must be a finite number of seconds, got {retry_after}")
        now = self._release(ticket)
        if retry_after is not None:
            asked, retry_after = retry_after, server_hold(retry_after)
            self._log_hold(now, asked, retry_after)
        transition = self._advance(now)
        self._rate_limited += 1
        self._refusal_streak(ticket)
        sent_in_slow_start = self._slow_ids_below is not None and ticket.id < self._slow_ids_below
        if sent_in_slow_start and self._estimated:
            return self._refine_estimate(now, retry_after) or transition
        if ticket.limit_at_admission > self._limit and not sent_in_slow_start:
            if retry_after is not None:
                self._blocked_until = max(self._blocked_until, now + max(0.0, retry_after))
            log.debug("%srefusal from limit %d ignored", self._label(), ticket.limit_at_admission)
            return transition
        wait = self._config.cooldown_seconds if retry_after is None else max(0.0, retry_after)
        if self._slow is not None or sent_in_slow_start:
            self._blocked_until = max(self._blocked_until, now + wait)
            return self._end_slow_start(now)
        old = self._limit
        if self._probing and self._ceiling is not None and old >= self._ceiling:
            # The probe got its answer: the limit before it was right. Step back to it — no
            # multiplicative cut — and wait twice as long before asking again. No cooldown:
            # the provider accepted the limit stepped back to, so admissions go on at it; the
            # refused request alone waits its Retry-After (:meth:`retry_at`).
            self._ceiling -= 1
            self._probing = False
            self._probes_refused += 1
            self._probe_wait = min(
                2 * self._probe_wait, _PROBE_BACKOFF * self._config.ceiling_probe_windows
            )
            self._windows_at_bound = 0
            self._streak = 0
            stepped = self._increase_bound()
            if stepped < old:
                return self._change(now, stepped, "probe-refused")
            # A cap had already taken the limit below the probe: a step back would change
            # nothing, and the burst's other refusals (admitted at this limit) would each
            # react again. The refusal cuts as any other does.
        self._blocked_until = max(self._blocked_until, now + wait)
        if self._watch.in_outage:
            pass  # refusals with no success say the provider is down, not where its capacity is
        elif self._ceiling is not None and old >= self._ceiling:
            # Refused again at the remembered ceiling: the ceiling itself is one too high.
            # Lowering it ends the 6 -> 9 -> 429 sawtooth that re-probing it would cause.
            self._ceiling = max(1, min(self._ceiling, old) - 1)
        else:
            self._ceiling = old if self._ceiling is None else min(self._ceiling, old)
        self._probing = False
        self._windows_at_bound = 0
        self._streak = 0
        self._cuts += 1
        reason = "ramp-aborted" if self._ramping else "rate-limited"
        self._ramping = False
        # A lowered ceiling may bind tighter than the cut itself (refused at 5 with ceiling 4).
        new = max(1, min(floor(old * self._config.reduce_factor), self._increase_bound()))
        return self._change(now, new, reason, cooldown_until=self._blocked_until)

    def hold_until(self, when: float, reason: str) -> bool:
        """Admit nothing before ``when`` without touching the limit — for a provider that says
        its quota is spent (``x-ratelimit-remaining-requests: 0``) before it has to refuse.

        Returns:
            Whether the hold extended the current cooldown.

        Raises:
            ValueError: if ``when`` is not finite.
        """
        if not math.isfinite(when):
            raise ValueError(f"a hold must end at a finite time, got {when}")
        if when <= self._blocked_until:
            return False
        self._blocked_until = when
        self._holds += 1
        log.info(
            "%sholding admissions for %.1f s (%s)", self._label(), when - self._clock(), reason
        )
        return True

    def on_release(self, ticket: Ticket) -> Transition | None:
        """The request ended otherwise (another error, cancellation): only free its slot.

        Returns:
            A ramp or slow-start step seen now, or ``None``.
        """
        now = self._release(ticket)
        return self._advance(now)

    def set_cap(self, cap: int, *, lift: bool = False) -> Transition | None:
        """Change the cap; the limit becomes ``min(limit, cap)`` (during a ramp, the ramp is
        re-evaluated with the new cap; a slow start goes on beneath the new cap, and ends
        once the limit reaches it).

        With ``lift`` (the cap is a share of a ceiling learnt elsewhere, as a sharded run's
        board hands out) the controller forgets its own ceiling (the cap is the ceiling now:
        increases climb back to it after a cut), and a raised cap raises the limit by as much
        as the cap rose: the slots handed over are known to be free. A slow start goes on
        (the board's share is a few doublings away, and may itself be an estimate).

        Returns:
            The transition (reason ``"cap"``) if the limit changed, else ``None``.

        Raises:
            ValueError: if ``cap`` is below 1.
        """
        check_cap(cap)
        now = self._clock()
        self._advance(now)
        raised = cap - self._cap
        self._cap = cap
        if lift:
            self._ceiling = None
            if self._watch.streak is not None:  # an outage ends at the board's share too
                self._watch.streak.ceiling = None
            self._probing = False
            self._windows_at_bound = 0
        if self._ramping:
            new = self._ramp_limit(now)
            self._ramping = new < cap
        elif lift and raised > 0:
            new = min(self._limit + raised, cap)
        else:
            new = min(self._limit, cap)
        if self._slow is not None and new >= cap:
            self._stop_slow_start()
            log.info("%sslow start ended at the cap of %d", self._label(), cap)
        if new == self._limit:
            return None
        return self._change(now, new, "cap")

    # ------------------------------------------------------------------ internals

    def _slow_start_success(self, now: float, latency: float, used: bool) -> Transition | None:
        """A success during a slow start: answers slowing down end it (the limit stays),
        else one more slot if the limit was in use."""
        assert self._slow is not None
        ratio = self._slow.slowed(latency)
        if ratio is not None:
            self._stop_slow_start()
            message = "%sslow start ended at limit %d: answers take %.1f x as long as at first"
            log.info(message, self._label(), self._limit, ratio)
            return None
        return self._slow_start_step(now, self._limit + 1) if used else None

    def _end_slow_start(self, now: float) -> Transition:
        """The first refusal that may cut of a request sent during the slow start (which
        may have reached the cap meanwhile): the others it sent, still in flight, are the
        estimate of the capacity; later refusals of the same burst lower it."""
        if self._slow is not None:
            self._stop_slow_start()
        self._estimated = True
        self._answered = 0
        estimate = max(1, min(self._sent_in_slow_start(), self._limit))
        self._ceiling = estimate
        self._probing = False
        self._windows_at_bound = 0
        self._streak = 0
        self._cuts += 1
        return self._change(now, estimate, "slow-start-ended", cooldown_until=self._blocked_until)

    def _log_hold(self, now: float, asked: float, hold: float) -> None:
        """Tell the hold (once: a refusal that does not extend the current one by a second
        is not told)."""
        if now + hold > self._blocked_until + 1.0:
            log_hold(self._label(), asked, hold)

    def _refine_estimate(self, now: float, retry_after: float | None) -> Transition | None:
        """A refusal of a request sent during the slow start, after the refusal that ended
        it: honour its ``Retry-After``; lower the estimate to the slow start's requests still
        in flight plus those answered since it was made (all were accepted)."""
        if retry_after is not None:
            self._blocked_until = max(self._blocked_until, now + max(0.0, retry_after))
        estimate = max(1, self._sent_in_slow_start() + self._answered)
        if self._ceiling is None or estimate >= self._ceiling:
            return None
        self._ceiling = estimate
        if estimate >= self._limit:
            return None
        return self._change(
            now, estimate, "slow-start-estimate", cooldown_until=self._blocked_until
        )

    def _sent_in_slow_start(self) -> int:
        """Requests in flight that were admitted during the (ended) slow start."""
        below = self._slow_ids_below
        return len(self._tickets) if below is None else sum(1 for i in self._tickets if i < below)

    def _refusal_streak(self, ticket: Ticket) -> None:
        """Count a capacity refusal in the streak (:mod:`._outage`): the first records what
        the provider was known to accept; one may show the streak an outage."""
        if self._watch.streak is None:
            limit, ceiling = self._limit, self._ceiling
            if self._slow is not None and self._slow_target is not None:
                limit = max(limit, self._slow_target)  # a recovery under way: its aim
            if self._probing and ceiling is not None:
                ceiling -= 1  # a probe not yet confirmed is not known to be accepted
                limit = min(limit, self._increase_bound(ceiling))
            to_cap = self._slow is not None and self._slow_target is None
            self._watch.begin(self._next_id, limit=limit, ceiling=ceiling, to_cap=to_cap)
        if self._watch.refused(ticket.id, len(self._tickets)):
            self._outages += 1
            log.info("%s%s", self._label(), self._watch.describe())

    def _recover(self, now: float, streak: Streak, used: bool) -> Transition | None:
        """The first success after an outage: restore the ceiling before it and climb back
        to the limit before it (to the cap if a start-up slow start was cut short) by a slow
        start from the current limit (at once without slow start)."""
        target = self._cap if streak.to_cap else min(streak.limit, self._cap)
        self._ceiling = None if streak.to_cap else streak.ceiling
        self._ramping = False
        self._probing = False
        self._windows_at_bound = 0
        self._streak = 0
        self._estimated = False
        self._slow = None
        self._slow_target = None
        if self._limit >= target:
            log.info(
                "%soutage over: limit %d kept, ceiling %s", self._label(), target, self._ceiling
            )
            return None
        new = min(self._limit + 1, target) if used else self._limit
        if self._config.slow_start_seconds <= 0 or new >= target:
            return self._change(now, target, "outage-recovery")
        self._slow = SlowStart(
            start=now,
            period=self._config.slow_start_seconds,
            factor=self._config.slow_start_latency_factor,
        )
        self._slow_target = target if target < self._cap else None
        detail = f"outage-recovery: slow start toward {target}, ceiling {self._ceiling}"
        return self._change(now, new, "outage-recovery", detail=detail)
