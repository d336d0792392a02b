"""The public API end to end: create, acreate, preview, resume, drops, determinism."""

from __future__ import annotations

import importlib
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio

import gridloom as gl
from gridloom.config import load_config, structure_pipeline

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _pipeline(run: dict[str, Any] | None = None, **extra: Any) -> gl.PipelineConfig:
    return structure_pipeline(
        {
            "columns": [
                {"name": "topic", "category": {"values": ["rivers", "deserts"], "weights": [2, 1]}},
                {"name": "n", "uniform": {"low": 1, "high": 100, "convert_to": "int"}},
                {
                    "name": "noisy",
                    "custom": {"function": "tests.test_api:jittered_cell", "dtype": "float"},
                    "depends_on": ["n"],
                },
                {"name": "label", "expression": "{{ topic }}-{{ n }}-{{ noisy }}"},
            ],
            "run": {"seed": 11, **(run or {})},
            **extra,
        }
    )


_jitter = random.Random(0)


async def jittered_cell(row: dict[str, Any], ctx: gl.CellContext) -> float:
    """Sleeps a random virtual time from a stream that runs on across calls and runs, so the
    completion order differs from run to run."""
    await trio.sleep(_jitter.random())
    return row["n"] + ctx.rng.random()


def failing_cell(row: dict[str, Any], ctx: gl.CellContext) -> int:
    """Fails on every third row."""
    if ctx.row_id % 3 == 0:
        raise ValueError(f"row {ctx.row_id} is unlucky")
    return int(row["n"]) * 2


async def jittered_failure(row: dict[str, Any], ctx: gl.CellContext) -> int:
    """Fails on every third row, after a random virtual time."""
    await trio.sleep(_jitter.random())
    if ctx.row_id % 3 == 0:
        raise ValueError("unlucky")
    return ctx.row_id


def model_cell(row: dict[str, Any], ctx: gl.CellContext) -> str:
    """Reports the model it was given."""
    return f"{ctx.model.alias}:{ctx.model.model}"


async def test_create_writes_the_documented_layout(tmp_path: Path, autojump_clock: Any) -> None:
    """A run writes config.yaml, metadata.json and one parquet file per row group."""
    out = tmp_path / "run"
    result = await gl.acreate(_pipeline({"row_group_size": 10}), num_records=25, output_dir=out)
    assert result.status == "complete"
    assert result.num_rows == 25
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    files = [pq.read_table(p) for p in sorted((out / "data").iterdir())]
    assert [t.num_rows for t in files] == [10, 10, 5]
    assert all(t.schema == files[0].schema for t in files)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "complete"
    assert meta["rows_written"] == 25
    assert meta["seed"] == 11
    assert load_config(out / "config.yaml") == _pipeline({"row_group_size": 10})
    assert result.table.equals(pq.read_table(out / "data"))
    assert {c.done for c in result.columns.values()} == {25}


