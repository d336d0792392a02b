"""Tests of the manifest store (gridloom.storage.ManifestStore): runs written by one process or
by shards, on the local filesystem and on a real S3 protocol server (moto), and read back with
open_run / inspect_run."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.errors import OutputExistsError, StorageError
from gridloom.storage import (
    ColumnCounts,
    DropRecord,
    Location,
    ManifestStore,
    ParquetStore,
    RowGroupData,
    inspect_run,
    is_run_directory,
    location_of,
    open_run,
    read_run_metadata,
)
from gridloom.storage import _location as location_module

from .conftest import S3Server
from .crashes import as_a_new_process, opened

SCHEMA = pa.schema([pa.field("topic", pa.string()), pa.field("score", pa.int64())])
HASH = "0123456789abcdef" * 4
OTHER_HASH = "fedcba9876543210" * 4
_fresh = itertools.count()


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
        columns={"topic": [f"t{r}" for r in kept], "score": [r * 10 for r in kept]},
        drops=[
            DropRecord(row_id=r, column="score", error_type="GenerationError", message=f"bad {r}")
            for r in drop
        ],
        counts={
            "topic": ColumnCounts(done=n),
            "score": ColumnCounts(done=len(kept), failed=len(drop)),
        },
    )


def open_store(where: Location, **overrides: Any) -> ManifestStore:
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
    return opened(ManifestStore.open(where, **kwargs))


def open_parquet(out: Path, **overrides: Any) -> ParquetStore:
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


def doc(where: Location) -> dict[str, Any]:
    raw = where.read_bytes("metadata.json", limit=1 << 20)
    assert raw is not None
    loaded = json.loads(raw)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(params=["local", "s3"])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh run URI: a local path, or a folder in a bucket of the S3 server."""
    if request.param == "local":
        return str(tmp_path / "run")
    server: S3Server = request.getfixturevalue("s3_server")
    server.set_env(request.getfixturevalue("monkeypatch"))
    return server.bucket("manifests") + f"/run-{next(_fresh)}"


# ------------------------------------------------------------------- round trip


async def test_a_run_round_trips_through_open_run_and_inspect_run(uri: str) -> None:
    """Row groups written by the run role read back, in order, through open_run(uri) and
    inspect_run(uri), with the counts and drops recorded."""
    store = open_store(location_of(uri))
    for g in (group(2), group(0), group(1, drop=(5,))):
        await store.write(g)
    await store.finish(status="complete", summary={"models": {"m": 1}})

    result = open_run(uri)
    assert result.table.equals(store.read_table())
    assert result.table.column("topic").to_pylist() == [f"t{r}" for r in range(10) if r != 5]
    assert result.status == "complete"
    assert result.num_records == 10
    assert result.dropped.column("row_id").to_pylist() == [5]
    assert result.columns["score"] == ColumnCounts(done=9, failed=1)
    info = inspect_run(uri, sample_rows=2)
    assert info.problems == ()
    assert info.rows_on_disk == 9
    assert sorted(info.data_files) == [0, 1, 2]
    assert info.drop_reasons == {"score": {"GenerationError": 1}}
    assert info.sample.column("topic").to_pylist() == ["t0", "t1"]
    assert is_run_directory(uri)
    assert read_run_metadata(uri)["rows_written"] == 9


async def test_metadata_json_has_exactly_parquet_stores_format(tmp_path: Path) -> None:
    """metadata.json written by the manifest store has ParquetStore's keys and row group
    entries, so existing readers work."""
    manifest = open_store(location_of(tmp_path / "m"))
    parquet = open_parquet(tmp_path / "p")
    for store in (manifest, parquet):
        await store.write(group(0, drop=(1,)))
        await store.finish(status="complete", summary={})
    mine = json.loads((tmp_path / "m" / "metadata.json").read_text())
    theirs = json.loads((tmp_path / "p" / "metadata.json").read_text())
    assert list(mine) == list(theirs)
    assert mine["row_groups"] == theirs["row_groups"]
    assert mine["counts"] == theirs["counts"]


async def test_every_row_group_gets_a_commit_entry(uri: str) -> None:
    """A written row group has its commit entry: the metadata entry plus its index."""
    where = location_of(uri)
    store = open_store(where)
    await store.write(group(1, drop=(4,)))
    raw = where.read_bytes("_commits/part-00001.json", limit=1 << 16)
    assert raw is not None
    assert json.loads(raw) == {"index": 1, **doc(where)["row_groups"]["1"]}


# ------------------------------------------------------------------ shards, absorb


