"""MCP servers as a tool source over stdio (gridloom.tools._mcp): tools listed and called,
limits, every way a server can fail, and no process left behind — also on cancellation and
SIGINT.

The servers are real subprocesses (tests/mcp_servers/echo_server.py), so these tests run on
the real clock with short configured timeouts: trio's virtual clock would fire a timeout
while a test waits on a process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import trio

from gridloom.clients._types import ToolCall
from gridloom.config._tools import McpTool
from gridloom.tools import (
    MAX_TOOL_RESULT_CHARS,
    Toolbox,
    ToolError,
    ToolSourceError,
    _mcp_stdio,
)
from gridloom.tools._mcp import McpSource
from gridloom.tools._mcp_result import MAX_RESULT_CHARS
from gridloom.tools._mcp_stdio import STDERR_TAIL_BYTES

from . import mcp_helpers
from .mcp_helpers import (
    ALL_TOOLS,
    HERE,
    NAME,
    SERVER,
    by_name,
    gone,
    running,
    servers_alive,
    stdio,
)

kill_later = mcp_helpers.kill_later
no_server_left = mcp_helpers.no_server_left

# --- stdio ------------------------------------------------------------------------------


async def test_stdio_tools_listed_and_called() -> None:
    """The server's tools are listed with their schemas and called over stdio."""
    source = stdio()
    async with source.open() as tools:
        named = by_name(tools)
        assert set(named) == ALL_TOOLS
        assert named["add"].spec.description == "Add two numbers."
        assert named["add"].spec.parameters["required"] == ["a", "b"]
        assert await named["echo"].call({"text": "héllo"}) == "héllo"
        assert await named["add"].call({"a": 1, "b": 2.5}) == "3.5"


async def test_other_content_kinds_are_described_not_dumped() -> None:
    """An image is one short line; structured content alone is sent as JSON."""
    async with stdio().open() as tools:
        named = by_name(tools)
        assert await named["picture"].call({}) == "[image: image/png, about 72 bytes]"
        assert await named["record"].call({"name": "abc"}) == '{"name": "abc", "length": 3}'


async def test_long_result_is_cut() -> None:
    """A long result is cut, saying how long it was, and the Toolbox passes it on as is."""
    size = MAX_TOOL_RESULT_CHARS + 10
    async with stdio().open() as tools:
        text = await by_name(tools)["big"].call({"size": size})
        passed, ok = await Toolbox(tools).call(
            ToolCall(id="1", name="big", arguments=f'{{"size": {size}}}')
        )
    assert text == "x" * MAX_RESULT_CHARS + f"\n[cut: {size} characters in all]"
    assert (passed, ok) == (text, True)


async def test_tools_filter() -> None:
    """Only the tools named in ``tools`` are offered."""
    async with stdio(tools=["add", "echo"]).open() as tools:
        assert sorted(tool.spec.name for tool in tools) == ["add", "echo"]


async def test_unknown_tool_in_filter() -> None:
    """A name in ``tools`` the server lacks fails the source, listing the server's tools."""
    with pytest.raises(ToolSourceError) as caught:
        async with stdio(tools=["echo", "nope"]).open():
            pytest.fail("opened")
    message = str(caught.value)
    assert message.startswith(f"mcp server {NAME!r} has no tool 'nope' (its tools: ")
    assert "'echo'" in message
    assert "\n" not in message


async def test_env_and_relative_cwd_reach_the_server(tmp_path: Path) -> None:
    """``env`` is set for the server and a relative ``cwd`` is resolved from the config's folder."""
    (tmp_path / "work").mkdir()
    config = McpTool(command=[sys.executable, SERVER], env={"GL_VALUE": "v1"}, cwd="work")
    async with McpSource(config, base_dir=tmp_path).open() as tools:
        named = by_name(tools)
        assert await named["secret_env"].call({"variable": "GL_VALUE"}) == "v1"
        assert await named["where"].call({}) == str(tmp_path / "work")


async def test_invalid_schema_is_left_out_and_reported() -> None:
    """A tool whose input schema is not valid JSON Schema is left out, in one line of problems."""
    source = stdio()
    async with source.open() as tools:
        assert "bad_schema" not in by_name(tools)
    assert source.problems == [
        f"mcp server {NAME!r}: tool 'bad_schema' left out: its input schema is "
        "invalid at properties/x/type: 'no-such-type' is not valid under any of the given schemas"
    ]


