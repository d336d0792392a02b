"""``llm_agent`` against hostile inputs: an independent OpenAI-compatible server (a real
socket) sending odd but legal tool-call replies, and tools that misbehave. Every case ends
per cell — a row, or a dropped row with its reason — never a crashed or hung run."""

from __future__ import annotations

import json
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import gridloom as gl
from gridloom.clients import ToolCall
from gridloom.clients._post import utf8_clean
from gridloom.clients._tool_wire import checked_call
from gridloom.errors import MalformedResponse
from gridloom.kinds.llm_agent import _final_answer
from gridloom.tools import Toolbox
from gridloom.tools._base import clip
from gridloom.tools._python import (
    MAX_ITERATED,
    MAX_TOOL_THREADS,
    FunctionSource,
    FunctionTool,
    function_spec,
)
from tests.json_server import completion, json_server

#: What the independent server's first reply holds, by mode (later turns answer "done").
Reply = Callable[[], dict[str, Any]]


def _call(name: str = "lookup", arguments: Any = '{"city": "Paris"}', **extra: Any) -> Any:
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}} | (
        extra
    )


def _message(**fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": None, **fields}


FIRST: dict[str, dict[str, Any]] = {
    "arguments_object": _message(tool_calls=[_call(arguments={"city": "Paris"})]),
    "missing_id": _message(
        tool_calls=[{"type": "function", "function": {"name": "lookup", "arguments": "{}"}}]
    ),
    "duplicate_ids": _message(tool_calls=[_call(), _call(arguments='{"city": "Lima"}')]),
    "empty_calls": _message(tool_calls=[]),
    "content_and_calls": _message(content="Let me look.", tool_calls=[_call()]),
    "many_calls": _message(tool_calls=[_call(id=f"c{i}") for i in range(500)]),
    "huge_arguments": _message(tool_calls=[_call(arguments=json.dumps({"city": "x" * 2**20}))]),
    "unknown_tool": _message(tool_calls=[_call(name="not_offered")]),
    "unicode_name": _message(tool_calls=[_call(name="wetter_\u00e9\U0001f326")]),
    "null_content": _message(),
    "null_arguments": _message(tool_calls=[_call(arguments=None)]),
    "surrogate_content": _message(content="half \ud800 a pair"),
    "surrogate_arguments": _message(tool_calls=[_call(arguments='{"city": "\\ud800"}')]),
    "deep_arguments": _message(tool_calls=[_call(arguments="[" * 100_000)]),
    "deep_final": _message(tool_calls=[_call(name="submit", arguments="[" * 100_000)]),
    "final_not_object": _message(tool_calls=[_call(name="submit", arguments="[1, 2]")]),
    "deep_reply": _message(content="deep"),
    "surrogate_json": _message(content='{"a": "x\\ud800y"}'),
    "surrogate_final": _message(
        tool_calls=[_call(name="submit", arguments='{"answer": "half \\ud800 a pair"}')]
    ),
}


def _answer(server: Any, body: dict[str, Any]) -> dict[str, Any] | bytes:
    server.requests += 1
    answered = any(m.get("role") == "tool" for m in body["messages"])
    message = _message(content="done") if answered else FIRST[server.mode]
    tool = getattr(server, "tool", "lookup")  # the name the first reply calls
    message = json.loads(json.dumps(message).replace('"lookup"', json.dumps(tool)))
    reply = completion(body["model"], message, "tool_calls")
    if server.mode == "deep_reply" and not answered:  # deeper than Python's parser goes
        data = json.dumps(reply).encode()
        return data.replace(b'"usage"', b'"x": ' + b"[" * 50_000 + b"]" * 50_000 + b', "usage"')
    return reply


@pytest.fixture
def server() -> Iterator[Any]:
    """An independent OpenAI-compatible chat server on a real socket."""
    with json_server(_answer, requests=0, mode="") as httpd:
        yield httpd


TOOLS = '''
import sys


def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: sunny"


def exits(city: str) -> str:
    """Calls sys.exit."""
    sys.exit(3)


async def exits_async(city: str) -> str:
    """Calls sys.exit from a coroutine."""
    sys.exit(4)


def interrupts(city: str) -> str:
    """Raises KeyboardInterrupt in its worker thread."""
    raise KeyboardInterrupt


def base(city: str) -> str:
    """Raises a bare BaseException."""
    raise BaseException("odd")


def surrogate(city: str) -> str:
    """Returns text that is not valid UTF-8."""
    return "half \\ud800 a pair"
'''


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config folder holding the tools module."""
    name = f"hostile_tools_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TOOLS))
    monkeypatch.setattr(sys, "path", [*sys.path])
    yield tmp_path
    sys.modules.pop(name, None)


def _config(folder: Path, provider: dict[str, Any], tool: str, **agent: Any) -> Path:
    module = f"hostile_tools_{folder.name.replace('-', '_')}"
    doc = {
        "providers": [provider],
        "models": [{"alias": "m", "provider": "p", "model": "odd"}],
        "columns": [
            {"name": "city", "category": {"values": ["Paris", "Lima"]}},
            {
                "name": "traj",
                "llm_agent": {
                    "model": "m",
                    "prompt": "Weather in {{ city }}?",
                    "tools": [{"python": f"{module}:{tool}"}],
                    "max_turns": 3,
                    **agent,
                },
            },
        ],
        "run": {"seed": 1, "max_cell_attempts": 1, "salvage_rounds": 0},
    }
    path = folder / "agent.yaml"
    path.write_text(json.dumps(doc))
    return path


def _run(folder: Path, url: str, tool: str = "lookup", **agent: Any) -> gl.RunResult:
    provider = {"name": "p", "type": "openai", "endpoint": url}
    return gl.preview(_config(folder, provider, tool, **agent), 2)


def _tool_results(result: gl.RunResult) -> list[str]:
    return [
        m["content"] for r in result.table.to_pylist() for m in r["traj"] if m["role"] == "tool"
    ]


#: Modes where the reply is usable: the trajectory ends with "done" or the first reply.
KEPT = {
    "arguments_object": ["Paris: sunny"],
    "missing_id": None,
    "surrogate_content": None,
    "final_not_object": None,
    "deep_final": None,
    "surrogate_final": None,
    "surrogate_json": None,
    "duplicate_ids": ["Paris: sunny", "Lima: sunny"],
    "content_and_calls": ["Paris: sunny"],
    "unknown_tool": None,
    "unicode_name": None,
    "null_arguments": None,
    "surrogate_arguments": ["\ufffd: sunny"],
    "deep_arguments": None,
}


@pytest.mark.parametrize("mode", sorted(FIRST))
def test_odd_tool_call_replies_end_per_cell(folder: Path, server: Any, mode: str) -> None:
    """Each odd but legal reply of an independent server gives every cell a stored row or a
    dropped row with a one-line reason; the run completes, nothing crashes."""
    server.mode = mode
    url = server.url
    result = _run(folder, url, final_tool="submit")
    assert result.num_rows + result.num_dropped == 2
    for example in result.drop_examples:
        assert example.message
        assert "\n" not in example.message
    for row in result.table.to_pylist():
        assert row["traj__end"] in ("answer", "final_tool")
        json.dumps(row, ensure_ascii=False).encode()  # stored text is valid UTF-8
    if mode in KEPT:
        assert result.num_rows == 2, result.drop_examples
        expected = KEPT[mode]
        if expected is not None:
            assert _tool_results(result) == expected * 2
    if mode in EMPTY:  # no content and no tool call: no answer (was: an empty final answer)
        assert result.num_dropped == 2
        assert {e.error_type for e in result.drop_examples} == {"EmptyAnswer"}
        assert "empty content and no tool calls" in result.drop_examples[0].message


#: Modes whose first reply holds neither content nor a tool call: the cell has no answer.
EMPTY = {"null_content", "empty_calls"}


@pytest.mark.parametrize(
    ("tool", "said"),
    [
        ("exits", "error: tool 'exits' ended with SystemExit: 3"),
        ("exits_async", "error: tool 'exits_async' ended with SystemExit: 4"),
        ("interrupts", "error: tool 'interrupts' ended with KeyboardInterrupt"),
        ("base", "error: tool 'base' ended with BaseException: odd"),
        ("surrogate", "half \ufffd a pair"),
    ],
)
def test_tools_that_escape_exception_fail_the_call_not_the_run(
    folder: Path, server: Any, tool: str, said: str
) -> None:
    """A tool calling ``sys.exit``, raising KeyboardInterrupt in its worker thread or a bare
    BaseException, or returning text UTF-8 cannot encode, gives the model a tool result; every
    row is kept."""
    server.mode = "content_and_calls"
    server.tool = tool
    url = server.url
    result = _run(folder, url, tool)
    assert result.num_rows == 2, result.drop_examples
    assert _tool_results(result) == [said] * 2


# --------------------------------------------------------------------------- tools, in-process


async def test_hung_sync_tools_never_starve_the_runs_worker_threads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Sync tool calls that hang past ``tool_timeout`` are abandoned; however many there are
    (here three times trio's default thread limit), they hold only the tool's own threads,
    so the run's other worker-thread work goes on at once."""
    release = threading.Event()

    def hang(city: str) -> str:
        """Hangs until released."""
        release.wait()
        return city

    source = FunctionSource(FunctionTool(hang, function_spec(hang)))
    calls = 3 * int(trio.to_thread.current_default_thread_limiter().total_tokens)
    try:
        async with source.open() as tools:
            toolbox = Toolbox(tools, max_concurrent_calls=calls, call_timeout=1.0)
            results: list[str] = []

            async def one(index: int) -> None:
                call = ToolCall(id=f"c{index}", name="hang", arguments='{"city": "x"}')
                results.append((await toolbox.call(call))[0])

            async with trio.open_nursery() as nursery:
                for index in range(calls):
                    nursery.start_soon(one, index)
            assert results == ["error: tool 'hang' did not answer within 1 s"] * calls
            assert trio.current_time() == 1.0  # the calls waiting for a thread timed out too
            with trio.fail_after(1):
                assert await trio.to_thread.run_sync(lambda: "free") == "free"
            threads = getattr(tools[0], "threads", None)
            assert isinstance(threads, trio.CapacityLimiter)
            assert threads.borrowed_tokens == MAX_TOOL_THREADS
    finally:
        release.set()


async def test_argument_text_nested_too_deeply_is_a_tool_error() -> None:
    """Arguments nested deeper than Python parses are a one-line tool result, for any depth
    past the limit, and a ``final_tool`` answer in that shape is kept as its raw text."""

    def lookup(city: str) -> str:
        """Looks up."""
        return city

    toolbox = Toolbox([FunctionTool(lookup, function_spec(lookup))])
    for depth in (10_000, 100_000, 250_000):
        text = "[" * depth
        call = ToolCall(id="c", name="lookup", arguments=text)
        assert await toolbox.call(call) == ("error: arguments are nested too deeply", False)
        assert _final_answer(ToolCall(id="c", name="submit", arguments=text)) == text


@given(st.text(alphabet=st.characters(codec=None, min_codepoint=0xD700, max_codepoint=0xE0FF)))
def test_tool_results_are_always_valid_utf8(text: str) -> None:
    """Any text a tool returns (lone surrogates included) is clipped to text UTF-8 encodes,
    unchanged when it already was."""
    clipped = clip(text * 50)
    clipped.encode("utf-8")
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert clipped == text * 50


#: Text with lone surrogates among ordinary letters.
_ODD_TEXT = st.text(alphabet=st.characters(categories=["Cs", "Ll", "Lo"]), max_size=8)


def _encodes(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(
    st.recursive(
        _ODD_TEXT | st.integers() | st.none(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_ODD_TEXT, inner, max_size=4),
        max_leaves=30,
    )
)
def test_reply_json_is_cleaned_to_valid_utf8(value: Any) -> None:
    """Every string of a parsed reply, keys included, encodes as UTF-8 after cleaning (a
    lone surrogate becomes U+FFFD); a reply that already did is left equal."""
    wire = json.dumps(value)  # ASCII: lone surrogates travel as "\\udXXX" escapes
    cleaned = utf8_clean(json.loads(wire))
    assert _encodes(cleaned)
    if _encodes(value):
        assert cleaned == value


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("import nonexistent_module_for_gridloom\n", "No module named"),
        ("def broken(:\n", "invalid syntax"),
        ("import sys\nsys.exit(2)\n", "called sys.exit(2)"),
        ("x = 1\n", "has no attribute 'f'"),
        ("f = 3\n", "is not callable"),
    ],
)
def test_python_tools_that_do_not_import_fail_validation_naming_the_field(
    folder: Path, source: str, words: str
) -> None:
    """A tool module that fails to import (or exits while importing), lacks the function or
    holds something not callable fails validate with one line naming the tool's field."""
    module = f"broken_tools_{folder.name.replace('-', '_')}"
    (folder / f"{module}.py").write_text(source)
    provider = {"name": "p", "type": "simulated"}
    config = _config(folder, provider, "lookup")
    doc = json.loads(config.read_text())
    doc["columns"][1]["llm_agent"]["tools"] = [{"python": f"{module}:f"}]
    config.write_text(json.dumps(doc))
    try:
        with pytest.raises(gl.ConfigError) as info:
            gl.validate(config)
    finally:
        sys.modules.pop(module, None)
    assert info.value.column == "traj"
    assert info.value.field == "llm_agent.tools[0].python"
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_call_arguments_too_deep_to_write_are_a_malformed_reply() -> None:
    """An ``input``/``arguments`` object nested too deeply to serialise is a one-line
    MalformedResponse, not a RecursionError."""
    nested: list[Any] = []
    inner = nested
    for _ in range(5_000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(MalformedResponse, match="cannot be written as JSON"):
        checked_call("c", "f", {"a": nested}, "w", MalformedResponse)


def test_an_mcp_tool_named_as_the_final_tool_fails_the_cells_before_any_request(
    folder: Path, server: Any
) -> None:
    """An MCP server whose tool has the ``final_tool``'s name (known only once the server
    lists its tools) fails the column's cells with that reason; no request is sent."""
    pytest.importorskip("mcp")
    server.mode = "null_content"
    url = server.url
    config = _config(folder, {"name": "p", "type": "openai", "endpoint": url}, "lookup")
    doc = json.loads(config.read_text())
    echo = str(Path(__file__).parent / "mcp_servers" / "echo_server.py")
    agent = doc["columns"][1]["llm_agent"]
    agent["tools"] = [{"mcp": {"command": [sys.executable, echo], "tools": ["echo"]}}]
    agent["final_tool"] = "echo"
    config.write_text(json.dumps(doc))
    result = gl.preview(config, 2)
    assert result.num_rows == 0
    assert [e.message for e in result.drop_examples] == [
        "column 'traj': its tools are unavailable: two tools are named 'echo' (the final_tool"
        " and a tool)"
    ]
    assert server.requests == 0


def test_a_structured_answer_escaping_a_lone_surrogate_is_stored(
    server: Any, tmp_path: Path
) -> None:
    """A JSON answer whose string escapes a lone surrogate (valid JSON, not valid UTF-8 once
    decoded) is stored with U+FFFD in its place instead of crashing the run at write time."""
    server.mode = "surrogate_json"
    url = server.url
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    doc = {
        "providers": [{"name": "p", "type": "openai", "endpoint": url}],
        "models": [{"alias": "m", "provider": "p", "model": "odd"}],
        "columns": [
            {"name": "t", "llm_structured": {"model": "m", "prompt": "hi", "schema": schema}}
        ],
        "run": {"seed": 1, "max_cell_attempts": 1, "salvage_rounds": 0},
    }
    config = tmp_path / "structured.yaml"
    config.write_text(json.dumps(doc))
    result = gl.preview(config, 2)
    assert result.table.to_pylist() == [{"t": {"a": "x\ufffdy"}}] * 2


async def test_tool_values_are_written_as_json_off_the_event_loop() -> None:
    """A sync or async tool's value that is not text is written as JSON in a worker thread
    (a large one would otherwise stall every cell), the result the model reads unchanged."""
    seen: list[bool] = []

    class Odd:
        def __str__(self) -> str:
            seen.append(threading.current_thread() is threading.main_thread())
            return "odd"

    def sync_tool(city: str) -> Any:
        """Sync."""
        return {"city": city, "odd": Odd()}

    async def async_tool(city: str) -> Any:
        """Async."""
        return [city, Odd()]

    source_a = FunctionSource(FunctionTool(sync_tool, function_spec(sync_tool)))
    source_b = FunctionSource(FunctionTool(async_tool, function_spec(async_tool)))
    async with source_a.open() as tools_a, source_b.open() as tools_b:
        toolbox = Toolbox([*tools_a, *tools_b])
        first = ToolCall(id="a", name="sync_tool", arguments='{"city": "Lima"}')
        second = ToolCall(id="b", name="async_tool", arguments='{"city": "Oslo"}')
        assert await toolbox.call(first) == ('{"city": "Lima", "odd": "odd"}', True)
        assert await toolbox.call(second) == ('["Oslo", "odd"]', True)
    assert seen == [False, False]


# --------------------------------------------------------------------------- interrupt, resume

AGENT_PIPELINE = """\
providers:
  - name: sim
    type: simulated
    simulation: {seed: 3, default: {tool_turns: 2, tool_calls_per_turn: 2, latency: {fixed: 0.05}}}
models:
  - {alias: m, provider: sim, model: agent-model, max_parallel_requests: 8}
columns:
  - {name: city, category: {values: [Paris, Tokyo, Lima, Oslo, Rome, Cairo, Quito]}}
  - name: traj
    llm_agent:
      model: m
      prompt: "Weather in {{ city }}?"
      tools: [{python: "resume_tools:lookup"}]
      max_turns: 5
      max_repeated_calls: 10
run: {row_group_size: 10, max_row_groups_in_flight: 1, seed: 11}
"""

RESUME_TOOLS = '''
def lookup(city: str, units: str = "metric") -> str:
    """Look a city up."""
    return f"{city} ({units}): sunny"
'''


def test_an_agent_run_interrupted_then_resumed_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    """SIGINT while trajectories are calling tools, then ``--resume``: the dataset (every
    trajectory, row for row) and the metadata equal those of a run never interrupted."""
    from .test_interrupt import check_on_disk, interrupt
    from .test_interrupt import run_to_end as finish

    def dataset(out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        meta = json.loads((out / "metadata.json").read_text())
        parts = sorted((out / "data").glob("part-*.parquet"))
        return [row for part in parts for row in pq.read_table(part).to_pylist()], meta

    (tmp_path / "resume_tools.py").write_text(RESUME_TOOLS)
    config = tmp_path / "agent.yaml"
    config.write_text(AGENT_PIPELINE)
    finish(config, tmp_path / "reference")
    rows, meta = dataset(tmp_path / "reference")
    assert len(rows) == meta["rows_written"] == 80
    assert {row["traj__end"] for row in rows} == {"answer"}
    out = tmp_path / "out"
    code, stderr = interrupt(config, out, signal.SIGINT, groups=2)
    assert code == 130, stderr
    check_on_disk(out, graceful=True)
    assert len(list((out / "data").glob("part-*.parquet"))) < 8  # stopped part-way
    finish(config, out, "--resume")
    resumed_rows, resumed_meta = dataset(out)
    assert resumed_rows == rows
    assert resumed_meta["status"] == "complete"
    for key in ("seed", "num_records", "rows_written", "rows_dropped", "counts", "row_groups"):
        assert resumed_meta[key] == meta[key], key


def _endless() -> Iterator[int]:
    count = 0
    while True:
        yield count
        count += 1


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (b"caf\xc3\xa9 \xff", '"café \ufffd"'),
        ({"b", "a", "c"}, '["a", "b", "c"]'),
        (frozenset({2, 1}), "[1, 2]"),
        ((i * i for i in range(3)), "[0, 1, 4]"),
        ({"more": iter("ab")}, '{"more": ["a", "b"]}'),
    ],
)
async def test_tool_values_json_has_no_form_for_are_written_the_same_every_time(
    value: Any, text: str
) -> None:
    """Bytes, sets and iterators a tool returns are written as JSON text that depends only
    on their content (no memory address, no hash order)."""

    def give(city: str) -> Any:
        """Gives the value."""
        return value

    async with FunctionSource(FunctionTool(give, function_spec(give))).open() as tools:
        result = await Toolbox(tools).call(ToolCall(id="c", name="give", arguments='{"city": ""}'))
    assert result == (text, True)


async def test_an_endless_generator_is_written_up_to_its_first_items() -> None:
    """A tool returning a generator that never ends gives its first MAX_ITERATED items."""

    def give(city: str) -> Any:
        """Gives an endless generator."""
        return _endless()

    async with FunctionSource(FunctionTool(give, function_spec(give))).open() as tools:
        result = await Toolbox(tools).call(ToolCall(id="c", name="give", arguments='{"city": ""}'))
    assert result[1]
    assert result[0].startswith("[0, 1, 2, ")
    assert result[0].endswith(f", {MAX_ITERATED - 1}]")
