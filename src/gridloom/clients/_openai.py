"""Adapter for OpenAI-compatible servers: ``chat/completions`` and ``embeddings``.

Speaks to OpenAI itself, vLLM, llama.cpp, Ollama's OpenAI endpoint, gridloom's simulated
endpoint and the like.

Tools go as ``tools: [{type: function, function: {name, description, parameters}}]`` with
``tool_choice`` (``auto``, ``none``, ``required``; sent only with tools); an assistant
message's calls as ``tool_calls: [{id, type: function, function: {name, arguments}}]`` (its
content ``null`` when it has no text) and a tool's result as
``{role: tool, tool_call_id, content}``. A reply's call without an id (some compatible
servers send none) is named ``call_<n>`` by its place, and ``arguments: null`` is ``{}``.
"""

from __future__ import annotations

from typing import Any

from ..errors import MalformedResponse
from ._base import AdapterBase, as_tokens, optional_str
from ._content_parts import split_content
from ._tool_wire import checked_call, checked_count, tool_schema
from ._types import (
    CUT_FINISH_REASONS,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    RateLimitState,
    ToolCall,
    Usage,
)

__all__ = ["OpenAIClient"]

_CALLS = "choices[0].message.tool_calls"


def _message(message: Message) -> dict[str, Any]:
    """One message on the wire.

    Raises:
        ValueError: a ``tool`` message without ``tool_call_id``.
    """
    if message.role == "tool":
        if message.tool_call_id is None:
            raise ValueError("a tool message needs the tool_call_id it answers")
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


