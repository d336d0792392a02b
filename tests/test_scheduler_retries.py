"""Property and exact tests of deferral, salvage and drops, in thread-aware virtual time.

Failure scripts say, per (column, row), how many attempts fail with an error that may pass
(a 503) before one succeeds, and which cells fail for good. The scheduler must try each cell
``max_cell_attempts`` times with backoff, then ``salvage_rounds`` more times once its row group
is otherwise done, and only then drop the row.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.config import RunConfig

from .scheduling import NodeSpec
from .test_scheduler_properties import dags, execute, peak

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    specs=dags(max_nodes=5, min_duration=1),
    num_records=st.integers(1, 16),
    row_group_size=st.integers(1, 8),
    limits=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)),
    budget=st.tuples(st.integers(1, 3), st.integers(0, 2)),
    column_mode=st.booleans(),
    data=st.data(),
)
def test_every_row_completes_or_is_dropped_with_a_reason(
    specs: list[NodeSpec],
    num_records: int,
    row_group_size: int,
    limits: tuple[int, int, int, int],
    budget: tuple[int, int],
    column_mode: bool,
    data: st.DataObject,
) -> None:
    """Transient failures are retried (backoff, then salvage); a row is dropped only when a
    cell fails for good or outlasts every attempt; nothing downstream of a dropped row runs;
    each live cell succeeds exactly once; limits hold."""
    attempts, rounds = budget
    cells = st.tuples(st.integers(0, len(specs) - 1), st.integers(0, num_records - 1))
    transient = data.draw(
        st.dictionaries(cells, st.integers(1, attempts + rounds + 1), max_size=8), "transient"
    )
    failures = data.draw(st.frozensets(cells, max_size=2), "failures")
    groups, submitted, llm, threads = limits
    run = RunConfig(
        row_group_size=row_group_size,
        max_row_groups_in_flight=groups,
        max_submitted_tasks=submitted,
        max_llm_wait_tasks=llm,
        max_worker_threads=threads,
        scheduling="column" if column_mode else "cell",
        max_cell_attempts=attempts,
        salvage_rounds=rounds,
        retry_backoff_seconds=1.0,
        retry_backoff_max_seconds=4.0,
    )
    outcome = execute(
        specs, num_records=num_records, run=run, failures=failures, transient=transient
    )
    recorder = outcome.recorder
    assert recorder.problems == []
    calls = recorder.calls
    assert all(c.end >= c.start for c in calls)
    tries = attempts + rounds

    # Which rows must be dropped, and why.
    permanent = {r for c in calls if c.failed for r in c.row_ids}
    exhausted = {r for (_, r), k in transient.items() if k >= tries}
    dropped = permanent | exhausted
    drops = outcome.store.inner.read_dropped().to_pylist()
    assert sorted(d["row_id"] for d in drops) == sorted(dropped)
    for d in drops:
        if d["row_id"] not in permanent:
            assert d["error_type"] == "ProviderUnavailable"
            assert f"gave up after {tries} attempts" in d["message"], d

    # Each cell is tried at most `tries` times; a transient cell that should pass is tried
    # exactly k + 1 times (k failures, then the success); failed attempts match the script.
    flaky_attempts = Counter((c.node, r) for c in calls for r in c.transient)
    for (node, row), k in transient.items():
        assert flaky_attempts[(node, row)] <= min(k, tries)
        if row not in dropped:
            assert flaky_attempts[(node, row)] == k
    assert set(flaky_attempts) <= set(transient)

    # Successful runs: exactly once per live cell, after its row's upstream succeeded; none
    # downstream of a cell that failed for good or gave up.
    ends: dict[tuple[int, int], float] = {}
    successes: Counter[tuple[int, int]] = Counter()
    for c in calls:
        if c.failed:
            continue
        for r in c.row_ids:
            if r not in c.transient:
                ends[(c.node, r)] = c.end
                successes[(c.node, r)] += 1
    assert max(successes.values(), default=1) == 1
    for c in calls:
        for r in c.row_ids:
            for u in specs[c.node].upstream:
                assert (u, r) in ends, f"node {c.node} row {r} ran without upstream {u}"
                assert ends[(u, r)] <= c.start
    for r in range(num_records):
        if r not in dropped:
            assert all((i, r) in ends for i in range(len(specs))), f"live row {r} incomplete"

    # Limits, as the plain property test checks them.
    local = [
        (c.start, c.end) for c in calls if not c.model_bound and specs[c.node].mode != "inline"
    ]
    assert peak(local) <= run.max_submitted_tasks
    assert peak([(c.start, c.end) for c in calls if c.model_bound]) <= run.max_llm_wait_tasks
    stats = outcome.stats
    assert stats.peak_row_groups_in_flight <= run.max_row_groups_in_flight  # type: ignore[attr-defined]
    written = sorted(index for _, index in outcome.store.writes)
    assert written == list(range(len(range(0, num_records, row_group_size))))

    # Output: the live rows in order, with their values.
    table = outcome.store.inner.read_table()
    kept = [r for r in range(num_records) if r not in dropped]
    assert table.num_rows == len(kept)
    assert stats.cells_deferred == 0  # type: ignore[attr-defined]


def chain(length: int, duration: int = 1) -> list[NodeSpec]:
    return [
        NodeSpec(
            upstream=(i - 1,) if i else (),
            granularity="cell",
            mode="async",
            model_bound=True,
            durations=(duration,),
        )
        for i in range(length)
    ]


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    """A cell failing 4 times waits 1, 2, 4 and 4 (capped) seconds, each times a jitter in
    [0.5, 1), between its attempts; the other row is never held up."""
    run = RunConfig(
        row_group_size=2,
        max_cell_attempts=10,
        retry_backoff_seconds=1.0,
        retry_backoff_max_seconds=4.0,
    )
    outcome = execute(chain(1, duration=1), num_records=2, run=run, transient={(0, 0): 4})
    starts = [c.start for c in outcome.recorder.calls if c.row_ids == (0,)]
    assert len(starts) == 5
    gaps = [b - a - 1 for a, b in itertools.pairwise(starts)]  # minus the duration
    for gap, nominal in zip(gaps, [1, 2, 4, 4], strict=True):
        assert nominal * 0.5 <= gap < nominal
    other = [c for c in outcome.recorder.calls if c.row_ids == (1,)]
    assert [(c.start, c.end) for c in other] == [(0, 1)]
    assert outcome.stats.retries == 4  # type: ignore[attr-defined]


def test_salvage_rounds_run_when_the_group_is_otherwise_done() -> None:
    """Out of attempts, a cell waits until its row group has nothing else to do, then gets one
    attempt per salvage round (after a pause of the backoff cap), and its row completes."""
    run = RunConfig(
        row_group_size=4,
        max_cell_attempts=1,
        salvage_rounds=2,
        retry_backoff_seconds=1.0,
        retry_backoff_max_seconds=3.0,
    )
    # Row 0 fails twice; rows 1-3 take 10 s each, so the group is busy until t = 10.
    specs = [
        NodeSpec(
            upstream=(),
            granularity="cell",
            mode="async",
            model_bound=True,
            durations=(1, 10, 10, 10),
        )
    ]
    outcome = execute(specs, num_records=4, run=run, transient={(0, 0): 2})
    starts = [c.start for c in outcome.recorder.calls if c.row_ids == (0,)]
    assert starts == [0, 13, 17]  # quiet at 10 (+3 pause); round 1 fails at 14 (+3 pause)
    assert outcome.store.inner.read_table().num_rows == 4
    assert outcome.stats.salvage_rounds == 2  # type: ignore[attr-defined]
    assert outcome.stats.cells_salvaged == 1  # type: ignore[attr-defined]


def test_salvage_of_one_row_group_does_not_wait_for_others() -> None:
    """Row group 0's salvage round starts as soon as group 0 is quiet, while group 1 works."""
    run = RunConfig(
        row_group_size=1,
        max_row_groups_in_flight=2,
        max_cell_attempts=1,
        salvage_rounds=1,
        retry_backoff_max_seconds=2.0,
    )
    specs = [
        NodeSpec(upstream=(), granularity="cell", mode="async", model_bound=True, durations=(1, 50))
    ]
    outcome = execute(specs, num_records=2, run=run, transient={(0, 0): 1})
    written = {index: t for t, index in outcome.store.writes}
    assert written[0] == 4  # fails at 1, pause 2, retried 3..4
    assert written[1] == 50


