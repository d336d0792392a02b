"""Tools: schemas from type hints, the Toolbox's checks around every call (virtual time), the
full-text search source, and the agent loop's limits driven by a scripted model."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.clients._types import ChatRequest, ChatResponse, ToolCall, ToolSpec
from gridloom.config import ColumnConfig, ModelConfig, converter
from gridloom.generators.base import CellContext
from gridloom.kinds.llm_agent import LLMAgentColumn, LLMAgentGenerator, TrajectoryIncomplete
from gridloom.tools import MAX_TOOL_RESULT_CHARS, Tool, Toolbox, ToolError, ToolSourceError
from gridloom.tools._python import FunctionTool, function_spec, type_schema
from gridloom.tools._search import SearchSource

# --------------------------------------------------------------------------- schemas


def test_a_schema_comes_from_type_hints_and_the_docstring() -> None:
    """Types, defaults, Literal, optional values, lists and the docstring's Args section make
    the tool's JSON Schema and descriptions."""

    def find(
        query: str,
        limit: int = 5,
        mode: Literal["fast", "exact"] = "fast",
        tags: list[str] | None = None,
        ratio: float = 0.5,
        strict: bool = False,
    ) -> str:
        """Find documents.

        More prose that is not the summary.

        Args:
            query: what to look for,
                over two lines.
            limit: most results.
        """
        return query

    spec = function_spec(find)
    assert spec.name == "find"
    assert spec.description == "Find documents."
    params = spec.parameters
    assert params["required"] == ["query"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["query"] == {"type": "string", "description": "what to look for, over two lines."}
    assert props["limit"] == {"type": "integer", "description": "most results.", "default": 5}
    assert props["mode"] == {"enum": ["fast", "exact"], "default": "fast"}
    assert props["tags"] == {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]
    }
    assert props["ratio"]["type"] == "number"
    assert props["strict"]["type"] == "boolean"


@pytest.mark.parametrize("annotation", [object, set[int], complex])
def test_a_type_without_a_json_schema_is_refused(annotation: Any) -> None:
    """A parameter type with no JSON Schema is refused, naming the type."""
    with pytest.raises(TypeError, match="has no JSON Schema"):
        type_schema(annotation)


def test_given_parameters_name_and_description_win() -> None:
    """A tool's configured name, description and schema replace the derived ones."""

    def f(x):  # type: ignore[no-untyped-def]
        return x

    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    spec = function_spec(f, name="g", description="d", parameters=schema)
    assert (spec.name, spec.description, spec.parameters) == ("g", "d", schema)


# --------------------------------------------------------------------------- the toolbox


class Recorder(Tool):
    """A tool recording how many of its calls run at once."""

    def __init__(self, name: str = "rec", sleep: float = 1.0, result: str = "ok") -> None:
        self.spec = ToolSpec(
            name=name,
            parameters={
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 0}},
                "required": ["n"],
                "additionalProperties": False,
            },
        )
        self.sleep = sleep
        self.result = result
        self.running = 0
        self.peak = 0

    async def call(self, arguments: Mapping[str, Any]) -> str:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep(self.sleep)
        finally:
            self.running -= 1
        return self.result


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (ToolCall(id="1", name="nope", arguments="{}"), "unknown tool 'nope' (tools: rec)"),
        (ToolCall(id="1", name="rec", arguments="{not json"), "not valid JSON"),
        (ToolCall(id="1", name="rec", arguments="[1]"), "must be a JSON object"),
        (ToolCall(id="1", name="rec", arguments='{"n": -1}'), "invalid arguments for 'rec' at n"),
        (ToolCall(id="1", name="rec", arguments='{"m": 1}'), "invalid arguments for 'rec'"),
        (ToolCall(id="1", name="rec", arguments='"' + "x" * 300_000 + '"'), "longer than"),
    ],
)
async def test_bad_calls_become_error_results(
    call: ToolCall, words: str, autojump_clock: trio.abc.Clock
) -> None:
    """An unknown tool, arguments that are not JSON, not an object, or not valid against the
    schema, and oversized arguments: an error result the model reads, never an exception."""
    text, ok = await Toolbox([Recorder()]).call(call)
    assert not ok
    assert text.startswith("error: ")
    assert words in text


async def test_a_slow_tool_times_out_in_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    """A call past the timeout is reported as timed out after exactly that long."""
    toolbox = Toolbox([Recorder(sleep=100)], call_timeout=7)
    start = trio.current_time()
    text, ok = await toolbox.call(ToolCall(id="1", name="rec", arguments='{"n": 1}'))
    assert (text, ok) == ("error: tool 'rec' did not answer within 7 s", False)
    assert trio.current_time() - start == pytest.approx(7)


async def test_concurrent_calls_stay_within_the_limit(autojump_clock: trio.abc.Clock) -> None:
    """Ten concurrent calls through a toolbox limited to three: never more than three run, and
    they take four rounds of the tool's time."""
    tool = Recorder(sleep=2)
    toolbox = Toolbox([tool], max_concurrent_calls=3)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(toolbox.call, ToolCall(id=str(i), name="rec", arguments='{"n": 1}'))
    assert tool.peak == 3
    assert trio.current_time() - start == pytest.approx(8)


