"""A resume checks the content of every committed file against the SHA-256 recorded at commit
(or, for entries written before digests, decodes it in full), so a part whose pages were
damaged after it was written is set aside and generated again, never adopted as complete."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import hypothesis.strategies as st
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
from hypothesis import given

import gridloom as gl
from gridloom.errors import StorageError
from gridloom.storage import location_of
from gridloom.storage._commits import read_commit

from .damage import GROUP, ROWS, damage_settings, pipeline, reference_run
from .test_manifest_store import group, open_store


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_run(tmp_path_factory)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def xor(path: Path, start: int, length: int, mask: int = 0x5A) -> None:
    """Flip bits of ``length`` bytes from ``start`` in place (the size is unchanged)."""
    raw = bytearray(path.read_bytes())
    raw[start : start + length] = bytes(b ^ mask for b in raw[start : start + length])
    path.write_bytes(bytes(raw))


def break_pages(path: Path) -> None:
    """Flip 4 bytes of ``path``'s pages where its footer still reads but its pages no longer
    decode (the first such offset), as a bad sector or a stray write would."""
    raw = path.read_bytes()
    footer = len(raw) - 8 - int.from_bytes(raw[-8:-4], "little")
    for start in range(4, footer - 4):
        damaged = bytearray(raw)
        damaged[start : start + 4] = bytes(b ^ 0x5A for b in raw[start : start + 4])
        try:
            pq.read_metadata(pa.BufferReader(bytes(damaged)))
        except (OSError, pa.ArrowException):
            continue
        try:
            pq.read_table(pa.BufferReader(bytes(damaged)))
        except (OSError, pa.ArrowException):
            path.write_bytes(bytes(damaged))
            return
    raise AssertionError(f"no damage of {path} found that only its pages show")


def strip_digests(out: Path) -> None:
    """Make ``out``'s metadata.json look written by a gridloom without digests."""
    doc = json.loads((out / "metadata.json").read_text())
    for entry in doc["row_groups"].values():
        entry.pop("sha256", None)
        entry.pop("dropped_sha256", None)
    (out / "metadata.json").write_text(json.dumps(doc))


def resume(out: Path) -> gl.RunResult:
    return gl.create(pipeline(), num_records=ROWS, output_dir=out, resume=True)


def damaged_groups(result: gl.RunResult) -> list[int]:
    lines = result.summary["invocation"].get("row_groups_damaged", [])
    return sorted(int(line.split()[2].rstrip(":")) for line in lines)


def test_each_entry_records_the_digest_of_its_files(reference: Path) -> None:
    """Every row group entry holds the SHA-256 of its data part and, when it dropped rows,
    of its dropped part: the bytes on disk."""
    doc = json.loads((reference / "metadata.json").read_text())
    assert len(doc["row_groups"]) == ROWS // GROUP
    for entry in doc["row_groups"].values():
        assert entry["sha256"] == sha256(reference / entry["file"])
        if entry["dropped_file"] is None:
            assert "dropped_sha256" not in entry
        else:
            assert entry["dropped_sha256"] == sha256(reference / entry["dropped_file"])


