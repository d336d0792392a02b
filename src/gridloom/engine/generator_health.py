"""Early shutdown for columns: stop a run whose column fails the same way row after row.

A typo in a template (``{{ answer.replyy }}``), a schema the model never meets, or a custom
function that raises on every row drops every row — and a run that goes on regardless spends
its whole request budget upstream of the broken column. :class:`GeneratorHealth` watches the
final outcome of every cell, per column, and *trips* (once per run) when

- the **first rows** rule holds: the run's first ``first_rows`` rows (in plan order, as the
  scheduler announces them with :meth:`GeneratorHealth.watch_rows`) all failed at the column
  with the same error type. The rule is judged on those rows whatever order their cells end
  in, so a column whose failures come faster than its successes is not stopped by a race, and
  the decision is the same at any concurrency; or
- the **rate** rule holds: among the column's last ``window`` outcomes (judged once there are
  at least ``min_outcomes`` of them), one error type's share is *clearly* above
  ``error_rate`` — the lower end of its 99% Wilson score interval exceeds it — so chance
  alone does not stop a column that fails a third of its rows, while one that fails every
  row stops after ``min_outcomes`` of them.

Only *generator* errors count: a final failure that is neither a model request error
(:class:`~gridloom.errors.ModelError`, watched per model by
:class:`~gridloom.run.HealthMonitor`) nor one that may pass
(:func:`~gridloom.errors.is_retryable`). Template errors, invalid or schema-less output,
values that do not fit the column's dtype and exceptions of custom functions are such errors.

Like the model monitor it only decides: the scheduler records outcomes, and the run
(:class:`~gridloom.run.Run`) registers :meth:`GeneratorHealth.on_trip` and cancels the run.
It is plain Python, no trio.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable

from ..config import RunConfig
from ..errors import ModelError, is_retryable
from .health import ShutdownReason, check_window, quote_example

__all__ = ["GeneratorHealth", "counts_for_generator_health", "wilson_lower_bound"]

#: A watched row the first-rows rule passes over: its cell was skipped (``skip_when``), or its
#: row failed for a reason that is not the column's own.
_PASS = "\x00pass"
#: The first-rows rule looks this many times ``first_rows`` rows ahead for rows that count.
_LOOKAHEAD = 4
#: The normal quantile of the rate rule's bound: a two-sided 99% interval.
_Z = 2.5758293035489
_STOPPING = (
    "the run was stopped before spending more requests (rows already written are kept);"
    " fix the column and run again (run.generator_first_rows and run.generator_error_rate"
    " set this check)"
)


def counts_for_generator_health(error: BaseException) -> bool:
    """Whether a final failure with ``error`` is the column's own fault (not a model's, and
    not one that may pass with time)."""
    return not isinstance(error, ModelError) and not is_retryable(error)


def wilson_lower_bound(failed: int, total: int, z: float = _Z) -> float:
    """The lower end of the Wilson score interval of a share ``failed / total``: how low the
    true share may be, given what was seen (``z`` sets the confidence)."""
    if total <= 0:
        return 0.0
    share = failed / total
    z2 = z * z
    centre = share + z2 / (2 * total)
    spread = z * math.sqrt(share * (1 - share) / total + z2 / (4 * total * total))
    return (centre - spread) / (1 + z2 / total)


class _Column:
    """What the monitor keeps per column."""

    __slots__ = (
        "counts",
        "cursor",
        "examples",
        "first",
        "first_error",
        "first_failures",
        "outcomes",
        "settled",
    )

    def __init__(self, window: int) -> None:
        #: The last ``window`` outcomes: ``None`` for a success, else the error type's name.
        self.outcomes: deque[str | None] = deque(maxlen=window)
        #: How many of ``outcomes`` each error type has.
        self.counts: Counter[str | None] = Counter()
        #: Outcomes of watched rows not judged yet: ``None`` (success), an error type's name,
        #: or :data:`_PASS` (skipped, or failed for a reason that is not the column's).
        self.first: dict[int, str | None] = {}
        self.cursor = 0  #: watched rows judged so far, in plan order
        self.first_error: str | None = None  #: the error type of the first rows' failures
        self.first_failures = 0  #: first rows that failed with ``first_error``
        self.settled = False  #: the first-rows rule can no longer trip
        self.examples: dict[str, tuple[str, int]] = {}  #: error type → (message, row id)

    def add(self, outcome: str | None) -> None:
        outcomes = self.outcomes
        if len(outcomes) == outcomes.maxlen:
            self.counts[outcomes[0]] -= 1
        outcomes.append(outcome)
        self.counts[outcome] += 1


class GeneratorHealth:
    """Tracks each column's final cell outcomes and trips when a column keeps failing.

    Args:
        first_rows: trip when the run's first this many rows all failed at a column with one
            error type; ``0`` turns the rule off.
        error_rate: trip when one error type's share of a column's recent outcomes is clearly
            above this (the lower end of its 99% Wilson interval); ``None`` turns the rule off.
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
        #: The run's first rows the first-rows rule may judge, in plan order (see
        #: :meth:`watch_rows`), and the same as a set.
        self._order: list[int] = []
        self._first: set[int] = set()
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

    def watch_rows(self, first_row_id: int, num_rows: int) -> None:
        """The next ``num_rows`` rows of the plan (ids from ``first_row_id``). The first-rows
        rule judges the first ``first_rows`` of them that count for a column — passing over
        rows whose cell was skipped or whose row failed elsewhere, up to ``4 x first_rows``
        rows in."""
        missing = self.first_rows * _LOOKAHEAD - len(self._order)
        if missing > 0:
            added = range(first_row_id, first_row_id + min(num_rows, missing))
            self._order.extend(added)
            self._first.update(added)
            for column, state in self._columns.items():
                if not state.settled:
                    self._judge_first(column, state)

    def _column(self, column: str) -> _Column:
        state = self._columns.get(column)
        if state is None:
            state = self._columns[column] = _Column(self.window)
        return state

    def record_success(self, column: str, row_id: int) -> None:
        """The cell of ``column`` in row ``row_id`` was generated."""
        state = self._column(column)
        state.add(None)
        if not state.settled and row_id in self._first:
            self._watched(column, state, row_id, None)

    def record_successes(self, column: str, row_ids: Iterable[int]) -> None:
        """The cells of ``column`` in rows ``row_ids`` (one batch) were generated."""
        state = self._column(column)
        first = self._first
        for row_id in row_ids:
            state.add(None)
            if not state.settled and row_id in first:
                self._watched(column, state, row_id, None)

    def record_skipped(self, column: str, row_id: int) -> None:
        """The cell of ``column`` in row ``row_id`` was skipped (its ``skip_when`` held): no
        outcome for the rate rule, and a row the first-rows rule passes over."""
        state = self._column(column)
        if not state.settled and row_id in self._first:
            self._watched(column, state, row_id, _PASS)

    def record_failure(self, column: str, error: BaseException, row_id: int) -> None:
        """A cell of ``column`` failed for good with ``error`` (its row is dropped); errors
        that are not the column's own fault (see :func:`counts_for_generator_health`) only
        let the first-rows rule pass over the row."""
        state = self._column(column)
        if not counts_for_generator_health(error):
            if not state.settled and row_id in self._first:
                self._watched(column, state, row_id, _PASS)
            return
        kind = type(error).__name__
        state.examples.setdefault(kind, (str(error), row_id))
        state.add(kind)
        if self._tripped is not None:
            return
        if getattr(error, "stops_run", False):  # e.g. a seed file found broken mid-run
            self._trip(column, state, kind, state.counts[kind], len(state.outcomes), first=False)
            return
        if (
            not state.settled
            and row_id in self._first
            and self._watched(column, state, row_id, kind)
        ):
            return
        if self.error_rate is None or len(state.outcomes) < self.min_outcomes:
            return
        same = state.counts[kind]
        total = len(state.outcomes)
        if wilson_lower_bound(same, total) > self.error_rate:
            self._trip(column, state, kind, same, total, first=False)

    def _watched(self, column: str, state: _Column, row_id: int, outcome: str | None) -> bool:
        """Record a watched row's outcome and judge; whether the rule tripped."""
        state.first[row_id] = outcome
        return self._judge_first(column, state)

    def _judge_first(self, column: str, state: _Column) -> bool:
        """Judge the watched rows of ``column`` in plan order, as far as their outcomes are
        known: a success or a second error type settles the rule; ``first_rows`` failures of
        one type in a row (rows passed over aside) trip it. Returns whether it tripped."""
        order = self._order
        while state.cursor < len(order) and order[state.cursor] in state.first:
            outcome = state.first.pop(order[state.cursor])
            state.cursor += 1
            if outcome == _PASS:
                continue
            if outcome is None or (state.first_error not in (None, outcome)):
                state.settled = True
                break
            state.first_error = outcome
            state.first_failures += 1
            if state.first_failures == self.first_rows:
                state.settled = True
                state.first.clear()
                if self._tripped is not None:
                    return False
                self._trip(column, state, outcome, self.first_rows, self.first_rows, first=True)
                return True
        else:
            if state.cursor >= self.first_rows * _LOOKAHEAD:  # too many rows passed over
                state.settled = True
        if state.settled:
            state.first.clear()
        return False

    def _trip(
        self, column: str, state: _Column, kind: str, failed: int, total: int, *, first: bool
    ) -> None:
        message, row_id = state.examples[kind]
        # Generator messages often start by naming their column again.
        quoted = quote_example(message.removeprefix(f"column {column!r}: "))
        if first:
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