async def test_long_results_are_clipped_saying_so(autojump_clock: trio.abc.Clock) -> None:
    """A result longer than the limit is cut, with a note of its full length."""
    long = "x" * (MAX_TOOL_RESULT_CHARS + 10)
    text, ok = await Toolbox([Recorder(result=long, sleep=0)]).call(
        ToolCall(id="1", name="rec", arguments='{"n": 0}')
    )
    assert ok
    assert text.endswith(f"[cut: {len(long)} characters in all]")
    assert len(text) < len(long) + 40


async def test_sync_and_async_functions_run_as_tools() -> None:
    """A sync function runs (in a thread) and an async one is awaited; a non-text result is
    sent as JSON; an exception is reported."""

    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    async def shout(text: str) -> str:
        return text.upper()

    def fails(text: str) -> str:
        raise RuntimeError("no")

    toolbox = Toolbox(
        [FunctionTool(f, function_spec(f)) for f in (add, shout, fails)]  # type: ignore[arg-type]
    )
    assert await toolbox.call(ToolCall(id="1", name="add", arguments='{"a": 2, "b": 3}')) == (
        '{"sum": 5}',
        True,
    )
    assert await toolbox.call(ToolCall(id="2", name="shout", arguments='{"text": "hi"}')) == (
        "HI",
        True,
    )
    text, ok = await toolbox.call(ToolCall(id="3", name="fails", arguments='{"text": "x"}'))
    assert (text, ok) == ("error: tool 'fails' failed: RuntimeError: no", False)


def test_two_tools_of_one_name_are_refused() -> None:
    """A toolbox refuses two tools with the same name."""
    with pytest.raises(ValueError, match="two tools are named 'rec'"):
        Toolbox([Recorder(), Recorder()])


# --------------------------------------------------------------------------- search


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.parquet"
    pq.write_table(
        pa.table(
            {
                "id": ["a", "b", "c", "a"],
                "text": [
                    "The Nile is the longest river in Africa.",
                    "The Amazon river carries the most water.",
                    "Mount Everest is the highest mountain.",
                    "A repeated id: the first row wins.",
                ],
            }
        ),
        path,
    )
    return path


async def test_search_ranks_and_read_returns_the_document(corpus: Path) -> None:
    """Searching ranks matching rows first with their ids; reading an id gives its text (the
    first row of a repeated id); an unknown id is a tool error."""
    source = SearchSource(corpus, "text", id_field="id", max_results=2)
    async with source.open() as tools:
        search, read = tools
        hits = json.loads(await search.call({"query": "longest river"}))["results"]
        assert hits[0]["id"] == "a"
        assert len(hits) == 2
        assert all("snippet" in hit for hit in hits)
        assert await read.call({"id": "c"}) == "Mount Everest is the highest mountain."
        assert await read.call({"id": "a"}) == "The Nile is the longest river in Africa."
        with pytest.raises(ToolError, match="no document has the id 'zz'"):
            await read.call({"id": "zz"})