async def test_concurrency_bounded() -> None:
    """Calls in flight at the server never exceed max_concurrent_calls, and reach it."""
    results: list[int] = []
    async with stdio(max_concurrent_calls=3).open() as tools:
        probe = by_name(tools)["probe"]

        async def one() -> None:
            results.append(int(await probe.call({"target": 3})))

        async with trio.open_nursery() as nursery:
            for _ in range(12):
                nursery.start_soon(one)
    assert len(results) == 12
    assert max(results) == 3


async def test_raising_tool() -> None:
    """A tool that raises is a ToolError carrying its message; the session goes on."""
    async with stdio().open() as tools:
        named = by_name(tools)
        with pytest.raises(ToolError, match=r"no luck$"):
            await named["fail"].call({"message": "no luck"})
        assert await named["echo"].call({"text": "still here"}) == "still here"


async def test_hung_call_times_out() -> None:
    """A call that does not answer within call_timeout is a ToolError; others still work."""
    async with stdio(call_timeout=0.5).open() as tools:
        named = by_name(tools)
        start = trio.current_time()
        with pytest.raises(ToolError) as caught:
            await named["sleep"].call({"seconds": 60})
        assert 0.5 <= trio.current_time() - start < 3
        assert str(caught.value) == (
            f"tool 'sleep' of mcp server {NAME!r} did not answer within 0.5 s"
        )
        assert await named["echo"].call({"text": "ok"}) == "ok"


async def test_server_exits_mid_run() -> None:
    """A server that exits fails the call in flight and later calls at once, with its code."""
    expected = f"mcp server {NAME!r} exited (code 7)"
    async with stdio(call_timeout=60).open() as tools:
        named = by_name(tools)
        outcomes: list[str] = []

        async def sleeper() -> None:
            with pytest.raises(ToolError) as caught:
                await named["sleep"].call({"seconds": 60})
            outcomes.append(str(caught.value))

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper)
            await trio.sleep(0.2)
            with pytest.raises(ToolError) as caught:
                await named["exit"].call({"code": 7})
            outcomes.append(str(caught.value))
        assert outcomes == [expected, expected]
        assert trio.current_time() - start < 5  # not the 60 s call timeout
        later = trio.current_time()
        with pytest.raises(ToolError, match=r"exited \(code 7\)$"):
            await named["echo"].call({"text": "x"})
        assert trio.current_time() - later < 0.1


async def test_oversized_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message longer than the bound ends the connection; the call fails saying why."""
    monkeypatch.setattr(_mcp_stdio, "MAX_MESSAGE_BYTES", 10_000)
    async with stdio().open() as tools:
        named = by_name(tools)
        assert await named["big"].call({"size": 2_000}) == "x" * 2_000
        with pytest.raises(ToolError, match=r"sent a message longer than 10000 bytes$"):
            await named["big"].call({"size": 20_000})
        with pytest.raises(ToolError, match=r"sent a message longer than 10000 bytes$"):
            await named["echo"].call({"text": "x"})


async def test_stderr_is_captured_not_printed(capfd: pytest.CaptureFixture[str]) -> None:
    """The server's stderr goes to a bounded tail, never to the terminal."""
    source = stdio()
    async with source.open() as tools:
        assert await by_name(tools)["shout"].call({"size": 100_000}) == "done"
        server = source._server
        assert server is not None
        for _ in range(500):  # the stderr reader catches up
            if server.last_stderr_line() == "last words":
                break
            await trio.sleep(0.01)
        assert server.last_stderr_line() == "last words"
        assert len(server._stderr) == STDERR_TAIL_BYTES
    captured = capfd.readouterr()
    assert "last words" not in captured.err + captured.out


# --- start-up failures --------------------------------------------------------------------


async def test_bad_command() -> None:
    """A program that does not exist fails the source in one line, without env values."""
    config = McpTool(command=["no-such-program-gl", "--token=abc"], env={"TOKEN": "s3cr3t"})
    with pytest.raises(ToolSourceError) as caught:
        async with McpSource(config).open():
            pytest.fail("opened")
    assert str(caught.value) == (
        "mcp server 'no-such-program-gl' could not start: No such file or directory"
    )


async def test_server_exits_at_start() -> None:
    """A server that exits during start-up: its code and its last stderr line."""
    with pytest.raises(ToolSourceError) as caught:
        async with stdio("--die-at-start").open():
            pytest.fail("opened")
    assert str(caught.value) == (
        f"mcp server {NAME!r} exited (code 3) during start-up: "
        "fatal: the test server was told to die"
    )


