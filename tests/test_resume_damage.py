"""A resume checks every row group on disk and generates the damaged ones again, saying so."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given

import gridloom as gl

from .damage import ROWS, damage_settings, pipeline, reference_run


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reference_run(tmp_path_factory)


def damage(path: Path, how: str, data: st.DataObject) -> None:
    raw = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")])
    elif how == "garbage":
        path.write_bytes(data.draw(st.binary(min_size=1, max_size=64), label="bytes"))
    elif how == "fewer rows":  # a readable parquet file, but not the listed one
        table = pq.read_table(path)
        pq.write_table(table.slice(0, max(0, table.num_rows - 1)), path)
    elif how == "other schema":
        pq.write_table(pa.table({"x": [1, 2]}), path)


HOW = ["empty", "truncate", "garbage", "fewer rows", "other schema"]


@damage_settings(25)
@given(data=st.data())
def test_damaged_parts_are_set_aside_and_generated_again(
    reference: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Any damage (emptied, truncated, garbage, a valid file with other rows or another
    schema) to any data or dropped files: the resume sets those row groups aside in damaged/,
    names them in its summary, and ends with exactly the dataset of an undamaged run (it
    reported "complete" with the damaged files counted before)."""
    out = tmp_path_factory.mktemp("run") / "run"
    shutil.copytree(reference, out)
    parts = sorted((out / "data").glob("part-*.parquet")) + sorted(
        (out / "dropped").glob("part-*.parquet")
    )
    chosen = data.draw(st.lists(st.sampled_from(parts), min_size=1, unique=True), label="files")
    for path in chosen:
        damage(path, data.draw(st.sampled_from(HOW), label="how"), data)
    groups = {int(p.stem.removeprefix("part-")) for p in chosen}

    result = gl.create(pipeline(), num_records=ROWS, output_dir=out, resume=True)
    assert result.status == "complete"
    repaired = result.summary["invocation"].get("row_groups_damaged", [])
    assert sorted(int(line.split()[2].rstrip(":")) for line in repaired) == sorted(groups)
    assert result.table.equals(pq.read_table(reference / "data"))
    assert pq.read_table(out / "dropped").equals(pq.read_table(reference / "dropped"))
    kept = {p.name for p in (out / "damaged").iterdir()}
    expected = {
        f"{folder}-part-{group:05d}.parquet"
        for group in groups
        for folder in ("data", "dropped")
        if (reference / folder / f"part-{group:05d}.parquet").exists()
    }
    assert kept == expected  # set aside, never deleted


def test_the_warning_names_the_file_and_why(
    reference: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An emptied part file: the warning says which row group, which file and why."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "data" / "part-00002.parquet").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="gridloom.storage"):
        result = gl.create(pipeline(), num_records=ROWS, output_dir=out, resume=True)
    [record] = [r for r in caplog.records if "damaged" in r.getMessage()]
    message = record.getMessage()
    assert message.startswith(  # its size is checked first, before anything is read
        "row group 2 is damaged: part-00002.parquet does not hold the bytes written at commit"
        " (it holds 0 bytes, the run recorded "
    )
    assert "damaged/data-part-00002.parquet" in message
    assert result.summary["invocation"]["row_groups_damaged"][0].startswith("row group 2: ")
    assert os.path.getsize(out / "damaged" / "data-part-00002.parquet") == 0
    assert result.table.equals(pq.read_table(reference / "data"))


def test_an_undamaged_resume_reports_nothing(reference: Path, tmp_path: Path) -> None:
    """Nothing damaged: nothing set aside, nothing said."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    result: Any = gl.create(pipeline(), num_records=ROWS, output_dir=out, resume=True)
    assert "row_groups_damaged" not in result.summary["invocation"]
    assert not (out / "damaged").exists()
