"""Python functions as tools: the JSON Schema of a function's arguments from its type hints,
its description from its docstring, and the call (a sync function in a worker thread)."""

from __future__ import annotations

import contextlib
import enum
import inspect
import itertools
import json
import types
import typing
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import trio

from ..clients._types import ToolSpec
from ._base import Tool, ToolError, ToolSource

__all__ = [
    "MAX_ITERATED",
    "MAX_TOOL_THREADS",
    "FunctionSource",
    "FunctionTool",
    "function_spec",
    "type_schema",
]

#: Worker threads one Python tool's sync calls may hold at once in a run, abandoned ones
#: (still running past their call's timeout) included; further calls wait for one.
MAX_TOOL_THREADS = 32

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
    """A Python function as a tool (an async one awaited, a sync one in a worker thread).

    Args:
        function: the function.
        spec: its tool spec.
        threads: bounds the worker threads of its sync calls, abandoned ones included (a
            thread that outlives its call's timeout holds its token until it ends); ``None``
            uses trio's default limiter. :meth:`FunctionSource.open` gives each run its own,
            so hung calls never starve the run's other worker threads.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        spec: ToolSpec,
        *,
        threads: trio.CapacityLimiter | None = None,
    ) -> None:
        self.function = function
        self.spec = spec
        self.threads = threads
        self.is_async = inspect.iscoroutinefunction(function)

    async def call(self, arguments: Mapping[str, Any]) -> str:
        name = self.spec.name
        if self.is_async:
            try:
                result = await self.function(**arguments)
            except Exception:
                raise
            except (trio.Cancelled, KeyboardInterrupt, GeneratorExit, BaseExceptionGroup):
                raise  # the run's own cancellation or interrupt: never the model's business
            except BaseException as exc:  # sys.exit() and the like end the call, not the run
                raise ToolError(_escaped(name, exc)) from None
        else:

            def run() -> Any:
                try:
                    value = self.function(**arguments)
                    return value if isinstance(value, str) else _as_json(value)
                except Exception:
                    raise
                except BaseException as exc:  # in a worker thread it can only be the tool's
                    raise ToolError(_escaped(name, exc)) from None

            # Abandoned when the call times out or the cell is cancelled: the thread ends
            # on its own; the cell does not wait for it.
            result = await trio.to_thread.run_sync(
                run, abandon_on_cancel=True, limiter=self.threads
            )
        if isinstance(result, str):
            return result
        # Writing a large value as JSON is heavy work: never on the event loop.
        text: str = await trio.to_thread.run_sync(
            _as_json, result, abandon_on_cancel=True, limiter=self.threads
        )
        return text


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
        threads = trio.CapacityLimiter(MAX_TOOL_THREADS)
        yield [FunctionTool(self.tool.function, self.tool.spec, threads=threads)]


def _as_json(value: Any) -> str:
    """A tool's return value that is not text, as the JSON text the model reads: bytes as
    UTF-8 text, sets sorted, iterators (generators) as lists of their first
    :data:`MAX_ITERATED` items, other values JSON has no form for as their ``str``. The same
    value always gives the same text (no memory addresses, no hash order)."""
    return json.dumps(value, ensure_ascii=False, default=_plain)


#: Most items of an iterator a tool returns that are written (it may never end).
MAX_ITERATED = 10_000


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=lambda item: (type(item).__name__, repr(item)))
    if isinstance(value, Iterator):
        return list(itertools.islice(value, MAX_ITERATED))
    return str(value)


def _escaped(name: str, exc: BaseException) -> str:
    """What the model reads when tool ``name`` raised ``exc``, which is not an Exception."""
    said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"tool {name!r} ended with {said}"