async def test_commits_of_a_shard_are_absorbed_by_the_run(uri: str) -> None:
    """A shard's row groups show in metadata.json only once the run absorbs them, once."""
    where = location_of(uri)
    run = open_store(where)
    await run.write(group(0))
    shard = open_store(location_of(uri), mode="resume", role="shard")
    assert shard.completed() == {0}
    await shard.write(group(1))
    await shard.write(group(2, drop=(9,)))
    assert sorted(doc(where)["row_groups"]) == ["0"]
    assert open_run(uri).table.num_rows == 9  # open_run sees the commits already

    assert await run.absorb() == 2
    assert await run.absorb() == 0
    assert sorted(doc(where)["row_groups"]) == ["0", "1", "2"]
    assert run.rows_written == 9
    assert run.rows_dropped == 1
    assert run.read_table().column("score").to_pylist() == [r * 10 for r in range(9)]


async def test_a_shard_never_writes_metadata_or_config(uri: str) -> None:
    """A shard writes parts and commit entries only: metadata.json and config.yaml stay
    byte for byte as the run wrote them, finish included."""
    where = location_of(uri)
    await open_store(where).finish(status="running", summary={})
    before = (
        where.read_bytes("metadata.json", limit=1 << 20),
        where.read_bytes("config.yaml", limit=100),
    )
    shard = open_store(where, mode="resume", role="shard", config_text="other: text\n")
    await shard.write(group(0))
    await shard.finish(status="complete", summary={"x": 1})
    after = (
        where.read_bytes("metadata.json", limit=1 << 20),
        where.read_bytes("config.yaml", limit=100),
    )
    assert after == before
    assert shard.status == "running"


async def test_writing_a_committed_row_group_again_is_refused(uri: str) -> None:
    """A shard restarted after committing a row group refuses to write it again."""
    where = location_of(uri)
    open_store(where)
    await open_store(where, mode="resume", role="shard").write(group(1))
    again = open_store(where, mode="resume", role="shard")
    assert again.completed() == {1}
    with pytest.raises(StorageError, match="row group 1 is already written"):
        await again.write(group(1))


def test_a_shard_must_resume_with_the_drivers_num_records(tmp_path: Path) -> None:
    """A shard opened in another mode, or with another num_records, is refused."""
    where = location_of(tmp_path / "run")
    open_store(where)
    with pytest.raises(ValueError, match="mode 'resume'"):
        open_store(where, mode="new", role="shard")
    with pytest.raises(StorageError, match="the run records 10 rows, the shard was given 12"):
        open_store(where, mode="resume", role="shard", num_records=12)


# ------------------------------------------------------------------- resume rules


async def test_resume_refuses_what_parquet_store_refuses(uri: str) -> None:
    """A changed config hash, a shrunk num_records, a new row_group_size or a missing run are
    refused before anything is written."""
    where = location_of(uri)
    with pytest.raises(StorageError, match=r"no metadata\.json there"):
        open_store(where, mode="resume")
    store = open_store(where)
    await store.write(group(0))
    with pytest.raises(StorageError, match="the configuration changed"):
        open_store(where, mode="resume", config_hash=OTHER_HASH)
    with pytest.raises(StorageError, match="can only grow"):
        open_store(where, mode="resume", num_records=8)
    with pytest.raises(StorageError, match="row_group_size was 4, now 5"):
        open_store(where, mode="resume", row_group_size=5)
    with pytest.raises(OutputExistsError, match="already holds a gridloom run"):
        open_store(where)
    resumed = open_store(where, mode="resume", num_records=12)
    assert resumed.completed() == {0}
    assert resumed.num_records == 12


async def test_a_grown_run_regenerates_its_short_last_group(tmp_path: Path) -> None:
    """Resumed with more rows, the short last row group's files and commit go, to be redone."""
    where = location_of(tmp_path / "run")
    store = open_store(where)
    await store.write(group(0))
    await store.write(group(2))  # rows 8..9: short
    resumed = open_store(where, mode="resume", num_records=12)
    assert resumed.completed() == {0}
    assert where.list_names("_commits") == ["part-00000.json"]
    await resumed.write(group(2, num_records=12))
    assert resumed.read_table().num_rows == 8


async def test_overwrite_removes_gridlooms_files_only(uri: str) -> None:
    """overwrite removes the previous run (commit entries included) and leaves other files."""
    where = location_of(uri)
    store = open_store(where)
    await store.write(group(0, drop=(1,)))
    where.write_bytes("notes.txt", b"mine")
    fresh = open_store(where, mode="overwrite")
    assert fresh.completed() == frozenset()
    assert where.list_names("_commits") == []
    assert where.list_names("data") == []
    assert where.list_names("dropped") == []
    assert where.read_bytes("notes.txt", limit=10) == b"mine"


