"""Property tests of the trio scheduler on random DAGs, in thread-aware virtual time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.config import RunConfig
from gridloom.engine import RowGroupSpec, Scheduler
from gridloom.engine._lanes import LANE_DEPTH as _LANE_DEPTH
from gridloom.engine._skip import SkipCondition
from gridloom.storage import MemoryStore, RowGroupData

from .scheduling import (
    AsyncProbe,
    Call,
    NodeSpec,
    Recorder,
    build_graph,
    column_mode_makespan,
    critical_path_makespan,
    value_of,
)
from .vclock import run_virtual

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


#: Model lanes a generated model-bound node may wait in: none, or one of two models.
LANES = (None, ("a", 1), ("b", 3))


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 6, min_duration: int = 0) -> list[NodeSpec]:
    count = draw(st.integers(1, max_nodes))
    specs = []
    for i in range(count):
        upstream = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        mode = draw(st.sampled_from(["async", "async", "sync", "inline"]))
        model_bound = mode == "async" and draw(st.booleans())
        specs.append(
            NodeSpec(
                upstream=tuple(sorted(upstream)),
                granularity=draw(st.sampled_from(["cell", "cell", "batch"])),
                mode=mode,
                model_bound=model_bound,
                durations=tuple(
                    draw(st.lists(st.integers(min_duration, 5), min_size=1, max_size=6))
                ),
                lane=draw(st.sampled_from(LANES)) if model_bound else None,
            )
        )
    return specs


@attrs.define
class RecordingStore:
    """A MemoryStore that also records when each row group was written."""

    inner: MemoryStore
    writes: list[tuple[float, int]] = attrs.Factory(list)

    def completed(self) -> frozenset[int]:
        return self.inner.completed()

    async def write(self, data: RowGroupData) -> None:
        self.writes.append((trio.current_time(), data.index))
        await self.inner.write(data)


def plan(num_records: int, size: int) -> list[RowGroupSpec]:
    return [
        RowGroupSpec(index=i, first_row_id=s, num_rows=min(size, num_records - s))
        for i, s in enumerate(range(0, num_records, size))
    ]


@attrs.frozen
class Outcome:
    recorder: Recorder
    store: RecordingStore
    makespan: float
    stats: object


def execute(
    specs: Sequence[NodeSpec],
    *,
    num_records: int,
    run: RunConfig,
    failures: frozenset[tuple[int, int]] = frozenset(),
    transient: Mapping[tuple[int, int], int] | None = None,
    slow_retries: int | None = None,
) -> Outcome:
    recorder = Recorder()
    graph = build_graph(
        specs,
        recorder,
        failures=failures,
        row_group_size=run.row_group_size,
        transient=transient,
        slow_retries=slow_retries,
    )
    store = RecordingStore(MemoryStore(graph.schema))

    async def go() -> Outcome:
        scheduler = Scheduler(graph, run, seed=1, store=store)  # type: ignore[arg-type]
        start = trio.current_time()
        await scheduler.run(plan(num_records, run.row_group_size))
        return Outcome(recorder, store, trio.current_time() - start, scheduler.statistics())

    return run_virtual(go)


def peak(intervals: list[tuple[float, float]]) -> int:
    """Largest number of intervals open at once (an end at t comes before a start at t)."""
    events = sorted(
        [(s, 1) for s, e in intervals if e > s] + [(e, -1) for s, e in intervals if e > s],
        key=lambda ev: (ev[0], ev[1]),
    )
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def check_invariants(
    specs: Sequence[NodeSpec],
    outcome: Outcome,
    *,
    num_records: int,
    run: RunConfig,
    failures: frozenset[tuple[int, int]],
) -> None:
    recorder, store = outcome.recorder, outcome.store
    assert recorder.problems == []
    size = run.row_group_size
    calls: list[Call] = recorder.calls
    assert all(c.end >= c.start for c in calls), "every call finished"

    # No cell runs twice (and, checked below, every live row's cell runs exactly once); each
    # batch node runs at most once per row group.
    cell_runs = Counter(
        (c.node, r) for c in calls if specs[c.node].granularity == "cell" for r in c.row_ids
    )
    assert max(cell_runs.values(), default=1) == 1
    batch_runs = Counter(
        (c.node, c.row_group) for c in calls if specs[c.node].granularity == "batch"
    )
    assert max(batch_runs.values(), default=1) == 1

    # A failed call drops its rows (a failed batch all of them).
    dropped: set[int] = set()
    for c in calls:
        if c.failed:
            dropped |= set(c.row_ids)
    descendants: list[set[int]] = [set() for _ in specs]
    for i in reversed(range(len(specs))):
        for j in range(i + 1, len(specs)):
            if i in specs[j].upstream:
                descendants[i] |= {j} | descendants[j]

    # Never before the row's upstream cells; nothing downstream of a failure runs for its row.
    ends: dict[tuple[int, int], float] = {}
    for c in calls:
        if not c.failed:
            for r in c.row_ids:
                ends[(c.node, r)] = c.end
    for c in calls:
        for r in c.row_ids:
            for u in specs[c.node].upstream:
                assert (u, r) in ends, f"node {c.node} row {r} ran without upstream {u}"
                assert ends[(u, r)] <= c.start
    for f in (c for c in calls if c.failed):
        for c in calls:
            if c.node in descendants[f.node]:
                assert not set(c.row_ids) & set(f.row_ids), "downstream of a dropped row ran"
    for r in range(num_records):
        if r in dropped:
            continue
        for i in range(len(specs)):
            assert (i, r) in ends, f"live row {r} misses column c{i}"
            if specs[i].granularity == "cell":
                assert cell_runs[(i, r)] == 1, f"live cell (c{i}, {r}) ran {cell_runs[(i, r)]}x"

    # Limits: count the peaks from the recorded intervals and from the scheduler itself.
    local = [
        (c.start, c.end) for c in calls if not c.model_bound and specs[c.node].mode != "inline"
    ]
    model = [(c.start, c.end) for c in calls if c.model_bound]
    threads = [(c.start, c.end) for c in calls if specs[c.node].mode == "sync"]
    assert peak(local) <= run.max_submitted_tasks
    assert peak(model) <= run.max_llm_wait_tasks
    assert peak(threads) <= run.max_worker_threads
    stats = outcome.stats
    assert stats.peak_tasks_submitted <= run.max_submitted_tasks  # type: ignore[attr-defined]
    assert stats.peak_tasks_waiting_on_model <= run.max_llm_wait_tasks  # type: ignore[attr-defined]
    assert stats.peak_row_groups_in_flight <= run.max_row_groups_in_flight  # type: ignore[attr-defined]
    # A model's lane never has more than _LANE_DEPTH x its max_parallel_requests tasks out.
    for alias, parallel in {s.lane for s in specs if s.model_bound and s.lane is not None}:
        lane = [
            (c.start, c.end)
            for c in calls
            if c.model_bound and specs[c.node].lane == (alias, parallel)
        ]
        assert peak(lane) <= _LANE_DEPTH * parallel, f"lane {alias} over its cap"

    # Row groups alive (first call .. written) never exceed the admission limit.
    written = {index: t for t, index in store.writes}
    groups = len(range(0, num_records, size))
    assert sorted(written) == list(range(groups)), "every row group written once"
    alive = []
    for g in range(groups):
        starts = [c.start for c in calls if c.row_group == g]
        alive.append((min(starts, default=written[g]), written[g]))
    assert peak(alive) <= run.max_row_groups_in_flight

    # Output: complete rows, in row order, with the right values; drops recorded.
    table = store.inner.read_table()
    kept = [r for r in range(num_records) if r not in dropped]
    assert table.num_rows == len(kept)
    for i in range(len(specs)):
        assert table.column(f"c{i}").to_pylist() == [value_of(f"c{i}", r) for r in kept]
    drops = store.inner.read_dropped()
    assert sorted(drops.column("row_id").to_pylist()) == sorted(dropped)


@PROPERTY
@given(
    specs=dags(min_duration=1),
    num_records=st.integers(1, 30),
    row_group_size=st.integers(1, 12),
    limits=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 3)),
    column_mode=st.booleans(),
    data=st.data(),
)
def test_scheduler_invariants(
    specs: list[NodeSpec],
    num_records: int,
    row_group_size: int,
    limits: tuple[int, int, int, int],
    column_mode: bool,
    data: st.DataObject,
) -> None:
    """Each cell once, after its row's upstream; limits hold; rows complete or dropped, in order."""
    failures = data.draw(
        st.frozensets(
            st.tuples(st.integers(0, len(specs) - 1), st.integers(0, num_records - 1)),
            max_size=4,
        )
    )
    groups, submitted, llm, threads = limits
    run = RunConfig(
        row_group_size=row_group_size,
        max_row_groups_in_flight=groups,
        max_submitted_tasks=submitted,
        max_llm_wait_tasks=llm,
        max_worker_threads=threads,
        scheduling="column" if column_mode else "cell",
    )
    outcome = execute(specs, num_records=num_records, run=run, failures=failures)
    check_invariants(specs, outcome, num_records=num_records, run=run, failures=failures)


