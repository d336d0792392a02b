"""``llm_agent``: multi-turn tool-use trajectories against the simulated endpoint over real
sockets (both provider APIs), Python-function and full-text-search tools, the ends of a
trajectory, and tool failures that go back to the model instead of failing the run."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gridloom as gl
from gridloom.config import (
    SimulationConfig,
    converter,
    load_config,
    structure_pipeline,
    unstructure_pipeline,
)
from gridloom.errors import ConfigError
from gridloom.kinds.llm_agent import MESSAGE_TYPE
from gridloom.simulated import serve_simulated

TOOLS_MODULE = '''
import time


def lookup(city: str, units: str = "metric") -> dict:
    """Look up the weather of a city.

    Args:
        city: the city's name.
        units: metric or imperial.
    """
    return {"city": city, "temp": 21, "units": units}


def boom(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"broken on purpose: {reason}")


async def slow(seconds: float) -> str:
    """Never answers in time."""
    import trio

    await trio.sleep(3600)
    return "late"


def untyped(x):
    return x
'''


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config folder with a tools module and a small corpus."""
    name = f"agent_tools_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TOOLS_MODULE))
    pq.write_table(
        pa.table(
            {
                "doc": ["d1", "d2", "d3"],
                "title": ["Paris", "Tokyo", "Lima"],
                "text": [
                    "Paris is the capital of France, on the Seine.",
                    "Tokyo is the capital of Japan.",
                    "Lima is the capital of Peru, on the Pacific coast.",
                ],
            }
        ),
        tmp_path / "corpus.parquet",
    )
    monkeypatch.setenv("GRIDLOOM_TEST_KEY", "sk-test")
    monkeypatch.setattr(sys, "path", [*sys.path])
    yield tmp_path
    sys.modules.pop(name, None)


def module_of(folder: Path) -> str:
    return f"agent_tools_{folder.name.replace('-', '_')}"


def write_config(
    folder: Path,
    *,
    behaviour: dict[str, Any] | None = None,
    agent: dict[str, Any] | None = None,
    tools: list[Any] | None = None,
    provider: dict[str, Any] | None = None,
) -> Path:
    """An agent pipeline (YAML, so relative paths resolve against ``folder``)."""
    sim = {"seed": 3, "default": {"tool_turns": 2, "tool_calls_per_turn": 2, **(behaviour or {})}}
    spec = {
        "model": "m",
        "prompt": "What do you know about {{ city }}?",
        "tools": tools
        if tools is not None
        else [
            {"python": f"{module_of(folder)}:lookup"},
            {"search": {"seed": "corpus.parquet", "field": "text", "id_field": "doc"}},
        ],
        "max_turns": 5,
        **(agent or {}),
    }
    doc = {
        "providers": [provider or {"name": "sim", "type": "simulated", "simulation": sim}],
        "models": [{"alias": "m", "provider": "sim", "model": "agent-model"}],
        "columns": [
            {"name": "city", "category": {"values": ["Paris", "Tokyo", "Lima"]}},
            {"name": "traj", "llm_agent": spec},
        ],
        "run": {"seed": 5},
    }
    path = folder / "agent.yaml"
    path.write_text(json.dumps(doc))
    return path


def check_trajectory(row: dict[str, Any], tool_turns: int, per_turn: int) -> None:
    """The trajectory alternates: user, then per tool turn an assistant message with calls
    and one tool message answering each call, then the final answer."""
    messages = row["traj"]
    assert messages[0]["role"] == "user"
    position = 1
    for _ in range(tool_turns):
        assistant = messages[position]
        assert assistant["role"] == "assistant"
        calls = assistant["tool_calls"]
        assert len(calls) == per_turn
        answers = messages[position + 1 : position + 1 + per_turn]
        assert [m["role"] for m in answers] == ["tool"] * per_turn
        assert [m["tool_call_id"] for m in answers] == [c["id"] for c in calls]
        assert [m["name"] for m in answers] == [c["function"]["name"] for c in calls]
        position += 1 + per_turn
    final = messages[position]
    assert final["role"] == "assistant"
    assert final["tool_calls"] == []
    assert position == len(messages) - 1
    assert row["traj__answer"] == final["content"].strip()
    assert row["traj__turns"] == tool_turns + 1
    assert row["traj__tool_calls"] == tool_turns * per_turn
    assert row["traj__end"] == "answer"


