"""Seed dataset generator: file formats, globs, ordering, shuffling and cycling."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config._models import SeedDatasetConfig
from gridloom.errors import ConfigError, GenerationError
from gridloom.generators import BatchContext, SeedDatasetGenerator
from gridloom.generators import seed as seed_module
from gridloom.generators.seed import MAX_SEED_BYTES

ROWS = [{"id": i, "name": f"n{i}", "score": i / 2} for i in range(10)]


def write_parquet(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(list(rows)), path)
    return path


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    lines = [",".join(rows[0])] + [",".join(str(v) for v in row.values()) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def seed_gen(tmp_path: Path, path: str, **fields: Any) -> SeedDatasetGenerator:
    return SeedDatasetGenerator(SeedDatasetConfig(path=path, **fields), base_dir=tmp_path)


def run(
    generator: SeedDatasetGenerator, row_ids: Sequence[int], seed: int = 5, group: int = 0
) -> dict[str, list[Any]]:
    ctx = BatchContext(row_ids=row_ids, columns={}, row_group=group, column="id", seed=seed)
    result: dict[str, list[Any]] = generator.generate(ctx)
    return result


@pytest.mark.parametrize(
    ("writer", "filename"),
    [
        (write_parquet, "rows.parquet"),
        (write_csv, "rows.csv"),
        (write_jsonl, "rows.jsonl"),
        (write_jsonl, "rows.ndjson"),
    ],
)
def test_reads_each_format_in_file_order(tmp_path: Path, writer: Any, filename: str) -> None:
    """Parquet, CSV and JSONL files give their rows in order, with the file's column types."""
    writer(tmp_path / filename, ROWS)
    generator = seed_gen(tmp_path, filename)
    assert generator.name == "seed_dataset"
    assert (generator.granularity, generator.inline, generator.is_async) == ("batch", False, False)
    assert generator.outputs == {"id": pa.int64(), "name": pa.string(), "score": pa.float64()}
    assert generator.num_rows == 10
    out = run(generator, [0, 1, 2, 9])
    assert out == {
        "id": [0, 1, 2, 9],
        "name": ["n0", "n1", "n2", "n9"],
        "score": [0.0, 0.5, 1.0, 4.5],
    }


def test_explicit_format_overrides_the_extension(tmp_path: Path) -> None:
    """format: csv reads a file whose extension says nothing."""
    write_csv(tmp_path / "rows.txt", ROWS)
    generator = seed_gen(tmp_path, "rows.txt", format="csv")
    assert run(generator, [3])["name"] == ["n3"]
    with pytest.raises(ConfigError, match="format"):
        seed_gen(tmp_path, "rows.txt")


def test_columns_restrict_the_outputs(tmp_path: Path) -> None:
    """columns selects (and orders) the seed columns used."""
    write_parquet(tmp_path / "rows.parquet", ROWS)
    generator = seed_gen(tmp_path, "rows.parquet", columns=["score", "id"])
    assert list(generator.outputs) == ["score", "id"]
    assert run(generator, [4]) == {"score": [2.0], "id": [4]}


def test_unknown_column_is_a_config_error(tmp_path: Path) -> None:
    """Selecting a column the file does not have is refused at construction."""
    write_parquet(tmp_path / "rows.parquet", ROWS)
    with pytest.raises(ConfigError, match="'nope'") as info:
        seed_gen(tmp_path, "rows.parquet", columns=["id", "nope"])
    assert info.value.field == "seed_dataset.columns"


