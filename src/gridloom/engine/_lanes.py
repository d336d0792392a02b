"""The ready queue: tasks whose inputs are done, waiting in one *lane* per model, best first.

Ready tasks are ordered by (row group, row, column): the oldest row group first, and within it a
row's next column before later rows' first columns, so rows complete early and completion flows
diagonally across the grid. They wait in lanes, one per model (a generator's ``model_lane``) and
one for everything else; a model's lane dispatches at most :data:`LANE_DEPTH` x its
``max_parallel_requests`` tasks at once, and the dispatcher takes the best task of the lanes
that have room. Without lanes, thousands of tasks queued for one busy model would fill the
LLM-wait slots, and a second model's tasks (a judge whose generator just finished) would wait
behind them in the limiter's queue while that model sat idle. In ``column`` scheduling (the
legacy baseline) a row group's tasks of later columns are *parked* until the column before is
complete.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from .._attrs import define
from ..generators import ColumnGenerator
from ..trace import TaskTracer
from ._rowgroup import RowGroup
from .graph import ExecutionGraph
from .tracker import BatchTask, CellTask, Task

__all__ = ["LANE_DEPTH", "Entry", "Lane", "ReadyQueue"]

#: A model's lane dispatches at most this many times its ``max_parallel_requests`` tasks at once:
#: enough to keep its requests in flight while the next ones render their prompts.
LANE_DEPTH = 2

#: A queued task: (row group, row, node, sequence) orders it; then its group and itself.
Entry = tuple[int, int, int, int, RowGroup, Task]


@define(eq=False)
class Lane:
    """Ready tasks that wait on one model (or on no model), best first."""

    cap: float  #: tasks of the lane dispatched and not finished, at most
    ready: list[Entry] = attrs.Factory(list)
    running: int = 0


class ReadyQueue:
    """The lanes of one scheduler, and the event that wakes its dispatcher.

    Args:
        graph: the compiled pipeline (a lane per model its generators wait on).
        column_mode: ``column`` scheduling: park tasks until their column's turn.
        tracer: opens a span for every task queued, when tracing.
    """

    def __init__(
        self, graph: ExecutionGraph, *, column_mode: bool, tracer: TaskTracer | None
    ) -> None:
        self._graph = graph
        self._column_mode = column_mode
        self._tracer = tracer
        self.lanes: dict[str | None, Lane] = {None: Lane(cap=math.inf)}
        #: The lane of each node's tasks.
        self.node_lane: list[Lane] = [self._lane(node.generator) for node in graph.nodes]
        self._seq = itertools.count()
        #: Set when a task is queued or a full lane gets room; the dispatcher renews it.
        self.wakeup = trio.Event()

    def _lane(self, generator: ColumnGenerator[Any]) -> Lane:
        """The lane of a node's tasks (created on first use)."""
        spec = generator.model_lane if generator.model_bound else None
        if spec is None:
            return self.lanes[None]
        alias, parallel = spec
        lane = self.lanes.get(alias)
        if lane is None:
            lane = self.lanes[alias] = Lane(cap=LANE_DEPTH * max(1, parallel))
        return lane

    def ready_count(self) -> int:
        """Tasks waiting in every lane."""
        return sum(len(lane.ready) for lane in self.lanes.values())

    def accept(self, group: RowGroup, tasks: Sequence[Task]) -> None:
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
                self.node_lane[task.node].ready,
                (group.spec.index, row, task.node, next(self._seq), group, task),
            )
        if tasks:
            self.wakeup.set()

    def advance_stage(self, group: RowGroup) -> None:
        """Column mode: once the running column is complete, release the next one's tasks."""
        tracker = group.tracker
        nodes = len(self._graph.nodes)
        while group.stage < nodes and tracker.is_complete(group.stage):
            group.stage += 1
            if group.stage < nodes:
                parked, group.parked[group.stage] = group.parked[group.stage], []
                self.accept(group, parked)

    def best_lane(self) -> Lane | None:
        """The lane whose best ready task comes first, among those with room."""
        best: Lane | None = None
        for lane in self.lanes.values():
            if (
                lane.ready
                and lane.running < lane.cap
                and (best is None or lane.ready[0][:4] < best.ready[0][:4])
            ):
                best = lane
        return best

    def task_done(self, node: int) -> None:
        """A dispatched task of ``node`` has ended: its lane has one more place."""
        lane = self.node_lane[node]
        lane.running -= 1
        if lane.ready and lane.running + 1 >= lane.cap:  # the lane has room again
            self.wakeup.set()

    def _open_span(self, group: RowGroup, task: Task) -> None:
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
