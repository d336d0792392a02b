"""Tests of the checkpoint stores (gridloom.storage)."""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
import trio.testing

import gridloom.storage
from gridloom.errors import OutputExistsError, StorageError, ValueTypeError
from gridloom.storage import (
    ColumnCounts,
    DropRecord,
    MemoryStore,
    ParquetStore,
    RowGroupData,
    RowGroupStore,
    _checkpoint,
)
from gridloom.storage._convert import dropped_schema

from .crashes import as_a_new_process, opened

SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string()),
        pa.field("score", pa.int64()),
        pa.field("tags", pa.list_(pa.string())),
    ]
)
HASH = "0123456789abcdef" * 4
OTHER_HASH = "fedcba9876543210" * 4


def open_store(out: Path, **overrides: Any) -> ParquetStore:
    kwargs: dict[str, Any] = {
        "schema": SCHEMA,
        "config_text": "columns: []\n",
        "config_hash": HASH,
        "num_records": 10,
        "row_group_size": 4,
        "seed": 7,
        "mode": "new",
    }
    kwargs.update(overrides)
    as_a_new_process()  # a run opened again stands for a new process
    return opened(ParquetStore.open(out, **kwargs))


def group(
    index: int, *, rgs: int = 4, num_records: int = 10, drop: tuple[int, ...] = ()
) -> RowGroupData:
    """Row group ``index`` of the test layout; rows in ``drop`` failed on ``score``."""
    first = index * rgs
    n = min(rgs, num_records - first)
    kept = [r for r in range(first, first + n) if r not in drop]
    return RowGroupData(
        index=index,
        first_row_id=first,
        num_rows=n,
        row_ids=kept,
        columns={
            "topic": [f"t{r}" for r in kept],
            "score": [r * 10 for r in kept],
            "tags": [[f"x{r}", "y"] for r in kept],
        },
        drops=[
            DropRecord(row_id=r, column="score", error_type="GenerationError", message=f"bad {r}")
            for r in drop
        ],
        counts={
            "topic": ColumnCounts(done=n),
            "score": ColumnCounts(done=len(kept), failed=len(drop)),
            "tags": ColumnCounts(done=len(kept), dropped=len(drop)),
        },
    )


def metadata(out: Path) -> dict[str, Any]:
    doc = json.loads((out / "metadata.json").read_text())
    assert isinstance(doc, dict)
    return doc


def temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(".tmp-")]


async def write_all(store: RowGroupStore, groups: list[RowGroupData]) -> None:
    for g in groups:
        await store.write(g)


# --------------------------------------------------------------- round trip


async def test_round_trip_readable_by_plain_pyarrow(tmp_path: Path) -> None:
    """Several row groups are written one file each, readable by pyarrow with the exact schema."""
    out = tmp_path / "run"
    store = open_store(out)
    await write_all(store, [group(0), group(1), group(2)])
    await store.finish(status="complete", summary={})

    files = sorted((out / "data").iterdir())
    assert [f.name for f in files] == [f"part-0000{i}.parquet" for i in range(3)]
    for f in files:
        assert pq.read_schema(f).equals(SCHEMA, check_metadata=True)
    whole = pq.read_table(out / "data")
    assert whole.schema.equals(SCHEMA)
    assert sorted(whole.column("score").to_pylist()) == [r * 10 for r in range(10)]

    table = store.read_table()
    assert table.schema.equals(SCHEMA, check_metadata=True)
    assert table.column("topic").to_pylist() == [f"t{r}" for r in range(10)]
    assert table.column("tags").to_pylist()[3] == ["x3", "y"]
    assert store.completed() == frozenset({0, 1, 2})
    assert store.rows_written == 10
    assert not (out / "dropped").exists()
    assert (out / "config.yaml").read_text() == "columns: []\n"


async def test_all_dropped_row_group_is_an_empty_file_with_the_schema(tmp_path: Path) -> None:
    """A row group whose rows were all dropped still gets a data file: empty, same schema."""
    out = tmp_path / "run"
    store = open_store(out)
    await store.write(group(1, drop=(4, 5, 6, 7)))

    path = out / "data" / "part-00001.parquet"
    empty = pq.read_table(path)
    assert empty.num_rows == 0
    assert empty.schema.equals(SCHEMA, check_metadata=True)
    assert store.read_table().num_rows == 0
    assert store.read_table().schema.equals(SCHEMA)
    assert store.completed() == frozenset({1})


