"""Conditional columns: ``skip_when`` leaves a cell null without calling its generator."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.cli import cli, output_schema
from gridloom.config import (
    PipelineConfig,
    SimulationConfig,
    config_hash,
    dump_config,
    structure_pipeline,
)
from gridloom.engine._skip import SkipCondition
from gridloom.errors import ConfigError, TemplateError, UnknownReferenceError
from gridloom.generators import BatchContext, CellContext
from gridloom.progress import render_summary
from gridloom.simulated import serve_simulated
from gridloom.storage import ColumnCounts
from gridloom.storage._metadata import counts_from_json

ALPHA = "{{ topic == 'alpha' }}"


def _pipeline(
    endpoint: dict[str, Any], columns: list[dict[str, Any]], **run: Any
) -> PipelineConfig:
    return structure_pipeline(
        {
            "providers": [endpoint],
            "models": [{"alias": "m", "provider": "ep", "model": "w", "max_parallel_requests": 4}],
            "columns": [
                {"name": "topic", "category": {"values": ["alpha", "beta", "gamma"]}},
                *columns,
            ],
            "run": {"seed": 11, "row_group_size": 10, **run},
        }
    )


def _sim() -> dict[str, Any]:
    return {"name": "ep", "type": "simulated"}


def _invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# --------------------------------------------------------------------------- over the wire


async def test_skipped_cells_send_no_request(tmp_path: Path, autojump_clock: Any) -> None:
    """The endpoint receives one request per cell not skipped, none for skipped cells; both
    spellings of the condition work; skipped cells are null and counted as skipped."""
    async with serve_simulated(SimulationConfig()) as server:
        config = _pipeline(
            {"name": "ep", "endpoint": server.url},
            [
                {"name": "maybe", "llm_text": {"model": "m", "prompt": "On {{ topic }}"}},
                {
                    "name": "braced",
                    "llm_text": {"model": "m", "prompt": "About {{ topic }}"},
                    "skip_when": ALPHA,
                },
                {
                    "name": "bare",
                    "llm_text": {"model": "m", "prompt": "Of {{ topic }}"},
                    "skip_when": "topic != 'beta'",
                },
            ],
        )
        result = await gl.acreate(config, num_records=30, output_dir=tmp_path / "out")
        requests = server.app.statistics().models["w"].requests
    rows = result.table.to_pylist()
    alpha = sum(r["topic"] == "alpha" for r in rows)
    beta = sum(r["topic"] == "beta" for r in rows)
    assert len(rows) == 30
    assert 0 < alpha < 30
    assert 0 < beta < 30
    assert requests == 30 + (30 - alpha) + beta
    assert all((r["braced"] is None) == (r["topic"] == "alpha") for r in rows)
    assert all((r["bare"] is None) == (r["topic"] != "beta") for r in rows)
    assert result.columns["braced"] == ColumnCounts(done=30 - alpha, skipped=alpha)
    assert result.columns["bare"] == ColumnCounts(done=beta, skipped=30 - beta)
    assert result.columns["maybe"] == ColumnCounts(done=30)
    assert result.table.schema.field("braced").nullable


async def test_downstream_sees_none_and_chained_skips_cost_nothing(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """A template reading a skipped cell renders None; a column skipping on that null skips
    too, and neither sends a request."""
    async with serve_simulated(SimulationConfig()) as server:
        config = _pipeline(
            {"name": "ep", "endpoint": server.url},
            [
                {
                    "name": "first",
                    "llm_text": {"model": "m", "prompt": "On {{ topic }}"},
                    "skip_when": ALPHA,
                },
                {"name": "echo", "expression": "[{{ first }}]"},
                {
                    "name": "second",
                    "llm_text": {"model": "m", "prompt": "Again: {{ first }}"},
                    "skip_when": "first is none",
                },
            ],
        )
        result = await gl.acreate(config, num_records=20, output_dir=tmp_path / "out")
        requests = server.app.statistics().models["w"].requests
    rows = result.table.to_pylist()
    kept = [r for r in rows if r["topic"] != "alpha"]
    assert 0 < len(kept) < 20
    assert requests == 2 * len(kept)
    for row in rows:
        if row["topic"] == "alpha":
            assert (row["first"], row["echo"], row["second"]) == (None, "[None]", None)
        else:
            assert row["echo"] == f"[{row['first']}]"
            assert row["second"]
    assert result.columns["second"] == ColumnCounts(done=len(kept), skipped=20 - len(kept))


# --------------------------------------------------------------------------- batch columns


class _Calls:
    """A batch function that records the row ids it was called with."""

    def __init__(self) -> None:
        self.row_ids: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, columns: dict[str, list[Any]], ctx: BatchContext) -> list[str]:
        with self._lock:
            self.row_ids.extend(ctx.row_ids)
        return [
            f"{topic}-{row_id}" for topic, row_id in zip(columns["topic"], ctx.row_ids, strict=True)
        ]


def _batch_pipeline(calls: _Calls, *, skip: bool) -> PipelineConfig:
    condition = ALPHA if skip else None
    builder = (
        gl.PipelineBuilder(seed=5)
        .run(row_group_size=16)
        .category("topic", ["alpha", "beta", "gamma"])
        .uniform("u", 0, 1000, skip_when=condition)
        .category("pick", ["x", "y", "z", "w"], weights=[1, 2, 3, 4], skip_when=condition)
        .custom("tagged", calls, mode="batch", depends_on=["topic"], skip_when=condition)
    )
    return builder.build()


def test_batch_columns_keep_the_values_of_rows_not_skipped() -> None:
    """Samplers give every row not skipped the value it has without skip_when; a batch
    function is called with the rows not skipped only, and skipped rows are null."""
    with_skip, without = _Calls(), _Calls()
    skipped = gl.preview(_batch_pipeline(with_skip, skip=True), num_records=40).table.to_pylist()
    plain = gl.preview(_batch_pipeline(without, skip=False), num_records=40).table.to_pylist()
    alpha = [i for i, row in enumerate(plain) if row["topic"] == "alpha"]
    assert 0 < len(alpha) < 40
    assert sorted(without.row_ids) == list(range(40))
    assert sorted(with_skip.row_ids) == [i for i in range(40) if i not in alpha]
    for i, (a, b) in enumerate(zip(skipped, plain, strict=True)):
        assert a["topic"] == b["topic"]
        if i in alpha:
            assert (a["u"], a["pick"], a["tagged"]) == (None, None, None)
        else:
            assert (a["u"], a["pick"], a["tagged"]) == (b["u"], b["pick"], b["tagged"])


def test_a_batch_whose_rows_are_all_skipped_calls_nothing() -> None:
    """When the condition holds for every row of a batch, its function is never called."""
    calls = _Calls()
    config = (
        gl.PipelineBuilder(seed=1)
        .run(row_group_size=8)
        .category("topic", ["alpha"])
        .custom("tagged", calls, mode="batch", depends_on=["topic"], skip_when="true")
        .build()
    )
    result = gl.preview(config, num_records=8)
    assert calls.row_ids == []
    assert result.table.column("tagged").to_pylist() == [None] * 8
    assert result.columns["tagged"] == ColumnCounts(skipped=8)


# --------------------------------------------------------------------------- bad conditions


@pytest.mark.parametrize(
    ("condition", "error", "message"),
    [
        (
            "{{ topik == 'a' }}",
            UnknownReferenceError,
            "unknown column 'topik'; did you mean 'topic'",
        ),
        ("{{ topic == }}", TemplateError, "condition does not parse"),
        ("{{ a }} and {{ b }}", TemplateError, "must be one Jinja expression"),
        ("topic.__class__", TemplateError, "column 'maybe', field 'skip_when'"),
        ("   ", ConfigError, "skip_when"),
        (True, ConfigError, "expected a string, got bool"),
    ],
)
def test_a_bad_condition_fails_validation(
    condition: object, error: type[Exception], message: str
) -> None:
    """A condition naming an unknown column, not parsing, not one expression, reaching for
    private attributes, blank or not text fails validate, naming the column and skip_when."""
    with pytest.raises(error) as caught:
        gl.validate(
            _pipeline(
                _sim(),
                [
                    {
                        "name": "maybe",
                        "llm_text": {"model": "m", "prompt": "x"},
                        "skip_when": condition,
                    }
                ],
            )
        )
    assert message in str(caught.value)
    assert "'maybe'" in str(caught.value)
    assert "skip_when" in str(caught.value)


def test_a_condition_failing_at_run_time_drops_its_row() -> None:
    """A condition that raises for a row (an undefined attribute) fails that cell: the row is
    dropped with the reason, the others go on."""
    config = (
        gl.PipelineBuilder(seed=2)
        .run(row_group_size=20)
        .uniform("n", 0, 9, convert_to="int")
        .expression("label", "n{{ n }}", skip_when="n.nothing if n > 6 else false")
        .build()
    )
    result = gl.preview(config, num_records=20)
    rows = result.table.to_pylist()
    dropped = result.dropped.to_pylist()
    assert dropped
    assert all(row["n"] <= 6 for row in rows)
    assert len(rows) + len(dropped) == 20
    assert {d["column"] for d in dropped} == {"label"}
    assert all("skip_when" in d["message"] and "UndefinedError" in d["message"] for d in dropped)
    assert result.columns["label"].failed == len(dropped)


def test_the_graph_waits_for_the_columns_a_condition_reads() -> None:
    """A column whose condition reads another runs after it (an edge in the graph), and
    validate describes its condition."""
    config = (
        gl.PipelineBuilder(seed=1)
        .uniform("n", 0, 9, convert_to="int")
        .expression("late", "{{ 2 }}")
        .expression("label", "x", skip_when="{{ late == '2' and n > 3 }}")
        .build()
    )
    graph = gl.validate(config)
    described = {node["node"]: node for node in graph.describe()}
    assert described["label"]["depends_on"] in (["late", "n"], ["n", "late"])
    assert described["label"]["skip_when"] == "{{ late == '2' and n > 3 }}"
    assert "skip_when" not in described["late"]


# --------------------------------------------------------------------------- config


def test_configs_without_skip_when_keep_their_hash_and_round_trip() -> None:
    """An unset skip_when is left out of a dumped config (hashes of older configs stay); a set
    one round-trips through YAML and the builder makes the same column."""
    plain = _pipeline(_sim(), [{"name": "a", "expression": "x"}])
    assert "skip_when" not in dump_config(plain)
    skipped = _pipeline(_sim(), [{"name": "a", "expression": "x", "skip_when": ALPHA}])
    text = dump_config(skipped)
    assert "skip_when:" in text
    assert structure_pipeline(json.loads(json.dumps(_yaml(text)))) == skipped
    assert config_hash(skipped) != config_hash(plain)
    built = (
        gl.PipelineBuilder(seed=11)
        .run(row_group_size=10)
        .provider("ep", type="simulated")
        .model("m", provider="ep", model="w", max_parallel_requests=4)
        .category("topic", ["alpha", "beta", "gamma"])
        .expression("a", "x", skip_when=ALPHA)
        .build()
    )
    assert built.columns == skipped.columns


def _yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def test_counts_written_before_skip_when_read_as_zero() -> None:
    """metadata.json counts without ``skipped`` (older runs) read with skipped 0."""
    counts = counts_from_json({"a": {"done": 3, "failed": 1, "dropped": 2}})
    assert counts == {"a": ColumnCounts(done=3, failed=1, dropped=2, skipped=0)}
    assert counts["a"].as_dict()["skipped"] == 0


def test_the_summary_table_shows_skipped_only_when_there_are_some() -> None:
    """The run summary gains a skipped column only when a column skipped cells."""
    base = {"num_rows": 3, "num_records": 3, "status": "complete"}
    plain = render_summary({**base, "columns": {"a": {"done": 3, "failed": 0, "dropped": 0}}})
    assert "skipped" not in plain
    counts = {"a": {"done": 1, "failed": 0, "dropped": 0, "skipped": 2}}
    text = render_summary({**base, "columns": counts})
    header = next(line for line in text.splitlines() if "column" in line)
    assert header.split() == ["column", "done", "failed", "dropped", "skipped"]
    assert next(line for line in text.splitlines() if line.strip().startswith("a ")).split() == [
        "a",
        "1",
        "0",
        "0",
        "2",
    ]


# --------------------------------------------------------------------------- on disk, CLI


def _disk_pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    config = _pipeline(
        _sim(),
        [
            {
                "name": "maybe",
                "llm_text": {"model": "m", "prompt": "On {{ topic }}"},
                "skip_when": ALPHA,
            },
            {"name": "n", "uniform": {"low": 0, "high": 9, "convert_to": "int"}},
            {"name": "small", "expression": "{{ n }}", "skip_when": "n > 4"},
        ],
    )
    dump_config(config, path)
    return path


def test_counts_reach_metadata_inspect_and_validate(tmp_path: Path) -> None:
    """Skipped counts are in RunResult, metadata.json (per row group and in total) and
    ``inspect --json`` (valid against its schema); validate prints the condition."""
    path = _disk_pipeline(tmp_path)
    out = tmp_path / "out"
    result = gl.create(path, num_records=30, output_dir=out)
    rows = result.table.to_pylist()
    alpha = sum(r["topic"] == "alpha" for r in rows)
    big = sum(r["n"] > 4 for r in rows)
    assert result.columns["maybe"] == ColumnCounts(done=30 - alpha, skipped=alpha)
    assert result.columns["small"] == ColumnCounts(done=30 - big, skipped=big)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["counts"]["maybe"]["skipped"] == alpha
    assert sum(g["counts"]["small"]["skipped"] for g in meta["row_groups"].values()) == big
    assert result.summary["columns"]["maybe"]["skipped"] == alpha

    inspected = _invoke("inspect", out, "--json")
    doc = json.loads(inspected.stdout)
    jsonschema.validate(doc, output_schema("inspect"))
    assert doc["columns"]["maybe"] == {
        "done": 30 - alpha,
        "failed": 0,
        "dropped": 0,
        "skipped": alpha,
    }
    assert f"skipped {alpha:>6}" in _invoke("inspect", out).stdout

    validated = _invoke("validate", path, "--json")
    doc = json.loads(validated.stdout)
    jsonschema.validate(doc, output_schema("validate"))
    nodes = {node["node"]: node for node in doc["nodes"]}
    assert nodes["maybe"]["skip_when"] == ALPHA
    assert "skip_when" not in nodes["n"]
    assert f"skip when: {ALPHA}" in _invoke("validate", path).stdout


def test_a_resumed_run_equals_a_run_in_one_go(tmp_path: Path) -> None:
    """Growing a run with skips by resume gives the table and counts of a run made at once."""
    path = _disk_pipeline(tmp_path)
    whole = gl.create(path, num_records=40, output_dir=tmp_path / "whole")
    gl.create(path, num_records=20, output_dir=tmp_path / "grown")
    grown = gl.create(path, num_records=40, output_dir=tmp_path / "grown", resume=True)
    assert grown.table.equals(whole.table)
    assert grown.columns == whole.columns
    assert whole.columns["maybe"].skipped > 0


def test_an_older_run_without_skipped_counts_resumes(tmp_path: Path) -> None:
    """A metadata.json written before skip_when (no ``skipped`` keys) still resumes and
    inspects, its counts reading 0 skipped."""
    config = _pipeline(_sim(), [{"name": "n", "uniform": {"low": 0, "high": 9}}])
    out = tmp_path / "out"
    gl.create(config, num_records=20, output_dir=out)
    meta_path = out / "metadata.json"
    text = meta_path.read_text()
    old = json.loads(text, object_hook=lambda d: {k: v for k, v in d.items() if k != "skipped"})
    assert "skipped" not in json.dumps(old)
    meta_path.write_text(json.dumps(old))
    doc = json.loads(_invoke("inspect", out, "--json").stdout)
    jsonschema.validate(doc, output_schema("inspect"))
    assert doc["columns"]["n"]["skipped"] == 0
    result = gl.create(config, num_records=30, output_dir=out, resume=True)
    assert result.num_rows == 30
    assert result.columns["n"] == ColumnCounts(done=30)


# --------------------------------------------------------------------------- property


class _Ran:
    """A cell function that records which rows it ran for."""

    def __init__(self) -> None:
        self.rows: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, row: dict[str, Any], ctx: CellContext) -> str:
        with self._lock:
            self.rows.add(ctx.row_id)
        return f"ran {ctx.row_id}"


class _Flag:
    def __init__(self, skip: frozenset[int]) -> None:
        self.skip = skip

    def __call__(self, row: dict[str, Any], ctx: CellContext) -> bool:
        return ctx.row_id in self.skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    num=st.integers(1, 30),
    group=st.integers(1, 12),
    data=st.data(),
)
def test_every_row_is_accounted_for_and_no_skipped_cell_runs(
    num: int, group: int, data: st.DataObject
) -> None:
    """For any pattern of skips (decided by row id), every row is generated or skipped
    exactly as decided, counts add up, and no skipped cell's function ran."""
    skip = frozenset(data.draw(st.sets(st.integers(0, num - 1))))
    ran, ran_after = _Ran(), _Ran()
    config = (
        gl.PipelineBuilder(seed=3)
        .run(row_group_size=group)
        .custom("flag", _Flag(skip), dtype="bool")
        .custom("cell", ran, depends_on=["flag"], skip_when="flag")
        .custom("after", ran_after, depends_on=["cell"], skip_when="{{ cell is none }}")
        .build()
    )
    result = gl.preview(config, num_records=num)
    rows = result.table.to_pylist()
    assert len(rows) == num
    assert ran.rows == ran_after.rows == set(range(num)) - skip
    for row_id, row in enumerate(rows):
        expected = None if row_id in skip else f"ran {row_id}"
        assert row["cell"] == expected
        assert row["after"] == expected
    for name in ("cell", "after"):
        counts = result.columns[name]
        assert counts == ColumnCounts(done=num - len(skip), skipped=len(skip))
        assert counts.done + counts.skipped + counts.failed + counts.dropped == num


