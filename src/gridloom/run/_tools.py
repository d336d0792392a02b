"""The run's tools: every distinct tool source of the pipeline's ``llm_agent`` columns opened
once before any row is generated, a :class:`~gridloom.tools.Toolbox` per column, and every
source closed (MCP sessions ended, server processes stopped, search indexes removed) when the
run ends, however it ends."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Hashable, Sequence
from typing import Any

import trio

from ..engine import ExecutionGraph
from ..tools import Tool, Toolbox, ToolSource, ToolSourceError

__all__ = ["serve_tools", "tool_users"]

log = logging.getLogger("gridloom")


def tool_users(graph: ExecutionGraph) -> dict[str, Any]:
    """The generators of ``graph`` that offer tools (``tool_sources``), by column."""
    return {
        node.name: node.generator
        for node in graph.nodes
        if getattr(node.generator, "tool_sources", None)
    }


async def serve_tools(
    graph: ExecutionGraph, *, task_status: trio.TaskStatus[dict[str, Toolbox]]
) -> None:
    """Open the tool sources, report the toolboxes by column (``task_status.started``), and
    keep the sources open until cancelled; then close them all.

    A source that fails to open does not fail the run here: the toolbox of each column using
    it carries the reason, and those columns' cells fail with it (the run's column health
    stops a run whose column fails every row).
    """
    users = tool_users(graph)
    async with contextlib.AsyncExitStack() as stack:
        opened: dict[Hashable, Sequence[Tool] | str] = {}
        for generator in users.values():
            for source in generator.tool_sources:
                if source.key not in opened:
                    opened[source.key] = await _open(stack, source)
        toolboxes: dict[str, Toolbox] = {}
        for column, generator in users.items():
            found = [opened[source.key] for source in generator.tool_sources]
            failures = [item for item in found if isinstance(item, str)]
            if failures:
                toolboxes[column] = Toolbox.failed(failures[0])
                continue
            tools = [tool for item in found if not isinstance(item, str) for tool in item]
            try:
                toolboxes[column] = generator.toolbox(tools)
            except ValueError as exc:  # two sources give a tool of the same name
                toolboxes[column] = Toolbox.failed(str(exc))
        task_status.started(toolboxes)
        await trio.sleep_forever()


async def _open(stack: contextlib.AsyncExitStack, source: ToolSource) -> Sequence[Tool] | str:
    """The source's tools, entered on ``stack``; the reason when it cannot be opened."""
    try:
        tools: Sequence[Tool] = await stack.enter_async_context(source.open())
    except ToolSourceError as exc:
        log.warning("tools unavailable: %s", exc)
        return str(exc)
    for problem in source.problems:
        log.warning("tool left out: %s", problem)
    return tools