async def test_dropped_records_are_written_per_row_group(tmp_path: Path) -> None:
    """Drop records land in dropped/part-NNNNN.parquet, only for row groups that dropped rows."""
    out = tmp_path / "run"
    store = open_store(out)
    await write_all(store, [group(0, drop=(1,)), group(1), group(2, drop=(8, 9))])

    assert sorted(p.name for p in (out / "dropped").iterdir()) == [
        "part-00000.parquet",
        "part-00002.parquet",
    ]
    dropped = store.read_dropped()
    assert dropped.schema.equals(dropped_schema())
    assert dropped.column("row_id").to_pylist() == [1, 8, 9]
    assert dropped.column("column").to_pylist() == ["score"] * 3
    assert dropped.column("message").to_pylist() == ["bad 1", "bad 8", "bad 9"]
    assert store.rows_written == 7
    assert store.rows_dropped == 3
    assert store.counts["score"] == ColumnCounts(done=7, failed=3)
    assert store.counts["tags"] == ColumnCounts(done=7, dropped=3)


async def test_read_dropped_is_empty_with_schema_when_nothing_dropped(tmp_path: Path) -> None:
    """read_dropped returns an empty table with the drop schema when no row was dropped."""
    store = open_store(tmp_path / "run")
    await store.write(group(0))
    dropped = store.read_dropped()
    assert dropped.num_rows == 0
    assert dropped.schema.equals(dropped_schema())


async def test_empty_store_reads_empty_table(tmp_path: Path) -> None:
    """read_table on a store with nothing written is an empty table with the declared schema."""
    store = open_store(tmp_path / "run")
    assert store.read_table().schema.equals(SCHEMA)
    assert store.read_table().num_rows == 0


async def test_metadata_contents(tmp_path: Path) -> None:
    """metadata.json records the run parameters, row groups, counts, schema, status and summary."""
    out = tmp_path / "run"
    store = open_store(out)
    assert metadata(out)["status"] == "running"
    await write_all(store, [group(0, drop=(2,)), group(2)])
    await store.finish(status="interrupted", summary={"wall_time": 1.5, "tokens": {"m": 3}})

    doc = metadata(out)
    assert doc["format_version"] == 1
    assert isinstance(doc["gridloom_version"], str)
    assert doc["config_hash"] == HASH
    assert (doc["num_records"], doc["row_group_size"], doc["seed"]) == (10, 4, 7)
    assert doc["status"] == "interrupted"
    created = dt.datetime.fromisoformat(doc["created_at"])
    updated = dt.datetime.fromisoformat(doc["updated_at"])
    assert created.utcoffset() == dt.timedelta(0)
    assert updated >= created
    assert doc["schema"] == {"topic": "string", "score": "int64", "tags": "list<item: string>"}
    assert doc["rows_written"] == 5
    assert doc["rows_dropped"] == 1
    assert doc["counts"]["score"] == {"done": 5, "failed": 1, "dropped": 0, "skipped": 0}
    assert doc["counts"]["topic"] == {"done": 6, "failed": 0, "dropped": 0, "skipped": 0}
    assert set(doc["row_groups"]) == {"0", "2"}
    assert doc["row_groups"]["0"]["rows"] == 3
    assert doc["row_groups"]["0"]["dropped"] == 1
    assert doc["row_groups"]["0"]["file"] == "data/part-00000.parquet"
    assert doc["row_groups"]["0"]["dropped_file"] == "dropped/part-00000.parquet"
    assert doc["row_groups"]["2"] == {
        "rows": 2,
        "dropped": 0,
        "file": "data/part-00002.parquet",
        "dropped_file": None,
        "first_row_id": 8,
        "num_rows": 2,
        "counts": {
            "topic": {"done": 2, "failed": 0, "dropped": 0, "skipped": 0},
            "score": {"done": 2, "failed": 0, "dropped": 0, "skipped": 0},
            "tags": {"done": 2, "failed": 0, "dropped": 0, "skipped": 0},
        },
        "sha256": hashlib.sha256((out / "data/part-00002.parquet").read_bytes()).hexdigest(),
        "size": (out / "data/part-00002.parquet").stat().st_size,
    }
    dropped_bytes = (out / "dropped/part-00000.parquet").read_bytes()
    assert doc["row_groups"]["0"]["dropped_sha256"] == hashlib.sha256(dropped_bytes).hexdigest()
    assert doc["row_groups"]["0"]["dropped_size"] == len(dropped_bytes)
    assert doc["summary"] == {"wall_time": 1.5, "tokens": {"m": 3}}


