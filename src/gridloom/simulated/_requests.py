"""Parsing request bodies of the three APIs into neutral, hashable request values."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import attrs

from ._errors import RequestError
from ._tools import AUTO, Tool, ToolChoice, parse_anthropic_tools, parse_openai_tools

__all__ = [
    "MAX_CHOICES",
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


@attrs.frozen(kw_only=True)
class PromptMessage:
    """One message of a conversation, reduced to its text.

    Attributes:
        role: ``system`` (also OpenAI's ``developer``), ``user``, ``assistant`` or ``tool``.
        text: the text content (text parts joined by blank lines).
    """

    role: str
    text: str


@attrs.frozen(kw_only=True)
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
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = AUTO
    after_tool_result: bool = False
    n: int = 1
    stream: bool = False
    include_usage: bool = False

    def digest(self) -> bytes:
        """Hash of what determines the answer: model, messages, schema and tools (not ``n``
        nor streaming: the first choice is the same answer either way)."""
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
        return sum(count_tokens(m.text) for m in self.messages)


@attrs.frozen(kw_only=True)
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


def parse_json_body(body: bytes) -> dict[str, Any]:
    """Decode a JSON object body."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RequestError("the request body must be a JSON object")
    return value


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required and must be a non-empty string", param="model")
    return model


def _text_of(content: Any, param: str) -> str:
    """The text of a message content: a string, or a list of text parts/blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
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
                arguments = json.dumps(part.get("input"), sort_keys=True)
                texts.append(f"{part.get('name')}({arguments})")
            elif part["type"] == "tool_result":
                texts.append(_result_text(part.get("content")))
        return "\n\n".join(texts)
    raise RequestError("'content' must be a string or a list of parts", param=param)


def _result_text(content: Any) -> str:
    """The text of an Anthropic ``tool_result`` block's content (a string, or text blocks;
    nothing nested deeper is read)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
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
        return value
    return None


def _tool_calls_text(raw: Mapping[str, Any], param: str) -> str:
    """An assistant message's ``tool_calls`` as text (``name(arguments)`` lines)."""
    calls = raw.get("tool_calls")
    if calls is None:
        return ""
    if not isinstance(calls, list):
        raise RequestError("'tool_calls' must be an array", param=f"{param}.tool_calls")
    lines: list[str] = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise RequestError("each tool call needs a 'function'", param=f"{param}.tool_calls")
        lines.append(f"{function.get('name')}({function.get('arguments')})")
    return "\n".join(lines)


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


def _openai_options(body: Mapping[str, Any]) -> dict[str, Any]:
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
    tools, tool_choice = parse_openai_tools(body)
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
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise RequestError("'messages' must be a non-empty array", param="messages")
    messages: list[PromptMessage] = []
    for index, raw in enumerate(raw_messages):
        param = f"messages[{index}]"
        if not isinstance(raw, dict):
            raise RequestError("each message must be an object", param=param)
        role = _OPENAI_ROLES.get(raw.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise RequestError(f"unknown role {raw.get('role')!r}", param=f"{param}.role")
        text = _text_of(raw.get("content"), param)
        if role == "assistant" and (calls := _tool_calls_text(raw, param)):
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
            schema = spec["schema"]
        elif kind == "json_object":
            json_mode = True
        elif kind != "text":
            raise RequestError(
                f"unknown response_format type {kind!r}", param="response_format.type"
            )
    return GenerationRequest(
        model=model,
        messages=tuple(messages),
        schema=schema,
        json_mode=json_mode,
        max_tokens=_max_tokens(body, "max_completion_tokens", "max_tokens"),
        after_tool_result=raw_messages[-1].get("role") in ("tool", "function"),
        **_openai_options(body),
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
    messages: list[PromptMessage] = []
    system = body.get("system")
    if system is not None:
        messages.append(PromptMessage(role="system", text=_text_of(system, "system")))
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise RequestError("'messages' must be a non-empty array", param="messages")
    for index, raw in enumerate(raw_messages):
        param = f"messages[{index}]"
        if not isinstance(raw, dict) or raw.get("role") not in ("user", "assistant"):
            raise RequestError("each message needs role 'user' or 'assistant'", param=param)
        messages.append(PromptMessage(role=raw["role"], text=_text_of(raw.get("content"), param)))
    schema: Any = None
    output_format = body.get("output_format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        if not isinstance(output_format.get("schema"), dict | bool):
            raise RequestError(
                "'output_format.schema' must be a JSON Schema", param="output_format.schema"
            )
        schema = output_format["schema"]
    tools, tool_choice = parse_anthropic_tools(body)
    last = raw_messages[-1].get("content")
    after_tool_result = raw_messages[-1]["role"] == "user" and any(
        isinstance(block, dict) and block.get("type") == "tool_result"
        for block in (last if isinstance(last, list) else ())
    )
    return GenerationRequest(
        model=model,
        messages=tuple(messages),
        schema=schema,
        max_tokens=max_tokens,
        tools=tools,
        tool_choice=tool_choice,
        after_tool_result=after_tool_result,
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
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise RequestError("'dimensions' must be a positive integer", param="dimensions")
    return EmbeddingsRequest(model=model, inputs=inputs, dimensions=dimensions)
