"""The pure parts of the MCP tool source: its key and name, input schema checks, how a
result becomes text, the stderr tail, and that ``import gridloom`` leaves the SDK alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import mcp_types
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from gridloom.config._tools import McpTool
from gridloom.tools._mcp import McpSource, schema_problem, short_name
from gridloom.tools._mcp_result import describe_content, render_result
from gridloom.tools._mcp_stdio import STDERR_TAIL_BYTES, StdioServer

# --- pure parts ---------------------------------------------------------------------------


def test_key_identifies_the_server(tmp_path: Path) -> None:
    """Sources naming the same server and tools share a key; another env, cwd, URL or tools
    subset does not (each subset gets its own session, so each column sees its own tools)."""

    def key(base: Path | None = None, **fields: Any) -> object:
        return McpSource(McpTool(**fields), base_dir=base).key

    command = ["python", "server.py"]
    assert key(command=command, tools=["a"]) != key(command=command, call_timeout=5)
    assert key(command=command, tools=["a", "b"]) == key(command=command, tools=["b", "a"])
    assert key(command=command) == key(command=command, call_timeout=5)
    assert key(command=command, cwd="x", base=tmp_path) == key(
        command=command, cwd=str(tmp_path / "x")
    )
    assert key(command=command) != key(command=command, env={"A": "1"})
    assert key(command=command, cwd="x", base=tmp_path) != key(
        command=command, cwd="y", base=tmp_path
    )
    assert key(url="http://a/mcp") != key(url="http://b/mcp")
    assert key(url="http://a/mcp") != key(url="http://a/mcp", tools=["x"])


def test_short_name_hides_arguments_and_secrets() -> None:
    """Messages name the program and script, or the URL without credentials or query."""
    assert short_name(McpTool(command=["/usr/bin/node", "/srv/mcp/index.js", "--key=k"])) == (
        "node index.js"
    )
    assert short_name(McpTool(command=["uvx", "--from", "x", "server"])) == "uvx"
    assert short_name(McpTool(url="https://host:8443/mcp?team=t")) == "https://host:8443/mcp"
    # Credentials in the URL are refused when the config is built (test_endpoint_urls.py).
    with pytest.raises(ValueError, match="must not hold credentials") as caught:
        McpTool(url="https://user:pw@host:8443/mcp")
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {"type": "string"}}}, None),
        ({"type": "array"}, "its input schema is not of type object"),
        ({"properties": {}}, "its input schema is not of type object"),
        (
            {"type": "object", "required": "a"},
            "its input schema is invalid at required: 'a' is not of type 'array'",
        ),
        ([], "its input schema is not an object"),
        (
            {"$schema": "http://example.com/mine", "type": "object"},
            "its input schema names an unknown $schema 'http://example.com/mine'",
        ),
        (
            {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
            None,
        ),
    ],
)
def test_schema_problem(schema: Any, problem: str | None) -> None:
    """Input schemas are checked against JSON Schema's meta-schema and must be objects."""
    assert schema_problem(schema) == problem


@given(st.lists(st.text(max_size=300), max_size=8), st.integers(min_value=1, max_value=1000))
def test_render_text_bounded(parts: list[str], limit: int) -> None:
    """Text content is joined by newlines, cut at the limit with a note giving the length."""
    result = mcp_types.CallToolResult(content=[mcp_types.TextContent(text=p) for p in parts])
    joined = "\n".join(parts)
    text = render_result(result, limit)
    if len(joined) <= limit:
        assert text == joined
    else:
        assert text == joined[:limit] + f"\n[cut: {len(joined)} characters in all]"


def test_describe_other_content() -> None:
    """Resources and links are one short line each, never their contents."""
    embedded = mcp_types.EmbeddedResource(
        resource=mcp_types.TextResourceContents(uri="file:///a.txt", text="y" * 5000)
    )
    link = mcp_types.ResourceLink(uri="file:///b.bin", name="b")
    audio = mcp_types.AudioContent(data="AAAA", mime_type="audio/wav")
    assert describe_content(embedded) == "[resource file:///a.txt: unknown type, 5000 characters]"
    assert describe_content(link) == "[resource link file:///b.bin: b]"
    assert describe_content(audio) == "[audio: audio/wav, about 3 bytes]"
    assert describe_content(object()) == "[object content]"


@given(st.lists(st.binary(max_size=3000), max_size=10))
def test_stderr_tail_bounded(chunks: list[bytes]) -> None:
    """The stderr tail keeps the last STDERR_TAIL_BYTES bytes; its last line is one short line."""
    server = StdioServer(cast(trio.Process, None))
    for chunk in chunks:
        server.keep_stderr(chunk)
    assert bytes(server._stderr) == b"".join(chunks)[-STDERR_TAIL_BYTES:]
    line = server.last_stderr_line()
    assert len(line) <= 200
    assert "\n" not in line


def test_stderr_last_line() -> None:
    """The last non-empty stderr line is found, stripped and cut to its limit."""
    server = StdioServer(cast(trio.Process, None))
    server.keep_stderr(b"first\n  Error: it broke  \n\n")
    assert server.last_stderr_line() == "Error: it broke"
    server.keep_stderr(b"y" * 300)
    assert server.last_stderr_line() == "y" * 197 + "..."


def test_import_gridloom_does_not_import_mcp() -> None:
    """``import gridloom`` (and its tools package) leaves the mcp SDK unimported."""
    code = "import sys, gridloom, gridloom.tools; print('mcp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
