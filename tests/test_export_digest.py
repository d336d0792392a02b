"""Reading a run back checks each part against the SHA-256 recorded when it was committed: an
export (and ``RunResult.table``, ``iter_tables``, ``dropped``) refuses a part whose pages were
damaged after it was written, naming it and how to repair the run, and leaves nothing at the
destination; a part of a run written before digests is read as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
from click.testing import CliRunner, Result
from hypothesis import given

import gridloom as gl
from gridloom.cli import cli, output_schema
from gridloom.errors import StorageError
from gridloom.storage import DamagedFile, location_of, open_run

from .conftest import S3Server
from .damage import (
    GROUP,
    ROWS,
    damage_settings,
    damage_silently,
    flip_in_pages,
    flip_part_at,
    pipeline,
    reference_run,
)
from .test_export import pipeline as processed_pipeline
from .test_manifest_store import group, open_store
from .test_resume_digest import strip_digests

GROUPS = ROWS // GROUP


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_run(tmp_path_factory)


def copied(reference: Path, where: Path) -> Path:
    out = where / "run"
    shutil.copytree(reference, out)
    return out


def invoke(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@damage_settings(25)
@given(data=st.data())
def test_an_export_refuses_a_part_damaged_in_its_pages(
    reference: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """A byte flipped anywhere in the pages of any data part (its footer still reads; the part
    may well decode, to other values): `gridloom export` fails (exit 1) naming the part and the
    resume that repairs the run, and leaves nothing at the destination: no file, no temp file,
    an earlier export there kept as it was."""
    out = copied(reference, tmp_path_factory.mktemp("damaged"))
    index = data.draw(st.integers(0, GROUPS - 1), label="group")
    part = out / f"data/part-{index:05d}.parquet"
    flip_in_pages(part, data)
    fmt = data.draw(st.sampled_from(["jsonl", "csv", "parquet"]), label="format")
    target = out.parent / "exports" / f"data.{fmt}"
    earlier = data.draw(st.booleans(), label="earlier export")
    if earlier:
        target.parent.mkdir()
        target.write_bytes(b"an earlier export\n")
    overwrite = ["--overwrite"] if earlier else []
    result = invoke("export", out, "--format", fmt, "-o", target, "--json", *overwrite)
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, output_schema("export"))
    assert doc["error"]["type"] == "StorageError"
    message = doc["error"]["message"]
    assert message.startswith(f"{part} does not hold the bytes written at commit")
    assert f"`gridloom resume {out}`" in message
    assert names(target.parent) == ([target.name] if earlier else [])
    if earlier:
        assert target.read_bytes() == b"an earlier export\n"


def test_a_part_that_still_decodes_to_other_values_is_never_read(
    reference: Path, tmp_path: Path
) -> None:
    """The case digests are for: one bit flipped in a page, and the part decodes, to other
    values. The table, the row groups read one at a time and every export format refuse it
    (the row groups before it are read); the text says which file, what and how to repair."""
    out = copied(reference, tmp_path)
    part = out / "data/part-00003.parquet"
    damage_silently(part)
    assert not pq.read_table(part).equals(pq.read_table(reference / "data/part-00003.parquet"))
    result = open_run(out)
    with pytest.raises(StorageError) as info:
        result.table  # noqa: B018
    message = str(info.value)
    assert message.startswith(f"{part} does not hold the bytes written at commit (its SHA-256")
    assert "it was damaged after it was written, and its rows are not read" in message
    assert message.endswith(
        f"run `gridloom resume {out}` (resume=True from Python): it sets the damaged files"
        " aside in damaged/ and generates their row groups again"
    )
    tables = open_run(out).iter_tables()
    for index in range(3):
        assert next(tables).equals(pq.read_table(reference / f"data/part-{index:05d}.parquet"))
    with pytest.raises(StorageError, match=r"part-00003\.parquet does not hold"):
        next(tables)
    for fmt in ("jsonl", "csv", "parquet", "hf"):
        if fmt == "hf":
            pytest.importorskip("datasets")
        target = tmp_path / "exports" / f"data.{fmt}"
        with pytest.raises(StorageError, match=r"part-00003\.parquet does not hold"):
            open_run(out).export(target, fmt)
        assert names(target.parent) == []


def test_a_damaged_drop_file_fails_reading_the_drops_not_the_export(
    reference: Path, tmp_path: Path
) -> None:
    """A dropped-records part is checked when the drops are read (RunResult.dropped, the drop
    reasons); an export, which writes the kept rows only, goes on."""
    out = copied(reference, tmp_path)
    drops = sorted((out / "dropped").glob("part-*.parquet"))
    damage_silently(drops[0])
    with pytest.raises(StorageError) as info:
        open_run(out).dropped  # noqa: B018
    assert str(info.value).startswith(f"{drops[0]} does not hold the bytes written")
    exported = open_run(out).export(tmp_path / "data.parquet", "parquet")
    assert exported.rows == open_run(reference).num_rows
    assert pq.read_table(tmp_path / "data.parquet").equals(pq.read_table(reference / "data"))


def test_an_intact_run_exports_as_before(reference: Path, tmp_path: Path) -> None:
    """Every part as committed: each export holds the dataset."""
    result = invoke("export", reference, "--format", "parquet", "-o", tmp_path / "d.parquet")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "d.parquet").equals(pq.read_table(reference / "data"))


def test_a_run_written_before_digests_exports_as_before(reference: Path, tmp_path: Path) -> None:
    """Entries without digests (an older gridloom) are read without a check: the export
    holds the dataset; one entry without its digest beside others with theirs too."""
    out = copied(reference, tmp_path)
    strip_digests(out)
    assert invoke("export", out, "--format", "jsonl", "-o", tmp_path / "a.jsonl").exit_code == 0
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == pq.read_table(reference / "data").to_pylist()
    mixed = copied(reference, tmp_path / "mixed")
    doc = json.loads((mixed / "metadata.json").read_text())
    del doc["row_groups"]["2"]["sha256"]
    (mixed / "metadata.json").write_text(json.dumps(doc))
    assert open_run(mixed).table.equals(pq.read_table(reference / "data"))


def test_the_result_of_a_run_checks_its_parts_too(tmp_path: Path) -> None:
    """The RunResult a run returns (its store, behind the pipeline's processors) reads its
    parts through the same check, and verify() lists the damaged one."""
    result = gl.create(processed_pipeline(), num_records=11, output_dir=tmp_path / "run")
    part = tmp_path / "run/data/part-00001.parquet"
    damage_silently(part)
    with pytest.raises(StorageError, match=r"part-00001\.parquet does not hold"):
        result.export(tmp_path / "data.jsonl", "jsonl")
    assert not (tmp_path / "data.jsonl").exists()
    verification = result.verify()
    assert verification.files == 3
    assert [d.file for d in verification.damaged] == ["data/part-00001.parquet"]
    with pytest.raises(StorageError, match=r"part-00001\.parquet does not hold"):
        result.table  # noqa: B018


def test_a_preview_has_no_files_to_check() -> None:
    """An in-memory result: nothing to verify, and its rows come back as one table."""
    result = gl.preview(pipeline(), num_records=5)
    assert result.verify().files == 0
    assert result.verify().intact
    assert pa.concat_tables(result.iter_tables()).equals(result.table)


# ------------------------------------------------------------------ manifest runs


@pytest.fixture(params=["local", "s3"])
def manifest_run(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A run written through commit entries (ManifestStore: driver and a shard), in a local
    folder or in a bucket of the S3 server: row groups 0 (a drop), 1 and 2."""
    if request.param == "local":
        uri = str(tmp_path / "run")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        server.set_env(request.getfixturevalue("monkeypatch"))
        uri = server.bucket("verify") + f"/run-{tmp_path.name}"
    where = location_of(uri)
    driver = open_store(where)
    trio.run(driver.write, group(0, drop=(1,)))
    shard = open_store(location_of(uri), mode="resume", role="shard")
    trio.run(shard.write, group(1))
    trio.run(shard.write, group(2))
    return uri


@damage_settings(10)
@given(data=st.data())
def test_a_manifest_run_refuses_a_damaged_part(
    manifest_run: str, tmp_path: Path, data: st.DataObject
) -> None:
    """A run at a URI or committed through commit entries: a byte flipped in the pages of any
    part, data or dropped records, is refused when read (naming it by its URI), found by
    verify(), and the export leaves nothing behind; with the part put back all reads again."""
    where = location_of(manifest_run)
    index = data.draw(st.integers(0, 2), label="group")
    kind = "dropped" if index == 0 and data.draw(st.booleans(), label="drops") else "data"
    rel = f"{kind}/part-{index:05d}.parquet"
    original = flip_part_at(where, rel, data)
    try:
        result = open_run(manifest_run)
        verification = result.verify()
        assert verification.files == 4
        [damaged] = verification.damaged
        assert damaged == DamagedFile(row_group=index, file=rel, problem=damaged.problem)
        assert damaged.problem.startswith(f"{rel} does not hold the bytes written at commit")
        if where.local is None:
            assert verification.repair is not None
            assert "copy" in verification.repair
        read = (lambda: result.dropped) if kind == "dropped" else (lambda: result.table)
        with pytest.raises(StorageError) as info:
            read()
        assert str(info.value).startswith(f"{where.where(rel)} does not hold the bytes")
        target = tmp_path / "exports" / "data.jsonl"
        exported = invoke("export", manifest_run, "--format", "jsonl", "-o", target)
        if kind == "data":
            assert exported.exit_code == 1
            assert f"{where.where(rel)} does not hold the bytes" in exported.output
            assert names(target.parent) == []
        else:
            assert exported.exit_code == 0, exported.output
            target.unlink()
    finally:
        where.write_bytes(rel, original)
    assert open_run(manifest_run).verify().intact
    assert open_run(manifest_run).table.num_rows == 9


def test_parts_are_read_into_arrow_memory(reference: Path) -> None:
    """A part's bytes are read into Arrow's own memory, never a Python ``bytes`` a decoded
    table would share: such a table living until the interpreter exits (a run's drop
    examples) made ``gridloom create`` abort there (SIGABRT) in about 1 run of 5 with drops."""
    location = location_of(reference)
    for rel in ("data/part-00000.parquet", "metadata.json"):
        payload = location.read_file(rel, limit=location.size(rel))
        assert isinstance(payload, pa.Buffer)
        assert payload.parent is None  # no Python object behind it
        assert payload.to_pybytes() == (reference / rel).read_bytes()
    run = open_run(reference)
    assert run.dropped.num_rows > 0
    assert run.table.num_rows > 0
