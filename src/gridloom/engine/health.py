"""Early shutdown: watch each model's recent requests and stop the run when one is failing.

Every counted request of a :class:`~gridloom.clients.ModelHandle` is an *outcome* for its alias:
a success, or a failure with the :class:`~gridloom.errors.ModelError` it raised (a rate limit
that outlasted the throttle's own retries included; a cancelled request is no outcome). Per
alias, the last ``window`` outcomes no older than ``window_seconds`` are kept; when at least
``min_outcomes`` of them exist and the share of failures exceeds ``error_rate``, the monitor
*trips*: once per run, for the first alias that crosses the line. A refused API key
(:class:`~gridloom.errors.AuthenticationFailed`) trips at once, even with ``error_rate``
``None``: a wrong key never heals, and every further request would be refused too.

The monitor only decides; whoever runs the scheduler registers :meth:`HealthMonitor.on_trip`
and cancels the run (completed row groups stay on disk, a resume generates the rest).

It is synchronous and holds no trio objects; the clock is injected (``trio.current_time`` in
a run, any callable in tests).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import attrs

from ..config import RunConfig
from ..errors import AuthenticationFailed

__all__ = ["HealthMonitor", "ShutdownReason"]

#: What a stopped run's message ends with.
_KEPT = "stopping the run — completed row groups are kept; resume it to generate the rest"


@attrs.frozen(kw_only=True)
class ShutdownReason:
    """Why the run was stopped early: a failing model, or a column failing the same way row
    after row (:class:`~gridloom.engine.generator_health.GeneratorHealth`).

    Attributes:
        alias: the model alias that was failing (``None`` when a column was).
        model: the provider's model name behind it (``None`` when a column was failing).
        failed: failed requests (or cells) among the recent outcomes judged.
        total: recent outcomes judged.
        window_seconds: how far back outcomes counted (``None``: by count only).
        top_error: the most common error class among the failures (``None`` if none named).
        message: one line for people: the model or column, the counts, the error, and what
            happens next.
        column: the column that was failing, when it was a column.
        example: for a failing column, one failure's message, quoted.
        row_id: the row of that example.
    """

    alias: str | None
    model: str | None
    failed: int
    total: int
    window_seconds: float | None
    top_error: str | None
    message: str
    column: str | None = None
    example: str | None = None
    row_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict (for the run summary)."""
        return attrs.asdict(self)


def check_window(error_rate: float | None, window: int, min_outcomes: int) -> None:
    """Check a failure-rate rule's settings (shared by the model and column monitors).

    Raises:
        ValueError: a value out of range.
    """
    if error_rate is not None and not 0.0 < error_rate <= 1.0:
        raise ValueError(f"error_rate must be in (0, 1] or None, got {error_rate!r}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if min_outcomes < 1:
        raise ValueError(f"min_outcomes must be >= 1, got {min_outcomes}")


@attrs.frozen
class _Alias:
    """What the monitor knows about an alias, for its messages."""

    model: str
    provider: str | None = None
    api_key_env: str | None = None


class HealthMonitor:
    """Tracks per-alias request outcomes and trips when one alias fails too often.

    Args:
        error_rate: trip when failed / total over the recent outcomes exceeds this; ``None``
            never trips on the rate (a refused API key still does).
        window: recent outcomes kept per alias.
        window_seconds: outcomes older than this (by ``clock``) are not counted.
        min_outcomes: the rate is not judged on fewer outcomes than this (capped at
            ``window``, so that a small window can still trip).
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
    ):
        check_window(error_rate, window, min_outcomes)
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds}")
        self.error_rate = error_rate
        self.window = window
        self.window_seconds = window_seconds
        self.min_outcomes = min(min_outcomes, window)
        self._clock = clock
        self._outcomes: dict[str, deque[tuple[float, bool, str | None]]] = {}
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
            clock=clock,
        )

    def __repr__(self) -> str:
        state = "tripped" if self._tripped is not None else "watching"
        return (
            f"<HealthMonitor {state}: error_rate={self.error_rate}, window={self.window}, "
            f"{self.window_seconds:g}s, min_outcomes={self.min_outcomes}>"
        )

    # ------------------------------------------------------------------ setup

    def register(
        self,
        alias: str,
        *,
        model: str,
        provider: str | None = None,
        api_key_env: str | None = None,
    ) -> None:
        """Tell the monitor what ``alias`` stands for, so its messages can say so.

        Args:
            alias: the model alias outcomes are recorded under.
            model: the provider's model name.
            provider: the provider's name.
            api_key_env: the environment variable the provider's key is read from (its name
                only; the monitor never sees a key).
        """
        self._aliases[alias] = _Alias(model=model, provider=provider, api_key_env=api_key_env)

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
        """(failed, total) over ``alias``'s outcomes that still count now."""
        outcomes = self._current(alias)
        return sum(1 for _, ok, _ in outcomes if not ok), len(outcomes)

    # ------------------------------------------------------------------ recording

    def record(self, alias: str, ok: bool, error: BaseException | None = None) -> None:
        """Record one request's outcome for ``alias``; trip if it is now failing.

        Args:
            alias: the model alias the request went to.
            ok: whether the request succeeded.
            error: the error a failed request raised (its class is reported).
        """
        now = self._clock()
        outcomes = self._outcomes.get(alias)
        if outcomes is None:
            outcomes = self._outcomes[alias] = deque(maxlen=self.window)
        outcomes.append((now, ok, None if error is None else type(error).__name__))
        if self._tripped is not None:
            return
        outcomes = self._current(alias)
        failed = sum(1 for _, good, _ in outcomes if not good)
        total = len(outcomes)
        if isinstance(error, AuthenticationFailed):
            self._trip(self._auth_reason(alias, error, failed, total))
            return
        if self.error_rate is None or total < self.min_outcomes:
            return
        if failed / total > self.error_rate:
            self._trip(self._rate_reason(alias, outcomes, failed, total))

    def _current(self, alias: str) -> deque[tuple[float, bool, str | None]]:
        """``alias``'s outcomes, with those older than the window dropped."""
        outcomes = self._outcomes.get(alias)
        if outcomes is None:
            return deque()
        oldest = self._clock() - self.window_seconds
        while outcomes and outcomes[0][0] < oldest:
            outcomes.popleft()
        return outcomes

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
        self,
        alias: str,
        outcomes: deque[tuple[float, bool, str | None]],
        failed: int,
        total: int,
    ) -> ShutdownReason:
        names = Counter(name for _, ok, name in outcomes if not ok and name is not None)
        top = names.most_common(1)[0][0] if names else None
        cause = f" ({top})" if top else ""
        return ShutdownReason(
            alias=alias,
            model=self._info(alias, None).model,
            failed=failed,
            total=total,
            window_seconds=self.window_seconds,
            top_error=top,
            message=f"model {alias!r} failed {failed} of {total} recent requests{cause}; {_KEPT}",
        )

    def _auth_reason(
        self, alias: str, error: AuthenticationFailed, failed: int, total: int
    ) -> ShutdownReason:
        info = self._info(alias, error)
        status = f"HTTP {error.status}" if error.status is not None else type(error).__name__
        if info.api_key_env:
            hint = f"check the key in the environment variable {info.api_key_env}"
        elif info.provider:
            hint = f"provider {info.provider!r} names no api_key_env: set one if it needs a key"
        else:
            hint = "check the provider's API key"
        return ShutdownReason(
            alias=alias,
            model=info.model,
            failed=failed,
            total=total,
            window_seconds=self.window_seconds,
            top_error=type(error).__name__,
            message=f"model {alias!r}: the API key was refused ({status}); {hint}; {_KEPT}",
        )
