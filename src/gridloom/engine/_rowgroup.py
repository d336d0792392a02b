"""One admitted row group: its values, its bookkeeping, and the task that starts its tasks.

Each row group runs in a nursery of its own. Its tasks (cells, batches, and the sleeps before
retries) are started *in* that nursery by a task that runs there, the group's **starter**
(:meth:`RowGroup.start_tasks`): whoever has work for the group (the dispatcher, outside the
group; a finished task, inside it) hands it over with :meth:`RowGroup.hand`, and the starter
starts it. The queue between them holds no more than the tasks holding a submission slot plus
the retries due, so it stays bounded by the run's limits. A task therefore never lands in a
nursery that is closing: the starter runs until its group is closing and nothing it started
is still running, and once the nursery has closed the group refuses hand-overs
(:attr:`RowGroup.open`), returning what was never started (:meth:`RowGroup.close`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import trio

from .._attrs import frozen
from ..generators._corrections import REJECTED, CorrectionLog, TruncationLog
from ..storage import ColumnCounts, CorrectionCounts, DropRecord, RowGroupData
from ..trace import TaskSpan
from .graph import ExecutionGraph, Node
from .tracker import CompletionTracker, Task

__all__ = ["Handed", "RowGroup", "RowGroupSpec"]

#: A task handed to a row group's starter: the async function and its arguments.
Handed = tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]


@frozen(kw_only=True)
class RowGroupSpec:
    """A row group to generate: rows ``first_row_id .. first_row_id + num_rows - 1``."""

    index: int
    first_row_id: int
    num_rows: int


class RowGroup:
    """Mutable state of one admitted row group (owned by the scheduler)."""

    __slots__ = (
        "attempts",
        "closing",
        "columns",
        "deadline",
        "done",
        "drops",
        "failed",
        "open",
        "outstanding",
        "parked",
        "pending",
        "rounds",
        "running",
        "salvage",
        "salvaging",
        "skipped",
        "spans",
        "spec",
        "stage",
        "tracker",
        "wake",
    )

    def __init__(self, spec: RowGroupSpec, graph: ExecutionGraph, column_mode: bool):
        self.spec = spec
        self.tracker = CompletionTracker(graph.nodes, spec.num_rows)
        self.columns: dict[str, list[Any]] = {col: [None] * spec.num_rows for col in graph.columns}
        self.drops: list[DropRecord] = []
        self.failed = [0] * len(graph.nodes)
        # Per node with a skip_when, the rows whose condition held (their cells are null).
        self.skipped: dict[int, set[int]] = {}
        self.done = trio.Event()
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
        # The starter: tasks handed over and not started yet, its wake-up, how many of the
        # tasks it started are running, and whether the group is done with new work.
        self.open = True
        self.pending: deque[Handed] = deque()
        self.wake = trio.Event()
        self.running = 0
        self.closing = False

    def skip(self, node: int, row: int) -> None:
        """``node``'s cell of ``row`` was skipped (its ``skip_when`` held)."""
        self.skipped.setdefault(node, set()).add(row)

    # ------------------------------------------------------------------ the starter

    def hand(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Have the starter start ``fn(*args)`` in the group's nursery. ``fn`` must call
        :meth:`task_ended` when it ends. Only while :attr:`open`."""
        self.pending.append((fn, args))
        self.wake.set()

    async def start_tasks(self, nursery: trio.Nursery) -> None:
        """The starter: runs in the group's ``nursery`` and starts there every task handed to
        the group, until the group is closing (:meth:`stop_starting`) and none of the tasks
        it started is still running (one still running may yet hand over a retry)."""
        pending = self.pending
        while True:
            while pending:
                fn, args = pending.popleft()
                self.running += 1
                nursery.start_soon(fn, *args)
            if self.closing and not self.running:
                return
            await self.wake.wait()
            self.wake = trio.Event()

    def task_ended(self) -> None:
        """A task the starter started has ended."""
        self.running -= 1
        if self.closing and not self.running:
            self.wake.set()

    def stop_starting(self) -> None:
        """The group has no more work of its own: the starter ends once what it started has."""
        self.closing = True
        self.wake.set()

    def close(self) -> list[Handed]:
        """The group's nursery has closed: refuse further hand-overs; return the tasks handed
        over that were never started (a stop cancelled the starter)."""
        self.open = False
        left = list(self.pending)
        self.pending.clear()
        return left

    # ------------------------------------------------------------------ tracing

    def mark(self, task: Task, *moments: str) -> None:
        """Tracing: the task reached ``moments`` (span attribute names) now."""
        span = self.spans.get(task)
        if span is not None:
            now = trio.current_time()
            for moment in moments:
                setattr(span, moment, now)

    def close_span(self, task: Task, status: str, error: str = "") -> None:
        """Tracing: the task's attempt ended with ``status`` (and ``error``, a class name)."""
        span = self.spans.pop(task, None)
        if span is not None:
            span.completed = trio.current_time()
            span.status = status
            span.error = error

    # ------------------------------------------------------------------ the result

    def _counted_rows(
        self, graph: ExecutionGraph, ancestors: list[set[int]], node: int, live: list[int]
    ) -> set[int]:
        """The rows whose cell of ``node`` is counted by its outcome: those written, and
        the dropped ones where ``node`` is upstream of the column that failed."""
        rows = set(live)
        first = self.spec.first_row_id
        for drop in self.drops:
            culprit = graph.producer.get(drop.column)
            if culprit is not None and node in ancestors[culprit]:
                rows.add(drop.row_id - first)
        return rows

    def _corrections(self, node: Node, counted: set[int]) -> CorrectionCounts | None:
        """How the cells of ``node`` fared against its answer checks (a model column whose
        generator keeps a :class:`CorrectionLog`): a cell counts when its row is counted (see
        :meth:`_counted_rows`), or when its rejection dropped its row."""
        log = getattr(node.generator, "corrections", None)
        if not isinstance(log, CorrectionLog):
            return None
        first = self.spec.first_row_id
        taken = log.take(first, self.spec.num_rows)
        rejected_here = {d.row_id for d in self.drops if d.column == node.name}
        first_try, rejected = 0, 0
        corrected = [0] * log.limit
        for row_id, rounds in taken.items():
            if rounds == REJECTED:
                rejected += row_id in rejected_here
            elif row_id - first in counted and self.tracker.is_done(node.index, row_id - first):
                if rounds == 0:
                    first_try += 1
                elif rounds <= log.limit:
                    corrected[rounds - 1] += 1
        return CorrectionCounts(first_try=first_try, corrected=tuple(corrected), rejected=rejected)

    def _truncated(self, node: Node, counted: set[int]) -> dict[str, int]:
        """A model column's truncation counts (its :class:`TruncationLog`): the done cells of
        ``node`` in counted rows whose answer was kept truncated, the cells that failed for
        a cut answer, and the times cells were asked again for one."""
        log = getattr(node.generator, "truncations", None)
        if not isinstance(log, TruncationLog):
            return {}
        first = self.spec.first_row_id
        rows = log.take(first, self.spec.num_rows)
        kept = sum(
            r - first in counted and self.tracker.is_done(node.index, r - first) for r in rows
        )
        dropped = {
            d.row_id
            for d in self.drops
            if d.column == node.name and d.error_type == "AnswerTruncated"
        }
        # A row dropped for a cut answer was not asked again after its last one.
        failures = log.take_retries(first, self.spec.num_rows)
        retries = sum(n - (r in dropped) for r, n in failures.items())
        return {
            "truncated": kept,
            "truncated_dropped": len(dropped),
            "truncated_retries": retries,
        }

    def data(
        self, graph: ExecutionGraph, encoders: Mapping[str, Callable[[Any], Any]]
    ) -> RowGroupData:
        """The finished group as the store takes it: live rows, drops and counts."""
        tracker = self.tracker
        live = tracker.live_rows()
        first = self.spec.first_row_id
        counts: dict[str, ColumnCounts] = {}
        skipped_at: dict[str, set[int]] = {}
        ancestors: list[set[int]] = []
        for node in graph.nodes:  # topological order: upstream nodes come first
            ancestors.append(set().union(*([{u} | ancestors[u] for u in node.upstream] or [set()])))
        for node in graph.nodes:
            # A cell counts as done (or skipped) in a row written, or in a dropped row when
            # its column is upstream of the one that failed there: it had to run first. A
            # sibling's cell of a dropped row may or may not have run before the drop — a
            # race — so it counts as dropped either way, and counts never depend on timing.
            counted = self._counted_rows(graph, ancestors, node.index, live)
            skipped_rows = self.skipped.get(node.index, set())
            skipped = len(skipped_rows & counted)
            done = sum(tracker.is_done(node.index, r) for r in counted) - skipped
            failed = self.failed[node.index]
            node_counts = ColumnCounts(
                done=done,
                failed=failed,
                dropped=tracker.num_rows - done - failed - skipped,
                skipped=skipped,
                corrections=self._corrections(node, counted),
                **self._truncated(node, counted),
            )
            for col in node.outputs:
                counts[col] = node_counts
                # corrections and truncations: the column's own, not its side columns'
                node_counts = attrs.evolve(
                    node_counts,
                    corrections=None,
                    truncated=0,
                    truncated_dropped=0,
                    truncated_retries=0,
                )
                if skipped_rows:
                    skipped_at[col] = skipped_rows
        columns = {}
        for field in graph.schema:
            values = self.columns[field.name]
            encode = encoders.get(field.name)
            if encode is None:
                columns[field.name] = [values[r] for r in live]
                continue
            nulls = skipped_at.get(field.name, set())  # a skipped cell is null, not encoded
            columns[field.name] = [None if r in nulls else encode(values[r]) for r in live]
        return RowGroupData(
            index=self.spec.index,
            first_row_id=first,
            num_rows=self.spec.num_rows,
            row_ids=[first + r for r in live],
            columns=columns,
            drops=sorted(self.drops, key=lambda d: d.row_id),
            counts=counts,
        )
