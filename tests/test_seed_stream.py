"""Parquet seeds streamed by row group: the same rows as a seed read whole, only the row groups
needed read, folders, replacement, the windowed shuffle, and errors found while streaming."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config._models import SeedDatasetConfig
from gridloom.errors import ConfigError, GenerationError
from gridloom.generators import BatchContext, SeedDatasetGenerator
from gridloom.generators import _seed_stream as seed_stream_module
from gridloom.generators import seed as seed_module
from gridloom.generators._seed_order import WINDOW_BLOCKS, feistel_index
from gridloom.generators._seed_stream import SeedReadError


def _table(rows: int, first: int = 0) -> pa.Table:
    ids = list(range(first, first + rows))
    return pa.table(
        {
            "id": pa.array(ids, type=pa.int64()),
            "name": pa.array([f"n{i}".encode() for i in ids], type=pa.binary()),
            "tags": pa.array([[f"t{i}"] * (i % 3) for i in ids], type=pa.list_(pa.string())),
        }
    )


def _write(path: Path, table: pa.Table, group: int) -> Path:
    pq.write_table(table, path, row_group_size=group)
    return path


def _gen(path: Path | str, streamed: bool, **fields: Any) -> SeedDatasetGenerator:
    """A generator over ``path``, streamed or read whole as asked (by the threshold)."""
    saved = seed_module.STREAM_THRESHOLD_BYTES
    seed_module.STREAM_THRESHOLD_BYTES = 0 if streamed else 1 << 40
    try:
        generator = SeedDatasetGenerator(SeedDatasetConfig(path=str(path), **fields))
    finally:
        seed_module.STREAM_THRESHOLD_BYTES = saved
    assert generator.streamed is streamed
    return generator


def _batch(
    generator: SeedDatasetGenerator,
    row_ids: Sequence[int],
    *,
    seed: int = 5,
    group: int = 0,
    group_row_ids: Sequence[int] | None = None,
) -> dict[str, list[Any]]:
    ctx = BatchContext(
        row_ids=row_ids,
        columns={},
        row_group=group,
        column="id",
        seed=seed,
        group_row_ids=group_row_ids,
    )
    result: dict[str, list[Any]] = generator.generate(ctx)
    return result


def _ids(generator: SeedDatasetGenerator, rows: int, group_size: int, seed: int = 5) -> list[int]:
    """The ``id`` of each of the first ``rows`` dataset rows, run row group by row group."""
    out: list[int] = []
    for group, first in enumerate(range(0, rows, group_size)):
        row_ids = list(range(first, min(first + group_size, rows)))
        out += _batch(generator, row_ids, seed=seed, group=group, group_row_ids=row_ids)["id"]
    return out


class _ReadSpy:
    """Counts parquet row group reads (and the columns asked for)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, tuple[str, ...]]] = []
        original = pq.ParquetFile.read_row_group

        def spy(handle: pq.ParquetFile, i: int, columns: Any = None, **kw: Any) -> pa.Table:
            self.calls.append((i, tuple(columns or ())))
            return original(handle, i, columns=columns, **kw)

        monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"columns": ["tags", "id"]},
        {"index_range": [7, 41]},
        {"partition": {"index": 2, "of": 3}},
        {"index_range": [3, 50], "partition": {"index": 1, "of": 4}, "cycle": True},
    ],
)
def test_ordered_streamed_rows_equal_rows_read_whole(tmp_path: Path, fields: Any) -> None:
    """Streamed or read whole, ``ordered`` seeds give the same columns, types and values (over
    two files, slices and ``columns``, past the end into the next cycle)."""
    _write(tmp_path / "a.parquet", _table(23), 5)
    _write(tmp_path / "b.parquet", _table(30, first=23), 7)
    whole = _gen(tmp_path / "*.parquet", streamed=False, **fields)
    streamed = _gen(tmp_path / "*.parquet", streamed=True, **fields)
    assert streamed.outputs == whole.outputs
    assert streamed.num_rows == whole.num_rows
    row_ids = list(range(2 * whole.num_rows + 3))
    assert _batch(streamed, row_ids) == _batch(whole, row_ids)