async def test_concurrent_writes_are_all_recorded(tmp_path: Path) -> None:
    """Row groups written concurrently all end up on disk and in metadata.json."""
    out = tmp_path / "run"
    store = open_store(out, num_records=40, row_group_size=4)
    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(store.write, group(i, num_records=40))
    assert set(metadata(out)["row_groups"]) == {str(i) for i in range(10)}
    assert store.read_table().column("score").to_pylist() == [r * 10 for r in range(40)]
    assert metadata(out)["rows_written"] == 40


# ------------------------------------------------------------------ modes


async def test_new_refuses_an_existing_run(tmp_path: Path) -> None:
    """Mode "new" refuses a directory holding a run, naming it and suggesting overwrite/resume."""
    out = tmp_path / "run"
    open_store(out)
    with pytest.raises(OutputExistsError) as info:
        open_store(out)
    message = str(info.value)
    assert str(out) in message
    assert "overwrite" in message
    assert "resume" in message


async def test_new_accepts_empty_or_missing_directory(tmp_path: Path) -> None:
    """Mode "new" creates a missing directory (with parents) and accepts an empty one."""
    empty = tmp_path / "empty"
    empty.mkdir()
    open_store(empty)
    nested = tmp_path / "a" / "b" / "run"
    open_store(nested)
    assert (nested / "metadata.json").is_file()
    assert (nested / "data").is_dir()


async def test_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """An output path that is a regular file gives a StorageError naming it."""
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(StorageError, match="not a directory"):
        open_store(path)


async def test_overwrite_clears_only_gridloom_files(tmp_path: Path) -> None:
    """Mode "overwrite" removes the previous run's files and keeps the user's own files."""
    out = tmp_path / "run"
    store = open_store(out)
    await write_all(store, [group(0, drop=(1,)), group(1)])
    (out / "notes.txt").write_text("mine")
    (out / "data" / ".tmp-part-00002.parquet-dead").write_bytes(b"junk")
    (out / "trace.json").write_text("{}")

    fresh = open_store(out, mode="overwrite", seed=99)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "trace.json").exists()
    assert list((out / "data").iterdir()) == []
    assert not (out / "dropped").exists()
    assert temp_files(out) == []
    assert fresh.completed() == frozenset()
    assert metadata(out)["row_groups"] == {}
    assert metadata(out)["seed"] == 99


async def test_overwrite_refuses_foreign_files_in_data_dir(tmp_path: Path) -> None:
    """Mode "overwrite" refuses a run directory whose data/ holds a file gridloom did not
    write (reading data/ as a dataset would fail on it), naming the file, and deletes
    nothing; so do modes "new" and "resume"."""
    out = tmp_path / "run"
    store = open_store(out)
    await store.write(group(0))
    (out / "data" / "README").write_text("mine")
    before = sorted(p.name for p in (out / "data").iterdir())
    for mode in ("overwrite", "new", "resume"):
        with pytest.raises(StorageError, match=r"did not write \(data/README\)") as info:
            open_store(out, mode=mode)
        assert "gridloom run" not in str(info.value)
    assert sorted(p.name for p in (out / "data").iterdir()) == before
    assert (out / "metadata.json").is_file()


def test_a_plain_folder_with_data_is_not_called_a_run(tmp_path: Path) -> None:
    """A folder that merely has a data/ of its own is refused for what it is (foreign files),
    not called "a gridloom run"; an empty data/ is fine; gridloom's own part files without a
    metadata.json are the remains of a run, replaced with --overwrite."""
    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    open_store(out)  # an empty data/ is fine
    clear = tmp_path / "plain"
    (clear / "data").mkdir(parents=True)
    (clear / "data" / "mine.csv").write_text("a,b\n")
    with pytest.raises(StorageError, match="did not write") as info:
        open_store(clear)
    assert not isinstance(info.value, OutputExistsError)
    assert "gridloom run" not in str(info.value)
    remains = tmp_path / "remains"
    (remains / "data").mkdir(parents=True)
    (remains / "data" / "part-00000.parquet").write_bytes(b"")
    with pytest.raises(OutputExistsError, match=r"without its metadata\.json.*--overwrite"):
        open_store(remains)
    open_store(remains, mode="overwrite")
    assert not (remains / "data" / "part-00000.parquet").exists()


