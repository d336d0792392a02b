"""fill_to_target's top-up rounds: the same row groups whether or not the run was interrupted."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.run._plan import Outcome, TopUpRound, iter_row_groups, top_up_rounds
from gridloom.run._report import is_interrupt

# ---------------------------------------------------------------- the plan, simulated


def _commit(
    held: dict[int, Outcome], sizes: dict[int, int], spec: Any, dropped: frozenset[int]
) -> None:
    """Hold ``spec`` as a run would: its rows kept unless their row id is in ``dropped``."""
    rows = range(spec.first_row_id, spec.first_row_id + spec.num_rows)
    held[spec.index] = (spec.num_rows, sum(1 for row in rows if row not in dropped))
    sizes[spec.index] = spec.num_rows


def _uninterrupted(
    total: int, size: int, budget: float, dropped: frozenset[int]
) -> tuple[dict[int, Outcome], dict[int, int]]:
    """The row groups an uninterrupted run holds at its end, and the rows each covers."""
    held: dict[int, Outcome] = {}
    sizes: dict[int, int] = {}
    for spec in iter_row_groups(total, size):
        _commit(held, sizes, spec, dropped)
    for rnd in top_up_rounds(lambda: dict(held), total, size, budget):
        for spec in rnd.missing():
            _commit(held, sizes, spec, dropped)
    return held, sizes


def _drops(seed: int, rate: float, total: int, size: int, budget: float) -> frozenset[int]:
    """Row ids dropped, for every row id a run of this shape can reach."""
    reach = (-(-total // size) + int(budget * total) + 2) * size
    rng = random.Random(seed)
    return frozenset(row for row in range(reach) if rng.random() < rate)


shapes = st.tuples(
    st.integers(1, 60),  # num_records
    st.integers(1, 8),  # row_group_size
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 2.0]),  # fill_budget
    st.integers(0, 2**32),  # drop pattern
    st.sampled_from([0.0, 0.05, 0.2, 0.5, 0.9, 1.0]),  # drop rate
)


@settings(max_examples=300, deadline=None)
@given(shape=shapes, in_flight=st.integers(1, 4), data=st.data())
def test_any_interruption_leaves_the_uninterrupted_row_groups(
    shape: tuple[int, int, float, int, float], in_flight: int, data: st.DataObject
) -> None:
    """However often a fill_to_target run stops (any row groups committed that its in-flight
    limit allows: those admitted, but for at most ``in_flight`` still running), resuming it
    until it ends holds the row groups, with the rows each covers, of an uninterrupted run."""
    total, size, budget, seed, rate = shape
    dropped = _drops(seed, rate, total, size, budget)
    expected_held, expected_sizes = _uninterrupted(total, size, budget, dropped)
    held: dict[int, Outcome] = {}
    sizes: dict[int, int] = {}

    def some(batch: list[Any]) -> list[Any]:
        """The groups of ``batch`` committed when the run stopped running it."""
        admitted = data.draw(st.integers(0, len(batch)), label="admitted")
        running = data.draw(
            st.sets(st.integers(0, max(admitted - 1, 0)), max_size=min(in_flight, admitted)),
            label="still running",
        )
        return [spec for i, spec in enumerate(batch[:admitted]) if i not in running]

    stops = data.draw(st.integers(0, 6), label="stops")
    for invocation in range(stops + 1):
        last = invocation == stops
        batches: list[list[Any]] = [list(iter_row_groups(total, size, frozenset(held)))]
        rounds = top_up_rounds(lambda: dict(held), total, size, budget)
        stopped = False
        while True:
            batch = batches.pop() if batches else None
            if batch is None:
                rnd = next(rounds, None)
                if rnd is None:
                    break
                batch = list(rnd.missing())
                assert batch, "a round yielded has row groups to generate"
            if not last and data.draw(st.booleans(), label="stop in this batch"):
                for spec in some(batch):
                    _commit(held, sizes, spec, dropped)
                stopped = True
                break
            for spec in batch:
                _commit(held, sizes, spec, dropped)
        if not stopped:
            break
    assert sizes == expected_sizes
    assert held == expected_held


def test_a_resumed_round_generates_its_missing_groups_with_their_own_indices() -> None:
    """A store that holds a later group of a round but not an earlier one (the later one was
    committed first) gets the earlier one, with its index and size, before the next round;
    the next round is sized by the whole round's outcome."""
    total, size = 40, 10
    # 11 rows dropped: round 1 is groups 4 (10 rows) and 5 (1 row).
    planned: dict[int, Outcome] = {0: (10, 10), 1: (10, 4), 2: (10, 5), 3: (10, 10)}
    held = {**planned, 5: (1, 1)}  # group 5 was committed, group 4 was running
    rounds = top_up_rounds(lambda: dict(held), total, size, 1.0)
    first = next(rounds)
    assert (first.number, first.first_index, first.rows, first.end) == (1, 4, 11, 6)
    assert first.rows_missing == 10
    assert [(s.index, s.first_row_id, s.num_rows) for s in first.missing()] == [(4, 40, 10)]
    held[4] = (10, 7)  # 3 of its rows dropped
    second = next(rounds)
    assert [(s.index, s.first_row_id, s.num_rows) for s in second.missing()] == [(6, 60, 3)]
    held[6] = (3, 3)
    assert next(rounds, None) is None