def test_missing_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    """A path (or glob) matching no file is a ConfigError on seed_dataset.path."""
    for pattern in ("absent.parquet", "parts/*.parquet"):
        with pytest.raises(ConfigError, match=re.escape(pattern)) as info:
            seed_gen(tmp_path, pattern)
        assert info.value.field == "seed_dataset.path"


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not what its extension says is a ConfigError at construction."""
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(ConfigError, match=r"broken\.parquet"):
        seed_gen(tmp_path, "broken.parquet")


def test_glob_concatenates_files_in_sorted_order(tmp_path: Path) -> None:
    """A glob reads every matching file, sorted by path, as one dataset."""
    parts = tmp_path / "parts"
    parts.mkdir()
    write_parquet(parts / "b.parquet", ROWS[5:])
    write_parquet(parts / "a.parquet", ROWS[:5])
    write_parquet(tmp_path / "other.parquet", ROWS[:1])
    generator = seed_gen(tmp_path, "parts/*.parquet")
    assert [p.name for p in generator.files] == ["a.parquet", "b.parquet"]
    assert generator.num_rows == 10
    assert run(generator, range(10))["id"] == list(range(10))


def test_glob_over_files_with_different_columns_fills_nulls(tmp_path: Path) -> None:
    """Files lacking a column contribute nulls for it; compatible types are promoted."""
    write_jsonl(tmp_path / "1.jsonl", [{"id": 1, "tag": "x"}])
    write_jsonl(tmp_path / "2.jsonl", [{"id": 2.5}])
    generator = seed_gen(tmp_path, "*.jsonl")
    assert generator.outputs == {"id": pa.float64(), "tag": pa.string()}
    assert run(generator, [0, 1]) == {"id": [1.0, 2.5], "tag": ["x", None]}


def test_incompatible_schemas_are_a_config_error(tmp_path: Path) -> None:
    """Files whose column types cannot be unified are refused at construction."""
    write_parquet(tmp_path / "1.parquet", [{"id": 1}])
    write_parquet(tmp_path / "2.parquet", [{"id": "one"}])
    with pytest.raises(ConfigError, match="seed data"):
        seed_gen(tmp_path, "*.parquet")


def test_absolute_path_ignores_base_dir(tmp_path: Path) -> None:
    """An absolute path is used as is."""
    path = write_parquet(tmp_path / "rows.parquet", ROWS)
    generator = SeedDatasetGenerator(SeedDatasetConfig(path=str(path)), base_dir=Path("/elsewhere"))
    assert generator.num_rows == 10


def test_ordered_cycles_through_the_file(tmp_path: Path) -> None:
    """Ordered rows repeat from the top when the run outgrows the file (cycle on)."""
    write_parquet(tmp_path / "rows.parquet", ROWS)
    generator = seed_gen(tmp_path, "rows.parquet")
    assert run(generator, [8, 9, 10, 11, 25])["id"] == [8, 9, 0, 1, 5]


def test_no_cycle_refuses_rows_past_the_end(tmp_path: Path) -> None:
    """With cycle off, a row id past the end of the file raises GenerationError."""
    write_parquet(tmp_path / "rows.parquet", ROWS)
    generator = seed_gen(tmp_path, "rows.parquet", cycle=False)
    assert run(generator, [9])["id"] == [9]
    with pytest.raises(GenerationError, match="row 10 is past the end"):
        run(generator, [9, 10])


def test_shuffled_is_a_permutation_per_cycle(tmp_path: Path) -> None:
    """Shuffled rows visit every file row once per cycle, in a different order each cycle."""
    rows = [{"id": i} for i in range(50)]
    write_parquet(tmp_path / "rows.parquet", rows)
    generator = seed_gen(tmp_path, "rows.parquet", order="shuffled")
    ids = run(generator, range(150))["id"]
    cycles = [ids[0:50], ids[50:100], ids[100:150]]
    assert all(sorted(c) == list(range(50)) for c in cycles)
    assert cycles[0] != list(range(50))
    assert len({tuple(c) for c in cycles}) == 3


def test_shuffle_is_deterministic_and_independent_of_row_groups(tmp_path: Path) -> None:
    """The shuffled order depends on the seed only, not on how rows are batched."""
    write_parquet(tmp_path / "rows.parquet", [{"id": i} for i in range(40)])
    generator = seed_gen(tmp_path, "rows.parquet", order="shuffled")
    whole = run(generator, range(100))["id"]
    fresh = seed_gen(tmp_path, "rows.parquet", order="shuffled")
    pieces = [run(fresh, range(s, min(s + 7, 100)), group=s // 7)["id"] for s in range(0, 100, 7)]
    assert [i for piece in pieces for i in piece] == whole
    assert run(generator, range(100), seed=6)["id"] != whole


def test_rows_load_once_under_concurrent_use(tmp_path: Path) -> None:
    """Concurrent batches from several threads load the data once and agree."""
    write_parquet(tmp_path / "rows.parquet", ROWS)
    generator = seed_gen(tmp_path, "rows.parquet", order="shuffled")
    results: list[list[Any]] = []

    def work() -> None:
        results.append(run(generator, range(30))["id"])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(r == results[0] for r in results)
    assert generator.table() is generator.table()


# --------------------------------------------------------------------------- hostile files


def refused(tmp_path: Path, path: str, match: str, **fields: Any) -> ConfigError:
    with pytest.raises(ConfigError, match=match) as info:
        seed_gen(tmp_path, path, **fields)
    assert info.value.field == "seed_dataset.path"
    return info.value


def test_an_unterminated_quote_is_a_config_error_naming_its_line(tmp_path: Path) -> None:
    """A quoted CSV field that never closes (pyarrow would read the rest of the file into it)
    is refused, naming the file and the line the quote opens on."""
    (tmp_path / "rows.csv").write_bytes(b'a,b\n1,x\n2,"unterminated\n3,y\n')
    error = refused(tmp_path, "rows.csv", r"quoted field opened on line 3 is never closed")
    assert "rows.csv" in str(error)


def test_quotes_that_close_are_read_as_written(tmp_path: Path) -> None:
    """Quoted fields with commas, doubled quotes and line breaks, and a quote inside an
    unquoted field, are all fine."""
    (tmp_path / "rows.csv").write_bytes(b'a,b\n1,"x, ""y""\nz"\n2,5" tall\n')
    assert run(seed_gen(tmp_path, "rows.csv"), [0, 1])["b"] == ['x, "y"\nz', '5" tall']


def test_a_ragged_row_is_a_config_error_naming_its_row(tmp_path: Path) -> None:
    """A row with more fields than the header is refused with pyarrow's row number."""
    lines = ["a,b"] + [f"{i},x" for i in range(5000)] + ["1,2,3"]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    refused(tmp_path, "rows.csv", r"Row #5002: Expected 2 columns, got 3")


