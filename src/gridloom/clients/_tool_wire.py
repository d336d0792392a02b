"""Tool calls on the wire: the limits a reply's calls are held to, and the checks and
conversions both adapters share.

A reply is already bounded by the model's ``max_response_bytes``; on top of that it may hold at
most :data:`MAX_TOOL_CALLS` calls, each with an id and a name of at most
:data:`MAX_TOOL_NAME` characters and arguments of at most :data:`MAX_TOOL_ARGUMENTS`
characters of JSON text. A reply beyond them is malformed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import MalformedResponse
from ._types import ToolCall, ToolSpec

__all__ = [
    "MAX_TOOL_ARGUMENTS",
    "MAX_TOOL_CALLS",
    "MAX_TOOL_NAME",
    "arguments_object",
    "checked_call",
    "checked_count",
    "tool_schema",
]

#: Most tool calls one reply may hold (OpenAI's limit on the tools of one request).
MAX_TOOL_CALLS = 128
#: Longest id or tool name of a call, in characters.
MAX_TOOL_NAME = 256
#: Longest arguments of one call, in characters of JSON text.
MAX_TOOL_ARGUMENTS = 262_144

#: Makes the adapter's ``MalformedResponse`` from what is wrong.
Malformed = Callable[[str], MalformedResponse]


def checked_count(calls: Any, where: str, malformed: Malformed) -> list[Any]:
    """``calls`` (the reply's list of calls at ``where``), checked to be a list of at most
    :data:`MAX_TOOL_CALLS` entries."""
    if not isinstance(calls, list):
        raise malformed(f"'{where}' is not a list")
    if len(calls) > MAX_TOOL_CALLS:
        raise malformed(f"'{where}' holds {len(calls)} calls, more than {MAX_TOOL_CALLS}")
    return calls


def checked_call(
    call_id: Any, name: Any, arguments: Any, where: str, malformed: Malformed
) -> ToolCall:
    """The call at ``where`` with these fields, checked: a non-empty id and name of at most
    :data:`MAX_TOOL_NAME` characters, and arguments as JSON text of at most
    :data:`MAX_TOOL_ARGUMENTS` characters (a string as it is, else the value serialised)."""
    for field, value in (("id", call_id), ("name", name)):
        if not isinstance(value, str) or not value:
            raise malformed(f"'{where}' has no {field}")
        if len(value) > MAX_TOOL_NAME:
            raise malformed(f"the {field} of '{where}' is over {MAX_TOOL_NAME} characters")
    try:
        text = (
            arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        )
    except (ValueError, RecursionError):
        raise malformed(
            f"the arguments of '{where}' ({name!r}) cannot be written as JSON"
        ) from None
    if len(text) > MAX_TOOL_ARGUMENTS:
        raise malformed(
            f"the arguments of '{where}' ({name!r}) are over {MAX_TOOL_ARGUMENTS} characters"
        )
    return ToolCall(id=call_id, name=name, arguments=text)


def arguments_object(arguments: str) -> dict[str, Any]:
    """A call's arguments as the object Anthropic's ``tool_use.input`` must be: the parsed
    JSON when it is an object, else (not JSON, or JSON that is not an object) ``{}``."""
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def tool_schema(tool: ToolSpec) -> dict[str, Any]:
    """The tool's parameters schema as a plain (JSON-serialisable) dict."""
    parameters: Mapping[str, Any] = tool.parameters
    return dict(parameters)