# ------------------------------------------------------------------ resume


async def test_resume_never_shrinks_a_run(tmp_path: Path) -> None:
    """A resume asking for fewer rows than the run has is refused with both counts (it was
    silently ignored); as many or more is accepted, and more grows the run."""
    out = tmp_path / "run"
    first = open_store(out)
    await write_all(first, [group(0)])
    await first.finish(status="interrupted", summary={})
    with pytest.raises(StorageError, match=r"has 10 rows .* 6 were asked for.*only grow"):
        open_store(out, mode="resume", num_records=6)
    assert open_store(out, mode="resume", num_records=10).num_records == 10
    assert open_store(out, mode="resume", num_records=12).num_records == 12


async def test_resume_adopts_completed_row_groups(tmp_path: Path) -> None:
    """Resume with a matching hash adopts what is on disk and keeps the recorded seed."""
    out = tmp_path / "run"
    first = open_store(out, seed=7)
    await write_all(first, [group(0, drop=(3,)), group(2)])
    await first.finish(status="interrupted", summary={})

    store = open_store(out, mode="resume", seed=12345, num_records=10)
    assert store.completed() == frozenset({0, 2})
    assert store.seed == 7
    assert store.num_records == 10
    assert store.rows_written == 5
    assert store.counts["score"] == ColumnCounts(done=5, failed=1)
    assert metadata(out)["status"] == "running"

    await store.write(group(1))
    await store.finish(status="complete", summary={})
    assert store.read_table().column("score").to_pylist() == [r * 10 for r in range(10) if r != 3]
    assert store.read_dropped().column("row_id").to_pylist() == [3]
    assert metadata(out)["status"] == "complete"


async def test_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    """Resume with another config hash is refused, naming both hashes and the directory."""
    out = tmp_path / "run"
    open_store(out)
    with pytest.raises(StorageError) as info:
        open_store(out, mode="resume", config_hash=OTHER_HASH)
    message = str(info.value)
    assert HASH[:12] in message
    assert OTHER_HASH[:12] in message
    assert str(out) in message


async def test_resume_refuses_another_row_group_size(tmp_path: Path) -> None:
    """Resume with another row_group_size is refused."""
    out = tmp_path / "run"
    open_store(out)
    with pytest.raises(StorageError, match="row_group_size"):
        open_store(out, mode="resume", row_group_size=5)


async def test_resume_refuses_a_changed_schema(tmp_path: Path) -> None:
    """Resume with another column schema is refused."""
    out = tmp_path / "run"
    open_store(out)
    other = pa.schema([pa.field("topic", pa.string())])
    with pytest.raises(StorageError, match="schema"):
        open_store(out, mode="resume", schema=other)


async def test_resume_without_a_run_is_refused(tmp_path: Path) -> None:
    """Resume of a directory without metadata.json is refused with a clear message."""
    with pytest.raises(StorageError, match=r"no metadata\.json"):
        open_store(tmp_path, mode="resume")


async def test_resume_with_damaged_metadata_is_refused(tmp_path: Path) -> None:
    """Resume of a directory whose metadata.json is not JSON gives a StorageError."""
    out = tmp_path / "run"
    open_store(out)
    (out / "metadata.json").write_text("{not json")
    with pytest.raises(StorageError, match=r"metadata\.json"):
        open_store(out, mode="resume")


async def test_resume_adopts_a_file_committed_before_metadata(tmp_path: Path) -> None:
    """A data file renamed just before a crash, not yet in metadata.json, is adopted exactly."""
    out = tmp_path / "run"
    store = open_store(out)
    await store.write(group(0))
    before = (out / "metadata.json").read_bytes()
    await store.write(group(1, drop=(5,)))
    (out / "metadata.json").write_bytes(before)  # crash between rename and metadata write

    resumed = open_store(out, mode="resume")
    assert resumed.completed() == frozenset({0, 1})
    assert resumed.rows_written == 7
    assert resumed.counts["score"] == ColumnCounts(done=7, failed=1)
    assert resumed.read_dropped().column("row_id").to_pylist() == [5]
    assert metadata(out)["row_groups"]["1"]["dropped"] == 1