def test_foreign_files_in_commits_are_refused(uri: str) -> None:
    """A file gridloom did not write in _commits/ stops overwrite, naming it."""
    where = location_of(uri)
    open_store(where)
    where.write_bytes("_commits/readme.md", b"hi")
    with pytest.raises(StorageError, match=r"_commits/readme\.md"):
        open_store(where, mode="overwrite")


async def test_parquet_store_treats_commits_as_its_own(tmp_path: Path) -> None:
    """ParquetStore's overwrite removes a sharded run's _commits/, and a new run refuses it."""
    out = tmp_path / "run"
    store = open_store(location_of(out))
    await store.write(group(0))
    (out / "metadata.json").unlink()
    with pytest.raises(OutputExistsError, match="_commits/"):
        open_parquet(out)
    open_parquet(out, mode="overwrite")
    assert not (out / "_commits").exists()


async def test_runs_move_between_parquet_store_and_shards(tmp_path: Path) -> None:
    """A ParquetStore run is continued by a run and a shard, then resumed by ParquetStore
    again: every row group once, in order."""
    out = tmp_path / "run"
    first = open_parquet(out)
    await first.write(group(0))
    where = location_of(out)
    driver = open_store(where, mode="resume")
    assert driver.completed() == {0}
    await open_store(where, mode="resume", role="shard").write(group(1, drop=(6,)))
    assert await driver.absorb() == 1
    await driver.finish(status="interrupted", summary={})
    last = open_parquet(out, mode="resume")
    assert last.completed() == {0, 1}
    await last.write(group(2))
    await last.finish(status="complete", summary={})
    assert open_run(out).table.column("score").to_pylist() == [r * 10 for r in range(10) if r != 6]
    assert open_store(where, mode="resume").completed() == {0, 1, 2}


# ----------------------------------------------------- uncommitted and damaged parts


async def test_a_part_without_a_commit_is_ignored_then_overwritten(
    uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write stopped before its commit entry leaves a part nobody lists or reads; the
    regenerated row group overwrites it."""
    where = location_of(uri)
    store = open_store(where)
    await store.write(group(0))
    real_write_bytes = location_module.Location.write_bytes

    def no_commits(self: Location, rel: str, data: bytes) -> None:
        if rel.startswith("_commits/"):
            raise StorageError("simulated crash before the commit")
        real_write_bytes(self, rel, data)

    with monkeypatch.context() as patched:
        patched.setattr(location_module.Location, "write_bytes", no_commits)
        with pytest.raises(StorageError, match="simulated crash"):
            await store.write(group(1))
    assert "part-00001.parquet" in where.list_names("data")
    assert open_run(uri).table.num_rows == 4
    assert inspect_run(uri).unlisted == (1,)
    resumed = open_store(where, mode="resume")
    assert resumed.completed() == {0}
    await resumed.write(group(1, drop=(4,)))
    assert open_run(uri).table.column("topic").to_pylist() == [f"t{r}" for r in range(8) if r != 4]


async def test_a_corrupt_commit_entry_is_a_clear_error(uri: str) -> None:
    """A commit entry that is not a valid entry stops resume, absorb and open_run with an
    error naming the file and saying to delete it; inspect_run reports it as a problem."""
    where = location_of(uri)
    store = open_store(where)
    where.write_bytes("_commits/part-00001.json", b'{"index": 1, "rows": "many"')
    message = r"commit entry .*_commits/part-00001\.json is damaged .*delete it"
    with pytest.raises(StorageError, match=message):
        await store.absorb()
    with pytest.raises(StorageError, match=message):
        open_store(where, mode="resume")
    with pytest.raises(StorageError, match=message):
        open_run(uri)
    [problem] = inspect_run(uri).problems
    assert re.search(message, problem)
    where.write_bytes("_commits/part-00001.json", json.dumps({"index": 2}).encode())
    with pytest.raises(StorageError, match=message):
        await store.absorb()


async def test_an_oversized_commit_entry_is_refused_unread(uri: str) -> None:
    """A commit entry larger than the limit is an error, not a large read."""
    where = location_of(uri)
    store = open_store(where)
    where.write_bytes("_commits/part-00003.json", b" " * ((1 << 20) + 1))
    with pytest.raises(StorageError, match=r"part-00003\.json: larger than 1,048,576 bytes"):
        await store.absorb()


async def test_a_stale_commit_without_its_part_is_dropped(tmp_path: Path) -> None:
    """A commit entry whose data part is gone and that metadata.json does not list is removed
    on resume, and its row group generated again."""
    where = location_of(tmp_path / "run")
    open_store(where)
    await open_store(where, mode="resume", role="shard").write(group(1))
    where.delete("data/part-00001.parquet")
    resumed = open_store(where, mode="resume")
    assert resumed.completed() == frozenset()
    assert where.list_names("_commits") == []


# ---------------------------------------------------------------------- secrets


async def test_secrets_never_show(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys in the URI and the environment appear in no repr, error or file of the run."""
    s3_server.set_env(monkeypatch)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "some-secret")
    base = s3_server.bucket("secrets") + f"/run-{next(_fresh)}"
    uri = f"{base}?access_key=AKIDSECRETKEY&secret_key=uri-secret-value"
    store = open_store(location_of(uri))
    await store.write(group(0))
    await store.finish(status="complete", summary={})
    with pytest.raises(StorageError) as refused:
        open_store(location_of(uri), mode="resume", config_hash=OTHER_HASH)
    where = location_of(base)
    texts = [repr(store), repr(store.location), str(refused.value), repr(open_run(uri))]
    texts += [
        (where.read_bytes(name, limit=1 << 20) or b"").decode()
        for name in ("metadata.json", "config.yaml", "_commits/part-00000.json")
    ]
    for text in texts:
        for secret in ("some-secret", "uri-secret-value", "AKIDSECRETKEY"):
            assert secret not in text
    assert inspect_run(uri).metadata["status"] == "complete"