# --------------------------------------------------------------------------- end to end


def test_trajectories_over_a_socket_call_tools_then_answer(folder: Path) -> None:
    """Against the simulated endpoint (a real HTTP server), each trajectory makes the
    configured tool turns with parallel calls, every call answered by a tool message, then
    answers; the trajectory is a native list of OpenAI-format message structs."""
    result = gl.preview(write_config(folder), 6)
    assert result.num_rows == 6
    assert result.table.schema.field("traj").type == pa.list_(MESSAGE_TYPE)
    for row in result.table.to_pylist():
        check_trajectory(row, tool_turns=2, per_turn=2)
        tool_messages = [m for m in row["traj"] if m["role"] == "tool"]
        assert all(not m["content"].startswith("error: unknown tool") for m in tool_messages)
    assert result.summary["models"]["m"]["requests"] == 6 * 3


async def test_the_anthropic_api_gives_the_same_shape(folder: Path) -> None:
    """The same pipeline through an Anthropic-type provider (tool_use / tool_result blocks
    on the wire) gives trajectories of the same canonical shape."""
    sim = {"seed": 3, "default": {"tool_turns": 2, "tool_calls_per_turn": 2}}
    async with serve_simulated(converter.structure(sim, SimulationConfig)) as server:
        provider = {
            "name": "sim",
            "type": "anthropic",
            "endpoint": server.url,
            "api_key_env": "GRIDLOOM_TEST_KEY",
        }
        result = await gl.apreview(write_config(folder, provider=provider), 4)
    assert result.num_rows == 4, result.drop_examples
    for row in result.table.to_pylist():
        check_trajectory(row, tool_turns=2, per_turn=2)


def test_search_tools_find_and_read_documents(folder: Path) -> None:
    """The search tool returns ranked hits with ids; reading an id returns the document;
    an unknown id is an error result, not a failure."""
    result = gl.preview(write_config(folder), 6)
    contents = [
        json.loads(m["content"]) if m["name"] == "search" else m["content"]
        for row in result.table.to_pylist()
        for m in row["traj"]
        if m["role"] == "tool" and m["name"] in ("search", "search_read")
    ]
    assert contents, "the simulated model called no search tool"
    for content in contents:
        if isinstance(content, dict):
            assert set(content) == {"results"}
            assert all(set(hit) >= {"id", "snippet"} for hit in content["results"])
        else:
            assert content.startswith("error: no document has the id") or "capital" in content


def test_a_trajectory_past_max_turns_is_dropped_or_kept(folder: Path) -> None:
    """A model that keeps calling tools hits max_turns: the row is dropped with the reason,
    or kept with a null answer and end max_turns when the user says so."""
    config = write_config(folder, behaviour={"tool_turns": 9}, agent={"max_turns": 3})
    dropped = gl.preview(config, 3)
    assert dropped.num_rows == 0 or dropped.status == "stopped"
    (example,) = dropped.drop_examples
    assert example.error_type == "TrajectoryIncomplete"
    assert "reached max_turns (3) without an answer" in example.message
    kept = gl.preview(
        write_config(
            folder,
            behaviour={"tool_turns": 9},
            agent={"max_turns": 3, "on_incomplete": "keep"},
        ),
        3,
    )
    rows = kept.table.to_pylist()
    assert len(rows) == 3
    assert all(r["traj__end"] == "max_turns" and r["traj__answer"] is None for r in rows)
    assert all(r["traj__turns"] == 3 for r in rows)


def test_a_final_tool_ends_the_trajectory_with_its_answer(folder: Path) -> None:
    """With tool_choice required and a final_tool, the trajectory ends when the model calls
    it; its answer argument is the answer."""
    config = write_config(
        folder,
        behaviour={"tool_turns": 50, "tool_calls_per_turn": 1},
        agent={"final_tool": "submit", "tool_choice": "required", "max_turns": 12},
    )
    rows = gl.preview(config, 6).table.to_pylist()
    assert rows
    for row in rows:
        assert row["traj__end"] == "final_tool"
        last = row["traj"][-1]
        assert last["tool_calls"][-1]["function"]["name"] == "submit"
        arguments = json.loads(last["tool_calls"][-1]["function"]["arguments"])
        assert row["traj__answer"] == arguments["answer"]


