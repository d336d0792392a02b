"""Every column kind that calls a model, through the public API, against the simulated endpoint
over real sockets with each provider type (``openai`` and ``anthropic``)."""

from __future__ import annotations

import ast
from typing import Any

import jsonschema
import pytest

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
RUBRICS = [
    {"name": "accuracy", "scores": {1: "wrong", 3: "partly", 5: "exact"}},
    {"name": "tone", "scores": {"flat": "dull", "lively": "engaging"}},
]
ROWS = 6


def pipeline(
    url: str,
    kind: str,
    *,
    embedding: bool,
    extra_body: dict[str, Any] | None = None,
    max_tokens: int | None = None,
) -> gl.PipelineConfig:
    """Text, code, structured, judge (and embedding) columns on one provider of ``kind``
    (its model sending ``max_tokens`` when given)."""
    provider: dict[str, Any] = {
        "name": "p",
        "type": kind,
        "endpoint": url,
        "api_key_env": "GRIDLOOM_TEST_KEY",
    }
    if extra_body is not None:
        provider["extra_body"] = extra_body
    columns: list[dict[str, Any]] = [
        {"name": "topic", "category": {"values": ["rivers", "volcanoes", "deserts"]}},
        {"name": "summary", "llm_text": {"model": "m", "prompt": "Summarize {{ topic }}."}},
        {"name": "snippet", "llm_code": {"model": "m", "prompt": "Code about {{ topic }}."}},
        {
            "name": "facts",
            "llm_structured": {"model": "m", "prompt": "{{ topic }}", "schema": FACTS},
        },
        {
            "name": "quality",
            "llm_judge": {"model": "m", "prompt": "{{ summary }}", "rubrics": RUBRICS},
        },
    ]
    if embedding:
        columns.append({"name": "vector", "embedding": {"model": "m", "input": "{{ summary }}"}})
    return structure_pipeline(
        {
            "providers": [provider],
            "models": [
                {"alias": "m", "provider": "p", "model": f"{kind}-model"}
                | ({} if max_tokens is None else {"max_tokens": max_tokens})
            ],
            "columns": columns,
            "run": {"seed": 5, "row_group_size": ROWS},
        }
    )


def check_rows(rows: list[dict[str, Any]], *, embedding: bool) -> None:
    assert len(rows) == ROWS
    for row in rows:
        assert row["summary"]
        ast.parse(row["snippet"])
        jsonschema.validate(row["facts"], FACTS)  # stored as a struct
        quality = row["quality"]
        assert quality["accuracy"]["score"] in (1, 3, 5)
        assert quality["tone"]["score"] in ("flat", "lively")
        if embedding:
            assert len(row["vector"]) == 32


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDLOOM_TEST_KEY", "sk-test")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_every_model_column_kind_with_each_provider_type(kind: str) -> None:
    """Text, code, structured and judge columns produce every row with both provider types
    (OpenAI with embeddings too); structured answers reach Anthropic as a forced tool."""
    embedding = kind == "openai"
    async with serve_simulated(SimulationConfig()) as server:
        result = await gl.apreview(pipeline(server.url, kind, embedding=embedding), ROWS)
        paths = {entry.path for entry in server.app.timeline()}
    assert result.drop_reasons == {}
    assert result.num_rows == ROWS
    check_rows(result.table.to_pylist(), embedding=embedding)
    expected = {"/v1/chat/completions", "/v1/embeddings"} if embedding else {"/v1/messages"}
    assert paths == expected


async def test_anthropic_with_extended_thinking_gets_the_schema_in_the_prompt() -> None:
    """With ``thinking`` on, Anthropic forbids a forced tool: the schema goes in the system
    prompt instead, and structured and judge columns still produce every row (max_tokens
    above the thinking budget, as the API requires)."""
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    async with serve_simulated(SimulationConfig()) as server:
        config = pipeline(
            server.url, "anthropic", embedding=False, extra_body=thinking, max_tokens=2048
        )
        result = await gl.apreview(config, ROWS)
    assert result.drop_reasons == {}
    check_rows(result.table.to_pylist(), embedding=False)


def test_an_anthropic_embedding_column_is_a_config_error() -> None:
    """Anthropic has no embeddings API: an embedding column on an Anthropic model fails when
    the config is loaded, naming the column and the field, before any request (it used to drop
    every row at run time)."""
    with pytest.raises(gl.ConfigError, match="no embeddings API") as info:
        pipeline("http://127.0.0.1:9/v1", "anthropic", embedding=True)
    assert info.value.column == "vector"
    assert info.value.field == "embedding.model"
