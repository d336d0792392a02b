"""Exports of a run's dataset: jsonl, csv, parquet and Hugging Face datasets, via the API and
the ``gridloom export`` command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.cli import cli, output_schema
from gridloom.errors import StorageError
from gridloom.storage import RunResult
from gridloom.storage._export import export_tables

ROWS = 11


def pipeline() -> gl.PipelineConfig:
    return (
        gl.PipelineBuilder(seed=3)
        .category("topic", ["rivers", "volcanoes"])
        .uniform("n", 1, 9, convert_to="int")
        .gaussian("x", 0.0, 1.0)
        .expression("question", 'About {{ topic }}, "quoted", comma, and\nnewline')
        .processors(
            {
                "schema_transform": {
                    "template": {
                        "messages": [
                            {"role": "user", "content": "{{ question }}"},
                            {"role": "assistant", "content": "{{ topic }} #{{ n }}"},
                        ],
                        "numbers": ["{{ n }}", 2, "{{ n }}"],
                        "meta": {"topic": "{{ topic }}", "x": "{{ x }}"},
                        "n": "{{ n }}",
                        "x": "{{ x }}",
                        "topic": "{{ topic }}",
                    }
                }
            }
        )
        .run(row_group_size=4, progress="off")
        .build()
    )


@pytest.fixture
def run(tmp_path: Path) -> RunResult:
    gl.create(pipeline(), num_records=ROWS, output_dir=tmp_path / "run")
    return gl.open_run(tmp_path / "run")


def _no_whole_table(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: RunResult) -> pa.Table:
        raise AssertionError("the export read the whole dataset")

    monkeypatch.setattr(RunResult, "table", property(refuse))


def test_iter_tables_reads_one_row_group_at_a_time(run: RunResult) -> None:
    """A run directory's dataset comes back one row group (one data file) per table."""
    tables = list(run.iter_tables())
    assert [t.num_rows for t in tables] == [4, 4, 3]
    assert pa.concat_tables(tables).equals(run.table)


