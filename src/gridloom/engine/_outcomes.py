"""What becomes of a finished task: its values stored, its rows dropped, or a retry.

Failures (DESIGN.md §6): a failure that may pass (:func:`~gridloom.errors.is_retryable`) *defers*
the cell: it sleeps a capped, jittered, doubling backoff in its row group's nursery and is queued
again, while everything else goes on. After ``max_cell_attempts`` it waits for *salvage*: once
its row group has nothing else left to do, the waiting cells are re-run, one attempt each per
round, each round bounded by a deadline, up to ``salvage_rounds`` rounds — per row group, never
behind a global barrier. A final failure (or a cell still failing after salvage) drops its row.

The shape of a generator's result is checked by the generator contract
(:func:`~gridloom.generators.base.normalize_result`); a wrong shape fails the task's rows.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import trio

from ..config import RunConfig
from ..errors import GenerationError, ProviderUnavailable, RateLimited, is_retryable
from ..generators import RowFailure
from ..generators.base import normalize_result
from ..storage import DropRecord
from ..trace import TaskTracer
from ._lanes import ReadyQueue
from ._rowgroup import RowGroup
from ._skip import SKIPPED
from ._stats import Counters
from .generator_health import GeneratorHealth
from .graph import ExecutionGraph, Node
from .tracker import BatchTask, CellTask, Task

__all__ = ["Outcomes"]

log = logging.getLogger("gridloom.scheduler")


class Outcomes:
    """Records each task's outcome in its row group, and runs the groups' salvage rounds.

    Args:
        graph: the compiled pipeline.
        run: retry, backoff and salvage settings.
        seed: seeds the backoff jitter.
        queue: where newly ready tasks (and retries) are queued.
        counters: the scheduler's counts.
        health: told every cell's final outcome, when given.
        tracer: closes the span of each attempt, when tracing.
    """

    def __init__(
        self,
        graph: ExecutionGraph,
        run: RunConfig,
        *,
        seed: int,
        queue: ReadyQueue,
        counters: Counters,
        health: GeneratorHealth | None,
        tracer: TaskTracer | None,
    ) -> None:
        self._graph = graph
        self._queue = queue
        self._counts = counters
        self._health = health
        self._tracer = tracer
        self._column_mode = run.scheduling == "column"
        self._max_attempts = run.max_cell_attempts
        self._backoff = run.retry_backoff_seconds
        self._backoff_max = run.retry_backoff_max_seconds
        self._salvage_rounds = run.salvage_rounds
        self.salvage_seconds = run.salvage_round_seconds
        self._jitter = random.Random(seed)

    def finish(self, group: RowGroup, task: Task, outcome: object) -> None:
        """Record a task's outcome, queue what it made ready, and close the group if done.

        ``outcome`` is the generator's return value, or a :class:`RowFailure` when the call
        raised (every row of the task fails); a batch result may also hold a
        :class:`RowFailure` in place of single rows' values (just those rows fail).
        """
        group.outstanding -= 1
        node = self._graph.nodes[task.node]
        rows = [task.row] if isinstance(task, CellTask) else list(task.rows)
        ready: list[Task] = []
        if group.salvaging and task in group.salvaging and not isinstance(outcome, RowFailure):
            self._counts.cells_salvaged += len(rows)
        status, error = "ok", ""
        if isinstance(outcome, RowFailure):
            error = type(outcome.error).__name__
            if is_retryable(outcome.error):
                status = "retry" if self._retry(group, task, outcome.error) else "salvage"
            else:
                status = "failed"
                self.fail_rows(group, node, rows, outcome.error, ready)
        else:
            try:
                self._store_values(group, node, task, outcome, ready)
            except GenerationError as exc:
                status, error = "failed", type(exc).__name__
                self.fail_rows(group, node, rows, exc, ready)
        if self._tracer is not None:
            group.close_span(task, status, error)
        if self._column_mode:
            self._queue.advance_stage(group)
        self._queue.accept(group, ready)
        self.check_quiet(group)

    @staticmethod
    def check_quiet(group: RowGroup) -> None:
        """Wake the row group when it is finished, or has nothing left but salvage."""
        if group.outstanding == 0 or group.tracker.finished:
            group.done.set()

    def _retry(
        self, group: RowGroup, task: Task, error: Exception, *, origin: Task | None = None
    ) -> bool:
        """``task`` failed with an error that may pass: try it again after a backoff, or, out
        of attempts (or failing in a salvage round), keep it for the next salvage round.
        ``origin`` is the batch ``task`` was split from (its attempts and round carry over).

        Returns:
            Whether the task was deferred (else it waits for salvage).
        """
        origin = task if origin is None else origin
        attempts = group.attempts.get(origin, 0) + 1
        group.attempts[task] = attempts
        if task is not origin and origin in group.rounds:
            group.rounds[task] = group.rounds[origin]
        if origin in group.salvaging or attempts >= self._max_attempts:
            group.salvage.append((task, error))
            return False
        self._counts.retries += 1
        delay = min(self._backoff_max, self._backoff * 2.0 ** (attempts - 1))
        delay *= 0.5 + 0.5 * self._jitter.random()  # equal jitter: spread, never near zero
        if isinstance(error, RateLimited | ProviderUnavailable) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self._backoff_max))
        group.outstanding += 1
        self._counts.deferred += 1
        group.hand(self.retry_later, group, task, delay)
        return True

    async def retry_later(self, group: RowGroup, task: Task, delay: float) -> None:
        """Sleep ``delay``, then queue ``task`` again (a task of the group's nursery)."""
        try:
            try:
                await trio.sleep(delay)
            finally:
                self._counts.deferred -= 1
            group.outstanding -= 1
            self._queue.accept(group, [task])
            self.check_quiet(group)
        finally:
            group.task_ended()

    def discard_retry(self, group: RowGroup, task: Task, delay: float) -> None:
        """A retry handed to a group that closed before starting it."""
        self._counts.deferred -= 1

    def fail_rows(
        self,
        group: RowGroup,
        node: Node,
        rows: Sequence[int],
        error: Exception,
        ready: list[Task],
        *,
        note: str = "",
    ) -> None:
        """``node`` failed on ``rows``: drop each (still live) row, recording why."""
        message = f"{error} ({note})" if note else str(error)
        tracker = group.tracker
        counts = self._counts
        for row in rows:
            if tracker.is_dropped(row):
                continue
            group.failed[node.index] += 1
            counts.cells_failed += 1
            counts.node_failed[node.index] += 1
            counts.rows_dropped += 1
            row_id = group.spec.first_row_id + row
            group.drops.append(
                DropRecord(
                    row_id=row_id,
                    column=node.name,
                    error_type=type(error).__name__,
                    message=message,
                )
            )
            ready.extend(tracker.drop_row(row))
            if self._health is not None:
                self._health.record_failure(node.name, error, row_id)

    def _store_values(
        self, group: RowGroup, node: Node, task: Task, value: object, ready: list[Task]
    ) -> None:
        """Write a successful result into the row group; raises GenerationError on a bad shape
        before anything is written."""
        tracker = group.tracker
        outputs = node.outputs
        counts = self._counts
        if isinstance(task, CellTask):
            if tracker.is_dropped(task.row):
                return
            if value is SKIPPED:
                self._skipped(group, node, task.row)
                ready.extend(tracker.complete_cell(task.node, task.row))
                return
            mapping = normalize_result(node.generator, "cell", value, 1)
            failure = next((v for v in mapping.values() if isinstance(v, RowFailure)), None)
            if failure is not None:
                if is_retryable(failure.error):
                    self._retry(group, task, failure.error)
                else:
                    self.fail_rows(group, node, [task.row], failure.error, ready)
                return
            for col in outputs:
                group.columns[col][task.row] = mapping[col]
            counts.cells_done += 1
            counts.node_done[task.node] += 1
            if self._health is not None:
                self._health.record_success(node.name, group.spec.first_row_id + task.row)
            ready.extend(tracker.complete_cell(task.node, task.row))
            return
        rows = task.rows
        per_column = normalize_result(node.generator, "batch", value, len(rows))
        columns = [(group.columns[col], per_column[col]) for col in outputs]
        again: list[int] = []
        error: Exception | None = None
        stored: list[int] = []
        failed: list[tuple[int, Exception]] = []
        first_column = columns[0][1]
        for i, row in enumerate(rows):
            if tracker.is_dropped(row):
                continue
            if first_column[i] is SKIPPED:  # every output holds SKIPPED there
                self._skipped(group, node, row)
                continue
            failure = next((v[i] for _, v in columns if isinstance(v[i], RowFailure)), None)
            if failure is not None:
                if is_retryable(failure.error):
                    again.append(row)
                    error = failure.error
                else:
                    failed.append((row, failure.error))
                continue
            for target, values in columns:
                target[row] = values[i]
            stored.append(row)
        counts.cells_done += len(stored)
        counts.node_done[task.node] += len(stored)
        if self._health is not None and stored:
            first = group.spec.first_row_id
            self._health.record_successes(node.name, [first + row for row in stored])
        for row, failure_error in failed:
            self.fail_rows(group, node, [row], failure_error, ready)
        if error is None:
            ready.extend(tracker.complete_batch(task.node, rows))
            return
        # Only the rows that may pass are tried again, as a batch of their own.
        retry = BatchTask(node=task.node, rows=tuple(again))
        ready.extend(tracker.complete_batch(task.node, [r for r in rows if r not in set(again)]))
        self._retry(group, retry, error, origin=task)

    def _skipped(self, group: RowGroup, node: Node, row: int) -> None:
        """The condition of ``node`` held for ``row``: its cell is null, counted as skipped."""
        for col in node.outputs:
            group.columns[col][row] = None
        group.skip(node.index, row)
        self._counts.cells_skipped += 1
        self._counts.node_skipped[node.index] += 1
        if self._health is not None:
            self._health.record_skipped(node.name, group.spec.first_row_id + row)

    async def salvage(self, group: RowGroup) -> None:
        """The group is quiet: finished, or left with cells out of attempts. Each of those gets
        up to ``salvage_rounds`` more attempts, one per round; a round re-runs every waiting
        cell with rounds left and drops the rows of the others."""
        tracker = group.tracker
        queue = self._queue
        while not tracker.finished:
            waiting = [(t, e) for t, e in group.salvage if tracker.is_needed(t)]
            group.salvage = []
            if not waiting:  # only possible if a task went missing: fail loudly, never hang
                raise RuntimeError(f"row group {group.spec.index} is stuck with no work left")
            group.done = trio.Event()
            rounds = group.rounds
            again = [t for t, _ in waiting if rounds.get(t, 0) < self._salvage_rounds]
            ready: list[Task] = []
            for task, error in waiting:
                if rounds.get(task, 0) < self._salvage_rounds:
                    continue
                note = f"gave up after {group.attempts.get(task, 0)} attempts"
                if rounds.get(task, 0):
                    note += f", {rounds[task]} of them in salvage rounds"
                rows = [task.row] if isinstance(task, CellTask) else list(task.rows)
                self.fail_rows(group, self._graph.nodes[task.node], rows, error, ready, note=note)
            if self._column_mode:
                queue.advance_stage(group)
            queue.accept(group, ready)
            if again:
                self._counts.salvage_rounds += 1
                log.info(
                    "row group %d: salvage round for %d cells (last error: %s)",
                    group.spec.index,
                    len(again),
                    type(waiting[-1][1]).__name__,
                )
                group.outstanding += 1  # the pause keeps the group from looking quiet
                await trio.sleep(self._backoff_max)
                group.outstanding -= 1
                for task in again:
                    rounds[task] = rounds.get(task, 0) + 1
                group.salvaging = frozenset(again)
                group.deadline = trio.current_time() + self.salvage_seconds
                queue.accept(group, again)
            self.check_quiet(group)
            await group.done.wait()
            group.salvaging = frozenset()
