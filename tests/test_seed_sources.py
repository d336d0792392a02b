"""Seed sources: in-memory DataFrames and Arrow tables, index ranges and partitions."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import SeedDatasetConfig, SeedPartition, load_config
from gridloom.config._seed_tables import fingerprint
from gridloom.errors import ConfigError
from gridloom.generators import BatchContext, SeedDatasetGenerator

pd: Any = pytest.importorskip("pandas")

ROWS: dict[str, list[Any]] = {"city": [f"c{i}" for i in range(12)], "n": list(range(12))}


def _builder(seed_source: Any, **fields: Any) -> gl.PipelineBuilder:
    return (
        gl.PipelineBuilder(seed=3)
        .run(row_group_size=4)
        .seed_dataset(seed_source, **fields)
        .expression("label", template="{{ city }}/{{ n * 2 }}")
    )


def _gen(source: Any, **fields: Any) -> SeedDatasetGenerator:
    return SeedDatasetGenerator(SeedDatasetConfig(path=source, **fields))


def _rows(generator: SeedDatasetGenerator, row_ids: list[int], seed: int = 7) -> list[Any]:
    ctx = BatchContext(row_ids=row_ids, columns={}, row_group=0, column="n", seed=seed)
    return list(generator.generate(ctx)["n"])


@pytest.mark.parametrize("kind", ["dataframe", "table", "record_batch"])
@pytest.mark.parametrize("order", ["ordered", "shuffled"])
def test_in_memory_seed_matches_the_same_rows_from_parquet(
    tmp_path: Path, kind: str, order: str
) -> None:
    """A DataFrame, Arrow table or record batch seeds a preview exactly as a parquet file of
    the same rows does."""
    table = pa.table(ROWS)
    source = {
        "dataframe": pd.DataFrame(ROWS),
        "table": table,
        "record_batch": table.to_batches()[0],
    }[kind]
    if kind == "dataframe":
        source.to_parquet(tmp_path / "seed.parquet", index=False)
    else:
        pq.write_table(table, tmp_path / "seed.parquet")
    from_file = gl.preview(_builder(str(tmp_path / "seed.parquet"), order=order).build(), 10)
    from_memory = gl.preview(_builder(source, order=order).build(), 10)
    assert from_memory.table.equals(from_file.table)
    assert from_memory.table.column("label").to_pylist()[:1] != []


def test_seed_dataset_config_accepts_a_table_for_gl_preview() -> None:
    """``SeedDatasetConfig(path=table)`` in a full config works with ``gl.preview``."""
    cfg = gl.PipelineBuilder(seed=1).expression("x", template="{{ n + 1 }}").build()
    cfg = gl.PipelineConfig(
        columns=cfg.columns,
        seed_dataset=SeedDatasetConfig(path=pa.table(ROWS), columns=["n"]),
        run=cfg.run,
    )
    result = gl.preview(cfg, 3)
    assert result.table.column_names == ["n", "x"]
    assert result.table.column("x").to_pylist() == ["1", "2", "3"]


def test_fingerprint_depends_on_content_not_chunking() -> None:
    """The same rows in other chunks give the same path; one changed value another."""
    table = pa.table(ROWS)
    chunked = pa.concat_tables([table.slice(0, 5), table.slice(5)])
    assert chunked.column(0).num_chunks == 2
    assert fingerprint(chunked) == fingerprint(table)
    path = SeedDatasetConfig(path=table).path
    assert path == SeedDatasetConfig(path=chunked).path
    frame = SeedDatasetConfig(path=pd.DataFrame(ROWS)).path
    assert frame == SeedDatasetConfig(path=pd.DataFrame(ROWS).copy()).path
    assert path.startswith("memory://")
    assert len(path) == len("memory://") + 64
    changed = pa.table({**ROWS, "n": [*ROWS["n"][:-1], 99]})
    assert SeedDatasetConfig(path=changed).path != path


def test_config_hash_and_dump_name_the_table_fingerprint() -> None:
    """``config_hash`` changes with the table's content and the dumped config names it."""
    one = _builder(pd.DataFrame(ROWS)).build()
    other = _builder(pd.DataFrame({**ROWS, "city": ["x"] * 12})).build()
    assert gl.config_hash(one) != gl.config_hash(other)
    assert gl.config_hash(one) == gl.config_hash(_builder(pd.DataFrame(ROWS).copy()).build())
    table = pa.Table.from_pandas(pd.DataFrame(ROWS), preserve_index=False)
    assert f"path: memory://{fingerprint(table.replace_schema_metadata(None))}" in (
        gl.dump_config(one)
    )