# ------------------------------------------------------------ interleaved shards

_GROUPS = 8
_RECORDS = 30

_op = st.one_of(
    st.tuples(st.just("write"), st.integers(0, _GROUPS - 1)),
    st.tuples(st.just("absorb"), st.just(0)),
    st.tuples(st.just("restart"), st.integers(0, 2)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    owners=st.lists(st.integers(0, 2), min_size=_GROUPS, max_size=_GROUPS),
    ops=st.lists(_op, max_size=30),
)
def test_interleaved_shard_writes_and_absorbs_keep_each_group_once(
    owners: list[int], ops: list[tuple[str, int]]
) -> None:
    """Whatever the order of shard writes, shard restarts and absorbs, every committed row
    group ends in metadata.json and the dataset exactly once."""
    where = location_of(f"memory://gridloom-interleave/run-{next(_fresh)}")
    opts: dict[str, Any] = {"num_records": _RECORDS}

    async def main() -> None:
        run = open_store(where, **opts)
        shards = [open_store(where, mode="resume", role="shard", **opts) for _ in range(3)]
        written: set[int] = set()
        for kind, arg in ops:
            if kind == "absorb":
                await run.absorb()
                assert run.completed() <= written
            elif kind == "restart":
                shards[arg] = open_store(where, mode="resume", role="shard", **opts)
            else:
                shard = shards[owners[arg]]
                if arg in written:
                    if arg in shard.completed():
                        with pytest.raises(StorageError, match="already written"):
                            await shard.write(group(arg, num_records=_RECORDS))
                    continue
                await shard.write(group(arg, num_records=_RECORDS))
                written.add(arg)
        await run.absorb()
        assert run.completed() == written
        assert sorted(int(k) for k in doc(where)["row_groups"]) == sorted(written)
        expected = [r for i in sorted(written) for r in range(i * 4, min(i * 4 + 4, _RECORDS))]
        assert run.rows_written == len(expected)
        assert open_run(where.display).table.column("score").to_pylist() == [
            r * 10 for r in expected
        ]

    trio.run(main)


def test_refused_credentials_stop_open_in_one_line(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a run with keys the server refuses is one line saying access was denied."""
    s3_server.set_env(monkeypatch)
    uri = s3_server.bucket("denied") + "/run"
    with s3_server.checking_credentials(), pytest.raises(StorageError) as info:
        open_store(location_of(uri))
    message = str(info.value)
    assert "\n" not in message
    assert "access denied" in message
    assert s3_server.url not in message


async def test_resume_removes_temp_files_of_interrupted_writes(tmp_path: Path) -> None:
    """A local run resumed removes the temp files an interrupted write left, _commits/ too."""
    out = tmp_path / "run"
    store = open_store(location_of(out))
    await store.write(group(0))
    leftovers = [out / "_commits" / ".tmp-part-00001.json-ab12", out / "data" / ".tmp-x-cd34"]
    for path in leftovers:
        path.write_bytes(b"partial")
    open_store(location_of(out), mode="resume")
    assert [p for p in leftovers if p.exists()] == []
    (out / "_commits" / ".tmp-part-00002.json-ef56").write_bytes(b"partial")
    open_parquet(out, mode="resume")
    assert not (out / "_commits" / ".tmp-part-00002.json-ef56").exists()
