"""A store records the fingerprint of the Python code the columns call; a resume with other
code is refused naming the columns, unless the change is accepted, which is recorded; runs
recorded before the fingerprint existed resume without a check. A shard never checks: its
driver does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from gridloom.errors import StorageError
from gridloom.storage import (
    CodeFingerprint,
    ColumnCounts,
    ManifestStore,
    ParquetStore,
    RowGroupData,
    location_of,
)

from .crashes import as_a_new_process, opened

# --------------------------------------------------------------------------- the stores

SCHEMA = pa.schema([pa.field("score", pa.int64())])
HASH = "0123456789abcdef" * 4
OLD, NEW = "a" * 64, "b" * 64


def group(index: int) -> RowGroupData:
    rows = list(range(index * 4, index * 4 + 4))
    return RowGroupData(
        index=index,
        first_row_id=index * 4,
        num_rows=4,
        row_ids=rows,
        columns={"score": rows},
        counts={"score": ColumnCounts(done=4)},
    )


def open_store(kind: str, out: Path, **overrides: Any) -> ParquetStore | ManifestStore:
    kwargs: dict[str, Any] = {
        "schema": SCHEMA,
        "config_text": "columns: []\n",
        "config_hash": HASH,
        "num_records": 12,
        "row_group_size": 4,
        "seed": 7,
        "mode": "resume",
    }
    kwargs.update(overrides)
    as_a_new_process()  # a run opened again stands for a new process
    if kind == "parquet":
        return opened(ParquetStore.open(out, **kwargs))
    return opened(ManifestStore.open(location_of(str(out)), **kwargs))


def code(digest: str, *, accept: bool = False) -> CodeFingerprint:
    return CodeFingerprint(columns={"score": digest}, accept_change=accept)


async def started(kind: str, out: Path) -> None:
    """A run recording the code ``OLD`` for ``score``, interrupted after row group 0."""
    store = open_store(kind, out, mode="new", code=code(OLD))
    await store.write(group(0))
    await store.finish(status="interrupted", summary={})


def metadata(out: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / "metadata.json").read_text())
    return loaded


@pytest.mark.parametrize("kind", ["parquet", "manifest"])
async def test_a_store_refuses_changed_code_and_records_an_accepted_change(
    tmp_path: Path, kind: str
) -> None:
    """Both stores record the code's fingerprint; a resume with another is refused naming the
    column, before anything on disk changes; the same code resumes; an accepted change is
    recorded (when, the digests, the row groups and rows written before) and becomes the
    fingerprint a later resume checks."""
    out = tmp_path / "run"
    await started(kind, out)
    assert metadata(out)["code_fingerprint"] == {"score": OLD}
    assert metadata(out)["code_changes"] == []
    before = (out / "metadata.json").read_bytes()
    with pytest.raises(StorageError, match=r"Python code of column 'score' changed") as info:
        open_store(kind, out, code=code(NEW))
    assert "--accept-code-change" in str(info.value)
    assert "--overwrite" in str(info.value)
    assert (out / "metadata.json").read_bytes() == before
    open_store(kind, out, code=code(OLD)).close()

    store = open_store(kind, out, code=code(NEW, accept=True))
    await store.write(group(1))
    await store.finish(status="interrupted", summary={})
    doc = metadata(out)
    assert doc["code_fingerprint"] == {"score": NEW}
    (change,) = doc["code_changes"]
    assert change["columns"] == {"score": {"was": OLD, "now": NEW}}
    assert change["row_groups_before"] == [[0, 0]]
    assert change["rows_before"] == 4
    assert store.code_changes == doc["code_changes"]
    store = open_store(kind, out, code=code(NEW))  # the new code is the recorded one now
    assert len(store.code_changes) == 1


async def test_a_shard_does_not_check_the_code(tmp_path: Path) -> None:
    """A shard (given no code: its driver checked) opens a run whose recorded code differs
    from its own, and leaves the record alone; the driver role is refused."""
    out = tmp_path / "run"
    await started("manifest", out)
    where = location_of(str(out))
    as_a_new_process()
    shard = ManifestStore.open(
        where,
        schema=SCHEMA,
        config_text="",
        config_hash=HASH,
        num_records=12,
        row_group_size=4,
        seed=7,
        mode="resume",
        role="shard",
    )
    await shard.write(group(2))
    assert metadata(out)["code_fingerprint"] == {"score": OLD}
    with pytest.raises(StorageError, match="column 'score'"):
        open_store("manifest", out, code=code(NEW))


@pytest.mark.parametrize("kind", ["parquet", "manifest"])
@pytest.mark.parametrize("recorded", ["absent", "null"])
async def test_runs_recorded_without_a_code_fingerprint_resume_unchecked(
    tmp_path: Path, kind: str, recorded: str
) -> None:
    """A run written before the fingerprint existed (no field; or null: not computed)
    resumes with any code, and records the code's fingerprint from then on."""
    out = tmp_path / "run"
    await started(kind, out)
    doc = metadata(out)
    if recorded == "absent":
        del doc["code_fingerprint"]
        del doc["code_changes"]
    else:
        doc["code_fingerprint"] = None
    (out / "metadata.json").write_text(json.dumps(doc))
    store = open_store(kind, out, code=code(NEW))
    assert store.code_changes == []
    assert metadata(out)["code_fingerprint"] == {"score": NEW}


async def test_unknown_code_matches_unknown_code(tmp_path: Path) -> None:
    """Code fingerprinted "unknown" (a builtin) on both sides is not a change: it cannot be
    seen, as documented."""
    out = tmp_path / "run"
    store = open_store("parquet", out, mode="new", code=code("unknown"))
    await store.finish(status="interrupted", summary={})
    open_store("parquet", out, code=code("unknown")).close()
    with pytest.raises(StorageError, match="column 'score'"):
        open_store("parquet", out, code=code(NEW))