def test_the_budget_counts_every_round() -> None:
    """Rounds stop when the extra rows tried, over all rounds, reach the budget."""
    held: dict[int, Outcome] = {0: (10, 0)}  # every row dropped, always
    rounds = top_up_rounds(lambda: dict(held), 10, 4, 0.5)  # planned: 0..2 of 4, 4, 2 rows
    held.update({0: (4, 0), 1: (4, 0), 2: (2, 0)})
    rnd = next(rounds)
    assert [(s.index, s.num_rows) for s in rnd.missing()] == [(3, 4), (4, 1)]
    held.update({3: (4, 0), 4: (1, 0)})
    assert next(rounds, None) is None  # 5 extra rows tried: the budget of 5 is spent


def test_a_round_left_incomplete_ends_the_walk() -> None:
    """A round whose groups are still not all held when the next is asked for (the run was
    cut short) plans no further round."""
    held: Mapping[int, Outcome] = {0: (4, 0)}
    rounds = top_up_rounds(lambda: held, 4, 4, 1.0)
    assert isinstance(next(rounds), TopUpRound)
    assert next(rounds, None) is None


# ---------------------------------------------------------------- a real run, interrupted

#: Set by the test: interrupt the run once, on this row id.
INTERRUPT: dict[str, int | None] = {"row": None}


async def slow_or_failing(row: dict[str, Any], ctx: gl.CellContext) -> int:
    """Fails on every third row; row ``INTERRUPT['row']`` waits long, then is Ctrl-C (once)."""
    if ctx.row_id == INTERRUPT["row"]:
        await trio.sleep(100)
        INTERRUPT["row"] = None
        raise KeyboardInterrupt
    await trio.sleep(0.01 * (ctx.row_id % 5))
    if ctx.row_id % 3 == 0:
        raise ValueError(f"row {ctx.row_id} is unlucky")
    return int(row["n"]) * 2


def _fill_config() -> gl.PipelineConfig:
    return structure_pipeline(
        {
            "columns": [
                {"name": "n", "uniform": {"low": 1, "high": 9, "convert_to": "int"}},
                {
                    "name": "doubled",
                    "custom": {
                        "function": "tests.test_fill_resume:slow_or_failing",
                        "dtype": "int",
                    },
                    "depends_on": ["n"],
                },
            ],
            "run": {
                "seed": 5,
                "row_group_size": 4,
                "max_row_groups_in_flight": 3,
                "fill_to_target": True,
                "fill_budget": 1.0,
                "progress": "off",
                "generator_error_rate": None,
            },
        }
    )


async def test_a_run_interrupted_in_a_top_up_round_resumes_to_the_same_dataset(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """Interrupted while the first of two top-up row groups runs (the second is committed),
    a resumed run generates that group with its row ids, then the same later rounds: the
    dataset and the drops equal an uninterrupted run's."""
    INTERRUPT["row"] = None
    whole = await gl.acreate(_fill_config(), num_records=16, output_dir=tmp_path / "whole")
    # Planned: rows 0..15 (0, 3, 6, 9, 12, 15 dropped); round 1: groups 4 (16..19) and 5
    # (20, 21); round 2: group 6 (24, 25); round 3: group 7 (28).
    assert whole.num_rows == 16
    assert sorted(whole.dropped.column("row_id").to_pylist()) == [0, 3, 6, 9, 12, 15, 18, 21, 24]
    INTERRUPT["row"] = 16
    with pytest.raises(BaseException) as caught:  # noqa: PT011 (Ctrl-C, perhaps in a group)
        await gl.acreate(_fill_config(), num_records=16, output_dir=tmp_path / "cut")
    assert is_interrupt(caught.value)
    assert not (tmp_path / "cut" / "data" / "part-00004.parquet").exists()
    assert (tmp_path / "cut" / "data" / "part-00005.parquet").exists()
    resumed = await gl.acreate(
        _fill_config(), num_records=16, output_dir=tmp_path / "cut", resume=True
    )
    assert resumed.status == "complete"
    assert resumed.table.equals(whole.table)
    assert resumed.dropped.equals(whole.dropped)
    assert sorted(p.name for p in (tmp_path / "cut" / "data").iterdir()) == sorted(
        p.name for p in (tmp_path / "whole" / "data").iterdir()
    )
