"""Early shutdown: watch each model's recent requests and stop the run when one is failing.

Every counted request of a :class:`~gridloom.clients.ModelHandle` is an *outcome* for its alias:
a success, or a failure with the :class:`~gridloom.errors.ModelError` it raised (a rate limit
that outlasted the throttle's own retries included; a cancelled request is no outcome). The
rule judges the share of *requests* that fail, over *time*:

- An outcome belongs to the moment its request was **sent** (:meth:`HealthMonitor.sent` hands
  out a ticket in send order), and outcomes are judged in send order only up to the oldest
  request still in flight. Fast failures (an instant 301) cannot outrun slow successes, nor a
  burst of timeouts — requests sent over many seconds that hung together — crowd out the
  successes sent between them: each request counts once, where it was sent.
- Sends are cut into :data:`SLICE_SECONDS` slices, and the failure rate is the **mean of the
  slices' failure shares** over the last ``window_seconds`` (and the last ``window``
  requests): a burst of simultaneous failures weighs as one slice, however many requests it
  held, while a model failing steadily fails in every slice.
- Nothing is judged before ``min_outcomes`` requests sent over at least ``min_seconds``:
  the judged requests' sends must span ``min_seconds`` since the first request of the alias
  (of its current stretch: one idle for ``window_seconds`` starts again), however few of them
  the window still holds — a model failing 10,000 requests a second is stopped at
  ``min_seconds`` like one failing one a second, while a single burst of requests sent
  together cannot stop a run on its own, whenever its outcomes come.

When the rate exceeds ``error_rate`` the monitor *trips*: once per run, for the first alias
that crosses the line. A refused API key (:class:`~gridloom.errors.AuthenticationFailed`)
trips at once, even with ``error_rate`` ``None``: a wrong key never heals, and every further
request would be refused too; so does a spent quota or credit
(:class:`~gridloom.errors.QuotaExhausted`, e.g. a 429 saying ``insufficient_quota``), and a
TLS handshake that cannot work (:class:`~gridloom.errors.TLSFailed`: plain HTTP behind
``https://``, a rejected certificate).

Capacity refusals (a 429, or a ``capacity_statuses`` status: 502/503/529, with or without
``Retry-After``) are no outcomes: the throttle
retries them, behind its cooldown, and a request fails only after many in a row. So the
**refusal rules** watch them apart (:meth:`HealthMonitor.refused`, :mod:`._refusals`): an alias
whose requests have all been refused, with not one success, for ``refused_seconds`` since the
first refusal of the streak trips, when its next refusal comes (``refused_seconds`` ``None``:
never); one that has had no success, no 429 and no 529 in the run — an endpoint that has
only ever answered 502/503 — trips after the shorter ``unavailable_seconds``. A success ends the
streak; ordinary rate limiting, where some requests pass, never trips them.

A stop reason quotes one error message (the latest of the error class it names; for the
refusal rule, the latest refusal): the provider's own words, as redacted and bounded as the
model errors are (:func:`~gridloom.engine.health.quote_example`).

The monitor only decides; the run (:class:`~gridloom.run.Run`), which opens the models and
hands each handle this monitor, registers :meth:`HealthMonitor.on_trip` and cancels the run
(completed row groups stay on disk, a resume generates the rest).

It is synchronous and holds no trio objects; the clock is injected (``trio.current_time`` in
a run, any callable in tests).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable

from .._attrs import frozen
from ..config import RunConfig
from ..engine import ShutdownReason
from ..engine.health import check_window, quote_example
from ..errors import AuthenticationFailed, QuotaExhausted, TLSFailed
from ._refusals import KEPT, RefusalRules

__all__ = ["SLICE_SECONDS", "HealthMonitor"]

#: Errors that retrying cannot heal: the first one trips the monitor (see the module doc).
_FINAL = (AuthenticationFailed, QuotaExhausted, TLSFailed)

#: Length of the send-time slices whose failure shares are averaged.
SLICE_SECONDS = 1.0
#: Outcomes held back behind one request still in flight, at most; past this the oldest request
#: in flight is left out of the judgement (as a cancelled one is), so memory stays bounded.
_MAX_BACKLOG = 10_000


@frozen
class _Alias:
    """What the monitor knows about an alias, for its messages."""

    model: str
    provider: str | None = None
    api_key_env: str | None = None
    key_header: str | None = None


class _Slice:
    """The judged requests sent within one slice of time."""

    __slots__ = ("errors", "failed", "key", "total")

    def __init__(self, key: int) -> None:
        self.key = key
        self.failed = 0
        self.total = 0
        self.errors: Counter[str] = Counter()

    @property
    def share(self) -> float:
        return self.failed / self.total


class _Requests:
    """One alias's requests: tickets in send order, outcomes, and the judged slices."""

    __slots__ = (
        "failed",
        "frontier",
        "latest",
        "next",
        "pending",
        "shares",
        "since",
        "slices",
        "total",
        "until",
        "waiting",
    )

    def __init__(self) -> None:
        self.next = 0  #: the next ticket
        self.frontier = 0  #: the oldest ticket not yet judged
        self.pending: dict[int, float] = {}  #: in flight: ticket → send time
        #: resolved ahead of the frontier: ticket → (send time, ok, error name), or None for a
        #: request with no outcome (cancelled)
        self.waiting: dict[int, tuple[float, bool, str | None] | None] = {}
        #: judged requests by send-time slice, oldest first (whole slices only)
        self.slices: deque[_Slice] = deque()
        self.shares = 0.0  #: sum of the slices' failure shares
        self.failed = 0  #: failures among the judged requests
        self.total = 0  #: judged requests
        #: send times of the first and the latest judged request of the current stretch (the
        #: window may hold far fewer: these are what ``min_seconds`` is measured on)
        self.since: float | None = None
        self.until = 0.0
        #: the latest failure's message per error class (quoted), for a stop reason's example
        self.latest: dict[str, str] = {}


