"""A resumed run refuses seed files that changed since the run started (the rows already
written came from the files as they were), and accepts unchanged ones."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gridloom as gl
from gridloom.errors import StorageError
from gridloom.generators._seed_fingerprint import files_fingerprint


def write_config(folder: Path, seed: str) -> Path:
    path = folder / "seeded.yaml"
    doc = {
        "seed_dataset": {"path": seed},
        "columns": [{"name": "line", "expression": "{{ city }}!"}],
        "run": {"row_group_size": 4, "seed": 3},
    }
    path.write_text(json.dumps(doc))
    return path


def parquet_seed(folder: Path, cities: list[str]) -> None:
    pq.write_table(pa.table({"city": cities}), folder / "cities.parquet")


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_resume_over_changed_seed_files_is_refused(tmp_path: Path, kind: str) -> None:
    """Growing a finished run resumes over the same seed files, but once a file changed
    (same size, other content) the resume is refused with a message saying why."""
    if kind == "parquet":
        parquet_seed(tmp_path, ["Lima", "Oslo", "Rome"])
        seed = "cities.parquet"
    else:
        (tmp_path / "cities.csv").write_text("city\nLima\nOslo\nRome\n")
        seed = "cities.csv"
    config = write_config(tmp_path, seed)
    out = tmp_path / "out"
    first = gl.create(config, num_records=4, output_dir=out)
    assert first.num_rows == 4
    recorded = json.loads((out / "metadata.json").read_text())["seed_fingerprint"]
    assert isinstance(recorded, str)
    assert len(recorded) == 64
    grown = gl.create(config, num_records=8, output_dir=out, resume=True)
    assert grown.num_rows == 8
    if kind == "parquet":
        parquet_seed(tmp_path, ["Lima", "Oslo", "Nice"])
    else:
        (tmp_path / "cities.csv").write_text("city\nLima\nOslo\nNice\n")
    with pytest.raises(StorageError, match="the seed dataset's files changed since the run"):
        gl.create(config, num_records=12, output_dir=out, resume=True)


def test_runs_recorded_without_a_fingerprint_still_resume(tmp_path: Path) -> None:
    """A run written before fingerprints existed (none in metadata.json) resumes, and
    records the files' fingerprint from then on."""
    parquet_seed(tmp_path, ["Lima", "Oslo"])
    config = write_config(tmp_path, "cities.parquet")
    out = tmp_path / "out"
    gl.create(config, num_records=4, output_dir=out)
    meta = out / "metadata.json"
    doc = json.loads(meta.read_text())
    del doc["seed_fingerprint"]
    meta.write_text(json.dumps(doc))
    assert gl.create(config, num_records=8, output_dir=out, resume=True).num_rows == 8
    assert json.loads(meta.read_text())["seed_fingerprint"] == files_fingerprint(
        [tmp_path / "cities.parquet"]
    )


def test_the_fingerprint_covers_names_order_and_content(tmp_path: Path) -> None:
    """Renaming, reordering or editing a file changes the fingerprint; the same files give
    the same one."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"x": 1}\n')
    b.write_text('{"x": 2}\n')
    base = files_fingerprint([a, b])
    assert files_fingerprint([a, b]) == base
    assert files_fingerprint([b, a]) != base
    b.write_text('{"x": 3}\n')
    assert files_fingerprint([a, b]) != base
    edited = files_fingerprint([a, b])
    renamed = tmp_path / "c.jsonl"
    a.rename(renamed)
    assert files_fingerprint([renamed, b]) != edited
