"""Shared parts of the MCP tool tests: the echo server, sources for it, and the checks that
no server process is left behind. A test module uses the fixtures by naming them at its top
level (``no_server_left = mcp_helpers.no_server_left``)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio

from gridloom.config._tools import McpTool
from gridloom.tools import (
    Tool,
)
from gridloom.tools._mcp import McpSource

HERE = Path(__file__).parent / "mcp_servers"
SERVER = str(HERE / "echo_server.py")
#: How messages name the echo server (the program and the script).
NAME = f"{os.path.basename(sys.executable)} echo_server.py"
ALL_TOOLS = {
    "echo", "add", "fail", "sleep", "exit", "probe", "picture", "record", "big",
    "secret_env", "where", "shout", "header",
}  # fmt: skip


def stdio(*args: str, **fields: Any) -> McpSource:
    """A source for the echo server started with ``args``."""
    fields.setdefault("startup_timeout", 30.0)
    return McpSource(McpTool(command=[sys.executable, SERVER, *args], **fields))


def by_name(tools: Sequence[Tool]) -> dict[str, Tool]:
    return {tool.spec.name: tool for tool in tools}


def servers_alive() -> list[psutil.Process]:
    """This test process's descendants running the echo server (zombies aside)."""
    alive = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE and any(
                "echo_server.py" in part for part in process.cmdline()
            ):
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


async def gone(pid: int, within: float = 5.0) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``within`` seconds."""
    deadline = trio.current_time() + within
    while running(pid):
        if trio.current_time() > deadline:
            return False
        await trio.sleep(0.02)
    return True


@pytest.fixture
def kill_later() -> Iterator[list[int]]:
    """Pids killed at teardown if still running, so that a failing test leaks nothing."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def no_server_left() -> Iterator[None]:
    """Every test ends with no echo server of its own still running."""
    before = {process.pid for process in servers_alive()}
    yield
    deadline = time.monotonic() + 5
    while (left := [p for p in servers_alive() if p.pid not in before]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert not left, f"echo servers left running: {left}"
