"""What a tool is to gridloom: a :class:`Tool` (a name, a JSON Schema of its arguments, an
async ``call``), made by a :class:`ToolSource` that the run opens once and closes at its end
(an MCP server's session and process, a search index), and gathered per column in a
:class:`Toolbox` that checks a model's tool calls and turns every failure into a tool result
the model reads — never an exception that fails the run.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from ..clients._post import utf8_clean
from ..clients._types import ToolCall, ToolSpec
from ..config._schema_refs import local_validator, ref_problem, unresolved

__all__ = [
    "MAX_TOOL_ARGUMENTS_BYTES",
    "MAX_TOOL_RESULT_CHARS",
    "Tool",
    "ToolError",
    "ToolSource",
    "ToolSourceError",
    "Toolbox",
]

#: The longest arguments text a tool call may carry (bytes of UTF-8).
MAX_TOOL_ARGUMENTS_BYTES = 256 * 1024
#: The longest tool result passed back to the model (characters); longer ones are cut, saying so.
MAX_TOOL_RESULT_CHARS = 64 * 1024


class ToolError(Exception):
    """A tool call that failed in a way the model should be told about (the message is the
    tool result it reads): bad arguments, the tool's own error, a timeout."""


class ToolSourceError(Exception):
    """A tool source could not be opened (an MCP server that does not start or list its
    tools in time, a search file that cannot be read). One line, naming the source, without
    secrets; the run fails the cells of the columns using the source with it."""


class Tool(abc.ABC):
    """One callable tool.

    Attributes:
        spec: what the model is told: name, description, JSON Schema of the arguments.
    """

    spec: ToolSpec

    @abc.abstractmethod
    async def call(self, arguments: Mapping[str, Any]) -> str:
        """Run the tool with ``arguments`` (already valid against ``spec.parameters``) and
        return its result as text. Raise :class:`ToolError` for a failure the model should
        read; any other exception is reported to the model the same way."""


class ToolSource(abc.ABC):
    """Where some tools come from: one entry of a column's ``tools`` list.

    The run opens each distinct source once (sources with equal :attr:`key` are opened once
    and shared, so columns naming the same MCP server share its session) before any row is
    generated, and closes it when the run ends, however it ends.
    """

    @property
    @abc.abstractmethod
    def key(self) -> Hashable:
        """Identifies the source: equal keys are opened once and shared."""

    #: Problems found while opening that did not stop the source (a tool left out because
    #: its schema is invalid), one line each; the run logs and records them.
    problems: list[str]

    @abc.abstractmethod
    def open(self) -> AbstractAsyncContextManager[Sequence[Tool]]:
        """An async context giving the source's tools while it is open; leaving it releases
        everything (sessions, processes, files), also when the run is cancelled.

        Raises:
            ToolSourceError: the source cannot be opened (entering the context raises it).
        """


