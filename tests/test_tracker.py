"""The pure CompletionTracker, driven by hypothesis through random completion orders."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.engine import BatchTask, CellTask, CompletionTracker, Task


@attrs.frozen
class Shape:
    upstream: tuple[int, ...]
    downstream: tuple[int, ...]
    granularity: str


@st.composite
def shapes(draw: st.DrawFn) -> list[Shape]:
    count = draw(st.integers(1, 7))
    ups = [
        tuple(sorted(draw(st.sets(st.integers(0, i - 1), max_size=3)))) if i else ()
        for i in range(count)
    ]
    return [
        Shape(
            upstream=ups[i],
            downstream=tuple(j for j in range(count) if i in ups[j]),
            granularity=draw(st.sampled_from(["cell", "batch"])),
        )
        for i in range(count)
    ]


def chain(*granularities: str) -> list[Shape]:
    n = len(granularities)
    return [
        Shape(
            upstream=(i - 1,) if i else (),
            downstream=(i + 1,) if i + 1 < n else (),
            granularity=g,
        )
        for i, g in enumerate(granularities)
    ]


@settings(max_examples=300, deadline=None)
@given(nodes=shapes(), num_rows=st.integers(1, 12), data=st.data())
def test_random_completion_orders_keep_every_invariant(
    nodes: list[Shape], num_rows: int, data: st.DataObject
) -> None:
    """Tasks issue once, only when ready; drops stop downstream; the tracker always finishes."""
    tracker = CompletionTracker(nodes, num_rows)
    pending: list[Task] = list(tracker.start())
    issued: set[tuple[int, int]] = set()
    done: set[tuple[int, int]] = set()
    dropped: set[int] = set()

    def accept(tasks: list[Task]) -> None:
        for task in tasks:
            rows = [task.row] if isinstance(task, CellTask) else list(task.rows)
            for row in rows:
                key = (task.node, row)
                assert key not in issued, f"{key} issued twice"
                issued.add(key)
                assert row not in dropped, f"{key} issued for a dropped row"
                for u in nodes[task.node].upstream:
                    assert (u, row) in done, f"{key} issued before upstream {u}"
            if isinstance(task, BatchTask):
                assert list(task.rows) == sorted(set(range(num_rows)) - dropped)
                for u in nodes[task.node].upstream:
                    assert tracker.is_complete(u)
            pending.append(task)

    accept([])  # the start tasks are checked as they are issued below
    for task in list(pending):
        rows = [task.row] if isinstance(task, CellTask) else list(task.rows)
        issued.update((task.node, r) for r in rows)

    while pending:
        task = pending.pop(data.draw(st.integers(0, len(pending) - 1)))
        action = data.draw(st.sampled_from(["ok", "ok", "ok", "fail"]))
        if not tracker.is_needed(task):
            # The scheduler may still finish a task whose rows were dropped while it ran: the
            # tracker must ignore that result (issue nothing, count nothing).
            before = tracker.statistics()
            if isinstance(task, CellTask):
                assert tracker.complete_cell(task.node, task.row) == []
            else:
                assert tracker.complete_batch(task.node, task.rows) == []
            assert tracker.statistics() == before
            continue
        if action == "fail":
            rows = [task.row] if isinstance(task, CellTask) else list(task.rows)
            for row in rows:
                dropped.add(row)
                accept(tracker.drop_row(row))
            continue
        if isinstance(task, CellTask):
            done.add((task.node, task.row))
            accept(tracker.complete_cell(task.node, task.row))
        else:
            done.update((task.node, r) for r in task.rows if r not in dropped)
            accept(tracker.complete_batch(task.node, task.rows))

    assert tracker.finished
    live = set(range(num_rows)) - dropped
    assert set(tracker.live_rows()) == live
    for i in range(len(nodes)):
        for row in live:
            assert tracker.is_done(i, row)
    stats = tracker.statistics()
    assert stats.live_rows == len(live)
    assert stats.complete_nodes == stats.num_nodes == len(nodes)


def test_cell_completion_readies_only_that_rows_downstream() -> None:
    """Completing (node 0, row 1) of a cell chain readies exactly (node 1, row 1)."""
    tracker = CompletionTracker(chain("cell", "cell"), 3)
    assert tracker.start() == [CellTask(0, 0), CellTask(0, 1), CellTask(0, 2)]
    assert tracker.complete_cell(0, 1) == [CellTask(1, 1)]


def test_batch_completion_readies_every_live_row() -> None:
    """A batch node readies its cell downstream for every row except dropped ones."""
    tracker = CompletionTracker(chain("batch", "cell"), 4)
    assert tracker.start() == [BatchTask(0, (0, 1, 2, 3))]
    tracker.drop_row(2)
    ready = tracker.complete_batch(0, (0, 1, 2, 3))
    assert ready == [CellTask(1, 0), CellTask(1, 1), CellTask(1, 3)]


def test_batch_waits_for_all_live_rows_and_a_drop_can_release_it() -> None:
    """A batch after a cell column starts when the last live row is done or dropped."""
    tracker = CompletionTracker(chain("cell", "batch"), 3)
    tracker.start()
    assert tracker.complete_cell(0, 0) == []
    assert tracker.complete_cell(0, 2) == []
    assert tracker.drop_row(1) == [BatchTask(1, (0, 2))]
    assert not tracker.finished
    assert tracker.complete_batch(1, (0, 2)) == []
    assert tracker.finished


def test_drop_removes_pending_cells_and_ignores_late_results() -> None:
    """A dropped row issues nothing more; a result arriving after the drop is ignored."""
    tracker = CompletionTracker(chain("cell", "cell", "cell"), 2)
    tracker.start()
    tracker.complete_cell(0, 0)  # readies (1, 0)
    assert tracker.drop_row(0) == []
    assert not tracker.is_needed(CellTask(1, 0))
    assert tracker.complete_cell(1, 0) == []
    assert tracker.drop_row(0) == []


def test_completing_a_cell_twice_is_a_bug() -> None:
    """The tracker refuses a double completion instead of double counting."""
    tracker = CompletionTracker(chain("cell"), 1)
    tracker.start()
    tracker.complete_cell(0, 0)
    with pytest.raises(RuntimeError, match="twice"):
        tracker.complete_cell(0, 0)


def test_dropping_every_row_finishes_the_group() -> None:
    """When every row is dropped, every node is complete and nothing is issued."""
    tracker = CompletionTracker(chain("cell", "batch", "cell"), 2)
    tracker.start()
    assert tracker.drop_row(0) == []
    assert tracker.drop_row(1) == []
    assert tracker.finished
