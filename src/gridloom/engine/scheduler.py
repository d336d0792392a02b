"""The trio scheduler: fills the grid cell by cell, a few row groups at a time.

Shape of a run (DESIGN.md §4)::

    Scheduler.run()                      one nursery for the scheduler
    ├── dispatcher                       pops ready tasks, best first, as the submission
    │                                    limiter allows, and hands each to its row group
    └── row groups                       admitted by CapacityLimiter(max_row_groups_in_flight)
        └── row group N (own nursery)    its starter, which starts the group's cell/batch
                                         tasks there; when its tracker is finished the row
                                         group is written by the store, then released

The parts: the ready queue and its lanes (:mod:`._lanes`), the dispatcher and the tasks it
runs (:mod:`._dispatch`), a row group's state and its starter (:mod:`._rowgroup`), what becomes
of each task's outcome — stored values, dropped rows, retries, salvage rounds
(:mod:`._outcomes`) — and the counts behind :meth:`Scheduler.statistics` (:mod:`._stats`).
A task always starts in the nursery that owns it: the dispatcher never starts a task in a row
group's nursery, it hands the task to the group's starter, a task of that nursery.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Sized

import trio

from ..config import RunConfig
from ..generators.base import Models, Toolboxes
from ..storage import RowGroupData, RowGroupStore
from ..trace import TaskTracer
from ._dispatch import Dispatcher
from ._lanes import ReadyQueue
from ._outcomes import Outcomes
from ._rowgroup import RowGroup, RowGroupSpec
from ._stats import Counters, NodeProgress, SchedulerStatistics
from .generator_health import GeneratorHealth
from .graph import ExecutionGraph

__all__ = ["NodeProgress", "RowGroupSpec", "Scheduler", "SchedulerStatistics"]


class Scheduler:
    """Runs row groups of an :class:`ExecutionGraph` and hands each finished one to a store.

    Args:
        graph: the compiled pipeline.
        run: limits and scheduling mode.
        seed: the run seed every random stream derives from.
        store: receives each finished row group (``await store.write(...)``).
        models: the run's model handles by alias, handed to generators in their context.
        tools: the run's toolboxes by column, handed to that column's cells.
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
        models: Models | None = None,
        tools: Toolboxes | None = None,
        tracer: TaskTracer | None = None,
        health: GeneratorHealth | None = None,
    ):
        self._graph = graph
        self._store = store
        self._column_mode = run.scheduling == "column"
        self._encoders = {
            col: fn for node in graph.nodes for col, fn in node.generator.encoders.items()
        }
        self._health = health
        self._admission = trio.CapacityLimiter(run.max_row_groups_in_flight)
        self._counts = Counters(len(graph.nodes))
        self._queue = ReadyQueue(graph, column_mode=self._column_mode, tracer=tracer)
        self._outcomes = Outcomes(
            graph,
            run,
            seed=seed,
            queue=self._queue,
            counters=self._counts,
            health=health,
            tracer=tracer,
        )
        self._dispatcher = Dispatcher(
            graph,
            run,
            seed=seed,
            models=models or {},
            tools=tools,
            queue=self._queue,
            outcomes=self._outcomes,
            counters=self._counts,
            tracer=tracer,
        )

    def statistics(self) -> SchedulerStatistics:
        """A frozen snapshot of progress and limiter use."""
        counts = self._counts
        return SchedulerStatistics(
            row_groups_in_flight=counts.in_flight,
            row_groups_written=counts.written,
            tasks_submitted=self._dispatcher.submission.borrowed_tokens,
            tasks_waiting_on_model=self._dispatcher.llm_wait.borrowed_tokens,
            tasks_ready=self._queue.ready_count(),
            cells_done=counts.cells_done,
            cells_failed=counts.cells_failed,
            cells_skipped=counts.cells_skipped,
            rows_dropped=counts.rows_dropped,
            retries=counts.retries,
            cells_deferred=counts.deferred,
            salvage_rounds=counts.salvage_rounds,
            cells_salvaged=counts.cells_salvaged,
            rows_abandoned=counts.rows_abandoned,
            rows_failed_unwritten=counts.rows_failed_unwritten,
            nodes=tuple(
                NodeProgress(
                    name=node.name,
                    outputs=tuple(node.outputs),
                    done=counts.node_done[node.index],
                    failed=counts.node_failed[node.index],
                    skipped=counts.node_skipped[node.index],
                )
                for node in self._graph.nodes
            ),
            peak_row_groups_in_flight=counts.peak_groups,
            peak_tasks_submitted=counts.peak_submitted,
            peak_tasks_waiting_on_model=counts.peak_llm,
        )

    async def run(self, row_groups: Iterable[RowGroupSpec] | AsyncIterable[RowGroupSpec]) -> None:
        """Generate and store ``row_groups`` (in index order of admission); they are taken
        one at a time, as admission allows, so a plan may be lazy and of any length — or
        asynchronous (a shard of a sharded run pulls its row groups from the driver)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._dispatcher.run)
            async with trio.open_nursery() as groups:
                if isinstance(row_groups, AsyncIterable):
                    async for spec in row_groups:
                        await self._admit(groups, spec)
                else:
                    for spec in row_groups:
                        await self._admit(groups, spec)
            nursery.cancel_scope.cancel()

    async def _admit(self, groups: trio.Nursery, spec: RowGroupSpec) -> None:
        """Start ``spec``'s row group once admission allows."""
        if self._health is not None:
            self._health.watch_rows(spec.first_row_id, spec.num_rows)
        token = object()
        await self._admission.acquire_on_behalf_of(token)
        groups.start_soon(self._run_row_group, spec, token)

    async def _run_row_group(self, spec: RowGroupSpec, token: object) -> None:
        counts = self._counts
        counts.in_flight += 1
        counts.peak_groups = max(counts.peak_groups, counts.in_flight)
        written = False
        drops: Sized = ()
        try:
            group = RowGroup(spec, self._graph, self._column_mode)
            drops = group.drops  # its rows dropped so far (grows until the group closes)
            try:
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(group.start_tasks, nursery)
                        self._queue.accept(group, group.tracker.start())
                        await group.done.wait()
                        await self._outcomes.salvage(group)
                        group.stop_starting()
                finally:
                    self._close(group)  # tasks of it still queued are dropped
            except BaseException:
                # Stopped, or failed: a row group finished in that very step is still kept.
                if not group.tracker.finished:
                    raise
                await self._write(group.data(self._graph, self._encoders))
                written = True
                raise
            data = group.data(self._graph, self._encoders)
            del group
            await self._write(data)
            written = True
        finally:
            counts.in_flight -= 1
            if not written:  # the run stopped or failed while this group was in flight
                counts.rows_abandoned += spec.num_rows
                counts.rows_failed_unwritten += len(drops)
            self._admission.release_on_behalf_of(token)

    def _close(self, group: RowGroup) -> None:
        """The group's nursery has closed: give back what the tasks handed to it and never
        started were holding."""
        run_task = self._dispatcher.run_task
        for fn, args in group.close():
            if fn == run_task:
                self._dispatcher.discard(*args)
            else:
                self._outcomes.discard_retry(*args)

    async def _write(self, data: RowGroupData) -> None:
        """Hand a finished row group to the store; a stop arriving meanwhile waits for it (a
        local write), so a finished row group is never lost to a stop."""
        with trio.CancelScope(shield=True):
            await self._store.write(data)
        self._counts.written += 1