def test_streamed_files_with_other_columns_are_conformed_like_whole_ones(tmp_path: Path) -> None:
    """A file lacking a column gives nulls for it, and an integer column meeting a float one
    is promoted, streamed exactly as read whole."""
    _write(tmp_path / "a.parquet", _table(5), 2)
    _write(tmp_path / "b.parquet", pa.table({"id": [0.5, 1.5], "extra": ["x", "y"]}), 1)
    whole = _gen(tmp_path / "*.parquet", streamed=False)
    streamed = _gen(tmp_path / "*.parquet", streamed=True)
    assert streamed.outputs == whole.outputs
    assert streamed.outputs["id"] == pa.float64()
    assert _batch(streamed, range(7)) == _batch(whole, range(7))
    assert _batch(streamed, [0, 6])["extra"] == [None, "y"]


def test_streamed_types_match_whole_ones(tmp_path: Path) -> None:
    """Dictionary, large text and zoned timestamp columns keep the types and values they have
    when read whole."""
    table = pa.table(
        {
            "d": pa.array(["a", "b", "a", "c", "b"]).dictionary_encode(),
            "l": pa.array(list("vwxyz"), type=pa.large_string()),
            "ts": pa.array(range(5), type=pa.timestamp("ms", tz="UTC")),
        }
    )
    _write(tmp_path / "t.parquet", table, 2)
    whole = _gen(tmp_path / "t.parquet", streamed=False)
    streamed = _gen(tmp_path / "t.parquet", streamed=True)
    assert streamed.outputs == whole.outputs
    assert _batch(streamed, [4, 0, 3, 1]) == _batch(whole, [4, 0, 3, 1])


def test_a_streamed_run_reads_only_the_row_groups_and_columns_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building reads no row group; a run row group reads just the parquet row groups holding
    its seed rows, only the selected columns, each once while cached."""
    _write(tmp_path / "rows.parquet", _table(100), 10)
    spy = _ReadSpy(monkeypatch)

    def whole_read(*args: Any, **kwargs: Any) -> pa.Table:
        raise AssertionError("a streamed seed is never read whole")

    monkeypatch.setattr(pq, "read_table", whole_read)
    generator = _gen(tmp_path / "rows.parquet", streamed=True, columns=["id"], index_range=[35, 95])
    assert spy.calls == []
    assert _batch(generator, range(10))["id"] == list(range(35, 45))
    assert spy.calls == [(3, ("id",)), (4, ("id",))]
    assert _batch(generator, range(10, 20))["id"] == list(range(45, 55))
    assert [i for i, _columns in spy.calls] == [3, 4, 5]


def test_the_cache_is_bounded_in_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for one decoded row group, going back to an earlier one reads it again."""
    _write(tmp_path / "rows.parquet", _table(40), 10)
    spy = _ReadSpy(monkeypatch)
    generator = _gen(tmp_path / "rows.parquet", streamed=True, columns=["id"])
    stream = generator._stream
    assert stream is not None
    one_group = pq.ParquetFile(tmp_path / "rows.parquet").read_row_group(0, columns=["id"]).nbytes
    stream._cache_bytes = one_group
    spy.calls.clear()
    for row_ids in ([0, 1], [12], [3]):
        _batch(generator, row_ids)
    assert [i for i, _columns in spy.calls] == [0, 1, 0]
    assert stream._cached <= one_group


def test_a_folder_means_its_seed_files_sorted(tmp_path: Path) -> None:
    """A folder path reads the parquet files directly in it, sorted by name; other files and
    subfolders are passed over; read whole and streamed alike."""
    folder = tmp_path / "seeds"
    (folder / "nested").mkdir(parents=True)
    _write(folder / "b.parquet", _table(4, first=10), 2)
    _write(folder / "a.parquet", _table(3), 2)
    _write(folder / "nested" / "c.parquet", _table(5, first=100), 2)
    (folder / "README.txt").write_text("not a seed")
    for streamed in (False, True):
        generator = _gen(folder, streamed=streamed)
        assert [p.name for p in generator.files] == ["a.parquet", "b.parquet"]
        assert _batch(generator, range(7))["id"] == [0, 1, 2, 10, 11, 12, 13]


def test_a_folder_with_a_declared_format_reads_only_that_format(tmp_path: Path) -> None:
    """``format: jsonl`` on a folder reads its JSONL files only."""
    (tmp_path / "x.jsonl").write_text('{"id": 1}\n')
    _write(tmp_path / "y.parquet", _table(2), 2)
    generator = SeedDatasetGenerator(SeedDatasetConfig(path=str(tmp_path), format="jsonl"))
    assert [p.name for p in generator.files] == ["x.jsonl"]