class Toolbox:
    """The tools one column offers, by name, and the checks around each call.

    Args:
        tools: the tools (names unique).
        max_concurrent_calls: tool calls of this column running at once (over all its cells).
        call_timeout: seconds one call may take before it is reported as timed out.
    """

    def __init__(
        self, tools: Sequence[Tool], *, max_concurrent_calls: int = 8, call_timeout: float = 60.0
    ) -> None:
        self.tools: dict[str, Tool] = {}
        #: Each tool's arguments validator, built once (checking the schema on every call
        #: would cost more than most tools).
        self.validators: dict[str, Any] = {}
        for tool in tools:
            if tool.spec.name in self.tools:
                raise ValueError(f"two tools are named {tool.spec.name!r}")
            self.tools[tool.spec.name] = tool
            self.validators[tool.spec.name] = argument_validator(tool.spec)
        self.specs: tuple[ToolSpec, ...] = tuple(tool.spec for tool in tools)
        self.limiter = trio.CapacityLimiter(max_concurrent_calls)
        self.call_timeout = call_timeout
        #: Why the column's tools are unavailable (a source did not open), or ``None``.
        self.failure: str | None = None

    @classmethod
    def failed(cls, reason: str) -> Toolbox:
        """A toolbox with no tools whose column's cells fail with ``reason``."""
        toolbox = cls(())
        toolbox.failure = reason
        return toolbox

    async def call(self, call: ToolCall) -> tuple[str, bool]:
        """Run ``call``; return ``(result text, ok)``. Every failure — an unknown tool,
        arguments that are not JSON or do not match the schema, the tool's error, a timeout —
        is a result the model reads (``ok`` false), with a one-line reason; every result is
        clipped to :data:`MAX_TOOL_RESULT_CHARS` and made valid UTF-8 (see :func:`clip`)."""
        text, ok = await self._call(call)
        return clip(text), ok

    async def _call(self, call: ToolCall) -> tuple[str, bool]:
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join(self.tools) or "none"
            return f"error: unknown tool {call.name!r} (tools: {known})", False
        try:
            arguments = self.arguments(tool, call.arguments, self.validators[call.name])
            async with self.limiter:
                with trio.fail_after(self.call_timeout):
                    result: Any = await tool.call(arguments)  # checked below
        except trio.TooSlowError:
            return f"error: tool {call.name!r} did not answer within {self.call_timeout:g} s", False
        except ToolError as exc:
            return f"error: {_said(exc)}", False
        except Exception as exc:  # the tool's own bug: the model is told, the run goes on
            return f"error: tool {call.name!r} failed: {type(exc).__name__}: {_said(exc)}", False
        if not isinstance(result, str):  # a Tool that broke its contract
            return f"error: tool {call.name!r} returned {type(result).__name__}, not text", False
        return result, True

    @staticmethod
    def arguments(tool: Tool, text: str, validator: Any = None) -> dict[str, Any]:
        """``text`` parsed as JSON and checked against the tool's schema (by ``validator``,
        :func:`argument_validator` of the tool, when given).

        Raises:
            ToolError: too long, not a JSON object, or not valid against the schema.
        """
        if len(text.encode("utf-8", "replace")) > MAX_TOOL_ARGUMENTS_BYTES:
            raise ToolError(f"arguments longer than {MAX_TOOL_ARGUMENTS_BYTES} bytes")
        try:
            value = json.loads(text or "{}")
        except ValueError as exc:
            raise ToolError(f"arguments are not valid JSON: {exc}") from None
        except RecursionError:
            raise ToolError("arguments are nested too deeply") from None
        if not isinstance(value, dict):
            raise ToolError(f"arguments must be a JSON object, got {type(value).__name__}")
        if validator is None:
            validator = argument_validator(tool.spec)
        from jsonschema import ValidationError  # loaded with the validator
        from referencing.exceptions import Unresolvable

        try:
            validator.validate(value)
        except ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
            message = f"invalid arguments for {tool.spec.name!r} at {where}: {exc.message}"
            raise ToolError(message) from None
        except Unresolvable as exc:  # nothing is fetched: the schema's fault, said as such
            raise ToolError(
                f"the schema of {tool.spec.name!r} cannot be used: {unresolved(exc)}"
            ) from None
        except RecursionError:
            raise ToolError(
                f"arguments for {tool.spec.name!r} are nested too deeply to check"
            ) from None
        return value


def argument_validator(spec: ToolSpec) -> Any:
    """A validator of ``spec``'s arguments (its schema checked once, here), which follows only
    local ``$ref`` (nothing is fetched).

    Raises:
        ValueError: the schema is not a valid JSON Schema.
    """
    from jsonschema import SchemaError, validators  # not with this module: only tools need it

    schema = dict(spec.parameters)
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"tool {spec.name!r} has an invalid schema: {exc.message}") from None
    problem = ref_problem(schema)
    if problem is not None:
        raise ValueError(f"tool {spec.name!r} has an unusable schema: {problem}")
    return local_validator(schema, cls)


def clip(text: str) -> str:
    """``text`` cut to :data:`MAX_TOOL_RESULT_CHARS`, saying so, and made text UTF-8 can
    encode (a lone surrogate becomes U+FFFD: it could be neither sent nor stored)."""
    if len(text) > MAX_TOOL_RESULT_CHARS:
        text = text[:MAX_TOOL_RESULT_CHARS] + f"\n[cut: {len(text)} characters in all]"
    return str(utf8_clean(text))


def _said(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception cannot even say what it is."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose message cannot be shown>"
