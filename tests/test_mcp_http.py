"""MCP servers over streamable HTTP (gridloom.tools._mcp): tools listed and called with
headers from the environment, answers bounded, and a server that is unreachable or goes away
mid-run. The echo server runs as a subprocess on 127.0.0.1, answering with event streams or
with JSON bodies.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import trio

from gridloom.config._tools import McpTool
from gridloom.tools import (
    ToolError,
    ToolSourceError,
    _mcp,
)
from gridloom.tools._mcp import McpSource

from . import mcp_helpers
from .mcp_helpers import (
    SERVER,
    by_name,
)

no_server_left = mcp_helpers.no_server_left

# --- streamable HTTP ----------------------------------------------------------------------


#: The SDK's streamable-HTTP client leaves httpx2's response generators to the garbage
#: collector when its tasks are cancelled at close; trio finalizes them and warns. Harmless
#: (and not gridloom's code), but ``filterwarnings = error`` would fail the test.
sdk_generators = pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx2.:ResourceWarning",
    "ignore:Async generator 'httpcore2.:ResourceWarning",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_http_server(*flags: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, SERVER, "--http", str(port), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"http://127.0.0.1:{port}/mcp", process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                pytest.fail("the HTTP server did not start")
            time.sleep(0.05)


@pytest.fixture(params=["sse", "json"])
def http_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The echo server over streamable HTTP on 127.0.0.1 (its URL and process), answering
    with event streams or with JSON bodies."""
    url, process = _start_http_server(*(["--json"] if request.param == "json" else []))
    try:
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=10)


@sdk_generators
async def test_http_tools_listed_and_called(
    http_server: tuple[str, subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over streamable HTTP: tools listed, filtered, called; errors come back as ToolErrors."""
    url, _ = http_server
    monkeypatch.setenv("GL_MCP_TOKEN", "Bearer hunter2")
    config = McpTool(
        url=url, headers_env={"Authorization": "GL_MCP_TOKEN"}, tools=["echo", "fail", "header"]
    )
    source = McpSource(config)
    async with source.open() as tools:
        named = by_name(tools)
        assert set(named) == {"echo", "fail", "header"}
        assert await named["echo"].call({"text": "over http"}) == "over http"
        assert await named["header"].call({"name": "authorization"}) == "Bearer hunter2"
        with pytest.raises(ToolError, match=r"nope$"):
            await named["fail"].call({"message": "nope"})


@sdk_generators
async def test_http_server_gone_mid_run(
    http_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """An HTTP server that goes away fails the calls, not the run."""
    url, process = http_server
    async with McpSource(McpTool(url=url, call_timeout=20)).open() as tools:
        named = by_name(tools)
        assert await named["echo"].call({"text": "x"}) == "x"
        process.kill()
        process.wait()
        start = trio.current_time()
        with pytest.raises(ToolError, match=r"^mcp server 'http://127\.0\.0\.1:\d+/mcp'"):
            await named["echo"].call({"text": "y"})
        assert trio.current_time() - start < 10
        with pytest.raises(ToolError):
            await named["echo"].call({"text": "z"})


@sdk_generators
async def test_http_oversized_answer(
    http_server: tuple[str, subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer over HTTP longer than the bound fails that call; the session goes on."""
    monkeypatch.setattr(_mcp, "MAX_MESSAGE_BYTES", 10_000)
    url, _ = http_server
    async with McpSource(McpTool(url=url, call_timeout=10)).open() as tools:
        named = by_name(tools)
        with pytest.raises(
            ToolError, match=r"^mcp server 'http://127\.0\.0\.1:\d+/mcp', tool 'big': "
        ):
            await named["big"].call({"size": 20_000})
        assert await named["echo"].call({"text": "x"}) == "x"


@sdk_generators
async def test_http_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An HTTP server that cannot be reached fails the source; header values never show."""
    monkeypatch.setenv("GL_MCP_TOKEN", "hunter2")
    config = McpTool(
        url=f"http://127.0.0.1:{_free_port()}/mcp",
        headers_env={"Authorization": "GL_MCP_TOKEN"},
        startup_timeout=5,
    )
    with pytest.raises(ToolSourceError) as caught:
        async with McpSource(config).open():
            pytest.fail("opened")
    message = str(caught.value)
    assert message.startswith("mcp server 'http://127.0.0.1:")
    assert "failed to start: ConnectError" in message
    assert "hunter2" not in message


async def test_http_header_variable_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header whose environment variable is unset fails the source, naming the variable."""
    monkeypatch.delenv("GL_MCP_UNSET", raising=False)
    config = McpTool(url="http://127.0.0.1:9/mcp", headers_env={"X-Key": "GL_MCP_UNSET"})
    with pytest.raises(ToolSourceError) as caught:
        async with McpSource(config).open():
            pytest.fail("opened")
    assert str(caught.value) == (
        "mcp server 'http://127.0.0.1:9/mcp': environment variable 'GL_MCP_UNSET' "
        "(for header 'X-Key') is not set"
    )