@pytest.mark.parametrize(
    "run",
    [{"scheduling": "column"}, {"trace": True}, {}],
    ids=["column-mode", "traced", "cell-mode"],
)
async def test_conditions_evaluated_in_threads_agree(
    tmp_path: Path, autojump_clock: Any, run: dict[str, Any]
) -> None:
    """A condition that is not simple (evaluated in a worker thread) skips exactly the cells
    a simple one does, for cell and batch columns alike, in every scheduling mode."""
    heavy = "topic * 2 == 'alphaalpha'"  # `*` makes it not simple
    assert not SkipCondition(heavy, column="x").simple
    assert SkipCondition(ALPHA, column="x").simple
    columns: list[dict[str, Any]] = []
    for suffix, condition in (("simple", ALPHA), ("heavy", heavy)):
        columns += [
            {
                "name": f"text_{suffix}",
                "llm_text": {"model": "m", "prompt": "On {{ topic }}"},
                "skip_when": condition,
            },
            {"name": f"u_{suffix}", "uniform": {"low": 0, "high": 1}, "skip_when": condition},
            {"name": f"e_{suffix}", "expression": "{{ topic }}!", "skip_when": condition},
        ]
    async with serve_simulated(SimulationConfig()) as server:
        config = _pipeline({"name": "ep", "endpoint": server.url}, columns, **run)
        result = await gl.acreate(config, num_records=24, output_dir=tmp_path / "out")
        requests = server.app.statistics().models["w"].requests
    rows = result.table.to_pylist()
    alpha = sum(r["topic"] == "alpha" for r in rows)
    assert 0 < alpha < 24
    assert requests == 2 * (24 - alpha)
    for kind in ("text", "u", "e"):
        assert result.columns[f"{kind}_heavy"] == result.columns[f"{kind}_simple"]
        assert result.columns[f"{kind}_heavy"].skipped == alpha
        for row in rows:
            assert (row[f"{kind}_heavy"] is None) == (row["topic"] == "alpha")
    assert [r["u_heavy"] for r in rows] != [r["u_simple"] for r in rows]  # own streams