UNCAPPED = {
    "max_row_groups_in_flight": 1000,
    "max_submitted_tasks": 100_000,
    "max_llm_wait_tasks": 100_000,
    "max_worker_threads": 100_000,
}


@PROPERTY
@given(specs=dags(), num_records=st.integers(1, 24), row_group_size=st.integers(1, 10))
def test_uncapped_makespan_is_the_critical_path(
    specs: list[NodeSpec], num_records: int, row_group_size: int
) -> None:
    """With no caps, cell-level makespan equals the longest per-row critical path exactly."""
    specs = [attrs.evolve(spec, lane=None) for spec in specs]  # a model's lane is a cap too
    cell = execute(
        specs, num_records=num_records, run=RunConfig(row_group_size=row_group_size, **UNCAPPED)
    )
    column = execute(
        specs,
        num_records=num_records,
        run=RunConfig(row_group_size=row_group_size, scheduling="column", **UNCAPPED),
    )
    assert cell.makespan == critical_path_makespan(specs, num_records, row_group_size)
    assert column.makespan == column_mode_makespan(specs, num_records, row_group_size)
    assert cell.makespan <= column.makespan


def test_model_bound_tasks_hand_off_their_dispatch_slot() -> None:
    """With one submission slot, 50 model-bound cells still wait on the model concurrently."""
    specs = [
        NodeSpec(upstream=(), granularity="cell", mode="async", model_bound=True, durations=(10,))
    ]
    run = RunConfig(row_group_size=50, max_submitted_tasks=1, max_llm_wait_tasks=64)
    outcome = execute(specs, num_records=50, run=run)
    assert outcome.makespan == 10
    assert outcome.stats.peak_tasks_waiting_on_model == 50  # type: ignore[attr-defined]
    assert outcome.stats.peak_tasks_submitted == 1  # type: ignore[attr-defined]


