"""Tools that ``llm_agent`` columns offer their model: Python functions, MCP servers and a
local full-text search, behind one interface (:class:`Tool`, :class:`ToolSource`,
:class:`Toolbox`)."""

from ._base import (
    MAX_TOOL_ARGUMENTS_BYTES,
    MAX_TOOL_RESULT_CHARS,
    Tool,
    Toolbox,
    ToolError,
    ToolSource,
    ToolSourceError,
)

__all__ = [
    "MAX_TOOL_ARGUMENTS_BYTES",
    "MAX_TOOL_RESULT_CHARS",
    "Tool",
    "ToolError",
    "ToolSource",
    "ToolSourceError",
    "Toolbox",
]