def test_jsonl_round_trips_nested_values(
    run: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON Lines holds one object per row, nested values as JSON, equal to the table."""
    assert run.output_dir is not None
    expected = gl.open_run(run.output_dir).table
    _no_whole_table(monkeypatch)
    info = run.to_jsonl(tmp_path / "data.jsonl")
    assert info.rows == ROWS
    lines = (tmp_path / "data.jsonl").read_text("utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert pa.Table.from_pylist(rows, schema=expected.schema).equals(expected)
    assert rows[0]["messages"][0]["role"] == "user"


def test_csv_round_trips_with_nested_values_as_json_text(
    run: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSV keeps scalars as they are and nested values as JSON text."""
    assert run.output_dir is not None
    expected = gl.open_run(run.output_dir).table
    _no_whole_table(monkeypatch)
    run.export(tmp_path / "data.csv", "csv")
    nested = {"messages", "numbers", "meta"}
    types = {f.name: pa.string() if f.name in nested else f.type for f in expected.schema}
    read = pa_csv.read_csv(
        tmp_path / "data.csv", convert_options=pa_csv.ConvertOptions(column_types=types)
    )
    rows = read.to_pylist()
    for row in rows:
        for name in nested:
            row[name] = json.loads(row[name])
    assert pa.Table.from_pylist(rows, schema=expected.schema).equals(expected)


def test_parquet_round_trips(
    run: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One parquet file with exactly the dataset."""
    assert run.output_dir is not None
    expected = gl.open_run(run.output_dir).table
    _no_whole_table(monkeypatch)
    run.export(tmp_path / "out" / "data.parquet", "parquet")
    table = pq.read_table(tmp_path / "out" / "data.parquet")
    assert table.schema.equals(expected.schema)
    assert table.equals(expected)


def test_hf_dataset_in_memory_and_saved(run: RunResult, tmp_path: Path) -> None:
    """to_hf_dataset gives a datasets.Dataset with real features; saved, it loads back."""
    datasets = pytest.importorskip("datasets")
    dataset = run.to_hf_dataset()
    assert dataset.num_rows == ROWS
    assert dataset.to_list() == run.table.to_pylist()
    assert "string" in str(dataset.features["messages"])  # real features, not JSON text
    saved = run.to_hf_dataset(tmp_path / "hf")
    assert saved.to_list() == run.table.to_pylist()
    assert datasets.load_from_disk(str(tmp_path / "hf")).num_rows == ROWS
    with pytest.raises(gl.OutputExistsError):
        run.to_hf_dataset(tmp_path / "hf")
    assert run.to_hf_dataset(tmp_path / "hf", overwrite=True).num_rows == ROWS
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_hf_without_datasets_names_the_extra(
    run: RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the datasets package, the error says which extra to install."""
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"gridloom\[hf\]"):
        run.to_hf_dataset()


def test_an_existing_file_is_refused_unless_overwrite(run: RunResult, tmp_path: Path) -> None:
    """An export never replaces a file unless asked to."""
    target = tmp_path / "data.jsonl"
    target.write_text("keep me")
    with pytest.raises(gl.OutputExistsError, match="overwrite"):
        run.to_jsonl(target)
    assert target.read_text() == "keep me"
    run.to_jsonl(target, overwrite=True)
    assert len(target.read_text().splitlines()) == ROWS


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_failing_export_leaves_nothing_behind(run: RunResult, tmp_path: Path, fmt: str) -> None:
    """A writer failing half way leaves no partial file, and an older file untouched."""
    first = next(run.iter_tables())

    def tables() -> Iterator[pa.Table]:
        yield first
        raise gl.StorageError("disk on fire")

    folder = tmp_path / "exports"
    target = folder / f"data.{fmt}"
    with pytest.raises(gl.StorageError, match="disk on fire"):
        export_tables(first.schema, tables(), target, fmt)
    assert list(folder.iterdir()) == []
    target.write_text("old")
    with pytest.raises(gl.StorageError, match="disk on fire"):
        export_tables(first.schema, tables(), target, fmt, overwrite=True)
    assert [p.name for p in folder.iterdir()] == [target.name]
    assert target.read_text() == "old"


def test_an_in_memory_result_exports_too(tmp_path: Path) -> None:
    """A preview's rows export like a run's."""
    result = gl.preview(pipeline(), num_records=3)
    result.to_jsonl(tmp_path / "p.jsonl")
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_export_json_matches_its_schema(run: RunResult) -> None:
    """gridloom export --json reports the file written, validated against its schema."""
    assert run.output_dir is not None
    res = invoke("export", run.output_dir, "--format", "jsonl", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, output_schema("export"))
    assert doc["path"] == str(run.output_dir / "export" / "data.jsonl")
    assert doc["rows"] == ROWS
    assert doc["columns"] == run.table.schema.names
    again = invoke("export", run.output_dir, "--format", "jsonl", "--json")
    assert again.exit_code == 3
    failure = json.loads(again.stdout)
    jsonschema.validate(failure, output_schema("export"))
    assert failure["error"]["type"] == "OutputExistsError"
    target = run.output_dir / "export" / "x.csv"
    text = invoke("export", run.output_dir, "--format", "csv", "-o", target)
    assert text.exit_code == 0
    assert text.stdout.strip() == f"wrote {ROWS} rows (csv) to {target}"


def test_cli_export_of_a_folder_that_is_no_run(tmp_path: Path) -> None:
    """A folder without metadata.json is a usage error (exit 2)."""
    res = invoke("export", tmp_path, "--format", "csv", "--json")
    assert res.exit_code == 2
    assert json.loads(res.stdout)["error"]["type"] == "NotARunDirectory"


#: What a run directory holds (one row group, so one data file and no dropped file needed).
RUN_FILES = ["metadata.json", "config.yaml", "data/part-00000.parquet", "data", "x.csv", "."]


def _spellings(draw: st.DrawFn, run_dir: Path, rel: str) -> tuple[Path, Path]:
    """A path to ``run_dir / rel`` spelled some way: absolute or relative to a drawn working
    directory, with ``.``/``..`` detours, through a symbolic link to the run directory."""
    parts = [] if rel == "." else rel.split("/")
    link = run_dir.parent / "link-to-run"
    if not link.is_symlink():
        link.symlink_to(run_dir)
    base = draw(st.sampled_from([run_dir, link]))
    detours: list[str] = []
    for part in [*parts]:
        detours += draw(st.sampled_from([[], ["."], ["data", ".."], ["export", ".."]]))
        detours.append(part)
    cwd = draw(st.sampled_from([run_dir.parent, run_dir, run_dir / "data"]))
    target = base.joinpath(*detours)
    if draw(st.booleans()):
        target = Path(os.path.relpath(target, cwd))
    return target, cwd


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data(), st.sampled_from(RUN_FILES), st.sampled_from(["jsonl", "csv", "parquet"]))
def test_an_export_never_writes_inside_the_run_directory(
    exported_run: Path, data: st.DataObject, rel: str, fmt: str
) -> None:
    """However the target is spelled (relative, ``..``, a symbolic link to the run), an export
    into the run directory outside its export/ folder is refused: exit 2 with a clear error
    from the command, StorageError from the API, and no file of the run changes."""
    target, cwd = _spellings(data.draw, exported_run, rel)
    before = {p: p.read_bytes() for p in exported_run.rglob("*") if p.is_file()}
    old = Path.cwd()
    os.chdir(cwd)
    try:
        res = invoke("export", exported_run, "--format", fmt, "-o", target, "--overwrite", "--json")
        with pytest.raises(StorageError, match="run directory"):
            gl.open_run(exported_run).export(target, fmt, overwrite=True)
    finally:
        os.chdir(old)
    assert res.exit_code == 2, res.output
    error = json.loads(res.stdout)["error"]
    assert error["type"] == "UsageError"
    assert "inside the run directory" in error["message"]
    after = {p: p.read_bytes() for p in exported_run.rglob("*") if p.is_file()}
    assert after == before
    assert invoke("inspect", exported_run, "--json").exit_code == 0


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small run, with its default jsonl export written, shared by the hostile targets."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    gl.create(pipeline(), num_records=3, output_dir=out)
    assert invoke("export", out, "--format", "jsonl").exit_code == 0
    return out


def test_an_export_under_the_run_export_folder_and_outside_is_written(
    run: RunResult, tmp_path: Path
) -> None:
    """The default target (OUTPUT_DIR/export/data.<format>) and any file under export/ or
    outside the run directory are written as before; a folder holding the run is refused."""
    assert run.output_dir is not None
    assert run.export(run.output_dir / "export" / "a" / "b.jsonl", "jsonl").rows == ROWS
    assert run.export(tmp_path / "elsewhere.jsonl", "jsonl").rows == ROWS
    res = invoke("export", run.output_dir, "--format", "hf", "-o", tmp_path, "--overwrite")
    assert res.exit_code == 2
    assert "holds the run directory" in res.output
