"""Tests of RunResult (gridloom.storage)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pytest

from gridloom.storage import (
    ColumnCounts,
    DropRecord,
    MemoryStore,
    ParquetStore,
    RowGroupData,
    RunResult,
)

SCHEMA = pa.schema([pa.field("topic", pa.string()), pa.field("summary", pa.string())])


def row_group(index: int, kept: list[int], dropped: list[int]) -> RowGroupData:
    return RowGroupData(
        index=index,
        first_row_id=index * 4,
        num_rows=len(kept) + len(dropped),
        row_ids=kept,
        columns={"topic": [f"t{r}" for r in kept], "summary": [f"s{r}" for r in kept]},
        drops=[
            DropRecord(row_id=r, column="summary", error_type="HTTPError", message="400")
            for r in dropped
        ],
        counts={
            "topic": ColumnCounts(done=len(kept) + len(dropped)),
            "summary": ColumnCounts(done=len(kept), failed=len(dropped)),
        },
    )


class CountingStore(MemoryStore):
    """A MemoryStore that counts reads."""

    def __init__(self, schema: pa.Schema) -> None:
        super().__init__(schema)
        self.reads = 0

    def read_table(self) -> pa.Table:
        self.reads += 1
        return super().read_table()


async def filled_store() -> CountingStore:
    store = CountingStore(SCHEMA)
    await store.write(row_group(0, [0, 1, 3], [2]))
    await store.write(row_group(1, [4, 5, 6, 7], []))
    await store.finish(status="complete", summary={})
    return store


async def test_result_counts_come_from_the_store() -> None:
    """from_store copies the store's counts and leaves the data in the store."""
    store = await filled_store()
    result = RunResult.from_store(store, num_records=8, seed=3, wall_time=2.0, status="complete")
    assert (result.num_records, result.num_rows, result.num_dropped) == (8, 7, 1)
    assert result.columns["summary"] == ColumnCounts(done=7, failed=1)
    assert result.output_dir is None
    assert store.reads == 0


async def test_table_is_read_once_and_cached() -> None:
    """The table property reads from the store on first access only."""
    store = await filled_store()
    result = RunResult.from_store(store, num_records=8, seed=3, wall_time=2.0, status="complete")
    first = result.table
    assert result.table is first
    assert store.reads == 1
    assert first.column("topic").to_pylist() == ["t0", "t1", "t3", "t4", "t5", "t6", "t7"]
    assert result.dropped.column("row_id").to_pylist() == [2]


async def test_result_is_frozen() -> None:
    """RunResult attributes cannot be reassigned."""
    result = RunResult.from_store(
        await filled_store(), num_records=8, seed=3, wall_time=2.0, status="complete"
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.status = "failed"  # type: ignore[misc]


async def test_summary_is_json_serialisable_with_extras() -> None:
    """summary is a plain JSON-serialisable dict with counts, timings and the engine's extras."""
    result = RunResult.from_store(
        await filled_store(),
        num_records=8,
        seed=3,
        wall_time=2.0,
        status="complete",
        output_dir="out",
        extras={"tokens": {"writer": {"prompt": 10, "completion": 20}}},
    )
    summary = result.summary
    assert json.loads(json.dumps(summary)) == summary
    assert summary["num_rows"] == 7
    assert summary["num_dropped"] == 1
    assert summary["failed_cells"] == 1
    assert summary["rows_per_second"] == 3.5
    assert summary["output_dir"] == "out"
    assert summary["columns"]["summary"] == {"done": 7, "failed": 1, "dropped": 0, "skipped": 0}
    assert summary["tokens"]["writer"]["completion"] == 20


async def test_extras_must_be_json_serialisable() -> None:
    """Extras that JSON cannot hold are refused when the result is built."""
    with pytest.raises(TypeError):
        RunResult.from_store(
            await filled_store(),
            num_records=8,
            seed=3,
            wall_time=1.0,
            status="complete",
            extras={"x": object()},
        )


async def test_repr_is_short_and_has_no_data() -> None:
    """repr shows status, rows and timing on one short line, never the data."""
    result = RunResult.from_store(
        await filled_store(), num_records=8, seed=3, wall_time=2.0, status="complete"
    )
    text = repr(result)
    assert "complete" in text
    assert "7/8 rows" in text
    assert "t0" not in text
    assert "\n" not in text
    assert len(text) < 160


async def test_to_pandas_without_pandas_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """to_pandas without pandas raises ImportError naming the gridloom[pandas] extra."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "pandas" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    result = RunResult.from_store(
        await filled_store(), num_records=8, seed=3, wall_time=2.0, status="complete"
    )
    with pytest.raises(ImportError, match=r"pip install 'gridloom\[pandas\]'"):
        result.to_pandas()


async def test_to_pandas_with_pandas() -> None:
    """to_pandas returns a DataFrame of the kept rows when pandas is installed."""
    pytest.importorskip("pandas")
    result = RunResult.from_store(
        await filled_store(), num_records=8, seed=3, wall_time=2.0, status="complete"
    )
    assert list(result.to_pandas()["topic"]) == ["t0", "t1", "t3", "t4", "t5", "t6", "t7"]


async def test_result_reads_from_a_parquet_store(tmp_path: Path) -> None:
    """A result over a ParquetStore reads its table from disk."""
    store = ParquetStore.open(
        tmp_path / "run",
        schema=SCHEMA,
        config_text="",
        config_hash="h" * 64,
        num_records=8,
        row_group_size=4,
        seed=5,
        mode="new",
    )
    await store.write(row_group(0, [0, 1, 3], [2]))
    await store.finish(status="interrupted", summary={})
    result = RunResult.from_store(
        store,
        num_records=store.num_records,
        seed=store.seed,
        wall_time=0.5,
        status="interrupted",
        output_dir=store.output_dir,
    )
    assert result.output_dir == tmp_path / "run"
    assert result.table.num_rows == 3
    assert result.dropped.column("message").to_pylist() == ["400"]
    assert str(tmp_path / "run") in repr(result)
