"""Parsing request bodies of the three APIs into neutral, hashable request values.

Every request is held to limits that bound what answering it costs (each is answered 400
beyond): :data:`MAX_MODEL_NAME`, :data:`MAX_MESSAGES`, :data:`MAX_CONTENT_PARTS`,
:data:`MAX_PROMPT_CHARS`, :data:`MAX_CHOICES`, :data:`MAX_TOKENS`,
:data:`MAX_EMBEDDING_INPUTS` and :data:`MAX_EMBEDDING_DIMENSIONS`, :data:`MAX_JSON_DEPTH`
for tool inputs and arguments, and the schema limits of :mod:`._schema_values`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from .._attrs import frozen
from ._errors import RequestError
from ._schema_values import SchemaTally
from ._thinking import Thinking, parse_thinking
from ._tools import (
    AUTO,
    Tool,
    ToolChoice,
    anthropic_tool_rounds,
    count_schema,
    has_tool_result,
    openai_tool_rounds,
    parse_anthropic_tools,
    parse_openai_tools,
)

__all__ = [
    "MAX_CHOICES",
    "MAX_CONTENT_PARTS",
    "MAX_EMBEDDING_DIMENSIONS",
    "MAX_EMBEDDING_INPUTS",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGES",
    "MAX_MODEL_NAME",
    "MAX_PROMPT_CHARS",
    "MAX_TOKENS",
    "EmbeddingsRequest",
    "GenerationRequest",
    "PromptMessage",
    "RequestError",
    "count_tokens",
    "parse_anthropic_messages",
    "parse_chat_completions",
    "parse_embeddings",
    "parse_json_body",
]


#: Most choices (``n``) one chat completion may ask for.
MAX_CHOICES = 16
#: Largest ``max_tokens`` / ``max_completion_tokens`` accepted (above every real model's
#: output limit; the answer's own length is bounded by ``MAX_ANSWER_TOKENS`` of ``_replies``).
MAX_TOKENS = 131_072
#: Longest model name.
MAX_MODEL_NAME = 256
#: Most messages in one request.
MAX_MESSAGES = 2_048
#: Most content parts (text, image, tool use or result blocks; tool calls) in one request.
MAX_CONTENT_PARTS = 4_096
#: Most characters of text in one request: the system prompt and every message (for
#: embeddings, every input).
MAX_PROMPT_CHARS = 1_048_576
#: Most inputs of one embeddings request (OpenAI's limit).
MAX_EMBEDDING_INPUTS = 2_048
#: Largest ``dimensions`` of an embeddings request.
MAX_EMBEDDING_DIMENSIONS = 8_192
#: Deepest nesting of a JSON value that is turned into prompt text (a tool call's input).
MAX_JSON_DEPTH = 32

#: OpenAI parameters that would change the answer in ways the simulated endpoint does not
#: model: a request that sets one (to anything but its neutral value) is answered 400.
_UNSUPPORTED_OPENAI = {
    "logprobs": "log probabilities",
    "top_logprobs": "log probabilities",
    "audio": "audio output",
    "prediction": "predicted outputs",
    "functions": "legacy function calling (use 'tools')",
    "function_call": "legacy function calling (use 'tool_choice')",
    "web_search_options": "web search",
}


def count_tokens(text: str) -> int:
    """Tokens as the simulated endpoint counts them: whitespace-separated words."""
    return len(text.split())


@frozen(kw_only=True)
class PromptMessage:
    """One message of a conversation, reduced to its text.

    Attributes:
        role: ``system`` (also OpenAI's ``developer``), ``user``, ``assistant`` or ``tool``.
        text: the text content (text parts joined by blank lines).
    """

    role: str
    text: str


@frozen(kw_only=True)
class GenerationRequest:
    """A chat completion or Anthropic Messages request, whatever the API.

    Attributes:
        model: the model name.
        messages: the conversation, system messages included.
        schema: JSON Schema asked for through the API (``response_format`` / ``output_format``).
        json_mode: plain JSON output asked for (``response_format: {type: json_object}``).
        max_tokens: the output limit, if the request set one.
        tools: the tools the model may call.
        tool_choice: how it must use them.
        after_tool_result: the conversation ends with a tool's result.
        tool_rounds: tool-result rounds since the last user message (see :mod:`._tools`).
        temperature, top_p: the sampling parameters sent, if any (recorded in the timeline;
            the simulated answers do not depend on them).
        thinking: Anthropic's extended ``thinking``, if set (see :mod:`._thinking`).
        n: how many choices to answer with (OpenAI; at most :data:`MAX_CHOICES`).
        stream: answer as server-sent events.
        include_usage: when streaming, end with a chunk carrying the usage (OpenAI's
            ``stream_options.include_usage``).
    """

    model: str
    messages: tuple[PromptMessage, ...]
    schema: Any = None
    json_mode: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = AUTO
    after_tool_result: bool = False
    tool_rounds: int = 0
    thinking: Thinking | None = None
    n: int = 1
    stream: bool = False
    include_usage: bool = False

    def digest(self) -> bytes:
        """Hash of what determines the answer: model, messages, schema and tools (not ``n``
        nor streaming: the first choice is the same answer either way)."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> bytes:
        key: list[Any] = [
            self.model,
            [[m.role, m.text] for m in self.messages],
            self.schema,
            self.json_mode,
        ]
        if self.tools:
            key.append([[tool.name, tool.schema] for tool in self.tools])
            key.append([self.tool_choice.mode, self.tool_choice.name])
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).digest()

    def input_tokens(self) -> int:
        """Words in the prompt."""
        return self._input_tokens

    @functools.cached_property
    def _input_tokens(self) -> int:
        return sum(count_tokens(m.text) for m in self.messages)


