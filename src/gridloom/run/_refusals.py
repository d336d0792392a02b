"""The capacity-refusal rules of the model health monitor (:class:`~gridloom.run.HealthMonitor`).

A capacity refusal (a 429, or a ``capacity_statuses`` status: 502/503/529) is no outcome: the
throttle sends the request again behind its cooldown. So these rules watch each alias's
refusals apart from the failure rate, as *streaks*: the refusals since its last success.

- **refused**: every request of the alias refused for ``refused_seconds`` since the first
  refusal of the streak, with not one success, trips (``run.shutdown_refused_seconds``). A
  live provider that is full (a 429, an overload spell in the middle of a run) is waited out
  this long.
- **unavailable**: an alias that has *never* been answered in this run — no success, no 429
  and no 529, only 502/503 (or another ``capacity_statuses`` status) — trips after the
  shorter ``unavailable_seconds`` (``run.shutdown_unavailable_seconds``) since its first
  refusal. An endpoint that has never served one request is more likely a wrong base URL or a
  gateway with nothing behind it than a passing outage; a 429 is a live provider asking to
  slow down, a 529 Anthropic's API itself saying it is overloaded, and once the alias has
  succeeded an outage is waited out under the first rule only.

Either rule trips when a refusal comes (the throttle sends every refused request again, at
least every cooldown, so refusals keep coming while every request is refused). Failures of
other kinds neither start nor end a streak: the failure rate judges them.
"""

from __future__ import annotations

from ..engine import ShutdownReason
from ..engine.health import quote_example
from ..errors import RateLimited

__all__ = ["KEPT", "RefusalRules"]

#: What a stopped run's message ends with.
KEPT = "stopping the run — completed row groups are kept; resume it to generate the rest"


class _Streak:
    """One alias's capacity refusals since its last success."""

    __slots__ = ("count", "last", "since", "statuses")

    def __init__(self) -> None:
        self.since: float | None = None  #: when the first refusal of the streak came
        self.count = 0  #: refusals in the streak
        self.last: BaseException | None = None  #: the latest one
        self.statuses: set[int] = set()  #: the HTTP statuses of its refusals


class _Alias:
    """One alias's refusal state for the run."""

    __slots__ = ("live", "streak")

    def __init__(self) -> None:
        self.streak = _Streak()
        #: the provider answered this alias once in this run with a success or a 429
        self.live = False


#: Refusals only a live provider gives: a rate limit, and Anthropic's ``overloaded_error``
#: (529, a JSON error from the API itself). A gateway with nothing behind it answers 502/503.
_LIVE_STATUSES = (429, 529)


def _is_live(error: BaseException | None) -> bool:
    """Whether ``error`` is a refusal that shows the provider is there (see _LIVE_STATUSES)."""
    return isinstance(error, RateLimited) or getattr(error, "status", None) in _LIVE_STATUSES


class RefusalRules:
    """The two refusal rules (see the module docstring), per alias.

    Args:
        refused_seconds: trip when every request of an alias has been refused for capacity
            this long since the first refusal of its streak, with no success; ``None``: never.
        unavailable_seconds: trip when an alias with no success, no 429 and no 529 in this
            run has been refused this long since its first refusal; ``None``: never.

    Raises:
        ValueError: a value out of range.
    """

    def __init__(self, *, refused_seconds: float | None, unavailable_seconds: float | None):
        for name, value in (
            ("refused_seconds", refused_seconds),
            ("unavailable_seconds", unavailable_seconds),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        self.refused_seconds = refused_seconds
        self.unavailable_seconds = unavailable_seconds
        self._aliases: dict[str, _Alias] = {}

    def _alias(self, alias: str) -> _Alias:
        state = self._aliases.get(alias)
        if state is None:
            state = self._aliases[alias] = _Alias()
        return state

    def answered(self, alias: str, ok: bool, error: BaseException | None = None) -> None:
        """An outcome of ``alias``: a success ends its streak; a success, a 429 or a 529 (one
        that outlasted the throttle's retries) shows the provider is there."""
        state = self._alias(alias)
        if ok:
            if state.streak.count:
                state.streak = _Streak()
            state.live = True
        elif _is_live(error):
            state.live = True

    def refused(
        self, alias: str, error: BaseException, now: float, model: str
    ) -> ShutdownReason | None:
        """A capacity refusal of ``alias`` (``error``: the 429, or the 502/503/529) at
        ``now``: the stop reason if a rule trips on it (``model``: the provider's model name,
        for the reason), else ``None``."""
        state = self._alias(alias)
        streak = state.streak
        if streak.since is None:
            streak.since = now
        streak.count += 1
        streak.last = error
        status = getattr(error, "status", None)
        if isinstance(status, int):
            streak.statuses.add(status)
        if _is_live(error):
            state.live = True
        seconds = now - streak.since
        unavailable = self.unavailable_seconds
        if not state.live and unavailable is not None and seconds >= unavailable:
            # Not live: no success ever, so the streak began at the alias's first refusal.
            return self._reason(alias, model, streak, seconds, unavailable=True)
        if self.refused_seconds is not None and seconds >= self.refused_seconds:
            return self._reason(alias, model, streak, seconds, unavailable=False)
        return None

    def _reason(
        self, alias: str, model: str, streak: _Streak, seconds: float, *, unavailable: bool
    ) -> ShutdownReason:
        """The stop reason of either rule: the counts, the refusals' class and the provider's
        latest refusal, quoted, then what the rule means."""
        last = streak.last
        name = None if last is None else type(last).__name__
        example = None if last is None else quote_example(str(last))
        cause = f" ({name})" if name else ""
        latest = f"; the latest: {example}" if example else ""
        counts = f"{streak.count} refusals{cause}"
        seconds = round(seconds, 1)
        if unavailable:
            codes = sorted(streak.statuses)
            answers = f"HTTP {' or '.join(map(str, codes))}" if codes else "a capacity refusal"
            message = (
                "no request of this model has succeeded in this run: its requests were"
                f" refused with {answers} for {seconds:g} s since the first refusal"
                f" ({counts}){latest}; check the provider's endpoint (its base URL) and any"
                " gateway or proxy in front of it, as one that has never served a request is"
                " likely down or misconfigured; run.shutdown_unavailable_seconds sets this check"
            )
            window = self.unavailable_seconds
        else:
            message = (
                f"the provider refused all of its requests for capacity for {seconds:g} s,"
                f" with no success ({counts}){latest}; run.shutdown_refused_seconds sets this"
                " check"
            )
            window = self.refused_seconds
        return ShutdownReason(
            alias=alias,
            model=model,
            failed=streak.count,
            total=streak.count,
            window_seconds=window,
            top_error=name,
            message=f"model {alias!r}: {message}; {KEPT}",
            example=example,
        )
