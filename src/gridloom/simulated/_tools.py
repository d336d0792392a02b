"""Tools (function calling) in requests to the simulated endpoint: parsing both APIs' ``tools``
and ``tool_choice``, and deciding which tool an answer calls.

The decision is deterministic: no tools or ``none`` → no call; a named tool → that tool;
``required`` (OpenAI) / ``any`` (Anthropic) → tools picked by the request's seeded random
stream; ``auto`` (the default when tools are given) → the same picks while the conversation
holds fewer tool-result rounds (since its last user message) than the model's ``tool_turns``,
then a text answer (the "model" has what it asked for, so an agent loop ends). An answer
that calls tools makes the model's ``tool_calls_per_turn`` calls (of the same or different
tools, each its own pick).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from .._attrs import frozen
from ._errors import RequestError
from ._schema_values import InvalidSchema, SchemaTally, SchemaTooLarge, check_schema

__all__ = [
    "AUTO",
    "MAX_TOOLS",
    "MAX_TOOL_NAME",
    "Tool",
    "ToolChoice",
    "anthropic_tool_rounds",
    "choose_tools",
    "count_schema",
    "has_tool_result",
    "openai_tool_rounds",
    "parse_anthropic_tools",
    "parse_openai_tools",
]

#: Most tools one request may declare (OpenAI's documented limit).
MAX_TOOLS = 128
#: Longest tool name accepted.
MAX_TOOL_NAME = 128

_NO_ARGUMENTS: Mapping[str, Any] = {"type": "object", "properties": {}}


@frozen(kw_only=True)
class Tool:
    """A function the model may call.

    Attributes:
        name: its name.
        schema: the JSON Schema of its arguments (OpenAI ``parameters``, Anthropic
            ``input_schema``).
    """

    name: str
    schema: Any


@frozen(kw_only=True)
class ToolChoice:
    """How the model must use the tools.

    Attributes:
        mode: ``auto`` (it decides), ``none`` (no call), ``required`` (some tool) or
            ``named`` (the tool ``name``).
        name: the tool a ``named`` choice forces.
    """

    mode: Literal["auto", "none", "required", "named"] = "auto"
    name: str | None = None


#: The model decides (the default when tools are given).
AUTO = ToolChoice()


def _name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TOOL_NAME:
        raise RequestError(
            f"a tool name must be a non-empty string of at most {MAX_TOOL_NAME} characters",
            param=param,
        )
    return value


def count_schema(schema: Any, tally: SchemaTally, param: str) -> None:
    """Count ``schema`` against the limits of the request's schemas (before checking it:
    checking costs time in proportion).

    Raises:
        RequestError: the request's schemas are over a limit, or this one names an
            unsupported ``$schema``.
    """
    try:
        tally.add(schema)
    except SchemaTooLarge as exc:
        raise RequestError(str(exc), param=param) from None
    except InvalidSchema as exc:
        raise RequestError(f"invalid JSON Schema: {exc.message}", param=param) from None


def _schema(value: Any, param: str, tally: SchemaTally, *, objects_only: bool) -> Any:
    if not isinstance(value, dict):
        raise RequestError("a tool's schema must be a JSON Schema object", param=param)
    if objects_only and value.get("type") != "object":
        raise RequestError("a tool's input_schema must have type 'object'", param=param)
    count_schema(value, tally, param)
    try:
        check_schema(value)
    except InvalidSchema as exc:
        raise RequestError(f"invalid JSON Schema: {exc.message}", param=param) from None
    return value


def _tool_list(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise RequestError("'tools' must be an array", param="tools")
    if len(raw) > MAX_TOOLS:
        raise RequestError(
            f"at most {MAX_TOOLS} tools are accepted, got {len(raw)}",
            param="tools",
            code="array_above_max_length",
        )
    return raw


def _unique(tools: Sequence[Tool]) -> tuple[Tool, ...]:
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise RequestError("tool names must be unique", param="tools")
    return tuple(tools)


def _check_named(choice: ToolChoice, tools: Sequence[Tool], param: str) -> ToolChoice:
    if choice.mode != "none" and not tools:
        raise RequestError("'tool_choice' is only allowed when 'tools' are given", param=param)
    if choice.mode == "named" and all(tool.name != choice.name for tool in tools):
        raise RequestError(f"tool_choice names an unknown tool {choice.name!r}", param=param)
    return choice


def parse_openai_tools(
    body: Mapping[str, Any], tally: SchemaTally | None = None
) -> tuple[tuple[Tool, ...], ToolChoice]:
    """The ``tools`` and ``tool_choice`` of a chat completion request (their schemas counted
    in ``tally``, the request's).

    Raises:
        RequestError: they are malformed, a tool is not a ``function``, or there are more
            than :data:`MAX_TOOLS`.
    """
    tally = SchemaTally() if tally is None else tally
    raw_tools = body.get("tools")
    tools: list[Tool] = []
    if raw_tools is not None:
        for index, raw in enumerate(_tool_list(raw_tools)):
            param = f"tools[{index}]"
            if not isinstance(raw, dict) or raw.get("type") != "function":
                raise RequestError(
                    "only tools of type 'function' are supported by the simulated endpoint",
                    param=f"{param}.type",
                )
            function = raw.get("function")
            if not isinstance(function, dict):
                raise RequestError("a function tool needs a 'function' object", param=param)
            name = _name(function.get("name"), f"{param}.function.name")
            parameters = function.get("parameters")
            schema = (
                _NO_ARGUMENTS
                if parameters is None
                else _schema(parameters, f"{param}.function.parameters", tally, objects_only=False)
            )
            tools.append(Tool(name=name, schema=schema))
    raw_choice = body.get("tool_choice")
    if raw_choice is None:
        choice = AUTO if tools else ToolChoice(mode="none")
    elif raw_choice in ("auto", "none", "required"):
        choice = ToolChoice(mode=raw_choice)
    elif (
        isinstance(raw_choice, dict)
        and raw_choice.get("type") == "function"
        and isinstance(raw_choice.get("function"), dict)
    ):
        name = _name(raw_choice["function"].get("name"), "tool_choice.function.name")
        choice = ToolChoice(mode="named", name=name)
    else:
        raise RequestError(
            "'tool_choice' must be 'none', 'auto', 'required' or"
            " {'type': 'function', 'function': {'name': ...}}",
            param="tool_choice",
        )
    return _unique(tools), _check_named(choice, tools, "tool_choice")


def parse_anthropic_tools(
    body: Mapping[str, Any], tally: SchemaTally | None = None
) -> tuple[tuple[Tool, ...], ToolChoice]:
    """The ``tools`` and ``tool_choice`` of a Messages request (client tools only; their
    schemas counted in ``tally``, the request's).

    Raises:
        RequestError: they are malformed, a tool is a server tool, there are more than
            :data:`MAX_TOOLS`, or a forced choice comes with extended thinking (which
            Anthropic forbids).
    """
    tally = SchemaTally() if tally is None else tally
    raw_tools = body.get("tools")
    tools: list[Tool] = []
    if raw_tools is not None:
        for index, raw in enumerate(_tool_list(raw_tools)):
            param = f"tools.{index}"
            if not isinstance(raw, dict):
                raise RequestError("each tool must be an object", param=param)
            if raw.get("type", "custom") != "custom":
                raise RequestError(
                    f"server tools ({raw.get('type')!r}) are not supported by the simulated"
                    " endpoint; only client tools with an input_schema are",
                    param=f"{param}.type",
                )
            name = _name(raw.get("name"), f"{param}.name")
            input_schema = raw.get("input_schema")
            schema = _schema(input_schema, f"{param}.input_schema", tally, objects_only=True)
            tools.append(Tool(name=name, schema=schema))
    raw_choice = body.get("tool_choice")
    kind = raw_choice.get("type") if isinstance(raw_choice, dict) else None
    if raw_choice is None:
        choice = AUTO if tools else ToolChoice(mode="none")
    elif kind in ("auto", "none"):
        choice = ToolChoice(mode=kind)
    elif kind == "any":
        choice = ToolChoice(mode="required")
    elif kind == "tool":
        assert isinstance(raw_choice, dict)
        choice = ToolChoice(mode="named", name=_name(raw_choice.get("name"), "tool_choice.name"))
    else:
        raise RequestError(
            "tool_choice.type must be 'auto', 'any', 'tool' or 'none'", param="tool_choice"
        )
    thinking = body.get("thinking")
    thinking_on = isinstance(thinking, dict) and thinking.get("type") != "disabled"
    if thinking_on and choice.mode in ("required", "named"):
        raise RequestError(
            "Thinking may not be enabled when tool_choice forces tool use.", param="tool_choice"
        )
    return _unique(tools), _check_named(choice, tools, "tool_choice")


def choose_tools(
    tools: Sequence[Tool],
    choice: ToolChoice,
    *,
    rounds: int,
    turns: int,
    calls: int,
    rng: random.Random,
) -> Iterator[Tool]:
    """The tools the answer calls, one per call (none: an ordinary answer; see the module doc).

    The picks are drawn from ``rng`` lazily, each as its call is asked for, so the caller
    may draw the call's arguments in between: the first call of an answer is then the same
    whatever ``calls`` is.

    Args:
        tools: the tools offered.
        choice: how the model must use them.
        rounds: tool-result rounds in the conversation since its last user message.
        turns: rounds after which ``auto`` answers text (the model's ``tool_turns``).
        calls: calls one answer makes (the model's ``tool_calls_per_turn``).
        rng: the request's seeded stream (one draw per call, unless a tool is named).
    """
    if not tools or choice.mode == "none":
        return
    if choice.mode == "auto" and rounds >= turns:
        return
    for _ in range(calls):
        if choice.mode == "named":
            yield next(tool for tool in tools if tool.name == choice.name)
        else:
            yield tools[rng.randrange(len(tools))]


def has_tool_result(message: Mapping[str, Any]) -> bool:
    """Whether an Anthropic message's content holds a ``tool_result`` block."""
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def openai_tool_rounds(messages: Sequence[Mapping[str, Any]]) -> int:
    """Rounds of tool results since the last ``user`` message of a chat completion request
    (each run of ``tool`` / ``function`` messages is one; the messages are checked)."""
    rounds = 0
    previous = None
    for message in messages:
        role = message.get("role")
        if role == "user":
            rounds = 0
        elif role in ("tool", "function") and previous not in ("tool", "function"):
            rounds += 1
        previous = role
    return rounds


def anthropic_tool_rounds(messages: Sequence[Mapping[str, Any]]) -> int:
    """Rounds of tool results since the last ``user`` message that is not one of a Messages
    request (each user message of ``tool_result`` blocks is one; the messages are checked)."""
    rounds = 0
    for message in messages:
        if message.get("role") == "user":
            rounds = rounds + 1 if has_tool_result(message) else 0
    return rounds