def test_a_dumped_in_memory_config_needs_the_table_again(tmp_path: Path) -> None:
    """A config naming a table not registered in this process fails to validate, naming
    ``seed_dataset.path``."""
    cfg = _builder(pd.DataFrame(ROWS)).build()
    text = gl.dump_config(cfg).replace(cfg.seed_dataset.path, "memory://" + "0" * 64)  # type: ignore[union-attr]
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError, match="not loaded in this process") as info:
        gl.preview(load_config(tmp_path / "p.yaml"), 2)
    assert info.value.field == "seed_dataset.path"


def test_something_else_is_refused_as_a_seed() -> None:
    """A seed that is neither a path, a DataFrame nor an Arrow table is a config error."""
    with pytest.raises(ConfigError, match="pandas DataFrame or a pyarrow Table") as info:
        gl.PipelineBuilder().seed_dataset([1, 2, 3])
    assert info.value.field == "seed_dataset.path"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (lambda: pd.DataFrame({"x": [2**64, 1]}, dtype=object), "Python int too large"),
        (lambda: pd.DataFrame({"x": [-(2**63) - 1]}, dtype=object), "Python int too large"),
        (lambda: pd.DataFrame({"ok": [1], "x": [[2**64]]}), "Python int too large"),
        (lambda: pd.DataFrame({"x": [{"a": 2**70}]}), "Python int too large"),
        (lambda: pd.DataFrame({"x": ["\ud800"]}, dtype=object), "surrogates not allowed"),
        (lambda: pd.DataFrame({"x": [object()]}), "did not recognize Python value type"),
        (lambda: pd.DataFrame({"x": [1, "a"]}, dtype=object), "Could not convert 'a'"),
    ],
)
def test_a_value_arrow_cannot_store_is_a_config_error_naming_its_column(
    frame: Any, message: str
) -> None:
    """A DataFrame value pyarrow cannot convert (an integer beyond 64 bits, alone or nested,
    a lone surrogate, an object of no Arrow type, mixed types) is a ConfigError naming the
    seed column — never a raw OverflowError or UnicodeError."""
    with pytest.raises(ConfigError) as info:
        gl.PipelineBuilder().seed_dataset(frame())
    assert info.value.field == "seed_dataset.path"
    text = str(info.value)
    assert "seed column 'x' holds a value Arrow cannot store: " in text
    assert message in text
    with pytest.raises(ConfigError, match="seed column 'x'"):
        SeedDatasetConfig(path=frame())


def test_a_frame_arrow_refuses_as_a_whole_is_a_config_error() -> None:
    """Duplicate column names: a ConfigError about the DataFrame."""
    with pytest.raises(ConfigError, match="Duplicate column names"):
        gl.PipelineBuilder().seed_dataset(pd.DataFrame([[1, 2]], columns=["a", "a"]))


_ODD_VALUES = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(max_size=4),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(object),
)
#: A column's values: of one kind (integers up to 70 bits, alone or in lists; text that may
#: hold lone surrogates), or anything.
_COLUMNS = st.one_of(
    st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=4),
    st.lists(st.lists(st.integers(-(2**70), 2**70), max_size=2), min_size=1, max_size=4),
    st.lists(
        st.text(st.characters(codec=None, min_codepoint=0xD700, max_codepoint=0xE000), max_size=3),
        min_size=1,
        max_size=4,
    ),
    st.lists(_ODD_VALUES, min_size=1, max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_COLUMNS, min_size=1, max_size=3))