class OpenAIClient(AdapterBase):
    """A :class:`~gridloom.clients.ModelClient` for an OpenAI-compatible API.

    Sends the key, when there is one, as ``Authorization: Bearer ...``, or as it is in the
    header the provider's ``api_key_header`` names (``api-key`` for Azure OpenAI).

    Args:
        http: the provider's shared client; its base URL ends in ``/v1``.
        provider: the provider's config; its ``extra_body`` is merged into every request body.
        api_key: the API key, or ``None`` for servers without authentication.
        retry: the transport retry policy; ``RetryPolicy()`` when ``None``.
    """

    __slots__ = ()

    def _auth_headers(self) -> dict[str, str]:
        if self._api_key is None:
            return {}
        if self._provider.api_key_header:
            return {self._provider.api_key_header: self._api_key.reveal()}
        return {"authorization": f"Bearer {self._api_key.reveal()}"}

    @staticmethod
    def chat_body(request: ChatRequest) -> dict[str, Any]:
        """The request's wire body, before any extra fields are merged."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.max_tokens is not None:
            body[request.max_tokens_param] = request.max_tokens
        if request.response_format is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.response_format.name,
                    "schema": dict(request.response_format.schema),
                    "strict": True,
                },
            }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool_schema(tool),
                    },
                }
                for tool in request.tools
            ]
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        return body

    def prepare_chat(self, request: ChatRequest) -> dict[str, Any]:
        """The request's wire body with the provider's and the request's extra fields merged
        (what :meth:`chat` sends, and a batch job's item body).

        Raises:
            ValueError: a ``tool`` message has no ``tool_call_id``.
        """
        return self._body(self.chat_body(request), request.extra_body)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One chat completion (``POST chat/completions``).

        Args:
            request: the canonical request.

        Returns:
            The first choice's content, its tool calls, the reasoning from
            ``reasoning_content`` or ``reasoning`` when present, usage, finish reason (as
            sent) and the quota reported by the ``x-ratelimit-*`` headers. A content given
            as a list of parts (Mistral's reasoning models) is read by
            :func:`._content_parts.split_content`: its text parts are the answer, its
            ``thinking`` parts the reasoning (when no reasoning field is sent).

        Raises:
            EmptyAnswer: the content is empty (or ``null``) and there are no tool calls; the
                message says why: ``finish_reason: length``, ``content_filter``, the
                message's ``refusal``. ``IncompleteAnswer`` when content came with
                ``finish_reason`` ``content_filter`` (final), ``abort`` or ``error``
                (retryable): it is partial.
            ModelError: the request failed; ``MalformedResponse`` when the reply lacks the
                documented fields, or its tool calls are malformed or beyond the limits of
                :mod:`._tool_wire`.
            ValueError: a ``tool`` message has no ``tool_call_id``.
        """
        body = self.prepare_chat(request)
        data, rate_limit = await self._post(
            "chat/completions", body, model=request.model, time_limit=request.timeout
        )
        return self.decode_chat(data, request, rate_limit)

    def decode_chat(
        self, data: Any, request: ChatRequest, rate_limit: RateLimitState | None = None
    ) -> ChatResponse:
        """The canonical response in a decoded ``chat/completions`` reply (online, or an item
        of a batch job's results).

        Raises:
            MalformedResponse: the reply lacks the documented fields (see :meth:`chat`).
        """
        model = request.model
        if not isinstance(data, dict):
            raise self._malformed(model, "the body is not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._malformed(model, "no 'choices'", data)
        message = choices[0].get("message")
        if not isinstance(message, dict) or not ("content" in message or "tool_calls" in message):
            raise self._malformed(model, "no 'choices[0].message.content'")
        content, thoughts = split_content(
            message.get("content"), lambda what: self._malformed(model, what)
        )
        reasoning = (
            optional_str(message.get("reasoning_content"))
            or optional_str(message.get("reasoning"))
            or thoughts
        )
        counts = data.get("usage")
        counts = counts if isinstance(counts, dict) else {}
        usage = Usage(
            input_tokens=as_tokens(counts.get("prompt_tokens")),
            output_tokens=as_tokens(counts.get("completion_tokens")),
        )
        finish_reason = optional_str(choices[0].get("finish_reason"))
        tool_calls = self._tool_calls(message.get("tool_calls"), model)
        self._checked_answer(
            model,
            content,
            has_calls=bool(tool_calls),
            cut=finish_reason if finish_reason in CUT_FINISH_REASONS else None,
            filtered=finish_reason == "content_filter",
            gave_up=finish_reason if finish_reason in ("abort", "error") else None,
            refusal=optional_str(message.get("refusal")),
            reasoning=reasoning,
            max_tokens=request.max_tokens,
            usage=usage,
        )
        return ChatResponse(
            text=content,
            reasoning=reasoning,
            usage=usage,
            finish_reason=finish_reason,
            model=optional_str(data.get("model")),
            rate_limit=rate_limit,
            tool_calls=tool_calls,
        )

    def _tool_calls(self, raw: Any, model: str) -> tuple[ToolCall, ...]:
        """The calls of ``choices[0].message.tool_calls`` (none when absent or ``null``)."""
        if raw is None:
            return ()

        def malformed(what: str) -> MalformedResponse:
            return self._malformed(model, what)

        calls = []
        for index, entry in enumerate(checked_count(raw, _CALLS, malformed)):
            where = f"{_CALLS}[{index}]"
            if not isinstance(entry, dict):
                raise malformed(f"'{where}' is not an object")
            if entry.get("type", "function") != "function":
                raise malformed(
                    f"'{where}' is of type {str(entry.get('type'))[:64]!r}, not function"
                )
            function = entry.get("function")
            if not isinstance(function, dict):
                raise malformed(f"'{where}' has no 'function' object")
            arguments = function.get("arguments")
            if arguments is None:  # some servers send null for a call without arguments
                arguments = "{}"
            if not isinstance(arguments, str | dict):
                raise malformed(f"'{where}.function.arguments' is not a string")
            # Some servers give no id (they do not need it back): the call's place names it.
            call_id = entry.get("id")
            if call_id is None or call_id == "":
                call_id = f"call_{index}"
            calls.append(checked_call(call_id, function.get("name"), arguments, where, malformed))
        return tuple(calls)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Embeddings for the request's inputs (``POST embeddings``).

        Args:
            request: the canonical request.

        Returns:
            One vector per input, in input order (the reply is ordered by its ``index`` fields),
            and the quota reported by the ``x-ratelimit-*`` headers.

        Raises:
            ModelError: the request failed; ``MalformedResponse`` when the reply does not hold
                exactly one numeric vector per input.
        """
        data, rate_limit = await self._post(
            "embeddings",
            self.embed_body(request),
            model=request.model,
            time_limit=request.timeout,
        )
        return self.decode_embedding(data, request, rate_limit)

    def embed_body(self, request: EmbeddingRequest) -> dict[str, Any]:
        """The embeddings request's wire body, extra fields merged."""
        return self._body(
            {"model": request.model, "input": list(request.inputs)}, request.extra_body
        )

    def decode_embedding(
        self, data: Any, request: EmbeddingRequest, rate_limit: RateLimitState | None = None
    ) -> EmbeddingResponse:
        """The canonical response in a decoded ``embeddings`` reply (online, or an item of a
        batch job's results).

        Raises:
            MalformedResponse: the reply does not hold one numeric vector per input.
        """
        model = request.model
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self._malformed(model, "no 'data' list", data)
        vectors: dict[int, tuple[float, ...]] = {}
        for item in items:
            if not isinstance(item, dict):
                raise self._malformed(model, "an item of 'data' is not an object")
            index, embedding = item.get("index"), item.get("embedding")
            if not isinstance(index, int) or isinstance(index, bool) or index in vectors:
                raise self._malformed(model, "missing or repeated 'index'")
            if not isinstance(embedding, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in embedding
            ):
                raise self._malformed(model, f"'embedding' {index} is not a list of numbers")
            vectors[index] = tuple(float(x) for x in embedding)
        if sorted(vectors) != list(range(len(request.inputs))):
            raise self._malformed(
                model, f"{len(vectors)} vectors for {len(request.inputs)} inputs, or bad indexes"
            )
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return EmbeddingResponse(
            vectors=tuple(vectors[i] for i in range(len(vectors))),
            usage=Usage(input_tokens=as_tokens(usage.get("prompt_tokens"))),
            rate_limit=rate_limit,
        )