async def test_resume_refuses_an_unlisted_foreign_file(tmp_path: Path) -> None:
    """An unlisted data file that gridloom did not write is reported, not adopted or deleted."""
    out = tmp_path / "run"
    open_store(out)
    foreign = out / "data" / "part-00001.parquet"
    pq.write_table(SCHEMA.empty_table(), foreign)
    with pytest.raises(StorageError, match="not written by gridloom"):
        open_store(out, mode="resume")
    assert foreign.exists()


async def test_resume_refuses_a_missing_listed_file(tmp_path: Path) -> None:
    """A row group listed in metadata.json whose file is gone is an error naming the file."""
    out = tmp_path / "run"
    store = open_store(out)
    await write_all(store, [group(0), group(1)])
    (out / "data" / "part-00001.parquet").unlink()
    with pytest.raises(StorageError, match=r"part-00001\.parquet"):
        open_store(out, mode="resume")


async def test_resume_with_more_records_regenerates_the_short_last_group(tmp_path: Path) -> None:
    """Growing num_records on resume discards the old short last row group so it is redone."""
    out = tmp_path / "run"
    store = open_store(out, num_records=10)
    await write_all(store, [group(0), group(1), group(2, drop=(9,))])

    resumed = open_store(out, mode="resume", num_records=16)
    assert resumed.num_records == 16
    assert resumed.completed() == frozenset({0, 1})
    assert not (out / "data" / "part-00002.parquet").exists()
    assert not (out / "dropped" / "part-00002.parquet").exists()
    await resumed.write(group(2, num_records=16))
    await resumed.write(group(3, num_records=16))
    assert resumed.read_table().num_rows == 16


async def test_resume_removes_temp_files_and_orphan_drop_files(tmp_path: Path) -> None:
    """Resume removes temp files and dropped files of row groups that never committed."""
    out = tmp_path / "run"
    store = open_store(out)
    await store.write(group(0))
    (out / "dropped").mkdir()
    orphan = out / "dropped" / "part-00001.parquet"
    pq.write_table(dropped_schema().empty_table(), orphan)
    (out / ".tmp-metadata.json-0000").write_text("{")
    (out / "data" / ".tmp-part-00001.parquet-0000").write_bytes(b"PAR1")

    resumed = open_store(out, mode="resume")
    assert resumed.completed() == frozenset({0})
    assert not orphan.exists()
    assert temp_files(out) == []


# ----------------------------------------------------------------- failures


def assert_group_absent(out: Path, index: int) -> None:
    assert not (out / "data" / f"part-{index:05d}.parquet").exists()
    assert not (out / "dropped" / f"part-{index:05d}.parquet").exists()
    assert temp_files(out) == []
    assert str(index) not in metadata(out)["row_groups"]


async def test_failure_inside_the_parquet_writer_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer failing half-way leaves neither the part file nor a temp file; retry works."""
    out = tmp_path / "run"
    store = open_store(out)
    await store.write(group(0))

    def half_then_fail(table: pa.Table, info: str, f: BinaryIO) -> None:
        f.write(b"PAR1 half a file")
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as m:
        m.setattr(_checkpoint, "_write_data_file", half_then_fail)
        with pytest.raises(RuntimeError, match="disk on fire"):
            await store.write(group(1, drop=(5,)))

    assert_group_absent(out, 1)
    assert store.completed() == frozenset({0})
    await store.write(group(1, drop=(5,)))
    assert store.completed() == frozenset({0, 1})


async def test_fsync_failure_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An fsync error on the temp file gives a StorageError and leaves nothing behind."""
    out = tmp_path / "run"
    store = open_store(out)

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", failing_fsync)
        with pytest.raises(StorageError, match="row group 0"):
            await store.write(group(0))

    assert_group_absent(out, 0)


