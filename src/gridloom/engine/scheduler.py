"""The trio scheduler: fills the grid cell by cell, a few row groups at a time.

Shape of a run (DESIGN.md §4)::

    Scheduler.run()                      one nursery for the run
    ├── dispatcher                       pops ready tasks, best first, as the submission
    │                                    limiter allows, and starts them in their row group
    └── row groups                       admitted by CapacityLimiter(max_row_groups_in_flight)
        └── row group N (own nursery)    cell/batch tasks; when its tracker is finished the
                                         row group is written by the store, then released

Limits: the *submission* limiter caps tasks dispatched and working locally; a model-bound task
acquires an *LLM-wait* slot and then releases its submission slot (one-way handoff), so tasks
waiting on the network never block dispatch. Synchronous generators run in worker threads under
their own limiter; ``inline`` generators (cheap built-ins) run on the loop inside the
dispatcher, with a checkpoint every few hundred.

Ready tasks are ordered by (row group, row, column): the oldest row group first, and within it a
row's next column before later rows' first columns, so rows complete early and completion flows
diagonally across the grid. They wait in *lanes*, one per model (a generator's ``model_lane``)
and one for everything else; a model's lane dispatches at most ``_LANE_DEPTH`` x its
``max_parallel_requests`` tasks at once, and the dispatcher takes the best task of the lanes
that have room. Without lanes, thousands of tasks queued for one busy model would fill the
LLM-wait slots, and a second model's tasks (a judge whose generator just finished) would wait
behind them in the limiter's queue while that model sat idle. In ``column`` scheduling (the
legacy baseline) a row group runs its columns strictly one after another, each to completion.

Failures (DESIGN.md §6): a failure that may pass (:func:`~gridloom.errors.is_retryable`) *defers*
the cell: it sleeps a capped, jittered, doubling backoff in its row group's nursery and is queued
again, while everything else goes on. After ``max_cell_attempts`` it waits for *salvage*: once
its row group has nothing else left to do, the waiting cells are re-run, one attempt each per
round, each round bounded by a deadline, up to ``salvage_rounds`` rounds — per row group, never
behind a global barrier. A final failure (or a cell still failing after salvage) drops its row.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import trio

from ..clients._span import CURRENT_SPAN
from ..config import RunConfig
from ..errors import GenerationError, ProviderUnavailable, RateLimited, SalvageTimeout, is_retryable
from ..generators import BatchContext, CellContext, ColumnGenerator, RowFailure
from ..storage import ColumnCounts, DropRecord, RowGroupData, RowGroupStore
from ..trace import TaskSpan, TaskTracer
from .generator_health import GeneratorHealth
from .graph import ExecutionGraph, Node
from .tracker import BatchTask, CellTask, CompletionTracker, Task

__all__ = ["NodeProgress", "RowGroupSpec", "Scheduler", "SchedulerStatistics"]

#: ``_run_task``'s outcome when the task was skipped (its rows dropped while it waited).
_SKIPPED: Any = object()

log = logging.getLogger("gridloom.scheduler")

#: A model's lane dispatches at most this many times its ``max_parallel_requests`` tasks at once:
#: enough to keep its requests in flight while the next ones render their prompts.
_LANE_DEPTH = 2

_Entry = tuple[int, int, int, int, "_RowGroup", Task]


@attrs.define(eq=False)
class _Lane:
    """Ready tasks that wait on one model (or on no model), best first."""

    cap: float  #: tasks of the lane dispatched and not finished, at most
    ready: list[_Entry] = attrs.Factory(list)
    running: int = 0


#: Inline tasks run back to back in the dispatcher; it yields to the loop after this many.
_INLINE_BURST = 256
#: Tasks the dispatcher starts back to back before it lets the event loop run.
_DISPATCH_BURST = 64
#: An inline batch over more rows than this goes to a worker thread instead, so the loop is
#: never held for longer than a few milliseconds.
_INLINE_BATCH_ROWS = 1024


def _runs_inline(generator: ColumnGenerator, task: Task) -> bool:
    if not generator.inline or generator.is_async:
        return False
    return isinstance(task, CellTask) or len(task.rows) <= _INLINE_BATCH_ROWS


@attrs.frozen(kw_only=True)
class RowGroupSpec:
    """A row group to generate: rows ``first_row_id .. first_row_id + num_rows - 1``."""

    index: int
    first_row_id: int
    num_rows: int


@attrs.frozen(kw_only=True)
class NodeProgress:
    """Cells of one node (a column, or a multi-output generator) so far.

    Attributes:
        name: the node's name; outputs: the columns it fills.
        done: cells (rows, for a batch node) generated.
        failed: cells whose failure dropped their row.
    """

    name: str
    outputs: tuple[str, ...]
    done: int
    failed: int


@attrs.frozen(kw_only=True)
class SchedulerStatistics:
    """A snapshot of the scheduler (read by progress, traces and tests).

    ``nodes`` gives per node progress in execution order; the other fields are run-wide.
    """

    row_groups_in_flight: int
    row_groups_written: int
    tasks_submitted: int
    tasks_waiting_on_model: int
    tasks_ready: int
    cells_done: int
    cells_failed: int
    rows_dropped: int
    retries: int
    cells_deferred: int
    salvage_rounds: int
    cells_salvaged: int
    rows_abandoned: int
    nodes: tuple[NodeProgress, ...] = ()
    peak_row_groups_in_flight: int
    peak_tasks_submitted: int
    peak_tasks_waiting_on_model: int


class _RowGroup:
    """Mutable state of one admitted row group (owned by the scheduler)."""

    __slots__ = (
        "attempts",
        "columns",
        "deadline",
        "done",
        "drops",
        "failed",
        "nursery",
        "outstanding",
        "parked",
        "rounds",
        "salvage",
        "salvaging",
        "spans",
        "spec",
        "stage",
        "tracker",
    )

    def __init__(self, spec: RowGroupSpec, graph: ExecutionGraph, column_mode: bool):
        self.spec = spec
        self.tracker = CompletionTracker(graph.nodes, spec.num_rows)
        self.columns: dict[str, list[Any]] = {col: [None] * spec.num_rows for col in graph.columns}
        self.drops: list[DropRecord] = []
        self.failed = [0] * len(graph.nodes)
        self.done = trio.Event()
        self.nursery: trio.Nursery | None = None
        # Column mode: index of the node now running; tasks of later nodes wait in `parked`.
        self.stage = 0 if column_mode else -1
        self.parked: list[list[Task]] = [[] for _ in graph.nodes] if column_mode else []
        # Tasks queued, running or sleeping before a retry; 0 means the group is quiet.
        self.outstanding = 0
        # Retryable failures so far, per task.
        self.attempts: dict[Task, int] = {}
        # Tasks out of attempts, with their last error, waiting for a salvage round.
        self.salvage: list[tuple[Task, Exception]] = []
        # The tasks of the salvage round under way, and its deadline.
        self.salvaging: frozenset[Task] = frozenset()
        # Salvage rounds each task has had.
        self.rounds: dict[Task, int] = {}
        # When tracing: the span of each queued or running task.
        self.spans: dict[Task, TaskSpan] = {}
        self.deadline = 0.0


class Scheduler:
    """Runs row groups of an :class:`ExecutionGraph` and hands each finished one to a store.

    Args:
        graph: the compiled pipeline.
        run: limits and scheduling mode.
        seed: the run seed every random stream derives from.
        store: receives each finished row group (``await store.write(...)``).
        models: the run's model handles by alias, handed to generators in their context.
        tracer: records a span per task attempt when given.
        health: told every cell's final outcome, to stop a run whose column keeps failing.
    """

    def __init__(
        self,
        graph: ExecutionGraph,
        run: RunConfig,
        *,
        seed: int,
        store: RowGroupStore,
        models: Mapping[str, Any] | None = None,
        tracer: TaskTracer | None = None,
        health: GeneratorHealth | None = None,
    ):
        self._tracer = tracer
        self._health = health
        self._graph = graph
        self._seed = seed
        self._models: Mapping[str, Any] = models or {}
        self._store = store
        self._column_mode = run.scheduling == "column"
        self._encoders = {
            col: fn for node in graph.nodes for col, fn in node.generator.encoders.items()
        }
        self._admission = trio.CapacityLimiter(run.max_row_groups_in_flight)
        self._submission = trio.CapacityLimiter(run.max_submitted_tasks)
        self._llm_wait = trio.CapacityLimiter(run.max_llm_wait_tasks)
        self._threads = trio.CapacityLimiter(run.max_worker_threads)
        self._max_attempts = run.max_cell_attempts
        self._backoff = run.retry_backoff_seconds
        self._backoff_max = run.retry_backoff_max_seconds
        self._salvage_rounds = run.salvage_rounds
        self._salvage_seconds = run.salvage_round_seconds
        self._jitter = random.Random(seed)
        self._lanes: dict[str | None, _Lane] = {None: _Lane(cap=math.inf)}
        self._node_lane: list[_Lane] = [self._lane(node.generator) for node in graph.nodes]
        self._seq = itertools.count()
        self._wakeup = trio.Event()
        self._in_flight = 0
        self._written = 0
        self._cells_done = 0
        self._cells_failed = 0
        self._rows_dropped = 0
        self._retries = 0
        self._node_done = [0] * len(graph.nodes)
        self._node_failed = [0] * len(graph.nodes)
        self._rows_abandoned = 0
        self._deferred = 0
        self._salvage_rounds_run = 0
        self._cells_salvaged = 0
        self._peak_groups = 0
        self._peak_submitted = 0
        self._peak_llm = 0

    # ------------------------------------------------------------------ public

    def statistics(self) -> SchedulerStatistics:
        """A frozen snapshot of progress and limiter use."""
        return SchedulerStatistics(
            row_groups_in_flight=self._in_flight,
            row_groups_written=self._written,
            tasks_submitted=self._submission.borrowed_tokens,
            tasks_waiting_on_model=self._llm_wait.borrowed_tokens,
            tasks_ready=sum(len(lane.ready) for lane in self._lanes.values()),
            cells_done=self._cells_done,
            cells_failed=self._cells_failed,
            rows_dropped=self._rows_dropped,
            retries=self._retries,
            cells_deferred=self._deferred,
            salvage_rounds=self._salvage_rounds_run,
            cells_salvaged=self._cells_salvaged,
            rows_abandoned=self._rows_abandoned,
            nodes=tuple(
                NodeProgress(
                    name=node.name,
                    outputs=tuple(node.outputs),
                    done=self._node_done[node.index],
                    failed=self._node_failed[node.index],
                )
                for node in self._graph.nodes
            ),
            peak_row_groups_in_flight=self._peak_groups,
            peak_tasks_submitted=self._peak_submitted,
            peak_tasks_waiting_on_model=self._peak_llm,
        )

    async def run(self, row_groups: Iterable[RowGroupSpec]) -> None:
        """Generate and store ``row_groups`` (in index order of admission); they are taken
        one at a time, as admission allows, so a plan may be lazy and of any length."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._dispatch_loop)
            async with trio.open_nursery() as groups:
                for spec in row_groups:
                    if self._health is not None:
                        self._health.watch_rows(spec.first_row_id, spec.num_rows)
                    token = object()
                    await self._admission.acquire_on_behalf_of(token)
                    groups.start_soon(self._run_row_group, spec, token)
            nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ row groups

    async def _run_row_group(self, spec: RowGroupSpec, token: object) -> None:
        self._in_flight += 1
        self._peak_groups = max(self._peak_groups, self._in_flight)
        written = False
        try:
            group = _RowGroup(spec, self._graph, self._column_mode)
            try:
                async with trio.open_nursery() as nursery:
                    group.nursery = nursery
                    self._accept(group, group.tracker.start())
                    await group.done.wait()
                    await self._salvage(group)
            except BaseException:
                # Stopped, or failed: a row group finished in that very step is still kept.
                if not group.tracker.finished:
                    raise
                await self._write(self._row_group_data(group))
                written = True
                raise
            finally:
                group.nursery = None  # closed: tasks of it still queued are dropped
            data = self._row_group_data(group)
            del group
            await self._write(data)
            written = True
        finally:
            self._in_flight -= 1
            if not written:  # the run stopped or failed while this group was in flight
                self._rows_abandoned += spec.num_rows
            self._admission.release_on_behalf_of(token)

    async def _write(self, data: RowGroupData) -> None:
        """Hand a finished row group to the store; a stop arriving meanwhile waits for it (a
        local write), so a finished row group is never lost to a stop."""
        with trio.CancelScope(shield=True):
            await self._store.write(data)
        self._written += 1

    def _row_group_data(self, group: _RowGroup) -> RowGroupData:
        tracker = group.tracker
        live = tracker.live_rows()
        first = group.spec.first_row_id
        counts: dict[str, ColumnCounts] = {}
        for node in self._graph.nodes:
            done = sum(tracker.is_done(node.index, r) for r in range(tracker.num_rows))
            failed = group.failed[node.index]
            node_counts = ColumnCounts(
                done=done, failed=failed, dropped=tracker.num_rows - done - failed
            )
            for col in node.outputs:
                counts[col] = node_counts
        encoders = self._encoders
        columns = {}
        for field in self._graph.schema:
            values = group.columns[field.name]
            encode = encoders.get(field.name)
            columns[field.name] = (
                [values[r] for r in live] if encode is None else [encode(values[r]) for r in live]
            )
        return RowGroupData(
            index=group.spec.index,
            first_row_id=first,
            num_rows=group.spec.num_rows,
            row_ids=[first + r for r in live],
            columns=columns,
            drops=sorted(group.drops, key=lambda d: d.row_id),
            counts=counts,
        )

    async def _salvage(self, group: _RowGroup) -> None:
        """The group is quiet: finished, or left with cells out of attempts. Each of those gets
        up to ``salvage_rounds`` more attempts, one per round; a round re-runs every waiting
        cell with rounds left and drops the rows of the others."""
        tracker = group.tracker
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
                self._fail_rows(group, self._graph.nodes[task.node], rows, error, ready, note=note)
            if self._column_mode:
                self._advance_stage(group)
            self._accept(group, ready)
            if again:
                self._salvage_rounds_run += 1
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
                group.deadline = trio.current_time() + self._salvage_seconds
                self._accept(group, again)
            self._check_quiet(group)
            await group.done.wait()
            group.salvaging = frozenset()

    # ------------------------------------------------------------------ ready queue

    def _accept(self, group: _RowGroup, tasks: Sequence[Task]) -> None:
        """Queue newly ready tasks (or park them until their column's turn: parked tasks are
        not outstanding, so a column stuck on salvage leaves its group quiet)."""
        for task in tasks:
            if self._column_mode and task.node > group.stage:
                group.parked[task.node].append(task)
                continue
            group.outstanding += 1
            if self._tracer is not None:
                self._open_span(group, task)
            row = task.row if isinstance(task, CellTask) else -1
            heapq.heappush(
                self._node_lane[task.node].ready,
                (group.spec.index, row, task.node, next(self._seq), group, task),
            )
        if tasks:
            self._wakeup.set()

    def _lane(self, generator: ColumnGenerator) -> _Lane:
        """The lane of a node's tasks (created on first use)."""
        spec = generator.model_lane if generator.model_bound else None
        if spec is None:
            return self._lanes[None]
        alias, parallel = spec
        lane = self._lanes.get(alias)
        if lane is None:
            lane = self._lanes[alias] = _Lane(cap=_LANE_DEPTH * max(1, parallel))
        return lane

    def _best_lane(self) -> _Lane | None:
        """The lane whose best ready task comes first, among those with room."""
        best: _Lane | None = None
        for lane in self._lanes.values():
            if (
                lane.ready
                and lane.running < lane.cap
                and (best is None or lane.ready[0][:4] < best.ready[0][:4])
            ):
                best = lane
        return best

    def _open_span(self, group: _RowGroup, task: Task) -> None:
        assert self._tracer is not None
        cell = isinstance(task, CellTask)
        group.spans[task] = self._tracer.open(
            row_group=group.spec.index,
            row_id=group.spec.first_row_id + task.row if isinstance(task, CellTask) else -1,
            rows=1 if cell else len(task.rows) if isinstance(task, BatchTask) else 0,
            column=self._graph.nodes[task.node].name,
            attempt=group.attempts.get(task, 0) + 1,
            now=trio.current_time(),
        )

    def _close_span(self, group: _RowGroup, task: Task, status: str, error: str = "") -> None:
        span = group.spans.pop(task, None)
        if span is not None:
            span.completed = trio.current_time()
            span.status = status
            span.error = error

    def _advance_stage(self, group: _RowGroup) -> None:
        """Column mode: once the running column is complete, release the next one's tasks."""
        tracker = group.tracker
        nodes = len(self._graph.nodes)
        while group.stage < nodes and tracker.is_complete(group.stage):
            group.stage += 1
            if group.stage < nodes:
                parked, group.parked[group.stage] = group.parked[group.stage], []
                self._accept(group, parked)

    async def _dispatch_loop(self) -> None:
        # A submission slot is acquired *before* choosing the task it will carry: while we wait
        # for it, better tasks (a finished cell's downstream) may arrive and must go first.
        inline_burst = burst = 0
        token: object | None = None
        while True:
            lane = self._best_lane()
            if lane is None:
                if token is not None:
                    self._submission.release_on_behalf_of(token)
                    token = None
                inline_burst = burst = 0
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                continue
            if trio.current_effective_deadline() == -math.inf:
                # The run is being stopped, and this loop was woken normally in the same step:
                # row groups with nothing running may already have closed their nurseries.
                await trio.lowlevel.checkpoint()  # raises Cancelled
            *_, group, task = lane.ready[0]
            if group.nursery is None:  # the row group is gone
                heapq.heappop(lane.ready)
                continue
            if not group.tracker.is_needed(task):  # its rows were dropped meanwhile
                heapq.heappop(lane.ready)
                group.outstanding -= 1
                if self._tracer is not None:
                    self._close_span(group, task, "skipped")
                self._check_quiet(group)
                continue
            node = self._graph.nodes[task.node]
            generator = node.generator
            if _runs_inline(generator, task):
                heapq.heappop(lane.ready)
                if self._tracer is not None:
                    self._mark(group, task, "dispatched", "slot")
                self._finish(group, task, self._call_inline(group, node, task))
                inline_burst += 1
                if inline_burst >= _INLINE_BURST:
                    inline_burst = 0
                    await trio.sleep(0)
                continue
            if token is None:
                token = object()
                try:
                    self._submission.acquire_on_behalf_of_nowait(token)
                except trio.WouldBlock:
                    await self._submission.acquire_on_behalf_of(token)
                    continue  # look again: the best task may have changed while we waited
                finally:
                    self._peak_submitted = max(
                        self._peak_submitted, self._submission.borrowed_tokens
                    )
            heapq.heappop(lane.ready)
            if self._tracer is not None:
                self._mark(group, task, "dispatched")
            assert group.nursery is not None
            lane.running += 1
            group.nursery.start_soon(self._run_task, group, node, task, token)
            token = None
            # Start a burst of tasks without a trip through the event loop for each, but let
            # the loop run between bursts.
            burst += 1
            if burst >= _DISPATCH_BURST:
                burst = 0
                await trio.sleep(0)

    # ------------------------------------------------------------------ tasks

    @staticmethod
    def _mark(group: _RowGroup, task: Task, *moments: str) -> None:
        """Tracing: the task reached ``moments`` (span attribute names) now."""
        span = group.spans.get(task)
        if span is not None:
            now = trio.current_time()
            for moment in moments:
                setattr(span, moment, now)

    def _context(self, group: _RowGroup, node: Node, task: Task) -> CellContext | BatchContext:
        first = group.spec.first_row_id
        if isinstance(task, CellTask):
            return CellContext(
                row={col: group.columns[col][task.row] for col in node.inputs},
                row_id=first + task.row,
                column=node.name,
                seed=self._seed,
                models=self._models,
            )
        rows = task.rows
        return BatchContext(
            row_ids=[first + r for r in rows],
            columns={col: [group.columns[col][r] for r in rows] for col in node.inputs},
            row_group=group.spec.index,
            column=node.name,
            seed=self._seed,
            group_row_ids=range(first, first + group.spec.num_rows),
            models=self._models,
        )

    def _call_inline(self, group: _RowGroup, node: Node, task: Task) -> Any:
        try:
            return node.generator.generate(self._context(group, node, task))
        except Exception as exc:
            return RowFailure(exc)

    async def _run_task(self, group: _RowGroup, node: Node, task: Task, token: object) -> None:
        generator = node.generator
        slot = self._submission
        outcome: Any = _SKIPPED
        deadline = group.deadline if group.salvaging and task in group.salvaging else math.inf
        try:
            with trio.move_on_at(deadline) as scope:
                if generator.model_bound:
                    try:
                        self._llm_wait.acquire_on_behalf_of_nowait(token)
                    except trio.WouldBlock:
                        await self._llm_wait.acquire_on_behalf_of(token)
                    self._submission.release_on_behalf_of(token)
                    slot = self._llm_wait
                    self._peak_llm = max(self._peak_llm, self._llm_wait.borrowed_tokens)
                    if not group.tracker.is_needed(task):  # dropped while waiting: skip the call
                        return
                if self._tracer is None:
                    outcome = await self._invoke(generator, self._context(group, node, task))
                else:
                    outcome = await self._traced_invoke(group, node, task)
            if scope.cancelled_caught:
                outcome = RowFailure(
                    SalvageTimeout(
                        f"column {node.name!r}: not finished within the salvage round's "
                        f"{self._salvage_seconds:g} s"
                    )
                )
        finally:
            slot.release_on_behalf_of(token)
            lane = self._node_lane[task.node]
            lane.running -= 1
            if lane.ready and lane.running + 1 >= lane.cap:  # the lane has room again
                self._wakeup.set()
            if outcome is _SKIPPED:
                group.outstanding -= 1
                if self._tracer is not None:
                    self._close_span(group, task, "skipped")
                self._check_quiet(group)
        self._finish(group, task, outcome)

    async def _traced_invoke(self, group: _RowGroup, node: Node, task: Task) -> Any:
        self._mark(group, task, "slot")
        token = CURRENT_SPAN.set(group.spans.get(task))
        try:
            return await self._invoke(node.generator, self._context(group, node, task))
        finally:
            CURRENT_SPAN.reset(token)

    async def _invoke(self, generator: ColumnGenerator, ctx: CellContext | BatchContext) -> Any:
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

    # ------------------------------------------------------------------ outcomes

    def _finish(self, group: _RowGroup, task: Task, outcome: Any) -> None:
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
            self._cells_salvaged += len(rows)
        status, error = "ok", ""
        if isinstance(outcome, RowFailure):
            error = type(outcome.error).__name__
            if is_retryable(outcome.error):
                status = "retry" if self._retry(group, task, outcome.error) else "salvage"
            else:
                status = "failed"
                self._fail_rows(group, node, rows, outcome.error, ready)
        else:
            try:
                self._store_values(group, node, task, outcome, ready)
            except GenerationError as exc:
                status, error = "failed", type(exc).__name__
                self._fail_rows(group, node, rows, exc, ready)
        if self._tracer is not None:
            self._close_span(group, task, status, error)
        if self._column_mode:
            self._advance_stage(group)
        self._accept(group, ready)
        self._check_quiet(group)

    def _check_quiet(self, group: _RowGroup) -> None:
        """Wake the row group when it is finished, or has nothing left but salvage."""
        if group.outstanding == 0 or group.tracker.finished:
            group.done.set()

    def _retry(
        self, group: _RowGroup, task: Task, error: Exception, *, origin: Task | None = None
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
        self._retries += 1
        delay = min(self._backoff_max, self._backoff * 2.0 ** (attempts - 1))
        delay *= 0.5 + 0.5 * self._jitter.random()  # equal jitter: spread, never near zero
        if isinstance(error, RateLimited | ProviderUnavailable) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self._backoff_max))
        group.outstanding += 1
        self._deferred += 1
        assert group.nursery is not None
        group.nursery.start_soon(self._retry_later, group, task, delay)
        return True

    async def _retry_later(self, group: _RowGroup, task: Task, delay: float) -> None:
        try:
            await trio.sleep(delay)
        finally:
            self._deferred -= 1
        group.outstanding -= 1
        self._accept(group, [task])
        self._check_quiet(group)

    def _fail_rows(
        self,
        group: _RowGroup,
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
        for row in rows:
            if tracker.is_dropped(row):
                continue
            group.failed[node.index] += 1
            self._cells_failed += 1
            self._node_failed[node.index] += 1
            self._rows_dropped += 1
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
        self, group: _RowGroup, node: Node, task: Task, value: Any, ready: list[Task]
    ) -> None:
        """Write a successful result into the row group; raises GenerationError on a bad shape
        before anything is written."""
        tracker = group.tracker
        outputs = node.outputs
        if isinstance(task, CellTask):
            if tracker.is_dropped(task.row):
                return
            mapping = {outputs[0]: value} if _returns_value(node) else _as_mapping(node, value)
            failure = next((v for v in mapping.values() if isinstance(v, RowFailure)), None)
            if failure is not None:
                if is_retryable(failure.error):
                    self._retry(group, task, failure.error)
                else:
                    self._fail_rows(group, node, [task.row], failure.error, ready)
                return
            for col in outputs:
                group.columns[col][task.row] = mapping[col]
            self._cells_done += 1
            self._node_done[task.node] += 1
            if self._health is not None:
                self._health.record_success(node.name, group.spec.first_row_id + task.row)
            ready.extend(tracker.complete_cell(task.node, task.row))
            return
        rows = task.rows
        per_column = {outputs[0]: value} if _returns_value(node) else dict(_as_mapping(node, value))
        for col in outputs:
            values = per_column[col]
            if not isinstance(values, Sequence) or isinstance(values, str | bytes):
                raise GenerationError(
                    f"column {node.name!r}: batch generator returned "
                    f"{type(values).__name__}, expected a list of {len(rows)} values"
                )
            if len(values) != len(rows):
                raise GenerationError(
                    f"column {node.name!r}: batch generator returned {len(values)} values "
                    f"for {len(rows)} rows"
                )
        columns = [(group.columns[col], per_column[col]) for col in outputs]
        again: list[int] = []
        error: Exception | None = None
        stored: list[int] = []
        failed: list[tuple[int, Exception]] = []
        for i, row in enumerate(rows):
            if tracker.is_dropped(row):
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
        self._cells_done += len(stored)
        self._node_done[task.node] += len(stored)
        if self._health is not None and stored:
            first = group.spec.first_row_id
            self._health.record_successes(node.name, [first + row for row in stored])
        for row, failure_error in failed:
            self._fail_rows(group, node, [row], failure_error, ready)
        if error is None:
            ready.extend(tracker.complete_batch(task.node, rows))
            return
        # Only the rows that may pass are tried again, as a batch of their own.
        retry = BatchTask(node=task.node, rows=tuple(again))
        ready.extend(tracker.complete_batch(task.node, [r for r in rows if r not in set(again)]))
        self._retry(group, retry, error, origin=task)


def _returns_value(node: Node) -> bool:
    """Whether ``node``'s generator returns its value itself: it fills one column, named as
    the node. Any other (several outputs, or outputs named apart from the node, like a seed
    dataset's columns, even just one) returns a mapping from output column to value."""
    return node.outputs == (node.name,)


def _as_mapping(node: Node, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or set(value) != set(node.outputs):
        raise GenerationError(
            f"column {node.name!r}: generator must return a mapping with keys "
            f"{sorted(node.outputs)}, got {type(value).__name__}"
        )
    return value