def test_a_failing_tool_is_reported_to_the_model_not_the_run(folder: Path) -> None:
    """A tool that raises gives the model an error result and the trajectory goes on to an
    answer; the run keeps every row."""
    tools = [{"python": f"{module_of(folder)}:boom"}]
    result = gl.preview(write_config(folder, tools=tools), 3)
    assert result.num_rows == 3
    for row in result.table.to_pylist():
        errors = [m["content"] for m in row["traj"] if m["role"] == "tool"]
        assert errors
        assert all(
            e.startswith("error: tool 'boom' failed: ValueError: broken on purpose") for e in errors
        )
        assert row["traj__end"] == "answer"


def test_tools_that_cannot_open_fail_the_cells_with_the_reason(folder: Path) -> None:
    """A search seed without the named field makes the column's tools unavailable: its
    cells fail with that reason (and the column's health stops the run), nothing crashes."""
    tools = [{"search": {"seed": "corpus.parquet", "field": "body"}}]
    result = gl.preview(write_config(folder, tools=tools), 6)
    assert result.num_rows == 0
    assert result.status == "stopped"
    assert "has no column 'body'" in str(result.stop_reason)


# --------------------------------------------------------------------------- config


def test_bad_tools_fail_validation_naming_the_field(folder: Path) -> None:
    """A function without type hints, a missing search file, two tools of one name, a tool
    kind that does not exist: each fails validate with one line naming the field."""
    cases = [
        ([{"python": f"{module_of(folder)}:untyped"}], "tools[0].python", "no type annotation"),
        (
            [{"search": {"seed": "nope.parquet", "field": "text"}}],
            "tools[0].search.seed",
            "no file",
        ),
        (
            [{"python": f"{module_of(folder)}:lookup"}, {"python": f"{module_of(folder)}:lookup"}],
            "tools[1].python",
            "two tools are named 'lookup'",
        ),
    ]
    for tools, field, words in cases:
        with pytest.raises(ConfigError) as info:
            gl.validate(write_config(folder, tools=tools))
        assert info.value.column == "traj"
        assert info.value.field == f"llm_agent.{field}", info.value
        assert words in str(info.value)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(folder, tools=[{"pyhton": "m:f"}]))
    assert "did you mean 'python'" in str(info.value)


@pytest.mark.parametrize(
    ("agent", "words"),
    [
        ({"tools": []}, "at least one tool"),
        ({"max_turns": 0}, "max_turns"),
        ({"tool_choice": "required"}, "needs a final_tool"),
        ({"final_tool": "has space"}, "letters, digits"),
        ({"tools": [{"mcp": {"command": ["x"], "url": "http://h"}}]}, "exactly one of command"),
        ({"tools": [{"mcp": {"url": "ftp://h"}}]}, "http:// or https://"),
    ],
)
def test_malformed_agent_settings_are_refused_on_load(
    folder: Path, agent: dict[str, Any], words: str
) -> None:
    """Empty tools, no turns, required without a final tool, a bad tool name, an MCP server
    with both or neither transport: refused when the config is read."""
    with pytest.raises(ConfigError) as info:
        load_config(write_config(folder, agent=agent))
    assert words in str(info.value)


def test_agent_configs_dump_and_load_back(folder: Path) -> None:
    """Every tool form (the python shorthand and mapping, search, mcp) survives a dump and
    load, and the JSON Schema accepts the dumped config."""
    import jsonschema

    tools = [
        {"python": f"{module_of(folder)}:lookup"},
        {"python": {"function": f"{module_of(folder)}:lookup", "name": "weather"}},
        {"search": {"seed": "corpus.parquet", "field": "text", "max_results": 3}},
        {"mcp": {"command": ["python", "server.py"], "tools": ["a"], "call_timeout": 5}},
    ]
    config = load_config(write_config(folder, tools=tools))
    dumped = unstructure_pipeline(config)
    assert dumped["columns"][1]["llm_agent"]["tools"][0] == tools[0]
    assert structure_pipeline(dumped) == config
    jsonschema.validate(dumped, gl.config.config_json_schema())