def test_a_header_only_csv_is_a_config_error(tmp_path: Path) -> None:
    """Seed data without rows is refused when the pipeline is validated (it used to drop
    every row of the run)."""
    (tmp_path / "rows.csv").write_text("a,b\n")
    refused(tmp_path, "rows.csv", "the seed dataset has no rows")
    config = tmp_path / "pipeline.yaml"
    config.write_text("seed_dataset: {path: rows.csv}\ncolumns: []\n")
    with pytest.raises(ConfigError, match="no rows"):
        gl.validate(config)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("values.csv", b"a,b\n1,ok\n2,caf\xe9\n", r"column 'b' holds bytes that are not UTF-8"),
        ("header.csv", b"a,caf\xe9\n1,2\n", "is not UTF-8 text"),
        (
            "rows.jsonl",
            b'{"a": "ok"}\n{"a": "caf\xe9"}\n',
            r"'a' holds text that is not UTF-8 \(data row 2\)",
        ),
        ("empty.jsonl", b"", "no columns|Empty"),
        ("empty.csv", b"", "Empty CSV"),
        ("twice.csv", b"a,a\n1,2\n", "more than one column named 'a'"),
        ("twice.jsonl", b'{"a": 1, "a": 2}\n', "specified twice"),
    ],
)
def test_malformed_files_are_config_errors(
    tmp_path: Path, name: str, content: bytes, match: str
) -> None:
    """Invalid UTF-8 (in values, names or JSON), empty files and duplicate names are refused
    when the generator is built — never stored as Python-repr bytes, never a
    UnicodeDecodeError."""
    (tmp_path / name).write_bytes(content)
    refused(tmp_path, name, match)