@settings(max_examples=40, deadline=None)
@given(query=st.text(max_size=200))
def test_any_query_text_is_safe(query: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever the model writes as a query (FTS5 operators, quotes, unicode), the search
    answers results or a clear 'no words' error, never an SQL error."""
    path = tmp_path_factory.mktemp("q") / "c.parquet"
    pq.write_table(pa.table({"text": ['He said "NEAR" AND (or) NOT * ^ : - river']}), path)

    async def main() -> None:
        async with SearchSource(path, "text").open() as (search, _read):
            if not re.search(r"\w", query):
                with pytest.raises(ToolError, match="no words"):
                    await search.call({"query": query})
                return
            out = json.loads(await search.call({"query": query}))
            assert isinstance(out["results"], list)

    trio.run(main)


async def test_a_search_seed_without_the_field_cannot_open(corpus: Path) -> None:
    """A missing column, or a missing file, is a ToolSourceError naming it."""
    with pytest.raises(ToolSourceError, match="has no column 'body'"):
        async with SearchSource(corpus, "body").open():
            pass
    with pytest.raises(ToolSourceError, match="cannot be read"):
        async with SearchSource(corpus.with_name("none.parquet"), "text").open():
            pass


# --------------------------------------------------------------------------- the agent loop


class Scripted:
    """A model handle answering each request with the next scripted response."""

    def __init__(self, responses: Sequence[ChatResponse]) -> None:
        self.responses = list(responses)
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, **_options: Any) -> ChatResponse:
        self.requests.append(request)
        return self.responses[min(len(self.requests), len(self.responses)) - 1]


def agent(**fields: Any) -> LLMAgentGenerator:
    doc = {"model": "m", "prompt": "go", "tools": [{"python": "json:dumps"}], **fields}
    column = converter.structure({"name": "traj", "llm_agent": doc}, ColumnConfig)
    assert isinstance(column, LLMAgentColumn)
    return LLMAgentGenerator(column, ModelConfig(alias="m", provider="p", model="x"), [])


def call(n: int, name: str = "rec") -> ToolCall:
    return ToolCall(id=f"c{n}", name=name, arguments='{"n": 1}')


def context(handle: Scripted, toolbox: Toolbox) -> CellContext:
    return CellContext(row={}, row_id=0, column="traj", seed=1, models={"m": handle}, tools=toolbox)  # type: ignore[dict-item]


async def test_a_repeated_call_ends_the_trajectory_as_a_loop(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A model making the same call over and over ends its trajectory as a loop after
    max_repeated_calls, dropped with the reason (or kept, end 'loop')."""
    same = ChatResponse(text="", tool_calls=(call(1),))
    handle = Scripted([same])
    with pytest.raises(TrajectoryIncomplete, match="repeated a tool call more than 2 times"):
        await agent(max_repeated_calls=2).agenerate(context(handle, Toolbox([Recorder(sleep=0)])))
    assert len(handle.requests) == 3
    kept = await agent(max_repeated_calls=2, on_incomplete="keep").agenerate(
        context(Scripted([same]), Toolbox([Recorder(sleep=0)]))
    )
    assert kept["traj__end"] == "loop"
    assert kept["traj__answer"] is None


async def test_one_turns_calls_run_concurrently_within_the_column_limit(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Four calls in one answer run at once up to max_concurrent_tool_calls (2): two rounds
    of the tool's time; the tool messages keep the calls' order."""
    tool = Recorder(sleep=5)
    generator = agent(max_concurrent_tool_calls=2)
    toolbox = generator.toolbox([tool])
    handle = Scripted(
        [
            ChatResponse(text="", tool_calls=tuple(call(i) for i in range(4))),
            ChatResponse(text="done"),
        ]
    )
    start = trio.current_time()
    out = await generator.agenerate(context(handle, toolbox))
    assert trio.current_time() - start == pytest.approx(10)
    assert tool.peak == 2
    assert [m["tool_call_id"] for m in out["traj"] if m["role"] == "tool"] == [
        "c0",
        "c1",
        "c2",
        "c3",
    ]
    assert (out["traj__answer"], out["traj__turns"], out["traj__tool_calls"]) == ("done", 2, 4)
    offered = [spec.name for spec in handle.requests[0].tools]
    assert offered == ["rec"]


async def test_validators_send_the_final_answer_back(autojump_clock: trio.abc.Clock) -> None:
    """With validate_with, a rejected final answer goes back as a user turn, and the
    corrected one is kept."""
    from gridloom.generators._factory import BuildContext, build_generator

    doc = {
        "model": "m",
        "prompt": "go",
        "tools": [{"python": {"function": "json:dumps", "parameters": {"type": "object"}}}],
        "validate_with": [{"kind": "regex", "pattern": "ok.*"}],
    }
    column = converter.structure({"name": "traj", "llm_agent": doc}, ColumnConfig)
    models = {"m": ModelConfig(alias="m", provider="p", model="x")}
    generator = build_generator(column, BuildContext(models=models))
    assert isinstance(generator, LLMAgentGenerator)
    handle = Scripted([ChatResponse(text="nope"), ChatResponse(text="ok now")])
    out = await generator.agenerate(context(handle, generator.toolbox([Recorder()])))
    assert out["traj__answer"] == "ok now"
    assert [m["role"] for m in out["traj"]] == ["user", "assistant", "user", "assistant"]


async def test_missing_tools_fail_the_cell_with_the_reason() -> None:
    """A cell whose toolbox failed to open fails with that reason."""
    from gridloom.errors import GenerationError

    with pytest.raises(GenerationError, match="its tools are unavailable: server gone"):
        await agent().agenerate(context(Scripted([]), Toolbox.failed("server gone")))


def test_an_invalid_tool_schema_is_refused_once_not_per_call() -> None:
    """A tool whose schema is not a valid JSON Schema is refused when the toolbox is made
    (the run reports it for the column), so calls never re-check the schema."""
    bad = Recorder()
    bad.spec = ToolSpec(name="bad", parameters={"type": "object", "properties": {"x": {"type": 3}}})
    with pytest.raises(ValueError, match="tool 'bad' has an invalid schema"):
        Toolbox([bad])


def test_a_python_tool_with_an_invalid_schema_fails_validation(tmp_path: Path) -> None:
    """Explicit parameters that are not a valid JSON Schema fail validate, naming the tool."""
    import gridloom as gl
    from gridloom.config import structure_pipeline
    from gridloom.errors import ConfigError

    config = structure_pipeline(
        {
            "providers": [{"name": "sim", "type": "simulated"}],
            "models": [{"alias": "m", "provider": "sim", "model": "x"}],
            "columns": [
                {
                    "name": "a",
                    "llm_agent": {
                        "model": "m",
                        "prompt": "go",
                        "tools": [
                            {
                                "python": {
                                    "function": "json:dumps",
                                    "parameters": {"type": "object", "required": "x"},
                                }
                            }
                        ],
                    },
                }
            ],
        }
    )
    with pytest.raises(ConfigError) as info:
        gl.validate(config)
    assert info.value.field == "llm_agent.tools[0].python"
    assert "invalid schema" in str(info.value)