async def test_failure_before_rename_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the temp file is complete but before the rename leaves nothing behind."""
    out = tmp_path / "run"
    store = open_store(out)
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "part-00000.parquet" and Path(dst).parent.name == "data":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace)
        with pytest.raises(StorageError, match="No space left"):
            await store.write(group(0, drop=(2,)))

    assert_group_absent(out, 0)  # the dropped file written first is removed too
    assert store.read_table().num_rows == 0


async def test_failed_metadata_write_keeps_valid_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed metadata.json rewrite leaves the previous, valid JSON; resume adopts the data."""
    out = tmp_path / "run"
    store = open_store(out)
    await store.write(group(0))
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "metadata.json":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace)
        with pytest.raises(StorageError, match=r"metadata\.json"):
            await store.write(group(1))
        with pytest.raises(StorageError, match=r"metadata\.json"):
            await store.finish(status="failed", summary={})

    doc = metadata(out)
    assert set(doc["row_groups"]) == {"0"}
    assert temp_files(out) == []
    resumed = open_store(out, mode="resume")
    assert resumed.completed() == frozenset({0, 1})


async def test_wrong_value_type_names_the_column(tmp_path: Path) -> None:
    """A value that does not fit its column's type gives ValueTypeError naming column and row."""
    out = tmp_path / "run"
    store = open_store(out)
    bad = group(0)
    bad.columns["score"][2] = "not a number"
    with pytest.raises(ValueTypeError) as info:
        await store.write(bad)
    message = str(info.value)
    assert "'score'" in message
    assert "row 2" in message
    assert "int64" in message
    assert not isinstance(info.value, pa.ArrowInvalid)
    assert_group_absent(out, 0)


async def test_null_in_non_nullable_column_is_refused() -> None:
    """A None in a non-nullable column gives ValueTypeError naming the column."""
    schema = pa.schema([pa.field("x", pa.int64(), nullable=False)])
    store = MemoryStore(schema)
    data = RowGroupData(
        index=0, first_row_id=0, num_rows=2, row_ids=[0, 1], columns={"x": [1, None]}
    )
    with pytest.raises(ValueTypeError, match="'x', row 1"):
        await store.write(data)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"columns": {"topic": ["a"], "score": [1], "tags": [[]], "extra": [1]}}, "extra"),
        ({"columns": {"topic": ["a"], "score": [1]}}, "no values for column 'tags'"),
        ({"columns": {"topic": ["a", "b"], "score": [1], "tags": [[]]}}, "2 values"),
        ({"row_ids": [1, 0]}, "ascending"),
    ],
)
async def test_inconsistent_row_group_is_refused(change: dict[str, Any], match: str) -> None:
    """A row group whose columns or row ids do not match the schema gives a StorageError."""
    fields: dict[str, Any] = {
        "index": 0,
        "first_row_id": 0,
        "num_rows": 2,
        "row_ids": [0],
        "columns": {"topic": ["a"], "score": [1], "tags": [[]]},
    }
    fields.update(change)
    if change.get("row_ids") == [1, 0]:
        fields["columns"] = {"topic": ["a", "b"], "score": [1, 2], "tags": [[], []]}
    with pytest.raises(StorageError, match=match):
        await MemoryStore(SCHEMA).write(RowGroupData(**fields))


async def test_row_group_outside_the_layout_is_refused(tmp_path: Path) -> None:
    """ParquetStore refuses a row group that does not cover the rows its index implies."""
    store = open_store(tmp_path / "run")
    with pytest.raises(StorageError, match="top-up row group 3 should start at row 12"):
        await store.write(group(3, rgs=3, num_records=16))
    with pytest.raises(StorageError, match=r"should cover rows 4\.\.7"):
        await store.write(group(1, rgs=3))


async def test_top_up_row_groups_are_written_and_adopted_on_resume(tmp_path: Path) -> None:
    """Row groups after the planned ones (fill_to_target) start at index * row_group_size,
    cover 1 to row_group_size rows, and a resumed run adopts them, with the rows each covers
    and keeps."""
    store = open_store(tmp_path / "run")
    for index in range(3):
        await store.write(group(index))
    await store.write(group(3, num_records=14, drop=(13,)))  # rows 12..13 replace dropped ones
    await store.finish(status="complete", summary={})
    assert store.rows_covered() == {0: 4, 1: 4, 2: 2, 3: 2}
    resumed = open_store(tmp_path / "run", mode="resume")
    assert resumed.completed() == frozenset({0, 1, 2, 3})
    assert resumed.rows_written == 11
    # What a resumed fill_to_target run sizes its top-up rounds from.
    assert resumed.rows_covered() == {0: 4, 1: 4, 2: 2, 3: 2}
    assert resumed.rows_kept() == {0: 4, 1: 4, 2: 2, 3: 1}