def test_any_in_memory_seed_converts_or_is_a_config_error(columns: list[list[Any]]) -> None:
    """Whatever a DataFrame's object columns hold, seeding with it either works or is a
    ConfigError; one naming a column names one of the frame's."""
    size = min(len(values) for values in columns)
    frame = pd.DataFrame(
        {f"c{i}": pd.Series(values[:size], dtype=object) for i, values in enumerate(columns)}
    )
    error: ConfigError | None = None
    try:
        gl.PipelineBuilder().seed_dataset(frame)
    except ConfigError as exc:
        error = exc
    if error is not None:
        assert error.field == "seed_dataset.path"
        if "seed column" in str(error):
            assert any(f"seed column 'c{i}'" in str(error) for i in range(len(columns)))


async def test_resume_of_an_in_memory_seeded_run_checks_the_table(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """Resuming with the same rows (another DataFrame object) continues; other rows are
    refused as another pipeline."""
    out = tmp_path / "o"
    first = await gl.acreate(_builder(pd.DataFrame(ROWS)).build(), num_records=8, output_dir=out)
    resumed = await gl.acreate(
        _builder(pd.DataFrame(ROWS).copy()).build(), num_records=8, output_dir=out, resume=True
    )
    assert resumed.table.equals(first.table)
    changed = pd.DataFrame({**ROWS, "n": [n + 1 for n in ROWS["n"]]})
    with pytest.raises(gl.StorageError, match="config"):
        await gl.acreate(_builder(changed).build(), num_records=8, output_dir=out, resume=True)


def test_index_range_keeps_only_its_rows() -> None:
    """``index_range: [3, 7]`` seeds rows 3 to 6, then cycles over them."""
    generator = _gen(pa.table(ROWS), index_range=[3, 7])
    assert generator.num_rows == 4
    assert _rows(generator, list(range(6))) == [3, 4, 5, 6, 3, 4]


def test_partition_of_an_index_range() -> None:
    """A partition splits the rows that ``index_range`` keeps."""
    generator = _gen(pa.table(ROWS), index_range=[2, 12], partition={"index": 1, "of": 3})
    assert _rows(generator, list(range(3))) == [5, 6, 7]


def test_shuffled_and_no_cycle_apply_to_the_slice() -> None:
    """``order: shuffled`` permutes the slice only; a run longer than the slice without
    ``cycle`` is refused by the pipeline."""
    generator = _gen(pa.table(ROWS), index_range=[4, 9], order="shuffled")
    assert sorted(_rows(generator, list(range(5)))) == [4, 5, 6, 7, 8]
    cfg = _builder(pa.table(ROWS), index_range=[4, 9], cycle=False).build()
    with pytest.raises(ConfigError, match="5 rows, fewer than num_records=6"):
        gl.preview(cfg, 6)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(min_value=1, max_value=40),
    parts=st.integers(min_value=1, max_value=40),
    data=st.data(),
)
def test_partitions_cover_every_row_once_in_order(rows: int, parts: int, data: Any) -> None:
    """The partitions of ``N`` rows, read in order, are every row exactly once, in order, and
    their sizes differ by at most one."""
    parts = min(parts, rows)
    start = data.draw(st.integers(min_value=0, max_value=rows - parts))
    table = pa.table({"n": list(range(rows))})
    seen: list[int] = []
    sizes = []
    for index in range(parts):
        part = _gen(table, index_range=[start, rows], partition={"index": index, "of": parts})
        taken = _rows(part, list(range(part.num_rows)))
        sizes.append(len(taken))
        seen.extend(taken)
    assert seen == list(range(start, rows))
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=10, deadline=None)
@given(
    threads=st.integers(min_value=1, max_value=8),
    group=st.integers(min_value=1, max_value=7),
    order=st.sampled_from(["ordered", "shuffled"]),
)
def test_a_partitioned_run_is_the_same_at_any_concurrency(
    threads: int, group: int, order: str
) -> None:
    """A partitioned seed gives the same rows whatever the row group size and threads."""
    seed = pa.table(ROWS)
    base = gl.preview(_builder(seed, order=order, partition={"index": 1, "of": 2}).build(), 15)
    cfg = (
        _builder(seed, order=order, partition={"index": 1, "of": 2})
        .run(row_group_size=group, max_worker_threads=threads, max_row_groups_in_flight=threads)
        .build()
    )
    taken = base.table.column("n").to_pylist()
    assert sorted(taken[:6]) == list(range(6, 12))
    assert (taken[:6] == sorted(taken[:6])) == (order == "ordered") or order == "shuffled"
    assert gl.preview(cfg, 15).table.equals(base.table)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"index_range": [5, 20]}, "seed_dataset.index_range", "passes the end .*12 rows"),
        ({"partition": {"index": 0, "of": 13}}, "seed_dataset.partition", "leaves some empty"),
        (
            {"index_range": [0, 2], "partition": {"index": 0, "of": 3}},
            "seed_dataset.partition",
            "2 rows",
        ),
    ],
)
def test_slices_past_the_rows_fail_validation(
    tmp_path: Path, fields: dict[str, Any], field: str, message: str
) -> None:
    """An index range or partition the seed rows cannot fill fails ``validate``, naming the
    field, before any request."""
    pq.write_table(pa.table(ROWS), tmp_path / "s.parquet")
    cfg = _builder(str(tmp_path / "s.parquet"), **fields).build()
    with pytest.raises(ConfigError, match=message) as info:
        gl.validate(cfg)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ({"index_range": [3, 3]}, "0 <= start < stop"),
        ({"index_range": [-1, 3]}, "0 <= start < stop"),
        ({"index_range": [1, 2, 3]}, r"\[start, stop\]"),
        ({"partition": {"index": 2, "of": 2}}, "below of"),
        ({"partition": {"index": -1, "of": 2}}, "index"),
        ({"partition": {"index": 0, "of": 0}}, "of"),
    ],
)
def test_malformed_slices_fail_at_load(tmp_path: Path, seed: dict[str, Any], message: str) -> None:
    """A malformed index range or partition in a YAML config is a load error naming it."""
    import yaml

    doc = {"seed_dataset": {"path": "s.parquet", **seed}, "columns": []}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(tmp_path / "p.yaml")
    assert "seed_dataset" in str(info.value)


