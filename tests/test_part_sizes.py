"""Every committed part records its size, and every read of a run's files is size-bounded: a
part grown or shrunk after it was committed is refused by its size, named, before anything of
it is read (a read, ``verify``, a local resume that sets it aside, a remote resume that sets it
aside on the object store); an oversized ``metadata.json`` or lock file is refused unread; a
run written before sizes were recorded still reads, and records them once resumed."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import given

import gridloom as gl
from gridloom.errors import StorageError
from gridloom.storage import Location, _digest, location_of, open_run
from gridloom.storage._lock import LOCK_NAME, lock_holder
from gridloom.storage._metadata import JSON_LIMIT, load_json

from .conftest import S3Server
from .damage import GROUP, ROWS, damage_settings, pipeline, reference_run
from .test_manifest_store import group, open_store
from .test_resume_digest import strip_digests

GROUPS = ROWS // GROUP


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_run(tmp_path_factory)


def entries(out: Path) -> dict[str, dict[str, object]]:
    groups = json.loads((out / "metadata.json").read_text())["row_groups"]
    assert isinstance(groups, dict)
    return groups


def test_each_entry_records_the_size_of_its_files(reference: Path) -> None:
    """Every row group entry holds the size in bytes of its data part and, when it dropped
    rows, of its dropped part, as on disk."""
    for entry in entries(reference).values():
        assert entry["size"] == (reference / str(entry["file"])).stat().st_size
        if entry["dropped_file"] is None:
            assert "dropped_size" not in entry
        else:
            assert entry["dropped_size"] == (reference / str(entry["dropped_file"])).stat().st_size


def _resize(path: Path, data: st.DataObject) -> tuple[int, int]:
    """Grow ``path`` by appended bytes or truncate it, drawn; return (recorded, now) sizes."""
    raw = path.read_bytes()
    if data.draw(st.booleans(), label="grow"):
        extra = data.draw(st.binary(min_size=1, max_size=4096), label="appended")
        path.write_bytes(raw + extra)
    else:
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1), label="kept")])
    return len(raw), path.stat().st_size


def _pick_part(out: Path, data: st.DataObject) -> tuple[int, str]:
    groups = entries(out)
    index = data.draw(st.integers(0, GROUPS - 1), label="group")
    entry = groups[str(index)]
    kinds = ["file"] + (["dropped_file"] if entry["dropped_file"] is not None else [])
    return index, str(entry[data.draw(st.sampled_from(kinds), label="kind")])


@damage_settings(30)
@given(data=st.data())
def test_a_part_grown_or_shrunk_after_commit_is_refused_by_its_size(
    reference: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Bytes appended to, or cut from, any committed part (data or dropped records): reading
    the run refuses it by its size, naming it, the sizes and the repair, and verify() lists
    it with the same sentence."""
    out = tmp_path_factory.mktemp("resized") / "run"
    shutil.copytree(reference, out)
    index, rel = _pick_part(out, data)
    recorded, now = _resize(out / rel, data)
    result = open_run(out)
    read = (lambda: result.dropped) if rel.startswith("dropped/") else (lambda: result.table)
    with pytest.raises(StorageError) as info:
        read()
    message = str(info.value)
    sizes = f"(it holds {now:,} bytes, the run recorded {recorded:,})"
    assert message.startswith(f"{out / rel} does not hold the bytes written at commit {sizes}")
    assert "gridloom resume" in message
    [damaged] = result.verify().damaged
    assert damaged.row_group == index
    assert damaged.problem == f"{rel} does not hold the bytes written at commit {sizes}"


