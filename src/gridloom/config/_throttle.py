"""How the adaptive (AIMD) concurrency limit of each model reacts to its provider."""

from __future__ import annotations

from typing import Any

import attrs

from .._attrs import frozen
from ._validators import schema_keywords, to_tuple

__all__ = ["ThrottleConfig"]


@schema_keywords(exclusiveMinimum=0, exclusiveMaximum=1)
def _fraction(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1 (exclusive), got {value!r}")


@schema_keywords(exclusiveMinimum=1)
def _above_one(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 1.0:
        raise ValueError(f"{attribute.name} must be above 1, got {value!r}")


@frozen(kw_only=True)
class ThrottleConfig:
    """Adaptive concurrency per (provider, model): a slow start, then multiplicative decrease
    on a rate limit and additive increase on sustained success.

    Attributes:
        reduce_factor: on a 429 the limit becomes ``max(1, floor(limit * reduce_factor))``.
        additive_increase: added to the limit after ``success_window`` successes in a row.
        success_window: consecutive successes needed for one increase.
        cooldown_seconds: no new request is admitted for this long after a 429 that carried no
            ``Retry-After`` (with one, its value is used).
        ceiling_overshoot: after a 429, the limit in force before the cut is remembered as the
            ceiling, and increases stop at ``ceiling * (1 + ceiling_overshoot)``.
        ceiling_probe_windows: once the limit has stood at that bound for this many success
            windows without a refusal, the ceiling is raised by one to look for capacity that
            has grown; if the probe holds for a window the ceiling is forgotten, if it is
            refused the limit steps back (no cut) and the wait before the next probe doubles
            (up to 8 times this). 0 never probes.
        initial_limit: the limit a slow start opens at (a cap at or below it opens at the
            cap, with no slow start).
        slow_start_seconds: the slow start doubles the limit every this many seconds (and
            adds one per success) while the limit is in use, until the first 429, answers
            slowing down (``slow_start_latency_factor``) or the cap. The first 429 sets the
            limit, and the ceiling, to the requests the provider accepted (those of the slow
            start still in flight once its refusals are back). 0 opens at the cap.
        slow_start_latency_factor: the slow start stops doubling (keeping its limit) once the
            recent answers take this many times as long as the first ones.
        rampup_seconds: start at 1 and raise the limit linearly to the cap over this many
            seconds (0: no ramp); the first 429 ends the ramp. A ramp replaces the slow start
            at the start of a run; the recovery after an outage is a slow start all the same
            (``slow_start_seconds``), and never restarts the ramp.
        capacity_statuses: other HTTP statuses that signal overload like a 429 does, with or
            without ``Retry-After`` (without one, ``cooldown_seconds``): the limit is cut and
            the request is sent again behind the cooldown, never counted as a failure.
            Anthropic answers 529 ``overloaded_error``, gateways 502/503 during short
            outages, mostly with no ``Retry-After``. Refusals with no success in between,
            once one of a request sent after the first leaves nothing in flight, are an
            outage (a capacity boundary always has accepted requests in flight): they cut
            the limit but leave the ceiling alone, and the first success restores the
            ceiling from before them and slow-starts (``slow_start_seconds``; at once if 0)
            from the limit then back to the limit before them, not beyond. An outage that
            does not end stops the run after ``run.shutdown_refused_seconds`` of refusals
            with no success, or after the shorter ``run.shutdown_unavailable_seconds`` when
            the model has not been served once in the run (no success, 429 or 529).
            (504 is left out: a gateway timing out one slow request is that request's
            failure. To treat it as overload too, list it: ``capacity_statuses: [502, 503,
            504, 529]``.)
    """

    reduce_factor: float = attrs.field(default=0.75, validator=_fraction)
    additive_increase: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    success_window: int = attrs.field(default=25, validator=attrs.validators.ge(1))
    cooldown_seconds: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
    ceiling_overshoot: float = attrs.field(default=0.10, validator=attrs.validators.ge(0.0))
    ceiling_probe_windows: int = attrs.field(default=8, validator=attrs.validators.ge(0))
    initial_limit: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    slow_start_seconds: float = attrs.field(default=0.1, validator=attrs.validators.ge(0.0))
    slow_start_latency_factor: float = attrs.field(default=2.0, validator=_above_one)
    rampup_seconds: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    capacity_statuses: tuple[int, ...] = attrs.field(default=(502, 503, 529), converter=to_tuple)