@frozen(kw_only=True)
class EmbeddingsRequest:
    """An embeddings request.

    Attributes:
        model: the model name.
        inputs: the texts to embed.
        dimensions: the requested vector length, if given.
    """

    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None

    def input_tokens(self) -> int:
        """Words in all inputs."""
        return sum(count_tokens(text) for text in self.inputs)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond the range of numbers")
    return value


#: One decoder for every body (``json.loads`` with options builds one per call).
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)


def parse_json_body(body: bytes) -> dict[str, Any]:
    """Decode a JSON object body (strict JSON: no ``NaN`` nor ``Infinity``, nor a number
    that only a float's infinity holds)."""
    try:
        value = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError("the request body is not valid JSON: it nests too deeply") from None
    if not isinstance(value, dict):
        raise RequestError("the request body must be a JSON object")
    return value


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required and must be a non-empty string", param="model")
    if len(model) > MAX_MODEL_NAME:
        raise RequestError(
            f"'model' may be at most {MAX_MODEL_NAME} characters long", param="model"
        )
    return model


class _Size:
    """The parts and characters of one request's prompt so far, against the limits."""

    __slots__ = ("chars", "parts")

    def __init__(self) -> None:
        self.parts = 0
        self.chars = 0

    def add_parts(self, count: int, param: str) -> None:
        self.parts += count
        if self.parts > MAX_CONTENT_PARTS:
            raise RequestError(
                f"a request may hold at most {MAX_CONTENT_PARTS} content parts", param=param
            )

    def add_text(self, text: str, param: str) -> str:
        self.chars += len(text)
        if self.chars > MAX_PROMPT_CHARS:
            raise RequestError(
                f"a request may hold at most {MAX_PROMPT_CHARS} characters of text",
                param=param,
                code="context_length_exceeded",
            )
        return text


def _messages(raw: Any) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty array", param="messages")
    if len(raw) > MAX_MESSAGES:
        raise RequestError(
            f"a request may hold at most {MAX_MESSAGES} messages",
            param="messages",
            code="array_above_max_length",
        )
    return raw


def _shallow(value: Any, param: str) -> Any:
    """``value``, checked to nest at most :data:`MAX_JSON_DEPTH` deep."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise RequestError(f"a value nests more than {MAX_JSON_DEPTH} deep", param=param)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return value


def _text_of(content: Any, param: str, size: _Size) -> str:
    """The text of a message content: a string, or a list of text parts/blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return size.add_text(content, param)
    if isinstance(content, list):
        size.add_parts(len(content), param)
        texts: list[str] = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise RequestError("each content part must be an object with a 'type'", param=param)
            if part["type"] == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise RequestError("a text part needs a string 'text'", param=param)
                texts.append(text)
            elif part["type"] == "tool_use":
                arguments = json.dumps(_shallow(part.get("input"), param), sort_keys=True)
                texts.append(f"{_shallow(part.get('name'), param)}({arguments})")
            elif part["type"] == "tool_result":
                texts.append(_result_text(part.get("content"), param, size))
        return size.add_text("\n\n".join(texts), param)
    raise RequestError("'content' must be a string or a list of parts", param=param)