@pytest.mark.parametrize("streamed", [False, True])
def test_replacement_is_deterministic_and_ignores_dropped_rows(
    tmp_path: Path, streamed: bool
) -> None:
    """Draws depend on (seed, row group) only: two generators agree, live rows take the rows
    they would with nothing dropped, another seed or row group draws otherwise; ``cycle: false``
    does not limit them."""
    _write(tmp_path / "rows.parquet", _table(50), 8)
    one = _gen(tmp_path / "rows.parquet", streamed, replacement=True, cycle=False)
    two = _gen(tmp_path / "rows.parquet", streamed, replacement=True, cycle=False)
    group = list(range(100, 140))
    full = _batch(one, group, group=3, group_row_ids=group)["id"]
    assert _batch(two, group, group=3, group_row_ids=group)["id"] == full
    live = group[::3]
    assert _batch(two, live, group=3, group_row_ids=group)["id"] == full[::3]
    assert _batch(one, group, group=4, group_row_ids=group)["id"] != full
    assert _batch(one, group, seed=6, group=3, group_row_ids=group)["id"] != full
    assert set(full) <= set(range(50))


@pytest.mark.parametrize("streamed", [False, True])
def test_replacement_draws_every_row_about_equally_often(tmp_path: Path, streamed: bool) -> None:
    """Over 1,000 run row groups of 20 rows, each of 40 seed rows (in row groups of unequal
    size) is drawn 500 times on average, none below 400 or above 600, and some row groups
    repeat a row (draws are with replacement)."""
    _write(tmp_path / "a.parquet", _table(7), 7)
    _write(tmp_path / "b.parquet", _table(33, first=7), 11)
    generator = _gen(tmp_path / "*.parquet", streamed, replacement=True)
    counts: collections.Counter[int] = collections.Counter()
    repeats = 0
    for group in range(1000):
        rows = list(range(group * 20, group * 20 + 20))
        ids = _batch(generator, rows, seed=11, group=group, group_row_ids=rows)["id"]
        counts.update(ids)
        repeats += len(ids) != len(set(ids))
    assert sorted(counts) == list(range(40))
    assert min(counts.values()) >= 400
    assert max(counts.values()) <= 600
    assert repeats > 0


def test_streamed_replacement_reads_at_most_a_few_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run row group drawing with replacement from a streamed seed reads at most
    ``WINDOW_BLOCKS`` parquet row groups."""
    _write(tmp_path / "rows.parquet", _table(400), 10)
    spy = _ReadSpy(monkeypatch)
    generator = _gen(tmp_path / "rows.parquet", streamed=True, replacement=True)
    rows = list(range(200))
    _batch(generator, rows, group=0, group_row_ids=rows)
    assert 1 <= len(spy.calls) <= WINDOW_BLOCKS


def test_windowed_shuffle_reads_a_window_per_run_row_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A streamed ``shuffled`` seed's first 40 rows (one window of four row groups of 10)
    read four row groups, and are a permutation of those row groups' rows."""
    _write(tmp_path / "rows.parquet", _table(100), 10)
    spy = _ReadSpy(monkeypatch)
    generator = _gen(tmp_path / "rows.parquet", streamed=True, order="shuffled")
    ids = _batch(generator, range(40))["id"]
    groups = sorted({i for i, _columns in spy.calls})
    assert len(groups) == WINDOW_BLOCKS
    assert sorted(ids) == sorted(g * 10 + r for g in groups for r in range(10))
    assert ids != sorted(ids)


