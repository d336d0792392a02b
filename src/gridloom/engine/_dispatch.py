"""The dispatcher: takes ready tasks, best first, as the limits allow, and hands each to the row
group it belongs to, whose starter starts it in the group's own nursery.

Limits: the *submission* limiter caps tasks dispatched and working locally; a model-bound task
acquires an *LLM-wait* slot and then releases its submission slot (one-way handoff), so tasks
waiting on the network never block dispatch. Synchronous generators run in worker threads under
their own limiter; ``inline`` generators (cheap built-ins) run on the loop inside the
dispatcher, with a checkpoint every few hundred.

A column's ``skip_when`` is evaluated before its generator is called. A cell whose (simple)
condition holds is finished in the dispatcher, as :data:`~._skip.SKIPPED`, without a slot,
a worker thread or a model request; a condition that is not simple is evaluated in a worker
thread by the task, before its generator is called. A batch task evaluates the condition for its
rows and calls its generator only with the rows not skipped (same ``group_row_ids``, so
samplers give every row the value it would have without skips); the result is spread back
over the task's rows with ``SKIPPED`` in the skipped rows' places.

A generator's exception fails its cell (or the batch's rows), never the run: one that is not an
``Exception`` too (``sys.exit()`` in user code), except Ctrl-C and the run's cancellation.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from ..config import RunConfig
from ..errors import GenerationError, SalvageTimeout
from ..generators import BatchContext, CellContext, ColumnGenerator, RowFailure
from ..generators._escapes import ends_run, escaped_failure
from ..generators.base import Models, Toolboxes, normalize_result
from ..trace import CURRENT_SPAN, TaskTracer
from ._lanes import ReadyQueue
from ._outcomes import Outcomes
from ._rowgroup import RowGroup
from ._skip import SkipCondition
from ._stats import Counters
from .graph import ExecutionGraph, Node
from .tracker import BatchTask, CellTask, Task

__all__ = ["Dispatcher"]

#: ``run_task``'s outcome when the task was skipped (its rows dropped while it waited).
_SKIPPED = object()

#: Inline tasks run back to back in the dispatcher; it yields to the loop after this many.
_INLINE_BURST = 256
#: Tasks the dispatcher hands over back to back before it lets the event loop run.
_DISPATCH_BURST = 64
#: An inline batch over more rows than this goes to a worker thread instead, so the loop is
#: never held for longer than a few milliseconds.
_INLINE_BATCH_ROWS = 1024


def _inline(generator: ColumnGenerator[Any], rows: int) -> bool:
    """Whether the generator runs on the loop for a task of ``rows`` rows."""
    return generator.inline and not generator.is_async and rows <= _INLINE_BATCH_ROWS


def _runs_inline(node: Node, task: Task) -> bool:
    """Whether the dispatcher runs the task itself, on the loop (a condition that is not
    simple is evaluated by the task, in a worker thread, first)."""
    if node.skip is not None and not node.skip.simple:
        return False
    return _inline(node.generator, 1 if isinstance(task, CellTask) else len(task.rows))


def _spread(node: Node, kept: Sequence[int], verdicts: Sequence[object], value: object) -> object:
    """A batch generator's result over the ``kept`` rows, spread over all the task's rows
    (``verdicts[i]`` is ``SKIPPED``, a ``RowFailure`` or ``None`` — kept — for the task's
    ``i``-th row), in the shape the generator returns. A failed call (``value`` a
    ``RowFailure``) or a result of the wrong shape fails the kept rows only."""
    generator = node.generator
    outputs = list(generator.output_names)
    per_column: Mapping[str, Sequence[Any]]
    if isinstance(value, RowFailure):
        per_column = {col: [value] * len(kept) for col in outputs}
    else:
        try:
            per_column = normalize_result(generator, "batch", value, len(kept))
        except GenerationError as exc:
            per_column = {col: [RowFailure(exc)] * len(kept) for col in outputs}
    spread: dict[str, list[Any]] = {}
    for col in outputs:
        values = iter(per_column[col])
        spread[col] = [next(values) if v is None else v for v in verdicts]
    if len(outputs) == 1 and generator.name in spread:
        return spread[generator.name]
    return spread


def _escaped(generator: ColumnGenerator[Any], exc: BaseException) -> RowFailure:
    """The failure of a cell (or batch) whose generator raised ``exc``, not an ``Exception``
    (``sys.exit()`` in a plugin's or a user's code): it ends the cell, not the run."""
    return RowFailure(escaped_failure(exc, generator.name, "the generator"))


class _Unbounded:
    """Stands in for a cancel scope without a deadline (nothing can cancel it)."""

    __slots__ = ()
    cancelled_caught = False

    def __enter__(self) -> _Unbounded:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_UNBOUNDED = _Unbounded()


class Dispatcher:
    """Moves ready tasks from the queue to their row groups, and runs each task.

    Args:
        graph: the compiled pipeline.
        run: the limits (submission, LLM-wait, worker threads).
        seed: the run seed, handed to generators in their context.
        models: the run's model handles by alias, handed to generators in their context.
        tools: the run's toolboxes by column (``llm_agent`` columns), handed to that column's
            cells in their context.
        queue: the ready queue it takes tasks from.
        outcomes: records what each task returned.
        counters: the scheduler's counts.
        tracer: marks when each task was dispatched and got its slot, when tracing.
    """

    def __init__(
        self,
        graph: ExecutionGraph,
        run: RunConfig,
        *,
        seed: int,
        models: Models,
        tools: Toolboxes | None = None,
        queue: ReadyQueue,
        outcomes: Outcomes,
        counters: Counters,
        tracer: TaskTracer | None,
    ) -> None:
        self._graph = graph
        self._seed = seed
        self._models = models
        self._tools = tools or {}
        self._queue = queue
        self._outcomes = outcomes
        self._counts = counters
        self._tracer = tracer
        self.submission = trio.CapacityLimiter(run.max_submitted_tasks)
        self.llm_wait = trio.CapacityLimiter(run.max_llm_wait_tasks)
        self._threads = trio.CapacityLimiter(run.max_worker_threads)

    async def run(self) -> None:
        """Dispatch until cancelled (a task of the scheduler's nursery)."""
        # A submission slot is acquired *before* choosing the task it will carry: while we wait
        # for it, better tasks (a finished cell's downstream) may arrive and must go first.
        queue = self._queue
        finish = self._outcomes.finish
        inline_burst = burst = 0
        token: object | None = None
        while True:
            lane = queue.best_lane()
            if lane is None:
                if token is not None:
                    self.submission.release_on_behalf_of(token)
                    token = None
                inline_burst = burst = 0
                await queue.wakeup.wait()
                queue.wakeup = trio.Event()
                continue
            *_, group, task = lane.ready[0]
            if not group.open:  # the row group is gone
                heapq.heappop(lane.ready)
                continue
            if not group.tracker.is_needed(task):  # its rows were dropped meanwhile
                heapq.heappop(lane.ready)
                group.outstanding -= 1
                if self._tracer is not None:
                    group.close_span(task, "skipped")
                self._outcomes.check_quiet(group)
                continue
            node = self._graph.nodes[task.node]
            skip = node.skip
            if skip is not None and skip.simple and isinstance(task, CellTask):
                verdict = skip.verdict(self._row(group, node, task.row))
                if verdict is not None:  # skipped (or the condition failed): no call
                    heapq.heappop(lane.ready)
                    if self._tracer is not None:
                        group.mark(task, "dispatched", "slot")
                    finish(group, task, verdict)
                    inline_burst += 1
                    if inline_burst >= _INLINE_BURST:
                        inline_burst = 0
                        await trio.sleep(0)
                    continue
            if _runs_inline(node, task):
                heapq.heappop(lane.ready)
                if self._tracer is not None:
                    group.mark(task, "dispatched", "slot")
                finish(group, task, self._call_inline(group, node, task))
                inline_burst += 1
                if inline_burst >= _INLINE_BURST:
                    inline_burst = 0
                    await trio.sleep(0)
                continue
            if token is None:
                token = object()
                try:
                    self.submission.acquire_on_behalf_of_nowait(token)
                except trio.WouldBlock:
                    await self.submission.acquire_on_behalf_of(token)
                    continue  # look again: the best task may have changed while we waited
                finally:
                    counts = self._counts
                    counts.peak_submitted = max(
                        counts.peak_submitted, self.submission.borrowed_tokens
                    )
            heapq.heappop(lane.ready)
            if self._tracer is not None:
                group.mark(task, "dispatched")
            lane.running += 1
            group.hand(self.run_task, group, node, task, token)
            token = None
            # Hand over a burst of tasks without a trip through the event loop for each, but
            # let the loop run between bursts.
            burst += 1
            if burst >= _DISPATCH_BURST:
                burst = 0
                await trio.sleep(0)

    def discard(self, group: RowGroup, node: Node, task: Task, token: object) -> None:
        """A task handed to a group that closed before starting it: give back its slot."""
        self.submission.release_on_behalf_of(token)
        self._queue.task_done(task.node)

    # ------------------------------------------------------------------ tasks

    @staticmethod
    def _row(group: RowGroup, node: Node, row: int) -> dict[str, Any]:
        columns = group.columns
        return {col: columns[col][row] for col in node.inputs}

    def _context(
        self, group: RowGroup, node: Node, task: Task, rows: Sequence[int] | None = None
    ) -> CellContext | BatchContext:
        """The generator's context for ``task`` (a batch: for ``rows`` of it, by default all)."""
        first = group.spec.first_row_id
        if isinstance(task, CellTask):
            return CellContext(
                row=self._row(group, node, task.row),
                row_id=first + task.row,
                column=node.name,
                seed=self._seed,
                models=self._models,
                tools=self._tools.get(node.name),
            )
        rows = task.rows if rows is None else rows
        return BatchContext(
            row_ids=[first + r for r in rows],
            columns={col: [group.columns[col][r] for r in rows] for col in node.inputs},
            row_group=group.spec.index,
            column=node.name,
            seed=self._seed,
            group_row_ids=range(first, first + group.spec.num_rows),
            models=self._models,
        )

    def _call_inline(self, group: RowGroup, node: Node, task: Task) -> object:
        skip = node.skip
        if skip is not None and isinstance(task, BatchTask):
            verdicts = skip.verdicts([self._row(group, node, r) for r in task.rows])
            kept = [r for r, v in zip(task.rows, verdicts, strict=True) if v is None]
            value: object = []
            if kept:
                try:
                    value = node.generator.generate(self._context(group, node, task, kept))
                except Exception as exc:
                    value = RowFailure(exc)
                except BaseException as exc:
                    if ends_run(exc):
                        raise
                    value = _escaped(node.generator, exc)
            return _spread(node, kept, verdicts, value)
        try:
            return node.generator.generate(self._context(group, node, task))
        except Exception as exc:
            return RowFailure(exc)
        except BaseException as exc:
            if ends_run(exc):
                raise
            return _escaped(node.generator, exc)

    async def _verdicts(
        self, skip: SkipCondition, rows: Sequence[Mapping[str, Any]]
    ) -> list[object]:
        """The condition over ``rows``: on the loop when it is simple and they are few, else
        in a worker thread."""
        if skip.simple and len(rows) <= _INLINE_BATCH_ROWS:
            return skip.verdicts(rows)
        return await trio.to_thread.run_sync(
            skip.verdicts, rows, limiter=self._threads, abandon_on_cancel=True
        )

    async def _call(self, group: RowGroup, node: Node, task: Task) -> object:
        """Call the generator for ``task``, minding the node's ``skip_when``."""
        skip = node.skip
        generator = node.generator
        if skip is None or (skip.simple and isinstance(task, CellTask)):
            # No condition, or a simple one the dispatcher found false.
            return await self._invoke(generator, self._context(group, node, task))
        if isinstance(task, CellTask):
            (verdict,) = await self._verdicts(skip, [self._row(group, node, task.row)])
            if verdict is not None:
                return verdict
            return await self._generate(generator, self._context(group, node, task))
        verdicts = await self._verdicts(skip, [self._row(group, node, r) for r in task.rows])
        kept = [r for r, v in zip(task.rows, verdicts, strict=True) if v is None]
        value: object = []
        if kept:
            value = await self._generate(generator, self._context(group, node, task, kept))
        return _spread(node, kept, verdicts, value)

    async def _generate(
        self, generator: ColumnGenerator[Any], ctx: CellContext | BatchContext
    ) -> object:
        """Call the generator after a condition: on the loop when it is an inline one."""
        if not _inline(generator, len(ctx) if isinstance(ctx, BatchContext) else 1):
            return await self._invoke(generator, ctx)
        try:
            return generator.generate(ctx)
        except Exception as exc:
            return RowFailure(exc)
        except BaseException as exc:
            if ends_run(exc):
                raise
            return _escaped(generator, exc)

    async def run_task(self, group: RowGroup, node: Node, task: Task, token: object) -> None:
        """Run one dispatched task and record its outcome: a task of its row group's nursery,
        started there by the group's starter."""
        generator = node.generator
        slot = self.submission
        outcome: object = _SKIPPED
        deadline = group.deadline if group.salvaging and task in group.salvaging else math.inf
        try:
            try:
                # A cancel scope costs a cell's worth of bookkeeping: only salvage needs one.
                scope = _UNBOUNDED if deadline == math.inf else trio.move_on_at(deadline)
                with scope:
                    if generator.model_bound:
                        llm_wait = self.llm_wait
                        try:
                            llm_wait.acquire_on_behalf_of_nowait(token)
                        except trio.WouldBlock:
                            await llm_wait.acquire_on_behalf_of(token)
                        self.submission.release_on_behalf_of(token)
                        slot = llm_wait
                        counts = self._counts
                        counts.peak_llm = max(counts.peak_llm, llm_wait.borrowed_tokens)
                        if not group.tracker.is_needed(task):  # dropped while waiting: skip it
                            return
                    if self._tracer is None:
                        outcome = await self._call(group, node, task)
                    else:
                        outcome = await self._traced_invoke(group, node, task)
                if scope.cancelled_caught:
                    outcome = RowFailure(
                        SalvageTimeout(
                            f"column {node.name!r}: not finished within the salvage round's "
                            f"{self._outcomes.salvage_seconds:g} s"
                        )
                    )
            finally:
                slot.release_on_behalf_of(token)
                self._queue.task_done(task.node)
                if outcome is _SKIPPED:
                    group.outstanding -= 1
                    if self._tracer is not None:
                        group.close_span(task, "skipped")
                    self._outcomes.check_quiet(group)
            self._outcomes.finish(group, task, outcome)
        finally:
            group.task_ended()

    async def _traced_invoke(self, group: RowGroup, node: Node, task: Task) -> object:
        group.mark(task, "slot")
        token = CURRENT_SPAN.set(group.spans.get(task))
        try:
            return await self._call(group, node, task)
        finally:
            CURRENT_SPAN.reset(token)

    async def _invoke(
        self, generator: ColumnGenerator[Any], ctx: CellContext | BatchContext
    ) -> object:
        try:
            if generator.is_async:
                return await generator.agenerate(ctx)
            # Abandoned on cancel: a stop never waits for a slow user function (its result
            # is discarded; the thread ends on its own, the watchdog ends a stuck process).
            return await trio.to_thread.run_sync(
                generator.generate, ctx, limiter=self._threads, abandon_on_cancel=True
            )
        except Exception as exc:
            return RowFailure(exc)
        except BaseException as exc:
            if ends_run(exc):
                raise
            return _escaped(generator, exc)