def _result_text(content: Any, param: str, size: _Size) -> str:
    """The text of an Anthropic ``tool_result`` block's content (a string, or text blocks;
    nothing nested deeper is read)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        size.add_parts(len(content), param)
        return "\n\n".join(
            block["text"]
            for block in content
            if isinstance(block, dict) and isinstance(block.get("text"), str)
        )
    return ""


def _max_tokens(body: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"'{name}' must be a positive integer", param=name)
        if value > MAX_TOKENS:
            raise RequestError(
                f"'{name}' may be at most {MAX_TOKENS} (the simulated endpoint's limit)",
                param=name,
                code="integer_above_max_value",
            )
        return value
    return None


def _sampling(body: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """``temperature`` and ``top_p`` as sent: numbers, or absent."""
    out: dict[str, float | None] = {}
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise RequestError(f"'{name}' must be a number", param=name)
        try:
            out[name] = None if value is None else float(value)
        except OverflowError:
            raise RequestError(f"'{name}' is too large", param=name) from None
    return out["temperature"], out["top_p"]


def _tool_calls_text(raw: Mapping[str, Any], param: str, size: _Size) -> str:
    """An assistant message's ``tool_calls`` as text (``name(arguments)`` lines)."""
    calls = raw.get("tool_calls")
    if calls is None:
        return ""
    param = f"{param}.tool_calls"
    if not isinstance(calls, list):
        raise RequestError("'tool_calls' must be an array", param=param)
    size.add_parts(len(calls), param)
    lines: list[str] = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise RequestError("each tool call needs a 'function'", param=param)
        name = _shallow(function.get("name"), param)
        lines.append(f"{name}({_shallow(function.get('arguments'), param)})")
    return size.add_text("\n".join(lines), param)


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise RequestError(f"'{name}' must be a boolean", param=name)
    return bool(value)


def _unsupported(param: str, what: str) -> RequestError:
    return RequestError(
        f"'{param}' ({what}) is not supported by gridloom's simulated endpoint",
        param=param,
        code="unsupported_parameter",
    )


#: The fields :func:`_openai_options` reads (a request with none of them takes the defaults).
_OPTION_FIELDS = frozenset(_UNSUPPORTED_OPENAI) | {
    "modalities",
    "n",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
}


def _openai_options(body: Mapping[str, Any], tally: SchemaTally) -> dict[str, Any]:
    """``n``, streaming and tools of a chat completion request; refuses what is unsupported."""
    if _OPTION_FIELDS.isdisjoint(body):
        return {}
    for name, what in _UNSUPPORTED_OPENAI.items():
        if body.get(name) not in (None, False):
            raise _unsupported(name, what)
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise _unsupported("modalities", "output other than text")
    n = body.get("n")
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise RequestError(
            f"'n' must be an integer from 1 to {MAX_CHOICES} (the simulated endpoint's limit)",
            param="n",
            code="integer_above_max_value" if isinstance(n, int) and n > 1 else None,
        )
    stream = _flag(body, "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise RequestError(
                "'stream_options' is only allowed when 'stream' is true", param="stream_options"
            )
        if not isinstance(options, dict):
            raise RequestError("'stream_options' must be an object", param="stream_options")
        include_usage = _flag(options, "include_usage")
    tools, tool_choice = parse_openai_tools(body, tally)
    return {
        "n": n,
        "stream": stream,
        "include_usage": include_usage,
        "tools": tools,
        "tool_choice": tool_choice,
    }


_OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user"}
_OPENAI_ROLES |= {"assistant": "assistant", "tool": "tool", "function": "tool"}