def test_a_hung_salvage_cell_is_cut_at_the_round_deadline() -> None:
    """A cell re-run in a salvage round that outlasts the round is cancelled and, with no
    rounds left, its row is dropped as a SalvageTimeout."""
    run = RunConfig(
        row_group_size=1,
        max_cell_attempts=1,
        salvage_rounds=1,
        salvage_round_seconds=5.0,
        retry_backoff_max_seconds=1.0,
    )
    # The first attempt fails at t=1; the salvage attempt (t=2) would take 100 s.
    specs = [
        NodeSpec(upstream=(), granularity="cell", mode="async", model_bound=True, durations=(1,))
    ]
    outcome = execute(specs, num_records=1, run=run, transient={(0, 0): 1}, slow_retries=100)
    drops = outcome.store.inner.read_dropped().to_pylist()
    assert [(d["row_id"], d["error_type"]) for d in drops] == [(0, "SalvageTimeout")]
    assert max(t for t, _ in outcome.store.writes) == 7  # 2 + the 5 s deadline


@pytest.mark.parametrize("granularity", ["cell", "batch"])
def test_non_retryable_failures_drop_at_once(granularity: str) -> None:
    """A generator exception is final: one attempt, the row dropped, no retries."""
    specs = [NodeSpec(upstream=(), granularity=granularity, mode="async", durations=(1,))]
    run = RunConfig(row_group_size=3, max_cell_attempts=5)
    outcome = execute(specs, num_records=3, run=run, failures=frozenset({(0, 1)}))
    assert outcome.stats.retries == 0  # type: ignore[attr-defined]
    expected = [1] if granularity == "cell" else [0, 1, 2]
    assert sorted(outcome.store.inner.read_dropped().column("row_id").to_pylist()) == expected


