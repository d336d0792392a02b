"""A stop (a tripped monitor, a signal) never loses a row group that was finished: one whose
write is under way completes, and one finished in the very step the stop came is written."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import trio

from gridloom.config import RunConfig
from gridloom.engine import ExecutionGraph, Node, RowGroupSpec, Scheduler
from gridloom.generators import CellContext, ColumnGenerator
from gridloom.storage import MemoryStore, RowGroupData


class Cells(ColumnGenerator):
    """One async cell per row, answered after a second; calls ``on_row(row_id)`` just before
    answering (without a checkpoint in between)."""

    granularity = "cell"

    def __init__(self, on_row: Any = None) -> None:
        super().__init__(name="c", outputs={"c": pa.string()})
        self.on_row = on_row

    async def agenerate(self, ctx: CellContext) -> str:
        await trio.sleep(1 + ctx.row_id)  # row 0 at 1 s, row 1 at 2 s, ...
        if self.on_row is not None:
            self.on_row(ctx.row_id)
        return f"v{ctx.row_id}"


def graph(generator: ColumnGenerator) -> ExecutionGraph:
    node = Node(
        index=0,
        name="c",
        outputs=("c",),
        upstream=(),
        downstream=(),
        granularity="cell",
        inputs=(),
        generator=generator,
    )
    return ExecutionGraph(nodes=(node,), schema=pa.schema([("c", pa.string())]), producer={"c": 0})


class SlowStore(MemoryStore):
    """Writes take 5 s (a slow disk)."""

    async def write(self, data: RowGroupData) -> None:
        await trio.sleep(5)
        await super().write(data)


SPECS = [RowGroupSpec(index=0, first_row_id=0, num_rows=2)]
SPECS.append(RowGroupSpec(index=1, first_row_id=2, num_rows=2))


async def test_a_write_under_way_completes_when_the_run_is_stopped(autojump_clock: Any) -> None:
    """The row groups finish at 2 s and 4 s and take 5 s to write; a stop at 5 s lets both
    writes complete (they were cancelled half way: the finished rows were lost)."""
    g = graph(Cells())
    store = SlowStore(g.schema)
    scheduler = Scheduler(g, RunConfig(row_group_size=2), seed=1, store=store)
    with trio.move_on_at(5.0) as scope:
        await scheduler.run(SPECS)
    assert scope.cancelled_caught
    assert store.completed() == frozenset({0, 1})
    assert store.read_table().column("c").to_pylist() == ["v0", "v1", "v2", "v3"]


async def test_a_group_finished_in_the_step_of_the_stop_is_written(autojump_clock: Any) -> None:
    """The last cell of row group 0 stops the run as it answers: the group, finished in that
    very step, is written; row group 1 (unfinished) is not."""
    stop = trio.CancelScope()

    def on_row(row_id: int) -> None:
        if row_id == 1:
            stop.cancel()

    g = graph(Cells(on_row))
    store = MemoryStore(g.schema)
    scheduler = Scheduler(g, RunConfig(row_group_size=2), seed=1, store=store)
    with stop:
        await scheduler.run(SPECS)
    assert stop.cancelled_caught
    assert store.completed() == frozenset({0})
    assert scheduler.statistics().rows_abandoned == 2


async def test_a_huge_num_records_plans_nothing_up_front(tmp_path: Any) -> None:
    """-n 10**12 (the most a run may ask for): the run starts at once and stops when asked,
    its plan walked one row group at a time (the whole plan used to be built as a list first:
    3.3 GB for 10**12 rows, with signals unanswered meanwhile)."""
    import tracemalloc

    import gridloom as gl
    from gridloom.config import structure_pipeline

    config = structure_pipeline(
        {
            "columns": [{"name": "n", "uniform": {"low": 0, "high": 9, "convert_to": "int"}}],
            "run": {"row_group_size": 100, "seed": 1, "progress": "off"},
        }
    )
    tracemalloc.start()
    try:
        with trio.move_on_after(2.0):
            await gl.acreate(config, num_records=10**12, output_dir=tmp_path / "o")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
    meta = (tmp_path / "o" / "metadata.json").read_text()
    assert '"num_records": 1000000000000' in meta
    assert '"status": "interrupted"' in meta
