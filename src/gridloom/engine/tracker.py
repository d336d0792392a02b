"""The completion tracker: which cells of one row group are done, dropped, or ready.

A pure class — no trio, no clock, no I/O — driven by explicit calls, so hypothesis can test it
exhaustively. The scheduler asks it what is ready and tells it what finished.

Rules:

* A **cell** task ``(node, row)`` is ready once every upstream node is done for that row.
* A **batch** task ``(node, rows)`` is ready once every upstream node is *complete*: done for
  every live row. It covers the rows live at that moment.
* A node is *complete* when it is done for every live row (dropped rows no longer count).
* Dropping a row removes its pending cells; cells of that row still running are ignored when
  they finish. Each task is issued exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .._attrs import frozen
from ..generators.base import Granularity

__all__ = ["BatchTask", "CellTask", "CompletionTracker", "NodeShape", "Task", "TrackerStatistics"]


class NodeShape(Protocol):
    """What the tracker needs of a graph node."""

    @property
    def upstream(self) -> tuple[int, ...]: ...

    @property
    def downstream(self) -> tuple[int, ...]: ...

    @property
    def granularity(self) -> Granularity: ...


@frozen(slots=True, eq=True)  # attrs' compiled __eq__ and __hash__: a task keys dicts per cell
class CellTask:
    """Compute ``node`` for one ``row`` (row index within the row group)."""

    node: int
    row: int


@frozen(slots=True, eq=True)  # as CellTask
class BatchTask:
    """Compute ``node`` for the live ``rows`` of the row group, in one call."""

    node: int
    rows: tuple[int, ...]


Task = CellTask | BatchTask


@frozen(kw_only=True)
class TrackerStatistics:
    """A snapshot of one row group's progress."""

    num_rows: int
    live_rows: int
    complete_nodes: int
    num_nodes: int
    cells_done: int


class CompletionTracker:
    """Progress of one row group through the graph.

    Args:
        nodes: the graph's nodes in topological order (``nodes[i]`` has index ``i``).
        num_rows: rows in the row group.
    """

    def __init__(self, nodes: Sequence[NodeShape], num_rows: int):
        if num_rows < 1:
            raise ValueError("a row group has at least one row")
        self._nodes = nodes
        self._n = num_rows
        self._cell = [node.granularity == "cell" for node in nodes]
        # Cell nodes: per row, how many upstream nodes are not yet done for that row.
        self._pending: list[list[int]] = [
            [len(node.upstream)] * num_rows if is_cell else []
            for node, is_cell in zip(nodes, self._cell, strict=True)
        ]
        # Batch nodes: how many upstream nodes are not yet complete.
        self._waiting = [len(node.upstream) for node in nodes]
        self._done = [bytearray(num_rows) for _ in nodes]
        # Per node, live rows for which it is not done yet; 0 means complete.
        self._outstanding = [num_rows] * len(nodes)
        self._complete = [False] * len(nodes)
        self._issued_batch = [False] * len(nodes)
        self._dropped = bytearray(num_rows)
        self._live = num_rows
        self._complete_count = 0
        self._cells_done = 0
        self._started = False

    # ------------------------------------------------------------------ queries

    @property
    def num_rows(self) -> int:
        return self._n

    @property
    def finished(self) -> bool:
        """True when every node is complete (every live row has every column)."""
        return self._complete_count == len(self._nodes)

    def is_dropped(self, row: int) -> bool:
        return bool(self._dropped[row])

    def is_done(self, node: int, row: int) -> bool:
        return bool(self._done[node][row])

    def is_complete(self, node: int) -> bool:
        return self._complete[node]

    def live_rows(self) -> list[int]:
        """Rows not dropped, ascending."""
        return [r for r in range(self._n) if not self._dropped[r]]

    def is_needed(self, task: Task) -> bool:
        """False when a task issued earlier has become pointless (its row or rows dropped)."""
        if isinstance(task, CellTask):
            return not self._dropped[task.row]
        return not self._complete[task.node]

    def statistics(self) -> TrackerStatistics:
        return TrackerStatistics(
            num_rows=self._n,
            live_rows=self._live,
            complete_nodes=self._complete_count,
            num_nodes=len(self._nodes),
            cells_done=self._cells_done,
        )

    # ------------------------------------------------------------------ transitions

    def start(self) -> list[Task]:
        """The tasks ready before anything has run (nodes without upstream). Call once."""
        if self._started:
            raise RuntimeError("start() was already called")
        self._started = True
        ready: list[Task] = []
        for index, node in enumerate(self._nodes):
            if node.upstream:
                continue
            if self._cell[index]:
                ready.extend(CellTask(index, r) for r in range(self._n))
            else:
                self._issued_batch[index] = True
                ready.append(BatchTask(index, tuple(range(self._n))))
        return ready

    def complete_cell(self, node: int, row: int) -> list[Task]:
        """``node`` succeeded for ``row``; returns the tasks this made ready."""
        if not self._cell[node]:
            raise ValueError(f"node {node} is a batch node")
        if self._dropped[row]:
            return []
        if self._done[node][row]:
            raise RuntimeError(f"cell (node {node}, row {row}) completed twice")
        ready: list[Task] = []
        self._mark_done(node, row, ready)
        return ready

    def complete_batch(self, node: int, rows: Sequence[int]) -> list[Task]:
        """``node`` succeeded for ``rows`` (those of its task); returns newly ready tasks."""
        if self._cell[node]:
            raise ValueError(f"node {node} is a cell node")
        ready: list[Task] = []
        for row in rows:
            if not self._dropped[row] and not self._done[node][row]:
                self._mark_done(node, row, ready)
        return ready

    def drop_row(self, row: int) -> list[Task]:
        """Drop ``row``: none of its pending cells will be issued. Returns batch tasks that no
        longer wait for this row. Dropping a dropped row is a no-op."""
        if self._dropped[row]:
            return []
        self._dropped[row] = 1
        self._live -= 1
        # Two passes: every node stops waiting for the row before any completion is acted on,
        # so a batch node downstream is never issued for rows it no longer has.
        emptied = []
        for node in range(len(self._nodes)):
            if not self._done[node][row]:
                self._outstanding[node] -= 1
                if self._outstanding[node] == 0:
                    emptied.append(node)
        ready: list[Task] = []
        for node in emptied:
            self._mark_complete(node, ready)
        return ready

    # ------------------------------------------------------------------ internals

    def _mark_done(self, node: int, row: int, ready: list[Task]) -> None:
        self._done[node][row] = 1
        self._cells_done += 1
        for d in self._nodes[node].downstream:
            if self._cell[d]:
                pending = self._pending[d]
                pending[row] -= 1
                if pending[row] == 0:
                    ready.append(CellTask(d, row))
        self._outstanding[node] -= 1
        if self._outstanding[node] == 0:
            self._mark_complete(node, ready)

    def _mark_complete(self, node: int, ready: list[Task]) -> None:
        if self._complete[node]:
            return
        self._complete[node] = True
        self._complete_count += 1
        for d in self._nodes[node].downstream:
            if self._cell[d]:
                continue
            self._waiting[d] -= 1
            if self._waiting[d] == 0 and self._outstanding[d] > 0 and not self._issued_batch[d]:
                self._issued_batch[d] = True
                ready.append(BatchTask(d, tuple(self.live_rows())))