class HealthMonitor:
    """Tracks per-alias request outcomes and trips when one alias fails too often (see the
    module docstring for the rule).

    Args:
        error_rate: trip when the mean failure share of the recent send-time slices exceeds
            this; ``None`` never trips on the rate (a refused API key still does).
        window: about this many recent requests are judged per alias: the fewest newest
            whole slices that hold this many (and always the newest two).
        window_seconds: requests sent longer ago than this (by ``clock``) are not judged.
        min_outcomes: nothing is judged on fewer requests than this (capped at ``window``).
        min_seconds: nor before the judged requests' sends span this long since the alias's
            first request (whatever the window holds by then).
        refused_seconds: trip when every request of an alias has been refused for capacity
            this long, with no success (see the module docstring); ``None``: never.
        unavailable_seconds: trip when an alias with no success, no 429 and no 529 in the
            run has been refused for capacity this long since its first refusal; ``None``:
            never.
        clock: current time in seconds.

    Raises:
        ValueError: a value out of range.
    """

    def __init__(
        self,
        *,
        error_rate: float | None,
        window: int,
        window_seconds: float,
        min_outcomes: int,
        clock: Callable[[], float],
        min_seconds: float = 0.0,
        refused_seconds: float | None = None,
        unavailable_seconds: float | None = None,
    ):
        check_window(error_rate, window, min_outcomes)
        self._refusals = RefusalRules(
            refused_seconds=refused_seconds, unavailable_seconds=unavailable_seconds
        )
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds}")
        if not 0 <= min_seconds <= window_seconds:
            raise ValueError(f"min_seconds must be in [0, window_seconds], got {min_seconds}")
        self.error_rate = error_rate
        self.window = window
        self.window_seconds = window_seconds
        self.min_outcomes = min(min_outcomes, window)
        self.min_seconds = min_seconds
        self.refused_seconds = refused_seconds
        self.unavailable_seconds = unavailable_seconds
        self._clock = clock
        self._requests: dict[str, _Requests] = {}
        self._aliases: dict[str, _Alias] = {}
        self._callbacks: list[Callable[[ShutdownReason], None]] = []
        self._tripped: ShutdownReason | None = None

    @classmethod
    def from_run_config(cls, run: RunConfig, *, clock: Callable[[], float]) -> HealthMonitor:
        """A monitor with the ``shutdown_*`` settings of ``run``."""
        return cls(
            error_rate=run.shutdown_error_rate,
            window=run.shutdown_window,
            window_seconds=run.shutdown_window_seconds,
            min_outcomes=run.shutdown_min_outcomes,
            min_seconds=min(run.shutdown_min_seconds, run.shutdown_window_seconds),
            refused_seconds=run.shutdown_refused_seconds or None,
            # shutdown_refused_seconds: 0 means capacity refusals never stop the run, the
            # never-served rule included; a shorter refused check makes this one moot.
            unavailable_seconds=(
                run.shutdown_unavailable_seconds or None
                if run.shutdown_refused_seconds
                and run.shutdown_unavailable_seconds < run.shutdown_refused_seconds
                else None
            ),
            clock=clock,
        )

    def __repr__(self) -> str:
        state = "tripped" if self._tripped is not None else "watching"
        return (
            f"<HealthMonitor {state}: error_rate={self.error_rate}, window={self.window}, "
            f"{self.window_seconds:g}s, min_outcomes={self.min_outcomes}, "
            f"min_seconds={self.min_seconds:g}, refused_seconds={self.refused_seconds},"
            f" unavailable_seconds={self.unavailable_seconds}>"
        )

    # ------------------------------------------------------------------ setup

    def register(
        self,
        alias: str,
        *,
        model: str,
        provider: str | None = None,
        api_key_env: str | None = None,
        key_header: str | None = None,
    ) -> None:
        """Tell the monitor what ``alias`` stands for, so its messages can say so.

        Args:
            alias: the model alias outcomes are recorded under.
            model: the provider's model name.
            provider: the provider's name.
            api_key_env: the environment variable the provider's key is read from (its name
                only; the monitor never sees a key).
            key_header: how the key is sent, e.g. ``Authorization: Bearer`` or ``api-key``.
        """
        self._aliases[alias] = _Alias(
            model=model, provider=provider, api_key_env=api_key_env, key_header=key_header
        )

    def on_trip(self, callback: Callable[[ShutdownReason], None]) -> None:
        """Call ``callback`` with the reason when the monitor trips (at once if it already
        has). Callbacks run synchronously inside :meth:`record`, so they must not block."""
        self._callbacks.append(callback)
        if self._tripped is not None:
            callback(self._tripped)

    # ------------------------------------------------------------------ state

    @property
    def tripped(self) -> ShutdownReason | None:
        """The reason the monitor tripped, or ``None`` while every model is healthy enough."""
        return self._tripped

    def recent(self, alias: str) -> tuple[int, int]:
        """(failed, total) over ``alias``'s judged requests that still count now."""
        state = self._requests.get(alias)
        if state is None:
            return 0, 0
        self._expire(state)
        return state.failed, state.total

    def rate(self, alias: str) -> float | None:
        """``alias``'s failure rate now (the mean of its slices' shares), or ``None`` when
        nothing is judged."""
        state = self._requests.get(alias)
        if state is None:
            return None
        self._expire(state)
        return state.shares / len(state.slices) if state.slices else None

    # ------------------------------------------------------------------ recording

    def _state(self, alias: str) -> _Requests:
        state = self._requests.get(alias)
        if state is None:
            state = self._requests[alias] = _Requests()
        return state

    def sent(self, alias: str) -> int:
        """A request to ``alias`` is being sent now: its ticket, for :meth:`record` (or
        :meth:`forget`, when it ends with no outcome)."""
        state = self._state(alias)
        ticket = state.next
        state.next += 1
        state.pending[ticket] = self._clock()
        return ticket

    def forget(self, alias: str, ticket: int) -> None:
        """The request of ``ticket`` ended with no outcome (cancelled): it is not judged."""
        state = self._state(alias)
        if state.pending.pop(ticket, None) is not None:
            state.waiting[ticket] = None
            self._advance(alias, state, None)

    def record(
        self,
        alias: str,
        ok: bool,
        error: BaseException | None = None,
        *,
        ticket: int | None = None,
    ) -> None:
        """Record one request's outcome for ``alias``; trip if it is now failing.

        Args:
            alias: the model alias the request went to.
            ok: whether the request succeeded.
            error: the error a failed request raised (its class is reported).
            ticket: what :meth:`sent` returned when the request was sent; without one, the
                request counts as sent now.
        """
        state = self._state(alias)
        if ticket is None:
            ticket = self.sent(alias)
        sent_at = state.pending.pop(ticket, None)
        if sent_at is None:  # left out already (see _MAX_BACKLOG), or recorded twice
            return
        name = None if error is None else type(error).__name__
        state.waiting[ticket] = (sent_at, ok, name)
        self._refusals.answered(alias, ok, error)  # a success ends a streak of refusals
        if not ok and error is not None and name is not None:
            state.latest[name] = quote_example(str(error))
        if self._tripped is None and isinstance(error, _FINAL):
            self._advance(alias, state, None)
            self._trip(self._final_reason(alias, error, state.failed, state.total))
            return
        self._advance(alias, state, error)

    def refused(self, alias: str, error: BaseException) -> None:
        """A request to ``alias`` was refused for capacity (``error``: the 429, or the
        502/503/529) and the throttle will send it again: trip when every request has been
        refused for ``refused_seconds``, or for ``unavailable_seconds`` with no success, no
        429 and no 529 in the run (see the module docstring)."""
        model = self._info(alias, error).model
        reason = self._refusals.refused(alias, error, self._clock(), model)
        if reason is not None and self._tripped is None:
            self._trip(reason)

    def _advance(self, alias: str, state: _Requests, error: BaseException | None) -> None:
        """Judge the outcomes now in send order up to the oldest request in flight."""
        waiting = state.waiting
        if len(waiting) > _MAX_BACKLOG and state.pending:
            # One request has been in flight for very long: leave it out of the judgement.
            oldest = min(state.pending)
            del state.pending[oldest]
            waiting[oldest] = None
        moved = False
        while state.frontier in waiting:
            outcome = waiting.pop(state.frontier)
            state.frontier += 1
            if outcome is not None:
                self._add(state, outcome)
                moved = True
        if moved and self._tripped is None:
            self._judge(alias, state)

    def _add(self, state: _Requests, outcome: tuple[float, bool, str | None]) -> None:
        sent_at, ok, error = outcome
        key = math.floor(sent_at / SLICE_SECONDS)
        slices = state.slices
        expired = math.floor((sent_at - self.window_seconds) / SLICE_SECONDS)
        if state.since is None or not slices or slices[-1].key < expired:
            state.since = sent_at  # the first judged request, or the first after an idle window
        state.until = max(state.until, sent_at)
        if slices and slices[-1].key >= key:
            # Judged in send order, so a request belongs to the newest slice (equal keys); a
            # clock that stepped back is counted there too.
            current = slices[-1]
            state.shares -= current.share
        else:
            current = _Slice(key)
            slices.append(current)
        current.total += 1
        state.total += 1
        if not ok:
            current.failed += 1
            state.failed += 1
            if error is not None:
                current.errors[error] += 1
        state.shares += current.share
        # The last `window` requests, in whole slices: the oldest slice goes only when the rest
        # hold `window` requests without it, and never one of the newest two (so a model sending
        # more than `window` requests a second still has its last complete second judged, not
        # only the one still filling).
        while len(slices) > 2 and state.total - slices[0].total >= self.window:
            self._drop_oldest(state)

    def _drop_oldest(self, state: _Requests) -> None:
        oldest = state.slices.popleft()
        state.failed -= oldest.failed
        state.total -= oldest.total
        state.shares = sum(s.share for s in state.slices)  # no rounding residue builds up

    def _expire(self, state: _Requests) -> None:
        """Forget the slices of requests sent longer ago than ``window_seconds``."""
        oldest = math.floor((self._clock() - self.window_seconds) / SLICE_SECONDS)
        while state.slices and state.slices[0].key < oldest:
            self._drop_oldest(state)

    def check(self, alias: str) -> None:
        """Judge ``alias`` now (outcomes are judged as they come; this also judges the seconds
        that time alone has completed)."""
        state = self._requests.get(alias)
        if state is not None and self._tripped is None:
            self._judge(alias, state)

    def _judge(self, alias: str, state: _Requests) -> None:
        """Trip when the complete seconds — those no further request can join: before the
        oldest request in flight, and before now — fail at more than ``error_rate``."""
        self._expire(state)
        if self.error_rate is None or not state.slices:
            return
        now = math.floor(self._clock() / SLICE_SECONDS)
        first_open = state.pending.get(state.frontier)
        boundary = now if first_open is None else min(now, math.floor(first_open / SLICE_SECONDS))
        slices = state.slices
        shares, failed, total, count = state.shares, state.failed, state.total, len(slices)
        for part in reversed(slices):  # leave out the seconds still filling (the newest few)
            if part.key < boundary:
                break
            shares -= part.share
            failed -= part.failed
            total -= part.total
            count -= 1
        if total < self.min_outcomes or count == 0:
            return
        # Sent over min_seconds since the alias's first request (not the window's span, which
        # at a high request rate holds far less time than min_seconds).
        since = state.since if state.since is not None else state.until
        if state.until - since < self.min_seconds:
            return
        rate = shares / count
        if rate > self.error_rate:
            self._trip(self._rate_reason(alias, state, rate, failed, total, count))

    def _trip(self, reason: ShutdownReason) -> None:
        self._tripped = reason
        for callback in list(self._callbacks):
            callback(reason)

    def _info(self, alias: str, error: BaseException | None) -> _Alias:
        known = self._aliases.get(alias)
        if known is not None:
            return known
        return _Alias(model=getattr(error, "model", None) or alias)

    def _rate_reason(
        self, alias: str, state: _Requests, rate: float, failed: int, total: int, count: int
    ) -> ShutdownReason:
        judged = list(state.slices)[:count]
        names: Counter[str] = Counter()
        for part in judged:
            names.update(part.errors)
        top = names.most_common(1)[0][0] if names else None
        cause = f" ({top})" if top else ""
        seconds = (judged[-1].key - judged[0].key + 1) * SLICE_SECONDS
        example = None if top is None else state.latest.get(top)
        latest = f"; the latest: {example}" if example else ""
        return ShutdownReason(
            alias=alias,
            model=self._info(alias, None).model,
            failed=failed,
            total=total,
            window_seconds=self.window_seconds,
            top_error=top,
            message=f"model {alias!r} failed {failed} of its last {total} requests{cause},"
            f" a failure rate of {rate:.0%} second by second over {seconds:g} s{latest};"
            f" {KEPT}",
            example=example,
        )

    def _final_reason(
        self,
        alias: str,
        error: AuthenticationFailed | QuotaExhausted | TLSFailed,
        failed: int,
        total: int,
    ) -> ShutdownReason:
        """The stop reason of an error that retrying cannot heal (see the module doc)."""
        info = self._info(alias, error)
        example = quote_example(str(error))
        if isinstance(error, TLSFailed):
            # The error's message after its "provider/model: " prefix, bounded.
            why = str(error).split(": ", 1)[-1][:400]
            message = f"TLS with the provider cannot work ({why})"
        elif isinstance(error, QuotaExhausted):
            message = (
                "the provider says the account's quota or credit is spent, which waiting does"
                f" not fix ({example}); check the plan and billing of the account"
                f"{self._whose(info)}"
            )
        else:
            status = f"HTTP {error.status}" if error.status is not None else type(error).__name__
            if info.api_key_env:
                hint = f"check the key in the environment variable {info.api_key_env}"
                if info.key_header:
                    hint += (
                        f", sent in the header {info.key_header}"
                        " (set the provider's api_key_header if the server wants another)"
                    )
            elif info.provider:
                hint = f"provider {info.provider!r} names no api_key_env: set one if it needs a key"
            else:
                hint = "check the provider's API key"
            message = f"the API key was refused ({status}); {hint}"
        return ShutdownReason(
            alias=alias,
            model=info.model,
            failed=failed,
            total=total,
            window_seconds=self.window_seconds,
            top_error=type(error).__name__,
            message=f"model {alias!r}: {message}; {KEPT}",
            example=example,
        )

    @staticmethod
    def _whose(info: _Alias) -> str:
        if info.api_key_env:
            return f" whose key is in the environment variable {info.api_key_env}"
        if info.provider:
            return f" of provider {info.provider!r}"
        return ""
