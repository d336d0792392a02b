"""LLM pipelines end to end against the simulated endpoint: real sockets and virtual time."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio

import gridloom as gl
from gridloom.config import SimulationConfig, structure_pipeline
from gridloom.simulated import serve_simulated

FACTS = {
    "type": "object",
    "properties": {
        "facts": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        "year": {"type": "integer", "minimum": 1800, "maximum": 2024},
    },
    "required": ["facts", "year"],
    "additionalProperties": False,
}


def all_kinds(providers: list[dict[str, Any]], *, judge_provider: str = "sim") -> dict[str, Any]:
    return {
        "providers": providers,
        "models": [
            {
                "alias": "writer",
                "provider": "sim",
                "model": "writer-8b",
                "max_parallel_requests": 8,
            },
            {
                "alias": "thinker",
                "provider": "sim",
                "model": "thinker-8b",
                "max_parallel_requests": 8,
                "json_schema_mode": False,
            },
            {"alias": "judge", "provider": judge_provider, "model": "judge-70b"},
            {"alias": "embedder", "provider": "sim", "model": "embed-small"},
        ],
        "columns": [
            {"name": "topic", "category": {"values": ["rivers", "volcanoes", "deserts"]}},
            {
                "name": "summary",
                "llm_text": {
                    "model": "writer",
                    "prompt": "Summarize {{ topic }}.",
                    "with_reasoning": True,
                },
            },
            {
                "name": "snippet",
                "llm_code": {"model": "writer", "prompt": "Code about {{ topic }}."},
            },
            {
                "name": "facts",
                "llm_structured": {"model": "thinker", "prompt": "{{ topic }}", "schema": FACTS},
            },
            {"name": "year", "expression": {"template": "{{ facts.year }}", "dtype": "int"}},
            {
                "name": "quality",
                "llm_judge": {
                    "model": "judge",
                    "prompt": "{{ summary }}",
                    "rubrics": [
                        {"name": "accuracy", "scores": {1: "wrong", 3: "partly", 5: "exact"}},
                        {"name": "tone", "scores": {"flat": "dull", "lively": "engaging"}},
                    ],
                },
            },
            {"name": "vector", "embedding": {"model": "embedder", "input": "{{ summary }}"}},
        ],
        "run": {"seed": 3, "row_group_size": 10},
    }


def check_all_kinds(table: pa.Table, rows: int) -> None:
    assert table.num_rows == rows
    assert table.schema.field("vector").type == pa.list_(pa.float32())
    # Closed schemas store structs, not JSON text (a judge's scores: one type per rubric).
    assert table.schema.field("facts").type == pa.struct(
        [
            pa.field("facts", pa.list_(pa.field("item", pa.string(), nullable=False)), False),
            pa.field("year", pa.int64(), nullable=False),
        ]
    )
    quality_type = table.schema.field("quality").type
    assert quality_type.field("accuracy").type.field("score").type == pa.int64()
    assert quality_type.field("tone").type.field("score").type == pa.string()
    for row in table.to_pylist():
        assert row["topic"] in row["summary"] or row["summary"]
        assert row["summary__reasoning"]
        ast.parse(row["snippet"])
        facts = row["facts"]
        jsonschema.validate(facts, FACTS)
        assert row["year"] == facts["year"]
        quality = row["quality"]
        assert quality["accuracy"]["score"] in (1, 3, 5)
        assert quality["tone"]["score"] in ("flat", "lively")
        assert len(row["vector"]) == 32


def sim(name: str = "sim", **simulation: Any) -> dict[str, Any]:
    default = {"latency": {"fixed": 0.01}, "reasoning": True}
    return {
        "name": name,
        "type": "simulated",
        "simulation": {"default": default, **simulation},
    }


async def test_every_llm_column_kind_over_real_sockets(tmp_path: Path) -> None:
    """All LLM kinds against the simulated endpoint over HTTP on 127.0.0.1, checked per column."""
    config = structure_pipeline(all_kinds([sim()]))
    result = await gl.acreate(config, num_records=30, output_dir=tmp_path / "out")
    check_all_kinds(pq.read_table(tmp_path / "out" / "data"), 30)
    models = result.summary["models"]
    assert models["writer"]["requests"] == 60
    assert models["thinker"]["requests"] == 30
    assert models["judge"]["requests"] == models["embedder"]["requests"] == 30
    assert all(m["failed"] == 0 for m in models.values())
    assert models["writer"]["output_tokens"] > 0
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["summary"]["models"]["judge"]["requests"] == 30


async def test_two_endpoints_are_busy_at_the_same_time(tmp_path: Path) -> None:
    """With generators on one endpoint and judges on another, both serve requests concurrently."""
    latency = {"default": {"latency": {"fixed": 0.05}}}
    async with (
        serve_simulated(SimulationConfig(**_structured(latency))) as a,
        serve_simulated(SimulationConfig(**_structured(latency))) as b,
    ):
        config = structure_pipeline(
            {
                "providers": [
                    {"name": "a", "endpoint": a.url},
                    {"name": "b", "endpoint": b.url},
                ],
                "models": [
                    {"alias": "gen", "provider": "a", "model": "g", "max_parallel_requests": 4},
                    {"alias": "judge", "provider": "b", "model": "j", "max_parallel_requests": 4},
                ],
                "columns": [
                    {"name": "n", "uniform": {"low": 0, "high": 9, "convert_to": "int"}},
                    {"name": "text", "llm_text": {"model": "gen", "prompt": "Say {{ n }}"}},
                    {
                        "name": "score",
                        "llm_judge": {
                            "model": "judge",
                            "prompt": "{{ text }}",
                            "rubrics": [{"name": "ok", "scores": {0: "no", 1: "yes"}}],
                        },
                    },
                ],
                "run": {"seed": 1, "row_group_size": 40},
            }
        )
        await gl.acreate(config, num_records=40, output_dir=tmp_path / "out")
        timeline_a, timeline_b = a.app.timeline(), b.app.timeline()
    assert len(timeline_a) == len(timeline_b) == 40
    overlap = sum(1 for x in timeline_a for y in timeline_b if x.start < y.end and y.start < x.end)
    # Judges start as soon as their row's text is done, while later rows are still generating.
    assert overlap > 40
    assert max(y.start for y in timeline_b) > min(x.start for x in timeline_a)
    assert min(y.start for y in timeline_b) < max(x.end for x in timeline_a)


def _structured(data: dict[str, Any]) -> dict[str, Any]:
    from gridloom.config import converter

    cfg = converter.structure(data, SimulationConfig)
    return {"default": cfg.default, "models": cfg.models}


def deep(scheduling: str, latency: float, rows: int, slow_start: bool = False) -> gl.PipelineConfig:
    """topic → summary, trivia; summary → analysis → conclusion (all LLM), fixed latency; the
    throttle opens at the cap unless ``slow_start``."""
    text = lambda prompt: {"model": "m", "prompt": prompt}  # noqa: E731
    return structure_pipeline(
        {
            "providers": [
                sim(default={"latency": {"fixed": latency}}, transport="asgi") | {"name": "sim"}
            ],
            "models": [
                {"alias": "m", "provider": "sim", "model": "m", "max_parallel_requests": 10_000}
            ],
            "columns": [
                {"name": "domain", "category": {"values": ["geology", "biology"]}},
                {"name": "topic", "llm_text": text("A topic in {{ domain }}")},
                {"name": "summary", "llm_text": text("Summarize {{ topic }}")},
                {"name": "trivia", "llm_text": text("Trivia on {{ topic }}")},
                {"name": "analysis", "llm_text": text("Analyse {{ summary }}")},
                {"name": "conclusion", "llm_text": text("Conclude {{ analysis }}")},
            ],
            "run": {
                "seed": 2,
                "row_group_size": rows,
                "scheduling": scheduling,
                "max_submitted_tasks": 10_000,
                "max_llm_wait_tasks": 10_000,
                "throttle": {} if slow_start else {"slow_start_seconds": 0},
            },
        }
    )


async def test_deep_shape_takes_exactly_four_latencies_in_virtual_time(
    autojump_clock: Any,
) -> None:
    """Cell-level scheduling of the deep shape with no capacity limit (and the throttle opening
    at the cap) takes exactly 4 x L."""
    latency = 1.5
    cell = await gl.apreview(deep("cell", latency, 24), num_records=24)
    column = await gl.apreview(deep("column", latency, 24), num_records=24)
    assert cell.table.num_rows == column.table.num_rows == 24
    assert cell.wall_time == 4 * latency
    # Column mode runs trivia as a stage of its own: five latencies.
    assert column.wall_time == 5 * latency
    assert cell.table.equals(column.table)


async def test_the_slow_start_costs_one_period_when_nothing_limits(autojump_clock: Any) -> None:
    """With the default slow start (opens at 16, doubles every 0.1 s while used) the 24 first
    requests go out as 16 at once and 8 a period later: the deep shape takes 4 x L + 0.1 s."""
    latency = 1.5
    cell = await gl.apreview(deep("cell", latency, 24, slow_start=True), num_records=24)
    assert cell.wall_time == pytest.approx(4 * latency + 0.1)


@pytest.mark.slow
async def test_ten_thousand_rows_in_virtual_time(autojump_clock: Any) -> None:
    """The all-kinds pipeline at 10,000 rows in process (ASGI) on the virtual clock."""
    default = {"latency": {"median": 0.4, "sigma": 0.3}, "reasoning": True}
    providers = [sim(transport="asgi", default=default)]
    config = structure_pipeline(all_kinds(providers) | {"run": {"seed": 3, "row_group_size": 500}})
    started = trio.current_time()
    result = await gl.apreview(config, num_records=10_000)
    check_all_kinds(result.table.slice(0, 200), 200)
    assert result.num_rows == 10_000
    # 20,000 writer requests at concurrency 8 and ~0.42 s each bound the run from below.
    assert trio.current_time() - started > 20_000 * 0.3 / 8


def test_check_models_reports_each_alias() -> None:
    """check_models sends one request per alias and reports failures without raising."""
    config = structure_pipeline(
        all_kinds(
            [sim(), {"name": "down", "endpoint": "http://127.0.0.1:9/v1"}], judge_provider="down"
        )
    )
    rows = {row["alias"]: row for row in gl.check_models(config)}
    assert set(rows) == {"writer", "thinker", "judge", "embedder"}
    assert rows["writer"]["ok"]
    assert rows["embedder"]["ok"]
    assert not rows["judge"]["ok"]
    assert "ConnectionFailed" in rows["judge"]["error"]