def test_a_busy_model_does_not_starve_another() -> None:
    """Dual model: 3 generator columns on model A, a judge per generator on model B, each model
    serving 16 calls at once, 1 s each. 1,800 generator tasks are ready at the start, more than
    the LLM-wait slots; the judges must still reach model B as soon as their generator is done,
    so B trails A by one call: A needs 113 rounds (1,800 / 16), the last judges one more."""
    gen = {"lane": ("a", 16), "capacity": 16}
    judge = {"lane": ("b", 16), "capacity": 16}
    specs = [
        *(
            NodeSpec(upstream=(), granularity="cell", mode="async", model_bound=True, **gen)
            for _ in range(3)
        ),
        *(
            NodeSpec(upstream=(i,), granularity="cell", mode="async", model_bound=True, **judge)
            for i in range(3)
        ),
    ]
    run = RunConfig(row_group_size=600)
    assert run.max_llm_wait_tasks < 1800
    outcome = execute(specs, num_records=600, run=run)
    assert outcome.makespan == 114
    assert outcome.stats.peak_tasks_waiting_on_model <= 2 * _LANE_DEPTH * 16  # type: ignore[attr-defined]


def test_without_model_bound_one_slot_serialises() -> None:
    """The same cells, not model-bound, run one at a time through one submission slot."""
    specs = [NodeSpec(upstream=(), granularity="cell", mode="async", durations=(10,))]
    run = RunConfig(row_group_size=50, max_submitted_tasks=1)
    assert execute(specs, num_records=50, run=run).makespan == 500


@pytest.mark.parametrize("scheduling", ["cell", "column"])
def test_diagonal_fill_order(scheduling: str) -> None:
    """Cell mode finishes row 0's chain before the last row's first cell; column mode does not."""
    chain = [
        NodeSpec(upstream=(), granularity="cell", mode="async", durations=(1,)),
        NodeSpec(upstream=(0,), granularity="cell", mode="async", durations=(1,)),
        NodeSpec(upstream=(1,), granularity="cell", mode="async", durations=(1,)),
    ]
    run = RunConfig(row_group_size=20, max_submitted_tasks=4, scheduling=scheduling)
    outcome = execute(chain, num_records=20, run=run)
    calls = outcome.recorder.calls
    row0_done = max(c.end for c in calls if c.row_ids == (0,))
    last_first = max(c.start for c in calls if c.node == 0)
    if scheduling == "cell":
        assert row0_done <= last_first
        assert outcome.makespan == 15  # 60 cells / 4 slots, no idle slot
    else:
        assert row0_done > last_first
        assert outcome.makespan == 15


class _StoppingProbe(AsyncProbe):
    """Like AsyncProbe, and the call for row 1 stops the whole run as it ends (as the health
    monitor does from inside a model call)."""

    stop: trio.CancelScope

    async def agenerate(self, ctx: Any) -> Any:
        value = await super().agenerate(ctx)
        if ctx.row_id == 1:
            self.stop.cancel()
        return value


