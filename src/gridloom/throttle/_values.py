"""The values an AIMD controller hands out: tickets, transitions and statistics snapshots."""

from __future__ import annotations

from .._attrs import frozen

__all__ = ["ControllerStatistics", "Ticket", "Transition"]


@frozen(kw_only=True, eq=True)  # attrs' compiled __eq__: tickets are compared per request
class Ticket:
    """One admitted request; hand it back to exactly one of the ``on_*`` methods.

    Attributes:
        id: increasing from 0, unique within the controller.
        admitted_at: clock time of admission.
        limit_at_admission: the controller's limit when the request was admitted.
    """

    id: int
    admitted_at: float
    limit_at_admission: int


@frozen(kw_only=True)
class Transition:
    """A change of the limit (also returned for a cut at limit 1, which starts a cooldown).

    Attributes:
        time: clock time of the change.
        old_limit: the limit before.
        new_limit: the limit after.
        reason: ``"rate-limited"``, ``"increase"``, ``"ramp"``, ``"ramp-aborted"`` (the cut
            that ended a ramp), ``"slow-start"`` (a doubling, or one more after a success),
            ``"slow-start-ended"`` (the cut to the capacity estimate from the first refusal of a
            request sent during a slow start, ending it unless it had reached the cap),
            ``"slow-start-estimate"`` (a lower estimate from a later refusal of that burst),
            ``"probe"``, ``"probe-refused"``, ``"ceiling-lifted"``, ``"cap"`` or
            ``"outage-recovery"`` (the first success after an outage: the ceiling before it
            restored, a slow start back to the limit before it begun, or that limit at once).
        cooldown_until: for a cut, when admissions may resume; otherwise ``None``.
    """

    time: float
    old_limit: int
    new_limit: int
    reason: str
    cooldown_until: float | None


@frozen(kw_only=True)
class ControllerStatistics:
    """A snapshot of one controller.

    Attributes:
        limit: requests allowed in flight now (the ramp or slow start applied).
        cap: the hard upper bound.
        in_flight: requests admitted and not yet handed back.
        blocked_until: no admission before this clock time.
        ceiling: the lowest limit that was cut (or the capacity a slow start estimated), or
            ``None`` before the first cut.
        success_streak: successes since the last increase or cut.
        ramping: whether the start-up ramp still sets the limit.
        admitted: requests admitted so far.
        succeeded: requests reported successful.
        rate_limited: requests refused for capacity (cutting or not).
        cuts: refusals that cut the limit.
        increases: additive increases applied.
        holds: admissions held by :meth:`AIMDController.hold_until` (quota headers).
        probes: times the ceiling was raised by one to probe for more capacity.
        probes_refused: probes answered with a refusal (each stepped back, without a cut).
        probing: whether the limit is at a probed ceiling not yet confirmed.
        slow_start: whether a slow start still sets the limit.
        outage: whether the refusals since the last success show an outage (see
            :mod:`gridloom.throttle._outage`).
        outages: refusal streaks found to be outages so far.
    """

    limit: int
    cap: int
    in_flight: int
    blocked_until: float
    ceiling: int | None
    success_streak: int
    ramping: bool
    admitted: int
    succeeded: int
    rate_limited: int
    cuts: int
    increases: int
    holds: int = 0
    probes: int = 0
    probes_refused: int = 0
    probing: bool = False
    slow_start: bool = False
    outage: bool = False
    outages: int = 0