@damage_settings(10)
@given(data=st.data())
def test_a_local_resume_sets_a_resized_part_aside_by_its_size(
    reference: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """A resume finds the resized part by its size (before reading its footer), sets its
    row group aside and generates it again: the dataset is the reference's."""
    out = tmp_path_factory.mktemp("resumed") / "run"
    shutil.copytree(reference, out)
    index, rel = _pick_part(out, data)
    recorded, now = _resize(out / rel, data)
    result = gl.create(pipeline(), num_records=ROWS, output_dir=out, resume=True)
    [line] = result.summary["invocation"]["row_groups_damaged"]
    name = rel.split("/")[1] if rel.startswith("data/") else rel
    assert line == (
        f"row group {index}: {name} does not hold the bytes written at commit"
        f" (it holds {now:,} bytes, the run recorded {recorded:,})"
    )
    assert result.table.equals(open_run(reference).table)


def _without_sizes(out: Path) -> None:
    doc = json.loads((out / "metadata.json").read_text())
    for entry in doc["row_groups"].values():
        entry.pop("size", None)
        entry.pop("dropped_size", None)
    (out / "metadata.json").write_text(json.dumps(doc))


def test_a_run_written_before_sizes_reads_and_records_them_once_resumed(
    reference: Path, tmp_path: Path
) -> None:
    """Entries without sizes (an older gridloom): the run reads and verifies as before; a
    resume adopts every group and records their sizes from then on."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    _without_sizes(out)
    assert all("size" not in e for e in entries(out).values())
    assert open_run(out).table.equals(open_run(reference).table)
    assert open_run(out).verify().intact
    result = gl.create(pipeline(), num_records=ROWS, output_dir=out, resume=True)
    assert "row_groups_damaged" not in result.summary["invocation"]
    assert all("size" in e for e in entries(out).values())
    assert entries(out) == entries(reference)  # sizes (and all else) recorded again


@pytest.mark.parametrize("digests", [True, False])
def test_a_run_written_before_sizes_is_read_with_buffers_no_larger_than_its_files(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digests: bool
) -> None:
    """Entries without sizes (and without digests): every read of a part, to return the
    table, to verify it or to resume the run, asks for no more than the file holds. A read's
    buffer is allocated at its limit up front, and the 2 GiB bound used as the limit made
    each part of an older run allocate 2 GiB (an export failed under ``ulimit -v``)."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    _without_sizes(out)
    if not digests:
        strip_digests(out)
    asked: list[tuple[int, int]] = []  # (limit, the file's size)
    read_file, read_bounded = Location.read_file, _digest.read_bounded

    def spy_read_file(self: Location, rel: str, *, limit: int) -> Any:
        asked.append((limit, self.size(rel) or 0))
        return read_file(self, rel, limit=limit)

    def spy_read_bounded(path: Path, limit: int) -> bytes:
        asked.append((limit, path.stat().st_size))
        return read_bounded(path, limit)

    monkeypatch.setattr(Location, "read_file", spy_read_file)
    monkeypatch.setattr(_digest, "read_bounded", spy_read_bounded)
    assert open_run(out).table.equals(open_run(reference).table)
    assert open_run(out).verify().intact
    gl.create(pipeline(), num_records=ROWS, output_dir=out, resume=True)
    assert asked
    assert all(limit <= size for limit, size in asked), asked


def test_an_oversized_metadata_json_is_refused_unread(tmp_path: Path) -> None:
    """A metadata.json grown past JSON_LIMIT (a sparse file: no disk used) is refused with an
    error naming it, from its size: not even the limit's worth of it is read into memory."""
    path = tmp_path / "metadata.json"
    with open(path, "wb") as f:
        f.truncate(JSON_LIMIT + 1)
    tracemalloc.start()
    try:
        with pytest.raises(StorageError) as info:
            load_json(path)
        with pytest.raises(StorageError) as remote_info:
            location_of(tmp_path).read_bytes("metadata.json", limit=JSON_LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value) == f"cannot read {path}: larger than {JSON_LIMIT:,} bytes"
    assert str(remote_info.value) == f"cannot read {path}: larger than {JSON_LIMIT:,} bytes"
    assert peak < 1 << 20


def test_an_oversized_lock_file_names_no_pid_and_is_not_read_whole(tmp_path: Path) -> None:
    """The lock file holds a pid; one grown past its bound (``_lock.LOCK_LIMIT``, by something
    else) names none, and is not read whole."""
    (tmp_path / LOCK_NAME).write_bytes(b"1234\n")
    assert lock_holder(tmp_path) == 1234
    (tmp_path / LOCK_NAME).write_bytes(b"1234" + b" " * (1 << 20))
    assert lock_holder(tmp_path) is None


# ------------------------------------------------------------------ a run on S3


@damage_settings(8)
@given(data=st.data())
def test_a_remote_resume_sets_a_resized_part_aside_by_its_size(
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    """A run in a bucket of the S3 server with a part grown or shrunk after commit: a read
    refuses it by its size; a resume (nothing downloaded: the listing's sizes) moves its
    files to damaged/ in the bucket, deletes its commit entry and leaves the group to be
    generated again; a shard refuses to start over it."""
    s3_server.set_env(monkeypatch)
    uri = s3_server.bucket("sizes") + f"/run-{tmp_path_factory.mktemp('s3').name}"
    where = location_of(uri)
    driver = open_store(where)
    trio.run(driver.write, group(0, drop=(1,)))
    trio.run(driver.write, group(1))
    driver.close()
    index = data.draw(st.integers(0, 1), label="group")
    kind = "dropped" if index == 0 and data.draw(st.booleans(), label="drops") else "data"
    rel = f"{kind}/part-{index:05d}.parquet"
    raw = where.read_bytes(rel, limit=1 << 20)
    assert raw is not None
    if data.draw(st.booleans(), label="grow"):
        resized = raw + data.draw(st.binary(min_size=1, max_size=512), label="appended")
    else:
        resized = raw[: data.draw(st.integers(0, len(raw) - 1), label="kept")]
    where.write_bytes(rel, resized)
    sizes = f"(it holds {len(resized):,} bytes, the run recorded {len(raw):,})"

    result = open_run(uri)
    with pytest.raises(StorageError) as info:
        result.dropped if kind == "dropped" else result.table  # noqa: B018
    assert str(info.value).startswith(
        f"{where.where(rel)} does not hold the bytes written at commit {sizes}"
    )
    with pytest.raises(StorageError) as shard_info:
        open_store(location_of(uri), mode="resume", role="shard")
    assert f"{rel} does not hold the bytes written at commit {sizes}" in str(shard_info.value)

    resumed = open_store(location_of(uri), mode="resume")
    try:
        assert resumed.damaged == (
            f"row group {index}: {rel} does not hold the bytes written at commit {sizes}",
        )
        assert resumed.completed() == frozenset({0, 1}) - {index}
        assert not where.exists(f"_commits/part-{index:05d}.json")
        assert not where.exists(rel)
        assert where.read_bytes(f"damaged/{rel.replace('/', '-')}", limit=1 << 20) == resized
        trio.run(resumed.write, group(index, drop=(1,) if index == 0 else ()))
    finally:
        resumed.close()
    assert open_run(uri).verify().intact
    assert open_run(uri).table.num_rows == 7


def test_an_oversized_trace_is_refused_by_its_size(tmp_path: Path) -> None:
    """A trace.parquet past MAX_TRACE_BYTES (sparse: no disk used) is refused before it is
    opened, naming it and the bound, whatever its footer would claim."""
    from gridloom.trace._read import MAX_TRACE_BYTES, read_trace

    path = tmp_path / "trace.parquet"
    with open(path, "wb") as f:
        f.truncate(MAX_TRACE_BYTES + 1)
    with pytest.raises(StorageError) as info:
        read_trace(path)
    assert str(info.value) == (
        f"cannot read {path}: {MAX_TRACE_BYTES + 1:,} bytes, larger than a trace is read up to"
        f" ({MAX_TRACE_BYTES:,})"
    )


def test_a_size_a_filesystem_does_not_tell_is_not_taken_for_zero() -> None:
    """A filesystem whose listing has no sizes (some fsspec backends) gives ``None``, which
    refuses nothing by size (the digest still checks the bytes); before, it was read as 0
    bytes, and a remote resume set every healthy part aside as shrunk."""
    assert _digest.size_problem("data/part-00000.parquet", None, 1234) is None
    assert _digest.size_problem("data/part-00000.parquet", None, None) is None
    assert _digest.size_problem("data/part-00000.parquet", 0, 1234) is not None