async def test_server_never_answers_initialize() -> None:
    """A server silent past startup_timeout fails the source and is stopped at once."""
    start = trio.current_time()
    with pytest.raises(ToolSourceError) as caught:
        async with stdio("--mute", startup_timeout=2.0).open():
            pytest.fail("opened")
    assert str(caught.value) == (
        f"mcp server {NAME!r} did not start within 2 s: muted: not reading stdin"
    )
    assert trio.current_time() - start < 4  # no exit grace for a failed start


# --- process hygiene ----------------------------------------------------------------------


async def test_cancelled_with_calls_in_flight_leaves_no_process(
    tmp_path: Path, kill_later: list[int]
) -> None:
    """Cancelling the run while calls are in flight stops the server and its children."""
    pidfile = tmp_path / "child.pid"
    source = stdio("--spawn-child", str(pidfile), call_timeout=600)
    with trio.move_on_after(30) as outer:
        async with trio.open_nursery() as nursery, source.open() as tools:
            sleep = by_name(tools)["sleep"]
            for _ in range(3):
                nursery.start_soon(sleep.call, {"seconds": 600})
            await trio.sleep(0.3)
            server = source._server
            assert server is not None
            server_pid = server.process.pid
            child_pid = int(pidfile.read_text())
            kill_later.append(child_pid)
            assert running(server_pid)
            assert running(child_pid)
            nursery.cancel_scope.cancel()
    assert not outer.cancelled_caught
    assert await gone(server_pid)
    assert await gone(child_pid)
    assert servers_alive() == []


async def test_body_exception_comes_out_as_is() -> None:
    """An exception raised while the source is open leaves it unwrapped (no exception group),
    and the server is stopped."""
    cause = ValueError("why")
    with pytest.raises(KeyError, match="boom") as caught:
        async with stdio().open():
            raise KeyError("boom") from cause
    assert caught.value.__cause__ is cause


async def test_open_twice_at_once_is_refused() -> None:
    """A source is opened once at a time (the run shares it by key)."""
    source = stdio()
    async with source.open():
        with pytest.raises(RuntimeError, match="already open"):
            async with source.open():
                pytest.fail("opened twice")


async def test_normal_close_stops_children(tmp_path: Path, kill_later: list[int]) -> None:
    """Leaving the source stops the server's own children too."""
    pidfile = tmp_path / "child.pid"
    async with stdio("--spawn-child", str(pidfile)).open() as tools:
        assert await by_name(tools)["echo"].call({"text": "x"}) == "x"
        child_pid = int(pidfile.read_text())
        kill_later.append(child_pid)
    assert await gone(child_pid)


def test_sigint_leaves_no_process(tmp_path: Path, kill_later: list[int]) -> None:
    """SIGINT to a process using an MCP source ends it with no server process left."""
    pidfile = tmp_path / "child.pid"
    client = subprocess.Popen(
        [sys.executable, str(HERE / "sigint_client.py"), str(pidfile)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "ready"
        descendants = psutil.Process(client.pid).children(recursive=True)
        kill_later.extend(p.pid for p in descendants)
        assert len(descendants) == 2  # the server and its child
        client.send_signal(signal.SIGINT)
        client.wait(timeout=20)
        _, err = client.communicate()
        assert "KeyboardInterrupt" in err
        deadline = time.monotonic() + 5
        while any(running(p.pid) for p in descendants) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not [p for p in descendants if running(p.pid)]
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


# --- through the Toolbox ------------------------------------------------------------------


async def test_toolbox_reports_failures_as_results() -> None:
    """Through a Toolbox, an MCP tool's error is a result the model reads, not an exception."""
    async with stdio().open() as tools:
        box = Toolbox(tools)
        ok = await box.call(ToolCall(id="1", name="add", arguments='{"a": 2, "b": 3}'))
        failed = await box.call(ToolCall(id="2", name="fail", arguments='{"message": "bad"}'))
    assert ok == ("5.0", True)
    assert failed == ("error: Error executing tool fail: bad", False)


async def test_python_and_default_cwd(tmp_path: Path) -> None:
    """``python`` is gridloom's interpreter, and a server runs in the config file's folder,
    so ``[python, server.py]`` finds a script beside the config."""
    (tmp_path / "server.py").write_text(Path(SERVER).read_text())
    source = McpSource(McpTool(command=["python", "server.py"]), base_dir=tmp_path)
    assert source.argv == (sys.executable, "server.py")
    async with source.open() as tools:
        assert await by_name(tools)["where"].call({}) == str(tmp_path)