@given(size=st.integers(1, 3000), keys=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=4))
def test_feistel_index_is_a_permutation(size: int, keys: list[int]) -> None:
    """The keyed bijection maps ``range(size)`` onto itself, for any size and keys."""
    assert sorted(feistel_index(keys, size, i) for i in range(size)) == list(range(size))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.integers(1, 60),
    parquet_group=st.integers(1, 20),
    run_group=st.integers(1, 25),
    order=st.sampled_from(["ordered", "shuffled"]),
    cycle=st.booleans(),
    cut=st.tuples(st.integers(0, 59), st.integers(1, 60)),
    parts=st.integers(1, 4),
    seed=st.integers(0, 2**31),
)
def test_streamed_rows_follow_the_documented_mapping(
    tmp_path_factory: pytest.TempPathFactory,
    rows: int,
    parquet_group: int,
    run_group: int,
    order: str,
    cycle: bool,
    cut: tuple[int, int],
    parts: int,
    seed: int,
) -> None:
    """For any sizes, slice, order and cycle: every run row takes the seed row ``indices`` says
    (the kept rows, in file order for ``ordered``, each exactly once per cycle for
    ``shuffled``), whatever the run row group size; a second generator gives the same rows;
    without ``cycle`` a row past the end fails."""
    start, stop = sorted((min(cut[0], rows - 1), min(cut[1], rows)))
    stop = max(stop, start + 1)
    fields: dict[str, Any] = {"order": order, "cycle": cycle, "index_range": [start, stop]}
    if stop - start >= parts:
        fields["partition"] = {"index": parts - 1, "of": parts}
    path = _write(tmp_path_factory.mktemp("s") / "rows.parquet", _table(rows), parquet_group)
    generator = _gen(path, streamed=True, **fields)
    kept = generator.num_rows
    total = 2 * kept + 1 if cycle else kept
    ids = _ids(generator, total, run_group, seed=seed)
    first = _gen(path, streamed=False, **fields).table().column("id").to_pylist()
    assert ids == [first[i] for i in generator.indices(range(total), seed)]
    if order == "ordered":
        assert ids == [first[i % kept] for i in range(total)]
    else:
        assert sorted(ids[:kept]) == sorted(first)
    if cycle and order == "shuffled":
        assert sorted(ids[kept : 2 * kept]) == sorted(first)
    if not cycle:
        with pytest.raises(GenerationError, match="past the end"):
            _batch(generator, [kept])
    assert _ids(_gen(path, streamed=True, **fields), total, max(1, run_group // 2), seed) == ids


def test_a_second_file_with_another_schema_is_refused_naming_it(tmp_path: Path) -> None:
    """Streamed files whose column types cannot be unified fail validation; a file that is
    not parquet fails naming it."""
    _write(tmp_path / "1.parquet", _table(4), 2)
    _write(tmp_path / "2.parquet", pa.table({"id": ["one"]}), 2)
    with pytest.raises(ConfigError, match="seed data") as info:
        _gen(tmp_path / "*.parquet", streamed=True)
    assert info.value.field == "seed_dataset.path"
    (tmp_path / "2.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ConfigError, match=r"2\.parquet"):
        _gen(tmp_path / "*.parquet", streamed=True)


def test_streamed_seed_checks_names_columns_and_rows_from_metadata(tmp_path: Path) -> None:
    """An unknown ``columns`` entry, an ``index_range`` past the end and a file without rows
    are refused when the generator is built."""
    path = _write(tmp_path / "rows.parquet", _table(10), 4)
    with pytest.raises(ConfigError, match="'nope'"):
        _gen(path, streamed=True, columns=["id", "nope"])
    with pytest.raises(ConfigError, match="passes the end"):
        _gen(path, streamed=True, index_range=[0, 11])
    empty = _write(tmp_path / "empty.parquet", _table(0), 4)
    with pytest.raises(ConfigError, match="no rows"):
        _gen(empty, streamed=True)


def test_a_row_group_over_the_size_limit_is_refused_at_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parquet row group larger (uncompressed, selected columns) than a streamed seed reads
    at once is refused when the generator is built, naming the file and the row group."""
    path = _write(tmp_path / "rows.parquet", _table(100), 50)
    monkeypatch.setattr(seed_stream_module, "MAX_GROUP_BYTES", 100)
    with pytest.raises(ConfigError, match=r"rows\.parquet': row group 0 holds [\d,]+ bytes"):
        _gen(path, streamed=True)
    monkeypatch.setattr(seed_stream_module, "MAX_GROUP_BYTES", 10**9)
    assert _gen(path, streamed=True).num_rows == 100


def test_bytes_that_are_not_utf8_fail_the_run_row_group_naming_the_file(tmp_path: Path) -> None:
    """A streamed row group with undecodable bytes raises a SeedReadError naming the file and
    the row group; the row groups before it read fine."""
    names = pa.array([b"ok"] * 4 + [b"\xff"], type=pa.binary())
    _write(tmp_path / "bad.parquet", pa.table({"name": names}), 4)
    generator = _gen(tmp_path / "bad.parquet", streamed=True)
    assert _batch(generator, range(4))["name"] == ["ok"] * 4
    with pytest.raises(SeedReadError, match=r"bad\.parquet.*not UTF-8.*row group 1"):
        _batch(generator, [4])


def test_a_file_changed_after_validation_fails_naming_it(tmp_path: Path) -> None:
    """A streamed file rewritten with other row groups after the generator was built fails the
    rows that need it, never reading the wrong rows."""
    path = _write(tmp_path / "rows.parquet", _table(10), 5)
    generator = _gen(path, streamed=True)
    _write(path, _table(10), 3)
    with pytest.raises(SeedReadError, match=r"rows\.parquet' changed after it was checked"):
        _batch(generator, [0])


def test_a_streamed_seed_is_never_held_whole(tmp_path: Path) -> None:
    """``table()`` refuses on a streamed seed."""
    generator = _gen(_write(tmp_path / "rows.parquet", _table(4), 2), streamed=True)
    with pytest.raises(RuntimeError, match="never held whole"):
        generator.table()


def test_replacement_is_left_out_of_the_dumped_config_when_false() -> None:
    """``replacement: false`` keeps older configs' hash; ``true`` is dumped and hashed."""
    plain = gl.PipelineBuilder(seed=1).seed_dataset("x.parquet").build()
    drawn = gl.PipelineBuilder(seed=1).seed_dataset("x.parquet", replacement=True).build()
    assert "replacement" not in gl.dump_config(plain)
    assert "replacement: true" in gl.dump_config(drawn)
    assert gl.config_hash(plain) != gl.config_hash(drawn)


async def test_a_run_over_a_streamed_seed_writes_the_rows_a_whole_read_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: Any
) -> None:
    """A full run (worker threads, several row groups in flight) over a streamed folder seed
    writes the same table as over the seed read whole; with ``replacement`` and ``cycle:
    false`` it may ask for more rows than the seed has."""
    folder = tmp_path / "seed"
    folder.mkdir()
    _write(folder / "a.parquet", _table(13), 4)
    _write(folder / "b.parquet", _table(9, first=13), 5)

    def config(**fields: Any) -> gl.PipelineConfig:
        return (
            gl.PipelineBuilder(seed=3)
            .run(row_group_size=6)
            .seed_dataset(str(folder), columns=["id", "name"], **fields)
            .expression("label", template="{{ name }}-{{ id * 2 }}")
            .build()
        )

    whole = await gl.acreate(config(), num_records=30, output_dir=tmp_path / "whole")
    monkeypatch.setattr(seed_module, "STREAM_THRESHOLD_BYTES", 0)
    streamed = await gl.acreate(config(), num_records=30, output_dir=tmp_path / "streamed")
    assert streamed.table.equals(whole.table)
    assert streamed.table.column("id").to_pylist() == [i % 22 for i in range(30)]
    drawn = await gl.acreate(
        config(replacement=True, cycle=False), num_records=30, output_dir=tmp_path / "drawn"
    )
    assert drawn.num_rows == 30
    assert drawn.status == "complete"


async def test_a_broken_streamed_row_group_stops_the_run_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: Any
) -> None:
    """Undecodable bytes in a parquet row group met mid-run drop the rows needing it, stop the
    run with a reason naming the file, and keep the row groups written before."""
    names = pa.array([b"ok"] * 30 + [b"\xff"] * 6 + [b"ok"] * 24, type=pa.binary())
    _write(tmp_path / "s.parquet", pa.table({"name": names, "id": list(range(60))}), 6)
    monkeypatch.setattr(seed_module, "STREAM_THRESHOLD_BYTES", 0)
    config = (
        gl.PipelineBuilder(seed=3)
        .run(row_group_size=10, max_row_groups_in_flight=1)
        .seed_dataset(str(tmp_path / "s.parquet"))
        .expression("x", template="{{ id }}")
        .build()
    )
    result = await gl.acreate(config, num_records=60, output_dir=tmp_path / "out")
    assert result.status == "stopped"
    assert result.stop_reason is not None
    assert "SeedReadError" in result.stop_reason
    assert "s.parquet': column 'name'" in result.stop_reason
    assert result.table.column("id").to_pylist() == list(range(30))
    assert [example.row_id for example in result.drop_examples] == [30]