@damage_settings(30)
@given(data=st.data())
def test_damage_anywhere_in_any_part_is_found(
    reference: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Bits flipped at any offset, over any length, of any data or dropped parts (the file
    keeps its size, and often its footer): the resume sets exactly those row groups aside
    and ends with the dataset of an undamaged run (it adopted them as complete before)."""
    out = tmp_path_factory.mktemp("run") / "run"
    shutil.copytree(reference, out)
    parts = sorted((out / "data").glob("part-*.parquet")) + sorted(
        (out / "dropped").glob("part-*.parquet")
    )
    chosen = data.draw(st.lists(st.sampled_from(parts), min_size=1, unique=True), label="files")
    for path in chosen:
        size = path.stat().st_size
        start = data.draw(st.integers(0, size - 1), label="start")
        length = data.draw(st.integers(1, size - start), label="length")
        xor(path, start, length, data.draw(st.integers(1, 255), label="mask"))
    groups = sorted({int(p.stem.removeprefix("part-")) for p in chosen})

    result = resume(out)
    assert result.status == "complete"
    assert damaged_groups(result) == groups
    assert result.table.equals(pq.read_table(reference / "data"))
    assert pq.read_table(out / "dropped").equals(pq.read_table(reference / "dropped"))
    doc = json.loads((out / "metadata.json").read_text())
    for entry in doc["row_groups"].values():
        assert entry["sha256"] == sha256(out / entry["file"])


def test_a_part_whose_pages_no_longer_decode_is_regenerated(
    reference: Path, tmp_path: Path
) -> None:
    """The outside review's case: a part's pages damaged, its footer intact (the footer check
    alone adopted it). The resume names the file and the digest mismatch, and the dataset
    afterwards has every row."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    break_pages(out / "data/part-00004.parquet")
    result = resume(out)
    [line] = result.summary["invocation"]["row_groups_damaged"]
    assert line.startswith("row group 4: part-00004.parquet does not hold the bytes written")
    assert (out / "damaged/data-part-00004.parquet").is_file()
    assert result.table.equals(pq.read_table(reference / "data"))


def test_an_old_entry_without_digests_is_decoded_in_full(reference: Path, tmp_path: Path) -> None:
    """A run written before digests: a part whose pages no longer decode (its footer still
    reads) is set aside and generated again; the intact ones are adopted and their digests
    recorded from then on."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    strip_digests(out)
    break_pages(out / "data/part-00004.parquet")
    result = resume(out)
    [line] = result.summary["invocation"]["row_groups_damaged"]
    assert line.startswith("row group 4: part-00004.parquet does not decode")
    assert result.table.equals(pq.read_table(reference / "data"))
    doc = json.loads((out / "metadata.json").read_text())
    assert all(
        entry["sha256"] == sha256(out / entry["file"]) for entry in doc["row_groups"].values()
    )


def test_an_old_undamaged_run_resumes_unchanged(reference: Path, tmp_path: Path) -> None:
    """A run written before digests, undamaged: nothing set aside, digests recorded."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    strip_digests(out)
    result = resume(out)
    assert damaged_groups(result) == []
    assert not (out / "damaged").exists()
    reference_doc = json.loads((reference / "metadata.json").read_text())
    doc = json.loads((out / "metadata.json").read_text())
    assert doc["row_groups"] == reference_doc["row_groups"]


def test_an_unlisted_part_whose_pages_are_damaged_is_generated_again(
    reference: Path, tmp_path: Path
) -> None:
    """A part committed just before a crash (not yet in metadata.json, so without a digest)
    whose pages were damaged: decoded in full, set aside, generated again."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    doc = json.loads((out / "metadata.json").read_text())
    del doc["row_groups"]["5"]
    (out / "metadata.json").write_text(json.dumps(doc))
    break_pages(out / "data/part-00005.parquet")
    result = resume(out)
    assert damaged_groups(result) == [5]
    assert result.table.equals(pq.read_table(reference / "data"))


@pytest.mark.parametrize("value", ["00ff", 12, "Z" * 64, "A" * 64])
def test_a_malformed_digest_is_a_damaged_metadata_json(
    reference: Path, tmp_path: Path, value: object
) -> None:
    """A digest that is not 64 lower-case hex digits is refused, naming the entry."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    text = (out / "metadata.json").read_text()
    (out / "metadata.json").write_text(
        re.sub(r'"sha256": "[0-9a-f]{64}"', f'"sha256": {json.dumps(value)}', text, count=1)
    )
    with pytest.raises(StorageError, match=r"row group '0' is damaged .*sha256 must be"):
        resume(out)


def test_a_local_manifest_run_checks_digests_too(tmp_path: Path) -> None:
    """A run committed through commit entries (a ManifestStore): the entries hold the digests,
    and the driver's resume sets a damaged part aside and deletes its commit entry."""
    out = tmp_path / "run"
    where = location_of(out)
    store = open_store(where)
    trio.run(store.write, group(0, drop=(1,)))
    trio.run(open_store(where, mode="resume", role="shard").write, group(1))
    for index in (0, 1):
        entry = read_commit(where, index)
        assert entry is not None
        assert entry.sha256 == sha256(out / f"data/part-{index:05d}.parquet")
    assert entry is not None
    assert entry.dropped_sha256 is None
    zero = read_commit(where, 0)
    assert zero is not None
    assert zero.dropped_sha256 == sha256(out / "dropped/part-00000.parquet")
    xor(out / "data/part-00001.parquet", 4, 40)
    resumed = open_store(where, mode="resume")
    [line] = resumed.damaged
    assert line.startswith("row group 1: part-00001.parquet does not hold the bytes written")
    assert resumed.completed() == frozenset({0})
    assert read_commit(where, 1) is None
    assert (out / "damaged/data-part-00001.parquet").is_file()