def test_slices_round_trip_through_yaml(tmp_path: Path) -> None:
    """``index_range`` and ``partition`` are written and loaded back unchanged."""
    pq.write_table(pa.table(ROWS), tmp_path / "s.parquet")
    cfg = _builder("s.parquet", index_range=[1, 9], partition={"index": 0, "of": 2}).build()
    gl.dump_config(cfg, tmp_path / "p.yaml")
    loaded = load_config(tmp_path / "p.yaml")
    assert loaded.seed_dataset == cfg.seed_dataset
    assert loaded.seed_dataset is not None
    assert loaded.seed_dataset.partition == SeedPartition(index=0, of=2)
    assert gl.config_hash(loaded) == gl.config_hash(cfg)


def test_a_seed_column_colliding_with_a_generated_one_is_refused() -> None:
    """A generated column named like a seed column fails validation naming the column."""
    cfg = (
        gl.PipelineBuilder()
        .seed_dataset(pd.DataFrame(ROWS))
        .expression("city", template="x")
        .build()
    )
    with pytest.raises(ConfigError, match="seed dataset column already fills") as info:
        gl.validate(cfg)
    assert info.value.column == "city"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """``datasets`` offline, with an empty cache, and no socket may connect anywhere."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return datasets


def test_hf_dataset_saved_locally_seeds_like_parquet(tmp_path: Path, offline: Any) -> None:
    """``hf://<folder>`` of a ``save_to_disk`` dataset seeds the same rows as a parquet file,
    with no network."""
    offline.Dataset.from_dict(ROWS).save_to_disk(str(tmp_path / "ds"))
    pq.write_table(pa.table(ROWS), tmp_path / "seed.parquet")
    from_hf = gl.preview(_builder(f"hf://{tmp_path / 'ds'}").build(), 6)
    from_file = gl.preview(_builder(str(tmp_path / "seed.parquet")).build(), 6)
    assert from_hf.table.equals(from_file.table)


def test_hf_dataset_dict_split_and_relative_folder(tmp_path: Path, offline: Any) -> None:
    """A saved dataset dict gives the asked split; the folder is relative to ``base_dir``;
    a split it lacks names ``seed_dataset.split``."""
    splits = {
        "train": offline.Dataset.from_dict(ROWS),
        "test": offline.Dataset.from_dict({"city": ["t0", "t1"], "n": [100, 101]}),
    }
    offline.DatasetDict(splits).save_to_disk(str(tmp_path / "dd"))
    result = gl.preview(_builder("hf://dd", split="test").build(), 3, base_dir=tmp_path)
    assert result.table.column("n").to_pylist() == [100, 101, 100]
    with pytest.raises(ConfigError, match="no split 'dev'") as info:
        gl.validate(_builder("hf://dd", split="dev").build(), base_dir=tmp_path)
    assert info.value.field == "seed_dataset.split"


def test_missing_hf_dataset_fails_validation_offline(tmp_path: Path, offline: Any) -> None:
    """A Hugging Face dataset that is not cached, offline, fails ``validate`` naming
    ``seed_dataset.path`` (and no socket is opened)."""
    cfg = _builder("hf://no-such-org/no-such-dataset", revision="main").build()
    with pytest.raises(ConfigError, match="cannot load the Hugging Face dataset") as info:
        gl.validate(cfg, base_dir=tmp_path)
    assert info.value.field == "seed_dataset.path"
    assert "\n" not in str(info.value).split("\n")[0]


@pytest.mark.parametrize("field", ["split", "config", "revision"])
def test_hf_fields_need_an_hf_path(field: str) -> None:
    """``split``, ``config`` and ``revision`` on a file path are refused."""
    with pytest.raises(ConfigError, match=f"{field} applies to a Hugging Face dataset"):
        gl.PipelineBuilder().seed_dataset("a.parquet", **{field: "x"})


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=4),
    group=st.integers(min_value=1, max_value=4),
    data=st.data(),
)
def test_sliced_parquet_files_read_the_same_rows_as_a_whole_table(
    sizes: list[int], group: int, data: Any
) -> None:
    """A slice of a glob of parquet files (read row group by row group) is the same rows as
    that slice of all the rows in memory."""
    total = sum(sizes)
    if total == 0:
        return
    start = data.draw(st.integers(min_value=0, max_value=total - 1))
    stop = data.draw(st.integers(min_value=start + 1, max_value=total))
    parts = data.draw(st.integers(min_value=1, max_value=stop - start))
    index = data.draw(st.integers(min_value=0, max_value=parts - 1))
    fields = {"index_range": [start, stop], "partition": {"index": index, "of": parts}}
    whole = pa.table({"n": list(range(total)), "s": [f"r{i}" for i in range(total)]})
    with tempfile.TemporaryDirectory() as folder:
        offset = 0
        for number, size in enumerate(sizes):
            part = whole.slice(offset, size)
            pq.write_table(part, Path(folder) / f"p{number}.parquet", row_group_size=group)
            offset += size
        from_files = _gen(f"{folder}/*.parquet", **fields)
        assert from_files._presliced
        expected = _gen(whole, **fields).table()
        assert from_files.table().equals(expected)


def test_a_parquet_slice_reads_only_its_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition of a parquet file reads the row groups holding its rows, not the file."""
    pq.write_table(pa.table({"n": list(range(100))}), tmp_path / "s.parquet", row_group_size=10)
    read: list[list[int]] = []
    original = pq.ParquetFile.read_row_groups

    def spy(self: Any, groups: list[int], *args: Any, **kwargs: Any) -> Any:
        read.append(list(groups))
        return original(self, groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    monkeypatch.setattr(pq, "read_table", None)  # the whole file is never read
    generator = _gen(str(tmp_path / "s.parquet"), partition={"index": 2, "of": 4})
    assert read == [[5, 6, 7]]
    assert _rows(generator, [0, 24, 25]) == [50, 74, 50]