def parse_chat_completions(body: Mapping[str, Any]) -> GenerationRequest:
    """Parse an OpenAI ``/v1/chat/completions`` body.

    Raises:
        RequestError: the body is not a valid chat completion request.
    """
    model = _model(body)
    temperature, top_p = _sampling(body)
    raw_messages = _messages(body.get("messages"))
    size = _Size()
    tally = SchemaTally()
    messages: list[PromptMessage] = []
    for index, raw in enumerate(raw_messages):
        param = f"messages[{index}]"
        if not isinstance(raw, dict):
            raise RequestError("each message must be an object", param=param)
        role_name = raw.get("role")
        role = _OPENAI_ROLES.get(role_name) if isinstance(role_name, str) else None
        if role is None:
            shown = role_name if isinstance(role_name, str | None) else type(role_name).__name__
            raise RequestError(f"unknown role {shown!r}", param=f"{param}.role")
        text = _text_of(raw.get("content"), param, size)
        if role == "assistant" and (calls := _tool_calls_text(raw, param, size)):
            text = f"{text}\n\n{calls}" if text else calls
        messages.append(PromptMessage(role=role, text=text))
    schema: Any = None
    json_mode = False
    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict):
            raise RequestError("'response_format' must be an object", param="response_format")
        kind = response_format.get("type")
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict | bool):
                raise RequestError(
                    "'response_format.json_schema.schema' must be a JSON Schema",
                    param="response_format.json_schema.schema",
                )
            schema = _tallied(spec["schema"], tally, "response_format.json_schema.schema")
        elif kind == "json_object":
            json_mode = True
        elif kind != "text":
            shown = kind if isinstance(kind, str | None) else type(kind).__name__
            raise RequestError(
                f"unknown response_format type {shown!r}", param="response_format.type"
            )
    return GenerationRequest(
        model=model,
        messages=tuple(messages),
        schema=schema,
        json_mode=json_mode,
        max_tokens=_max_tokens(body, "max_completion_tokens", "max_tokens"),
        temperature=temperature,
        top_p=top_p,
        after_tool_result=raw_messages[-1].get("role") in ("tool", "function"),
        tool_rounds=openai_tool_rounds(raw_messages),
        **_openai_options(body, tally),
    )


def parse_anthropic_messages(body: Mapping[str, Any]) -> GenerationRequest:
    """Parse an Anthropic ``/v1/messages`` body (``max_tokens`` is required, as there).

    Raises:
        RequestError: the body is not a valid Messages request.
    """
    model = _model(body)
    max_tokens = _max_tokens(body, "max_tokens")
    if max_tokens is None:
        raise RequestError("max_tokens: Field required", param="max_tokens")
    temperature, top_p = _sampling(body)
    messages: list[PromptMessage] = []
    size = _Size()
    tally = SchemaTally()
    system = body.get("system")
    if system is not None:
        messages.append(PromptMessage(role="system", text=_text_of(system, "system", size)))
    raw_messages = _messages(body.get("messages"))
    for index, raw in enumerate(raw_messages):
        param = f"messages[{index}]"
        if not isinstance(raw, dict) or raw.get("role") not in ("user", "assistant"):
            raise RequestError("each message needs role 'user' or 'assistant'", param=param)
        text = _text_of(raw.get("content"), param, size)
        messages.append(PromptMessage(role=raw["role"], text=text))
    schema: Any = None
    output_format = body.get("output_format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        if not isinstance(output_format.get("schema"), dict | bool):
            raise RequestError(
                "'output_format.schema' must be a JSON Schema", param="output_format.schema"
            )
        schema = _tallied(output_format["schema"], tally, "output_format.schema")
    thinking = parse_thinking(body, max_tokens=max_tokens, temperature=temperature, top_p=top_p)
    tools, tool_choice = parse_anthropic_tools(body, tally)
    return GenerationRequest(
        model=model,
        messages=tuple(messages),
        schema=schema,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        tools=tools,
        tool_choice=tool_choice,
        after_tool_result=raw_messages[-1]["role"] == "user" and has_tool_result(raw_messages[-1]),
        tool_rounds=anthropic_tool_rounds(raw_messages),
        thinking=thinking,
        stream=_flag(body, "stream"),
    )


def parse_embeddings(body: Mapping[str, Any]) -> EmbeddingsRequest:
    """Parse an OpenAI ``/v1/embeddings`` body (``input``: a string or a list of strings).

    Raises:
        RequestError: the body is not a valid embeddings request.
    """
    model = _model(body)
    raw = body.get("input")
    if isinstance(raw, str):
        inputs: tuple[str, ...] = (raw,)
    elif isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        inputs = tuple(raw)
    else:
        raise RequestError(
            "'input' must be a string or a non-empty array of strings", param="input"
        )
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise RequestError(
            f"at most {MAX_EMBEDDING_INPUTS} inputs are accepted, got {len(inputs)}",
            param="input",
            code="array_above_max_length",
        )
    size = _Size()
    for text in inputs:
        size.add_text(text, "input")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS
    ):
        raise RequestError(
            f"'dimensions' must be an integer from 1 to {MAX_EMBEDDING_DIMENSIONS}"
            " (the simulated endpoint's limit)",
            param="dimensions",
        )
    return EmbeddingsRequest(model=model, inputs=inputs, dimensions=dimensions)


def _tallied(schema: Any, tally: SchemaTally, param: str) -> Any:
    """``schema``, counted against the request's schema limits."""
    count_schema(schema, tally, param)
    return schema
