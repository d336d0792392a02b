"""Python functions as tools: the JSON Schema of a function's arguments from its type hints,
its description from its docstring, and the call (a sync function in a worker thread)."""

from __future__ import annotations

import contextlib
import enum
import inspect
import json
import types
import typing
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from typing import Any

import trio

from ..clients._types import ToolSpec
from ._base import Tool, ToolSource

__all__ = ["FunctionSource", "FunctionTool", "function_spec", "type_schema"]

_SCALARS: dict[type, dict[str, Any]] = {
    str: {"type": "string"},
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
}


def type_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of values of ``annotation``.

    Raises:
        TypeError: the annotation has no JSON Schema here (say which, so the user can give
            ``parameters`` explicitly).
    """
    if annotation in _SCALARS:
        return dict(_SCALARS[annotation])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        values = list(args)
        if all(isinstance(v, str | int | float | bool) for v in values):
            return {"enum": values}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            inner = type_schema(options[0])
            return {"anyOf": [inner, {"type": "null"}]} if len(options) < len(args) else inner
        return {"anyOf": [type_schema(a) for a in args]}
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        item = args[0] if args and args[0] is not Ellipsis else None
        schema: dict[str, Any] = {"type": "array"}
        if item is not None:
            schema["items"] = type_schema(item)
        return schema
    if origin in (dict, Mapping) or annotation is dict:
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = type_schema(args[1])
        return schema
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    raise TypeError(f"{annotation!r} has no JSON Schema")


def _docstring(function: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The docstring's first paragraph, and the descriptions of an ``Args:`` section."""
    doc = inspect.cleandoc(function.__doc__ or "")
    summary = " ".join(doc.split("\n\n", 1)[0].split())
    described: dict[str, str] = {}
    lines = doc.splitlines()
    if "Args:" in lines:
        current: str | None = None
        for line in lines[lines.index("Args:") + 1 :]:
            if not line.strip():
                continue
            if not line.startswith((" ", "\t")):
                break  # the next section
            stripped = line.strip()
            name, sep, text = stripped.partition(":")
            name = name.split(" ")[0]
            if sep and name.isidentifier() and line.startswith("    ") and not line[4:5].isspace():
                current = name
                described[name] = text.strip()
            elif current is not None:
                described[current] = f"{described[current]} {stripped}".strip()
    return summary, described


def function_spec(
    function: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> ToolSpec:
    """The tool spec of ``function``: ``name``, ``description`` and ``parameters`` as given,
    else its ``__name__``, its docstring's first paragraph and a schema from its type hints
    (parameters without a default are required; ``*args``/``**kwargs`` are refused).

    Raises:
        TypeError: a parameter has no annotation, or one with no JSON Schema.
    """
    summary, described = _docstring(function)
    tool_name: str = name or str(getattr(function, "__name__", "tool"))
    if parameters is None:
        hints = typing.get_type_hints(function)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for param in inspect.signature(function).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"parameter *{param.name}: a tool takes named arguments only")
            if param.name not in hints:
                raise TypeError(f"parameter {param.name!r} has no type annotation")
            try:
                schema = type_schema(hints[param.name])
            except TypeError as exc:
                raise TypeError(f"parameter {param.name!r}: {exc}") from None
            if param.name in described:
                schema["description"] = described[param.name]
            if param.default is inspect.Parameter.empty:
                required.append(param.name)
            elif isinstance(param.default, str | int | float | bool):
                schema["default"] = param.default
            properties[param.name] = schema
        parameters = {"type": "object", "properties": properties, "required": required}
        parameters["additionalProperties"] = False
    return ToolSpec(name=tool_name, description=description or summary, parameters=parameters)


class FunctionTool(Tool):
    """A Python function as a tool (an async one awaited, a sync one in a worker thread)."""

    def __init__(self, function: Callable[..., Any], spec: ToolSpec) -> None:
        self.function = function
        self.spec = spec
        self.is_async = inspect.iscoroutinefunction(function)

    async def call(self, arguments: Mapping[str, Any]) -> str:
        if self.is_async:
            result = await self.function(**arguments)
        else:

            def run() -> Any:
                return self.function(**arguments)

            # Abandoned when the call times out or the cell is cancelled: the thread ends
            # on its own; the cell does not wait for it.
            result = await trio.to_thread.run_sync(run, abandon_on_cancel=True)
        if isinstance(result, str):
            return result
        return json.dumps(result, ensure_ascii=False, default=str)


class FunctionSource(ToolSource):
    """One Python function's tool (nothing to open or close)."""

    def __init__(self, tool: FunctionTool) -> None:
        self.tool = tool
        self.problems: list[str] = []

    @property
    def key(self) -> Hashable:
        return ("python", id(self.tool.function), self.tool.spec.name)

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Sequence[Tool]]:
        yield [self.tool]