async def test_writing_a_row_group_twice_is_refused(tmp_path: Path) -> None:
    """Writing the same row group index twice is a StorageError."""
    store = open_store(tmp_path / "run")
    await store.write(group(0))
    with pytest.raises(StorageError, match="already written"):
        await store.write(group(0))


async def test_finish_validates_status_and_summary(tmp_path: Path) -> None:
    """finish refuses an unknown status and a summary that is not JSON-serialisable."""
    store = open_store(tmp_path / "run")
    with pytest.raises(ValueError, match="status"):
        await store.finish(status="done", summary={})
    with pytest.raises(StorageError, match="JSON"):
        await store.finish(status="complete", summary={"x": object()})
    assert metadata(tmp_path / "run")["status"] == "running"


# ------------------------------------------------------------ memory store


async def test_memory_store_round_trip() -> None:
    """MemoryStore keeps row groups in index order with the schema, drops and counts."""
    store = MemoryStore(SCHEMA)
    assert isinstance(store, RowGroupStore)
    await store.write(group(2))
    await store.write(group(0, drop=(0, 1)))
    await store.write(group(1, drop=(4, 5, 6, 7)))
    await store.finish(status="complete", summary={"a": 1})

    table = store.read_table()
    assert table.schema.equals(SCHEMA)
    assert table.column("score").to_pylist() == [20, 30, 80, 90]
    assert store.read_dropped().column("row_id").to_pylist() == [0, 1, 4, 5, 6, 7]
    assert store.completed() == frozenset({0, 1, 2})
    assert store.rows_written == 4
    assert store.rows_dropped == 6
    assert store.counts["topic"] == ColumnCounts(done=10)
    assert (store.status, store.summary) == ("complete", {"a": 1})


async def test_memory_store_empty() -> None:
    """An empty MemoryStore reads as empty tables with the declared schemas."""
    store = MemoryStore(SCHEMA)
    assert store.read_table().schema.equals(SCHEMA)
    assert store.read_dropped().schema.equals(dropped_schema())
    assert store.read_table().num_rows == 0


# ----------------------------------------------------------------- package


def test_column_counts_add() -> None:
    """ColumnCounts add field by field and refuse negative counts."""
    total = ColumnCounts(done=1, failed=2) + ColumnCounts(done=3, dropped=4)
    assert total == ColumnCounts(done=4, failed=2, dropped=4)
    with pytest.raises(ValueError, match="done"):
        ColumnCounts(done=-1)


def test_public_names_are_sorted_and_exported() -> None:
    """gridloom.storage.__all__ is sorted and every name in it exists."""
    names = gridloom.storage.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(gridloom.storage, name)


def test_storage_does_not_import_upper_layers() -> None:
    """The storage layer imports nothing from engine, generators or config."""
    package = Path(gridloom.storage.__file__).parent
    forbidden = ("gridloom.engine", "gridloom.generators", "gridloom.config")
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(forbidden), source
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith(forbidden), source


async def test_store_copy_is_resumable_elsewhere(tmp_path: Path) -> None:
    """A run directory moved elsewhere still resumes: metadata paths are relative."""
    out = tmp_path / "run"
    store = open_store(out)
    await store.write(group(0))
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    resumed = open_store(moved, mode="resume")
    assert resumed.completed() == frozenset({0})
    assert resumed.read_table().num_rows == 4


async def test_cancelled_write_commits_all_or_nothing(tmp_path: Path) -> None:
    """A write cancelled before or during its IO leaves the group wholly written or absent."""
    out = tmp_path / "run"
    store = open_store(out)
    with trio.move_on_after(0):
        await store.write(group(0, drop=(1,)))
    assert_group_absent(out, 0)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.write, group(0, drop=(1,)))
            await trio.testing.wait_all_tasks_blocked()  # the write is in its worker thread
            scope.cancel()
    assert store.completed() == frozenset({0})
    assert "0" in metadata(out)["row_groups"]
    assert store.read_table().num_rows == 3
    assert temp_files(out) == []