def test_batch_retries_only_the_rows_that_failed() -> None:
    """A batch whose rows 1 and 3 fail with a 503 is re-run for those two rows only."""
    specs = [NodeSpec(upstream=(), granularity="batch", mode="async", durations=(1,))]
    run = RunConfig(row_group_size=5, max_cell_attempts=3, retry_backoff_seconds=1.0)
    outcome = execute(specs, num_records=5, run=run, transient={(0, 1): 1, (0, 3): 2})
    assert [c.row_ids for c in outcome.recorder.calls] == [(0, 1, 2, 3, 4), (1, 3), (3,)]
    assert outcome.store.inner.read_table().num_rows == 5


def test_statistics_count_cells_per_node() -> None:
    """statistics().nodes counts done and failed cells per node, in execution order."""
    specs = [
        NodeSpec(upstream=(), granularity="cell", mode="async", durations=(1,)),
        NodeSpec(upstream=(0,), granularity="batch", mode="async", durations=(1,)),
    ]
    run = RunConfig(row_group_size=4, max_cell_attempts=2, salvage_rounds=0)
    outcome = execute(
        specs, num_records=8, run=run, failures=frozenset({(0, 2)}), transient={(0, 5): 2}
    )
    nodes = outcome.stats.nodes  # type: ignore[attr-defined]
    assert [(n.name, n.done, n.failed) for n in nodes] == [("c0", 6, 2), ("c1", 6, 0)]