def test_a_run_stopped_while_tasks_wait_in_a_full_lane() -> None:
    """Rows 0 and 1 (one row group each) fill their model's lane of 2; rows 2 and 3 wait in it.
    At t=1 row 0's call ends (its lane has room: the dispatcher wakes) and row 1's call stops
    the run. Row groups 2 and 3 have nothing running, so their nurseries close at once; the
    dispatcher, woken normally in the same step, must not start their queued tasks in them."""
    spec = NodeSpec(upstream=(), granularity="cell", mode="async", model_bound=True, lane=("a", 1))
    for attempt in range(20):  # trio varies the order of tasks woken together
        recorder = Recorder()
        graph = build_graph([spec], recorder, row_group_size=1)
        node = graph.nodes[0]
        probe = _StoppingProbe(0, spec, recorder, frozenset(), 1)
        graph = attrs.evolve(graph, nodes=(attrs.evolve(node, generator=probe),))
        store = RecordingStore(MemoryStore(graph.schema))

        async def go(graph: Any = graph, probe: _StoppingProbe = probe, store: Any = store) -> None:
            scheduler = Scheduler(graph, RunConfig(row_group_size=1), seed=1, store=store)
            with trio.CancelScope() as probe.stop:
                await scheduler.run(plan(4, 1))

        run_virtual(go)
        # It ends cleanly (before the fix: "Nursery is closed to new arrivals"); calls that
        # started did so by the stop at t=1.
        assert all(c.start <= 1 for c in recorder.calls), attempt


@PROPERTY
@given(
    specs=dags(),
    num_records=st.integers(1, 24),
    row_group_size=st.integers(1, 10),
    limits=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)),
    column_mode=st.booleans(),
    data=st.data(),
)
def test_skipped_cells_never_run(
    specs: list[NodeSpec],
    num_records: int,
    row_group_size: int,
    limits: tuple[int, int, int, int],
    column_mode: bool,
    data: st.DataObject,
) -> None:
    """Sink nodes with a ``skip_when`` over an upstream value never run for the rows it
    holds for (a batch gets the other rows only), leave null there, count them as skipped,
    and run every other cell once; the limits still hold."""
    downstream = {u for spec in specs for u in spec.upstream}
    skips: dict[int, frozenset[int]] = {}
    conditions: dict[int, SkipCondition] = {}
    for i, spec in enumerate(specs):
        if i in downstream or not spec.upstream or not data.draw(st.booleans()):
            continue
        rows = data.draw(st.frozensets(st.integers(0, num_records - 1)))
        reader = data.draw(st.sampled_from(spec.upstream))
        values = ", ".join(repr(value_of(f"c{reader}", r)) for r in sorted(rows))
        heavy = data.draw(st.booleans())  # `* 1` makes it not simple: evaluated in a thread
        source = f"c{reader}{' * 1' if heavy else ''} in [{values}]"
        skips[i] = rows
        conditions[i] = SkipCondition(source, column=f"c{i}")
        assert conditions[i].simple is not heavy
    groups, submitted, llm, threads = limits
    run = RunConfig(
        row_group_size=row_group_size,
        max_row_groups_in_flight=groups,
        max_submitted_tasks=submitted,
        max_llm_wait_tasks=llm,
        max_worker_threads=threads,
        scheduling="column" if column_mode else "cell",
    )
    recorder = Recorder()
    graph = build_graph(specs, recorder, row_group_size=row_group_size)
    nodes = tuple(attrs.evolve(n, skip=conditions.get(n.index)) for n in graph.nodes)
    graph = attrs.evolve(graph, nodes=nodes)
    store = RecordingStore(MemoryStore(graph.schema))

    async def go() -> object:
        scheduler = Scheduler(graph, run, seed=1, store=store)  # type: ignore[arg-type]
        await scheduler.run(plan(num_records, row_group_size))
        return scheduler.statistics()

    stats = run_virtual(go)
    assert recorder.problems == []
    ran = Counter((c.node, r) for c in recorder.calls for r in c.row_ids)
    for i in range(len(specs)):
        skipped = skips.get(i, frozenset())
        expected = {(i, r): 1 for r in range(num_records) if r not in skipped}
        assert {k: v for k, v in ran.items() if k[0] == i} == expected
        column = store.inner.read_table().column(f"c{i}").to_pylist()
        assert column == [
            None if r in skipped else value_of(f"c{i}", r) for r in range(num_records)
        ]
        node = stats.nodes[i]  # type: ignore[attr-defined]
        assert (node.done, node.skipped, node.failed) == (
            num_records - len(skipped),
            len(skipped),
            0,
        )
    assert stats.peak_tasks_submitted <= run.max_submitted_tasks  # type: ignore[attr-defined]
    assert stats.peak_tasks_waiting_on_model <= run.max_llm_wait_tasks  # type: ignore[attr-defined]