async def test_output_is_identical_whatever_the_concurrency(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """Same seed → same table, across limits and random completion orders."""
    tables = []
    for i, run in enumerate(
        [
            {"row_group_size": 7, "max_row_groups_in_flight": 1, "max_submitted_tasks": 1},
            {"row_group_size": 7, "max_row_groups_in_flight": 4, "max_submitted_tasks": 64},
            {"row_group_size": 7, "max_row_groups_in_flight": 2, "scheduling": "column"},
        ]
    ):
        result = await gl.acreate(_pipeline(run), num_records=40, output_dir=tmp_path / str(i))
        tables.append(result.table)
    assert tables[0].num_rows == 40
    assert tables[0].equals(tables[1])
    assert tables[0].equals(tables[2])


async def test_output_is_identical_when_rows_drop_at_different_moments(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """Samplers after a cell column give every surviving row the same value, whichever
    sibling cells failed before or after the sampler ran; the counts are the same too."""
    config = structure_pipeline(
        {
            "columns": [
                {"name": "n", "uniform": {"low": 1, "high": 100, "convert_to": "int"}},
                {
                    "name": "a",
                    "custom": {"function": "tests.test_api:jittered_cell", "dtype": "float"},
                    "depends_on": ["n"],
                },
                {
                    "name": "bad",
                    "custom": {"function": "tests.test_api:jittered_failure", "dtype": "int"},
                },
                {"name": "g", "gaussian": {"mean": 0, "stddev": 1}, "depends_on": ["a"]},
                {"name": "u", "uuid": {}, "depends_on": ["a"]},
                {"name": "e", "expression": "{{ g }}/{{ bad }}"},
            ],
            "run": {"seed": 4, "row_group_size": 12},
        }
    )
    results = [
        await gl.acreate(config, num_records=36, output_dir=tmp_path / str(i)) for i in range(4)
    ]
    tables = [result.table for result in results]
    assert tables[0].num_rows == 24
    for table in tables[1:]:
        assert table.equals(tables[0])
    # So are the counts: a sibling's cell in a dropped row counts as dropped whether it ran
    # before the drop or not; columns upstream of the failure count as done.
    for result in results[1:]:
        assert result.columns == results[0].columns
    for name in ("n", "a", "g", "u", "e"):  # none is upstream of ``bad``
        assert results[0].columns[name] == gl.ColumnCounts(done=24, dropped=12), name
    assert results[0].columns["bad"] == gl.ColumnCounts(done=24, failed=12)


async def test_one_bad_row_in_a_batch_expression_drops_only_that_row(
    autojump_clock: Any,
) -> None:
    """A batch expression that fails to render for one row drops that row, not the group."""
    config = structure_pipeline(
        {
            "columns": [
                {"name": "x", "category": {"values": [0, 1, 2, 4]}},
                {"name": "y", "expression": {"template": "{{ 100 // x }}", "dtype": "int"}},
            ],
            "run": {"seed": 9, "row_group_size": 50},
        }
    )
    assert gl.validate(config).nodes[1].granularity == "batch"
    result = await gl.apreview(config, num_records=200)
    zeros = result.columns["x"].done - result.num_rows
    assert 0 < zeros < 200
    assert result.num_dropped == zeros
    assert 0 not in result.table.column("x").to_pylist()
    assert {d["error_type"] for d in result.dropped.to_pylist()} == {"GenerationError"}
    assert result.columns["y"] == gl.ColumnCounts(done=200 - zeros, failed=zeros, dropped=0)


async def test_resume_accepts_other_limits_but_not_another_pipeline(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """Limits and scheduling mode do not change the output, so resume allows changing them."""
    out = tmp_path / "o"
    first = await gl.acreate(_pipeline({"row_group_size": 5}), num_records=10, output_dir=out)
    slower = _pipeline({"row_group_size": 5, "max_row_groups_in_flight": 1, "scheduling": "column"})
    resumed = await gl.acreate(slower, num_records=10, output_dir=out, resume=True)
    assert resumed.table.equals(first.table)
    assert gl.config_hash(slower) == gl.config_hash(_pipeline({"row_group_size": 5}))
    assert gl.config_hash(_pipeline({"row_group_size": 6})) != gl.config_hash(slower)


async def test_run_config_copy_has_no_header_secrets(tmp_path: Path, autojump_clock: Any) -> None:
    """config.yaml next to the data never holds provider header values."""
    config = _pipeline(
        providers=[
            {
                "name": "gw",
                "endpoint": "http://127.0.0.1:9/v1",
                "headers": {"Authorization": "Bearer sk-not-a-real-key-1234567890"},
            }
        ]
    )
    await gl.acreate(config, num_records=3, output_dir=tmp_path / "o")
    text = (tmp_path / "o" / "config.yaml").read_text()
    assert "sk-not-a-real-key" not in text
    assert "Authorization: <redacted>" in text
    assert "sk-not-a-real-key" not in (tmp_path / "o" / "metadata.json").read_text()


async def test_a_storage_failure_surfaces_as_itself(
    tmp_path: Path, autojump_clock: Any, monkeypatch: Any
) -> None:
    """An error inside the run reaches the caller as the error, not wrapped in groups."""
    from gridloom.storage import ParquetStore

    original = ParquetStore.write

    async def failing_write(self: ParquetStore, data: Any) -> None:
        if data.index == 1:
            raise gl.StorageError("disk on fire")
        await original(self, data)

    monkeypatch.setattr(ParquetStore, "write", failing_write)
    with pytest.raises(gl.StorageError, match="disk on fire"):
        await gl.acreate(
            _pipeline({"row_group_size": 5}), num_records=15, output_dir=tmp_path / "o"
        )
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert meta["status"] == "failed"


async def test_different_seeds_give_different_data(autojump_clock: Any) -> None:
    """The seed matters: another seed gives other values."""
    a = await gl.apreview(_pipeline({"seed": 1}), num_records=20)
    b = await gl.apreview(_pipeline({"seed": 2}), num_records=20)
    assert a.table.column("n").to_pylist() != b.table.column("n").to_pylist()


async def test_preview_runs_in_memory(
    tmp_path: Path, autojump_clock: Any, monkeypatch: Any
) -> None:
    """preview returns rows without writing anything."""
    monkeypatch.chdir(tmp_path)
    result = await gl.apreview(_pipeline(), num_records=5)
    assert result.output_dir is None
    assert result.table.num_rows == 5
    assert result.table.column_names == ["topic", "n", "noisy", "label"]
    assert list(tmp_path.iterdir()) == []


def test_sync_create_and_preview(tmp_path: Path) -> None:
    """The blocking entry points run their own event loop."""
    config = structure_pipeline(
        {"columns": [{"name": "x", "gaussian": {"mean": 0, "stddev": 1}}], "run": {"seed": 3}}
    )
    assert gl.preview(config, num_records=4).table.num_rows == 4
    result = gl.create(config, num_records=12, output_dir=tmp_path / "o")
    assert result.table.num_rows == 12


async def test_failures_drop_rows_and_stop_their_downstream(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """A failing cell drops its row: no downstream cell runs; the drop is recorded."""
    config = structure_pipeline(
        {
            "columns": [
                {"name": "n", "uniform": {"low": 1, "high": 9, "convert_to": "int"}},
                {
                    "name": "doubled",
                    "custom": {"function": "tests.test_api:failing_cell", "dtype": "int"},
                    "depends_on": ["n"],
                },
                {"name": "text", "expression": "{{ doubled }}!"},
            ],
            "run": {"seed": 5, "row_group_size": 4},
        }
    )
    result = await gl.acreate(config, num_records=10, output_dir=tmp_path / "o")
    unlucky = [0, 3, 6, 9]
    assert result.num_rows == 6
    assert result.num_dropped == 4
    assert result.columns["n"] == gl.ColumnCounts(done=10, failed=0, dropped=0)
    assert result.columns["doubled"] == gl.ColumnCounts(done=6, failed=4, dropped=0)
    assert result.columns["text"] == gl.ColumnCounts(done=6, failed=0, dropped=4)
    dropped = result.dropped.to_pylist()
    assert [d["row_id"] for d in dropped] == unlucky
    assert {d["column"] for d in dropped} == {"doubled"}
    assert {d["error_type"] for d in dropped} == {"ValueError"}
    assert dropped[0]["message"] == "row 0 is unlucky"
    assert result.drop_reasons == {"doubled": {"ValueError": 4}}
    assert result.summary["drop_reasons"] == {"doubled": {"ValueError": 4}}
    table = result.table
    assert table.column("doubled").to_pylist() == [n * 2 for n in table.column("n").to_pylist()]


async def test_existing_output_needs_resume_or_overwrite(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """A second run into the same folder is refused, resumed, or overwritten on request."""
    out = tmp_path / "o"
    first = await gl.acreate(_pipeline({"row_group_size": 5}), num_records=15, output_dir=out)
    with pytest.raises(gl.OutputExistsError, match="resume"):
        await gl.acreate(_pipeline({"row_group_size": 5}), num_records=15, output_dir=out)
    resumed = await gl.acreate(
        _pipeline({"row_group_size": 5}), num_records=15, output_dir=out, resume=True
    )
    assert resumed.table.equals(first.table)
    changed = _pipeline({"row_group_size": 5, "seed": 12})
    with pytest.raises(gl.StorageError):
        await gl.acreate(changed, num_records=15, output_dir=out, resume=True)
    again = await gl.acreate(changed, num_records=15, output_dir=out, overwrite=True)
    assert not again.table.equals(first.table)


async def test_resume_generates_only_missing_row_groups(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """After losing a row group file (and its metadata entry), resume regenerates just that one."""
    out = tmp_path / "o"
    config = _pipeline({"row_group_size": 5})
    full = await gl.acreate(config, num_records=15, output_dir=out)
    meta_path = out / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta["row_groups"]["1"]
    meta["status"] = "interrupted"
    meta_path.write_text(json.dumps(meta))
    (out / "data" / "part-00001.parquet").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "data").iterdir()}
    resumed = await gl.acreate(config, num_records=15, output_dir=out, resume=True)
    assert resumed.table.equals(full.table)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "data").iterdir()}
    assert after["part-00000.parquet"] == before["part-00000.parquet"]
    assert after["part-00002.parquet"] == before["part-00002.parquet"]
    assert "part-00001.parquet" in after


async def test_model_bound_custom_column_gets_its_model(autojump_clock: Any) -> None:
    """A custom column naming a model alias sees that model's config in ctx.model."""
    config = structure_pipeline(
        {
            "providers": [{"name": "local", "endpoint": "http://127.0.0.1:9/v1"}],
            "models": [{"alias": "writer", "provider": "local", "model": "small-8b"}],
            "columns": [
                {"name": "n", "uniform": {"low": 0, "high": 1}},
                {
                    "name": "m",
                    "custom": {"function": "tests.test_api:model_cell", "model": "writer"},
                    "depends_on": ["n"],
                },
            ],
        }
    )
    graph = gl.validate(config)
    assert graph.nodes[1].generator.model_bound
    result = await gl.apreview(config, num_records=3)
    assert result.table.column("m").to_pylist() == ["writer:small-8b"] * 3


async def test_example_config_runs(tmp_path: Path, autojump_clock: Any) -> None:
    """examples/people.yaml (samplers, expressions, a batch function) produces sane data."""
    result = await gl.acreate(EXAMPLES / "people.yaml", num_records=300, output_dir=tmp_path / "p")
    table = result.table
    assert table.num_rows == 300
    rows = table.to_pylist()
    cities = {"France": {"Paris", "Lyon", "Marseille"}, "Kenya": {"Nairobi", "Mombasa"}}
    for row in rows:
        assert 18 <= row["age"] <= 80
        assert row["age_band"] == f"{row['age'] // 10 * 10}s"
        assert row["city"] in cities.get(row["country"], {row["city"]})
        assert row["last_order"] > row["signup"]
        assert row["customer_id"].startswith("cus_")
    assert table.schema.field("signup").type == pa.timestamp("us")


def test_public_names_are_sorted_and_importable() -> None:
    """gridloom's __all__ is sorted and every name in it exists."""
    assert gl.__all__ == sorted(gl.__all__)
    for name in gl.__all__:
        assert hasattr(gl, name), name


def test_every_public_name_loads_on_first_use() -> None:
    """Each name of __all__ has the module it comes from (but the version)."""
    import gridloom

    assert set(gridloom._PUBLIC) | {"__version__"} == set(gl.__all__)


@pytest.mark.parametrize("package", ["gridloom", "gridloom.kinds"])
def test_every_public_part_is_reachable_before_it_is_imported(package: str) -> None:
    """A package that names its submodules for lazy loading names exactly its public modules
    and subpackages on disk, so a module added later is not left unreachable as an attribute."""
    module = importlib.import_module(package)
    src = Path(module.__file__ or "").parent
    parts = {
        p.stem
        for p in src.iterdir()
        if not p.name.startswith("_") and (p.suffix == ".py" or (p / "__init__.py").exists())
    }
    assert parts
    assert set(module._SUBMODULES) == parts


LAZY_PACKAGES = ("gridloom", "gridloom.kinds", "gridloom.clients")


def _type_checking_imports(package: Any) -> dict[str, str]:
    """The names a package imports under ``if TYPE_CHECKING:`` (what type checkers read), and
    the module of each, relative to the package as in its ``_PUBLIC``."""
    import ast

    tree = ast.parse(Path(package.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
    )
    return {
        alias.asname or alias.name: "." * node.level + (node.module or "")
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_a_lazy_package_exports_what_it_declares(name: str) -> None:
    """A package that imports its names on first use (``gridloom._lazy``) declares each in
    ``_PUBLIC`` with the module defining it, exactly as its ``TYPE_CHECKING`` imports do (so
    type checkers and the running code agree); each resolves to that module's object, is kept
    once resolved, and an unknown name is an AttributeError naming the package."""
    import importlib

    package = importlib.import_module(name)
    public: dict[str, str] = package._PUBLIC
    declared = _type_checking_imports(package)
    if name == "gridloom":
        declared.pop("__version__", None)
    assert declared == public
    assert set(public) <= set(package.__all__) <= set(public) | {"__version__"}
    assert set(package.__all__) <= set(dir(package))
    for attribute, module in sorted(public.items()):
        value = getattr(package, attribute)
        assert value is getattr(importlib.import_module(module, name), attribute), attribute
        assert vars(package)[attribute] is value
    with pytest.raises(AttributeError, match=f"module {name!r} has no attribute 'nope'"):
        package.nope  # noqa: B018


def test_the_version_is_written_once() -> None:
    """``gridloom.__version__`` comes from ``gridloom/_version.py``, which pyproject.toml
    reads, so it is the installed distribution's version, and the one a run records and a
    request's User-Agent carries."""
    import importlib.metadata
    import tomllib

    from gridloom.clients._http import _user_agent
    from gridloom.storage._metadata import gridloom_version

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/gridloom/_version.py"
    assert gl.__version__ == importlib.metadata.version("gridloom")
    assert gridloom_version() == gl.__version__
    assert _user_agent() == f"gridloom/{gl.__version__}"


def test_the_namespace_has_no_stray_names() -> None:
    """Every public name of the gridloom namespace is in __all__ or is one of its subpackages
    (no `annotations` from a __future__ import, no `version` or `PackageNotFoundError`)."""
    import types

    stray = [
        name
        for name in dir(gl)
        if not name.startswith("_")
        and name not in gl.__all__
        and not isinstance(getattr(gl, name), types.ModuleType)
    ]
    assert stray == []


async def test_fill_to_target_replaces_dropped_rows(tmp_path: Path, autojump_clock: Any) -> None:
    """With fill_to_target, rows dropped by a failing cell are replaced by top-up row groups
    (new row ids after the planned ones) until num_records rows are written; the budget caps
    the extra rows; a resume adopts the top-up groups."""

    def config(fill: bool, budget: float = 1.0) -> gl.PipelineConfig:
        return structure_pipeline(
            {
                "columns": [
                    {"name": "n", "uniform": {"low": 1, "high": 9, "convert_to": "int"}},
                    {
                        "name": "doubled",
                        "custom": {"function": "tests.test_api:failing_cell", "dtype": "int"},
                        "depends_on": ["n"],
                    },
                ],
                "run": {
                    "seed": 5,
                    "row_group_size": 4,
                    "fill_to_target": fill,
                    "fill_budget": budget,
                },
            }
        )

    plain = await gl.acreate(config(False), num_records=10, output_dir=tmp_path / "plain")
    assert plain.num_rows == 6  # rows 0, 3, 6, 9 are unlucky
    filled = await gl.acreate(config(True), num_records=10, output_dir=tmp_path / "fill")
    assert filled.num_rows == 10
    # Top-ups: group 3 (rows 12..15: 12 and 15 unlucky), then group 4 (rows 16..17).
    assert (
        filled.table.column("doubled").to_pylist()[:6] == plain.table.column("doubled").to_pylist()
    )
    assert sorted(filled.dropped.column("row_id").to_pylist()) == [0, 3, 6, 9, 12, 15]
    capped = await gl.acreate(config(True, 0.3), num_records=10, output_dir=tmp_path / "cap")
    assert capped.num_rows == 8  # 3 extra rows allowed: 12..14, of which 12 drops
    resumed = await gl.acreate(
        config(True), num_records=10, output_dir=tmp_path / "fill", resume=True
    )
    assert resumed.table.equals(filled.table)
