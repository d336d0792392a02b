"""Canonical request and response types: what generators send and get, whatever the provider.

Adapters translate these to and from each provider's wire format (OpenAI-compatible chat
completions and embeddings, Anthropic Messages).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from .._attrs import frozen

__all__ = [
    "CONTEXT_FULL_REASONS",
    "CUT_FINISH_REASONS",
    "ChatRequest",
    "ChatResponse",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "Message",
    "ModelClient",
    "RateLimitState",
    "ResponseFormat",
    "ToolCall",
    "ToolSpec",
    "Usage",
]


#: The finish reasons of an answer cut before the model ended it: at ``max_tokens``
#: (OpenAI's ``length``, Anthropic's ``max_tokens``) or because the context window filled up
#: (Mistral's ``model_length``, Anthropic's ``model_context_window_exceeded``). Such an answer
#: is counted as truncated and follows its column's ``on_truncated``.
CUT_FINISH_REASONS = frozenset(
    {"length", "max_tokens", "model_length", "model_context_window_exceeded"}
)
#: Those of :data:`CUT_FINISH_REASONS` that mean a full context window (a larger
#: ``max_tokens`` does not help there; a shorter prompt does).
CONTEXT_FULL_REASONS = frozenset({"model_length", "model_context_window_exceeded"})
#: The ``max_tokens`` the Anthropic client sends when a request leaves it unset (the Messages
#: API requires one). An Anthropic answer cut with none set was cut at this many tokens.
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value)


@frozen(kw_only=True)
class ToolSpec:
    """A tool offered to the model.

    Attributes:
        name: the tool's name (letters, digits, ``_`` and ``-``; what the model calls).
        description: what the tool does, for the model.
        parameters: the JSON Schema (an ``object`` schema) of the tool's arguments.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(factory=lambda: {"type": "object"})


@frozen(kw_only=True)
class ToolCall:
    """A tool call the model asked for.

    Attributes:
        id: the call's id, which the tool message answering it names.
        name: the tool called.
        arguments: the arguments as the JSON text the model produced (it may be invalid JSON,
            or not match the tool's schema: the caller checks).
    """

    id: str
    name: str
    arguments: str = "{}"


@frozen(kw_only=True)
class Message:
    """One chat message.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool`` (a tool's result).
        content: the text (an assistant message that only calls tools may have none).
        tool_calls: an assistant message's tool calls.
        tool_call_id: a ``tool`` message's answer to that call id.
        name: a ``tool`` message's tool name.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_tuple)
    tool_call_id: str | None = None
    name: str | None = None


@frozen(kw_only=True)
class ResponseFormat:
    """Ask for JSON output valid against ``schema`` (the provider's JSON-schema mode).

    Attributes:
        name: a short identifier for the schema (OpenAI requires one).
        schema: the JSON Schema the answer must satisfy.
    """

    name: str
    schema: Mapping[str, Any]


@frozen(kw_only=True)
class ChatRequest:
    """A chat completion request.

    Attributes:
        model: the provider's model name.
        messages: the conversation, system message first when there is one.
        temperature, top_p, max_tokens: sampling parameters; ``None`` leaves the provider's.
        timeout: seconds allowed for the whole request; ``None`` uses the client's default.
        response_format: JSON-schema output mode, for providers that support it.
        extra_body: fields merged into the request body as they are.
        tools: tools offered to the model (none: a plain completion).
        tool_choice: ``auto`` (the model decides), ``none`` or ``required``; ``None`` leaves
            the provider's default.
        max_tokens_param: the body field an OpenAI-compatible request carries ``max_tokens``
            in: ``max_tokens``, or ``max_completion_tokens`` (OpenAI's reasoning models refuse
            the other). Anthropic's API has only ``max_tokens``.
    """

    model: str
    messages: tuple[Message, ...] = attrs.field(converter=_tuple)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    response_format: ResponseFormat | None = None
    extra_body: Mapping[str, Any] = attrs.field(factory=dict)
    tools: tuple[ToolSpec, ...] = attrs.field(default=(), converter=_tuple)
    tool_choice: Literal["auto", "none", "required"] | None = None
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"


@frozen(kw_only=True)
class Usage:
    """Tokens a request consumed, as the provider counted them."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


@frozen(kw_only=True)
class RateLimitState:
    """The provider's quota as its response headers reported it (``x-ratelimit-*`` from
    OpenAI-compatible servers, ``anthropic-ratelimit-*`` from Anthropic); ``None`` where a value
    was absent or not understood.

    Attributes:
        limit_requests: requests allowed per quota window.
        remaining_requests: requests left in the window.
        reset_requests: seconds until the request quota is fully replenished.
        limit_tokens: tokens allowed per quota window.
        remaining_tokens: tokens left in the window.
        reset_tokens: seconds until the token quota is fully replenished.
    """

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None


@frozen(kw_only=True)
class ChatResponse:
    """A chat completion.

    Attributes:
        text: the answer's text.
        reasoning: the model's reasoning text, when the provider returns it separately.
        usage: token counts.
        finish_reason: why generation stopped (``stop``, ``length``, ...), if reported; one
            of :data:`CUT_FINISH_REASONS` for an answer that was cut.
        model: the model name the provider reports.
        rate_limit: the quota the response's headers reported, if they did.
        inference: the inference parameters the request was sent with that its cell drew
            from distributions (``temperature``, ...); set by the model-calling generator,
            not the provider, and empty when nothing was drawn.
        tool_calls: the tools the model asked to call (``finish_reason`` is then typically
            ``tool_calls``, Anthropic's ``tool_use`` mapped to it).
        served_by: how the answer was obtained: ``online`` (an ordinary request),
            ``batch`` (a provider batch job) or ``cache`` (gridloom's response cache).
    """

    text: str
    reasoning: str | None = None
    usage: Usage = attrs.field(factory=Usage)
    finish_reason: str | None = None
    model: str | None = None
    rate_limit: RateLimitState | None = None
    inference: Mapping[str, float | int] = attrs.field(factory=dict)
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_tuple)
    served_by: Literal["online", "batch", "cache"] = "online"


@frozen(kw_only=True)
class EmbeddingRequest:
    """Embed ``inputs`` with ``model``."""

    model: str
    inputs: tuple[str, ...] = attrs.field(converter=_tuple)
    timeout: float | None = None
    extra_body: Mapping[str, Any] = attrs.field(factory=dict)


@frozen(kw_only=True)
class EmbeddingResponse:
    """One vector per input, in input order.

    Attributes:
        vectors: the embeddings.
        usage: token counts.
        rate_limit: the quota the response's headers reported, if they did.
        served_by: how the answer was obtained: ``online``, ``batch`` or ``cache`` (as for
            :class:`ChatResponse`).
    """

    vectors: tuple[tuple[float, ...], ...]
    usage: Usage = attrs.field(factory=Usage)
    rate_limit: RateLimitState | None = None
    served_by: Literal["online", "batch", "cache"] = "online"


@runtime_checkable
class ModelClient(Protocol):
    """What generators call. Implementations raise :class:`~gridloom.errors.ModelError`
    subclasses (never raw httpx errors), and never put API keys in messages or reprs."""

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One chat completion."""
        ...

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Embeddings for a list of inputs."""
        ...