def test_binary_parquet_values_are_decoded_or_refused(tmp_path: Path) -> None:
    """Binary parquet columns (flat or nested) holding UTF-8 become text columns; one that
    holds other bytes is refused, naming the column and the row."""
    table = pa.table(
        {
            "flat": pa.array([b"caf\xc3\xa9", None], pa.binary()),
            "big": pa.array([b"x", b"y"], pa.large_binary()),
            "nested": pa.array([[b"a"], []], pa.list_(pa.binary())),
        }
    )
    pq.write_table(table, tmp_path / "text.parquet")
    generator = seed_gen(tmp_path, "text.parquet")
    assert generator.outputs == {
        "flat": pa.string(),
        "big": pa.large_string(),
        "nested": pa.list_(pa.string()),
    }
    assert run(generator, [0, 1]) == {
        "flat": ["café", None],
        "big": ["x", "y"],
        "nested": [["a"], []],
    }
    pq.write_table(pa.table({"blob": pa.array([b"ok", b"\xff\xfe"])}), tmp_path / "blob.parquet")
    refused(
        tmp_path,
        "blob.parquet",
        r"column 'blob' holds bytes that are not UTF-8 text \(data row 2\)",
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_paths_that_are_not_regular_files_are_config_errors(tmp_path: Path) -> None:
    """A folder without seed files, a named pipe (which would block), a device, and a glob
    matching only directories are refused at once, saying what they are."""
    (tmp_path / "folder.csv").mkdir()
    refused(tmp_path, "folder.csv", "the folder .* holds no parquet, CSV or JSONL file")
    os.mkfifo(tmp_path / "pipe.csv")
    refused(tmp_path, "pipe.csv", "is not a regular file")
    refused(tmp_path, "/dev/null", "is not a regular file", format="csv")
    refused(tmp_path, "folder*", r"no file matches .* \(only directories or special files\)")


def test_seed_data_larger_than_2_gib_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A sparse file of 2 GiB + 1 byte is refused by its size, in an instant."""
    with (tmp_path / "huge.csv").open("wb") as handle:
        handle.truncate(MAX_SEED_BYTES + 1)
    start = time.monotonic()
    refused(tmp_path, "huge.csv", r"2,147,483,649 bytes; at most 2,147,483,648 \(2 GiB\)")
    assert time.monotonic() - start < 5


def test_a_glob_matching_too_many_files_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The number of files a glob may match is bounded."""
    monkeypatch.setattr(seed_module, "MAX_SEED_FILES", 3)
    for i in range(4):
        write_csv(tmp_path / f"{i}.csv", ROWS)
    refused(tmp_path, "*.csv", "matches 4 files; a seed dataset has at most 3")


_MUTATIONS = st.sampled_from([b'"', b",", b"\n", b"\r", b"\xff", b"\x00", b"\xc3", b" ", b'""'])


@settings(max_examples=150, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["insert", "delete", "cut"]), _MUTATIONS),
        min_size=1,
        max_size=3,
    ),
    rows=st.integers(1, 8),
)
def test_mutated_csv_files_load_typed_or_are_refused(
    edits: list[tuple[int, str, bytes]], rows: int
) -> None:
    """A valid CSV with a few bytes inserted, deleted or cut off either loads into typed
    columns (text as str, never bytes or their repr) or is a ConfigError — nothing else."""
    lines = ["id,name,score"] + [f'{i},"n, {i}",{i / 2}' for i in range(rows)]
    data = bytearray(("\n".join(lines) + "\n").encode())
    for position, how, piece in edits:
        at = position % (len(data) + 1)
        if how == "insert":
            data[at:at] = piece
        elif how == "delete":
            del data[at : at + len(piece)]
        else:
            del data[at:]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "rows.csv").write_bytes(bytes(data))
        try:
            generator = seed_gen(Path(folder), "rows.csv")
        except ConfigError:
            return
    assert not any(
        pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in generator.outputs.values()
    )
    values = run(generator, range(generator.num_rows))
    for column in values.values():
        assert not any(isinstance(v, bytes) for v in column)
        assert not any(isinstance(v, str) and v.startswith(("b'", 'b"')) for v in column)
