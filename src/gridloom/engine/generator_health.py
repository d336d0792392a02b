"""Early shutdown for columns: stop a run whose column fails the same way row after row.

A typo in a template (``{{ answer.replyy }}``), a schema the model never meets, or a custom
function that raises on every row drops every row — and a run that goes on regardless spends
its whole request budget upstream of the broken column. :class:`GeneratorHealth` watches the
final outcome of every cell, per column, and *trips* (once per run) when

- the **first rows** rule holds: the column's first ``first_rows`` outcomes are all failures
  with the same error type; or
- the **rate** rule holds: among the column's last ``window`` outcomes (judged once there are
  at least ``min_outcomes`` of them), one error type's share exceeds ``error_rate``.

Only *generator* errors count: a final failure that is neither a model request error
(:class:`~gridloom.errors.ModelError`, watched per model by
:class:`~gridloom.engine.health.HealthMonitor`) nor one that may pass
(:func:`~gridloom.errors.is_retryable`). Template errors, invalid or schema-less output,
values that do not fit the column's dtype and exceptions of custom functions are such errors.

Like the model monitor it only decides: the scheduler records outcomes, and whoever runs it
registers :meth:`GeneratorHealth.on_trip` and cancels the run. It is plain Python, no trio.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..config import RunConfig
from ..errors import ModelError, is_retryable
from .health import ShutdownReason, check_window

__all__ = ["GeneratorHealth", "counts_for_generator_health"]

#: How much of an error message a stop reason quotes.
_QUOTE = 300
_STOPPING = (
    "the run was stopped before spending more requests (rows already written are kept);"
    " fix the column and run again (run.generator_first_rows and run.generator_error_rate"
    " set this check)"
)


def counts_for_generator_health(error: BaseException) -> bool:
    """Whether a final failure with ``error`` is the column's own fault (not a model's, and
    not one that may pass with time)."""
    return not isinstance(error, ModelError) and not is_retryable(error)


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _QUOTE else text[: _QUOTE - 1] + "…"


class _Column:
    """What the monitor keeps per column."""

    __slots__ = ("examples", "first_error", "first_failures", "outcomes", "seen", "settled")

    def __init__(self, window: int) -> None:
        #: The last ``window`` outcomes: ``None`` for a success, else the error type's name.
        self.outcomes: deque[str | None] = deque(maxlen=window)
        self.seen = 0  #: outcomes so far
        self.first_error: str | None = None
        self.first_failures = 0  #: leading failures with ``first_error``
        self.settled = False  #: the first-rows rule can no longer trip
        self.examples: dict[str, tuple[str, int]] = {}  #: error type → (message, row id)


class GeneratorHealth:
    """Tracks each column's final cell outcomes and trips when a column keeps failing.

    Args:
        first_rows: trip when a column's first this many outcomes all fail with one error
            type; ``0`` turns the rule off.
        error_rate: trip when one error type's share of a column's recent outcomes exceeds
            this; ``None`` turns the rule off.
        window: recent outcomes per column the rate is computed over.
        min_outcomes: the rate is not judged on fewer outcomes than this (capped at
            ``window``).

    Raises:
        ValueError: a value out of range.
    """

    def __init__(
        self,
        *,
        first_rows: int,
        error_rate: float | None,
        window: int,
        min_outcomes: int,
    ) -> None:
        if first_rows < 0:
            raise ValueError(f"first_rows must be >= 0, got {first_rows}")
        check_window(error_rate, window, min_outcomes)
        self.first_rows = first_rows
        self.error_rate = error_rate
        self.window = window
        self.min_outcomes = min(min_outcomes, window)
        self._columns: dict[str, _Column] = {}
        self._callbacks: list[Callable[[ShutdownReason], None]] = []
        self._tripped: ShutdownReason | None = None

    @classmethod
    def from_run_config(cls, run: RunConfig) -> GeneratorHealth:
        """A monitor with the ``generator_*`` settings of ``run``."""
        return cls(
            first_rows=run.generator_first_rows,
            error_rate=run.generator_error_rate,
            window=run.generator_window,
            min_outcomes=run.generator_min_outcomes,
        )

    def __repr__(self) -> str:
        state = "tripped" if self._tripped is not None else "watching"
        return (
            f"<GeneratorHealth {state}: first_rows={self.first_rows}, "
            f"error_rate={self.error_rate}, window={self.window}>"
        )

    @property
    def tripped(self) -> ShutdownReason | None:
        """The reason the monitor tripped, or ``None``."""
        return self._tripped

    def on_trip(self, callback: Callable[[ShutdownReason], None]) -> None:
        """Call ``callback`` with the reason when the monitor trips (at once if it already
        has). Callbacks run synchronously inside the ``record_*`` methods."""
        self._callbacks.append(callback)
        if self._tripped is not None:
            callback(self._tripped)

    def _column(self, column: str) -> _Column:
        state = self._columns.get(column)
        if state is None:
            state = self._columns[column] = _Column(self.window)
        return state

    def record_success(self, column: str, count: int = 1) -> None:
        """``count`` cells of ``column`` were generated."""
        state = self._column(column)
        state.seen += count
        state.settled = True
        if count == 1:
            state.outcomes.append(None)
        else:
            state.outcomes.extend([None] * min(count, self.window))

    def record_failure(self, column: str, error: BaseException, row_id: int) -> None:
        """A cell of ``column`` failed for good with ``error`` (its row is dropped); errors
        that are not the column's own fault (see :func:`counts_for_generator_health`) are
        ignored."""
        if not counts_for_generator_health(error):
            return
        state = self._column(column)
        kind = type(error).__name__
        state.examples.setdefault(kind, (str(error), row_id))
        state.seen += 1
        state.outcomes.append(kind)
        if self._tripped is not None:
            return
        if not state.settled:
            if state.first_error is None:
                state.first_error = kind
            if kind == state.first_error:
                state.first_failures += 1
            else:
                state.settled = True
            if self.first_rows and state.first_failures >= self.first_rows:
                self._trip(column, state, kind, state.first_failures, state.first_failures)
                return
            if state.seen >= self.first_rows:
                state.settled = True
        if self.error_rate is None or len(state.outcomes) < self.min_outcomes:
            return
        same = sum(1 for outcome in state.outcomes if outcome == kind)
        if same / len(state.outcomes) > self.error_rate:
            self._trip(column, state, kind, same, len(state.outcomes))

    def _trip(self, column: str, state: _Column, kind: str, failed: int, total: int) -> None:
        message, row_id = state.examples[kind]
        # Generator messages often start by naming their column again.
        quoted = _quote(message.removeprefix(f"column {column!r}: "))
        if failed == total and total == state.seen:
            counts = f"failed on each of its first {total} rows"
        else:
            counts = f"failed on {failed} of its last {total} rows"
        reason = ShutdownReason(
            alias=None,
            model=None,
            failed=failed,
            total=total,
            window_seconds=None,
            top_error=kind,
            message=f"column {column!r} {counts} with {kind}: {quoted} (e.g. row {row_id});"
            f" {_STOPPING}",
            column=column,
            example=quoted,
            row_id=row_id,
        )
        self._tripped = reason
        for callback in list(self._callbacks):
            callback(reason)
