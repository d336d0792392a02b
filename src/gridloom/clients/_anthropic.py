"""Adapter for the Anthropic Messages API (``POST messages``).

Tools go as ``tools: [{name, description, input_schema}]`` with ``tool_choice`` (``auto`` →
``{type: auto}``, ``required`` → ``{type: any}``, ``none`` → ``{type: none}``; sent only with
tools). An assistant message's calls become content blocks — a ``text`` block when it has
text, then one ``tool_use {id, name, input}`` per call, ``input`` being the call's arguments
parsed when they are a JSON object and ``{}`` otherwise (the Messages API only takes an
object; the tool's result tells the model what was wrong) — and consecutive ``tool``
messages become ONE ``user`` message of ``tool_result {tool_use_id, content}`` blocks, as the
API wants the roles to alternate. A reply's ``tool_use`` blocks come back as
:class:`~gridloom.clients.ToolCall` with the ``input`` as JSON text, and ``stop_reason:
tool_use`` as ``finish_reason: tool_calls``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, MalformedResponse
from ._base import AdapterBase, as_tokens, optional_str
from ._tool_wire import arguments_object, checked_call, checked_count, tool_schema
from ._types import (
    ANTHROPIC_DEFAULT_MAX_TOKENS,
    CUT_FINISH_REASONS,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    RateLimitState,
    ResponseFormat,
    ToolCall,
    Usage,
)

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicClient"]

#: The ``anthropic-version`` header sent unless the provider's headers set another.
ANTHROPIC_VERSION = "2023-06-01"
#: ``max_tokens`` is required by the Messages API; this is sent when the request leaves it unset.
DEFAULT_MAX_TOKENS = ANTHROPIC_DEFAULT_MAX_TOKENS
#: The property that carries a schema whose root is not an object (a tool's input is one).
_WRAPPED = "value"
#: ``tool_choice`` on the wire, per canonical choice.
_TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """The conversation (system messages left out) on the wire: tool calls as ``tool_use``
    blocks, each run of ``tool`` messages as one user message of ``tool_result`` blocks.

    Raises:
        ValueError: a ``tool`` message without ``tool_call_id``.
    """
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the blocks of the run of tool messages
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            if message.tool_call_id is None:
                raise ValueError("a tool message needs the tool_call_id it answers")
            if results is None:
                results = []
                out.append({"role": "user", "content": results})
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content,
                }
            )
            continue
        results = None
        if message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks.extend(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": arguments_object(call.arguments),
                }
                for call in message.tool_calls
            )
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def _tool_for(response_format: ResponseFormat) -> tuple[dict[str, Any], bool]:
    """The one tool that forces ``response_format``'s schema, and whether the schema had to be
    wrapped (a tool's input is an object; a schema not of ``type: object`` becomes its
    property ``value``)."""
    schema = dict(response_format.schema)
    wrapped = schema.get("type") != "object"
    if wrapped:
        schema = {
            "type": "object",
            "properties": {_WRAPPED: schema},
            "required": [_WRAPPED],
            "additionalProperties": False,
        }
    tool = {
        "name": response_format.name,
        "description": "Record the answer: the tool's input is the whole answer.",
        "input_schema": schema,
    }
    return tool, wrapped


def _tool_input(value: Any) -> Any:
    """A ``tool_use`` block's ``input``: an object, which some gateways (Bedrock or LiteLLM
    proxies) send as its JSON text instead; that text is read as the object it holds."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, dict):
            return parsed
    return value


def _tool_answer(value: Any, wrapped: bool) -> str:
    """A forced tool's ``input`` as the JSON text of the answer (unwrapped if it was wrapped)."""
    value = _tool_input(value)
    if wrapped and isinstance(value, dict):
        value = value.get(_WRAPPED)
    return json.dumps(value, ensure_ascii=False)


def _canonical(answer: str) -> str:
    """A forced tool's answer (JSON text) with its keys sorted, to compare two of them."""
    return json.dumps(json.loads(answer), sort_keys=True)


def _schema_instruction(response_format: ResponseFormat) -> str:
    """The system-prompt fallback: the schema as a fenced JSON block."""
    text = json.dumps(dict(response_format.schema), indent=2, ensure_ascii=False)
    return f"Respond with JSON only, valid against this JSON Schema:\n```json\n{text}\n```"


def _thinking(body: Mapping[str, Any]) -> bool:
    """Whether ``body`` turns extended thinking on (which forbids a forced tool choice)."""
    thinking = body.get("thinking")
    return isinstance(thinking, Mapping) and thinking.get("type") != "disabled"


class AnthropicClient(AdapterBase):
    """A :class:`~gridloom.clients.ModelClient` for the Anthropic Messages API.

    Sends the key, when there is one, as ``x-api-key``, and ``anthropic-version``.

    ``ChatRequest.response_format`` is enforced the Anthropic way: the request carries one tool
    whose ``input_schema`` is the schema and ``tool_choice`` forces it, and the ``tool_use``
    block's ``input`` comes back as the response text, serialised as JSON (a schema whose root
    is not an object is wrapped as the tool's one property ``value`` and unwrapped). Anthropic
    forbids forcing a tool while extended thinking is on, so when the body's ``thinking``
    (from the provider's or the request's ``extra_body``) is enabled the schema goes into the
    system prompt instead. A ``thinking`` of ``null`` (a column's, turning its provider's off)
    is left out of the body. There is no embeddings API.

    Args:
        http: the provider's shared client; its base URL ends in ``/v1``.
        provider: the provider's config; its ``extra_body`` is merged into every request body.
        api_key: the API key, or ``None`` (e.g. behind a gateway that adds it); sent as
            ``x-api-key``, or in the header the provider's ``api_key_header`` names.
        retry: the transport retry policy; ``RetryPolicy()`` when ``None``.
    """

    __slots__ = ()

    def _auth_headers(self) -> dict[str, str]:
        headers = {}
        if "anthropic-version" not in self._http.headers:
            headers["anthropic-version"] = ANTHROPIC_VERSION
        if self._api_key is not None:
            headers[self._provider.api_key_header or "x-api-key"] = self._api_key.reveal()
        return headers

    @staticmethod
    def chat_body(request: ChatRequest) -> dict[str, Any]:
        """The request's wire body, before any extra fields are merged."""
        system = [m.content for m in request.messages if m.role == "system"]
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
            "messages": _messages(request.messages),
        }
        if system:
            body["system"] = "\n\n".join(system)
        for key in ("temperature", "top_p"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": tool_schema(t)}
                for t in request.tools
            ]
            if request.tool_choice is not None:
                body["tool_choice"] = dict(_TOOL_CHOICES[request.tool_choice])
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One message (``POST messages``).

        Args:
            request: the canonical request; system messages go to the top-level ``system``.

        Returns:
            The concatenated ``text`` blocks (with a forced schema tool: its ``input`` as JSON
            text), the ``tool_use`` blocks as tool calls, the concatenated ``thinking`` blocks
            as reasoning, usage, the stop reason (``tool_use`` as ``tool_calls``, others as
            sent) and the quota reported by the ``anthropic-ratelimit-*`` headers.

        Raises:
            ModelError: the request failed; ``MalformedResponse`` when the reply lacks the
                documented fields, or its ``tool_use`` blocks are malformed or beyond the
                limits of :mod:`._tool_wire`; ``EmptyAnswer`` when it holds no text and no
                tool call (``stop_reason: max_tokens``, ``refusal``, or nothing).
            ValueError: the request has both ``tools`` and ``response_format`` (the schema is
                enforced with a forced tool, which would keep the model from calling the
                others: ask for the structured answer in a request without tools), or a
                ``tool`` message has no ``tool_call_id``.
        """
        body, forced = self.prepare_chat(request)
        data, rate_limit = await self._post(
            "messages", body, model=request.model, time_limit=request.timeout
        )
        return self.decode_chat(data, request, forced, rate_limit)

    def prepare_chat(self, request: ChatRequest) -> tuple[dict[str, Any], tuple[str, bool] | None]:
        """The request's wire body (extra fields merged, a schema forced), and the forced
        tool's name and whether its schema is wrapped (``None`` when none is forced); what
        :meth:`decode_chat` needs back.

        Raises:
            ValueError: as :meth:`chat`.
        """
        if request.tools and request.response_format is not None:
            raise ValueError(
                "the Anthropic adapter cannot send tools and a response_format in one request"
                " (the schema is enforced with a forced tool); ask for the structured answer"
                " in a request without tools"
            )
        body = self._body(self.chat_body(request), request.extra_body)
        if "thinking" in body and body["thinking"] is None:
            # a column's `thinking: null` turns its provider's off: sent as no field at all,
            # which every version of the API takes as no thinking
            del body["thinking"]
        forced = None
        if request.response_format is not None:
            forced = self._force_schema(body, request.response_format)
        return body, forced

    def decode_chat(
        self,
        data: Any,
        request: ChatRequest,
        forced: tuple[str, bool] | None,
        rate_limit: RateLimitState | None = None,
    ) -> ChatResponse:
        """The canonical response in a decoded ``messages`` reply (online, or a succeeded
        item of a message batch), ``forced`` as :meth:`prepare_chat` gave it.

        Raises:
            MalformedResponse: as :meth:`chat`.
        """
        model = request.model
        blocks = data.get("content") if isinstance(data, dict) else None
        if not isinstance(blocks, list):
            raise self._malformed(model, "no 'content' list", data)
        texts: list[str] = []
        thoughts: list[str] = []
        answer: str | None = None
        uses: list[tuple[int, dict[str, Any]]] = []
        for index, block in enumerate(blocks):
            if not isinstance(block, dict):
                raise self._malformed(model, "a content block is not an object")
            kind = block.get("type")
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise self._malformed(model, "a text block has no 'text'")
                texts.append(block["text"])
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                thoughts.append(block["thinking"])
            elif kind == "tool_use" and forced is not None and block.get("name") == forced[0]:
                given = _tool_answer(block.get("input"), forced[1])
                if answer is not None and _canonical(given) != _canonical(answer):
                    # the same answer twice is that answer; which of two would be a guess
                    raise self._malformed(model, "two different answers to the forced tool")
                answer = given
            elif kind == "tool_use":
                uses.append((index, block))
        stop_reason = optional_str(data.get("stop_reason"))
        counts = data.get("usage")
        counts = counts if isinstance(counts, dict) else {}
        usage = Usage(
            input_tokens=as_tokens(counts.get("input_tokens")),
            output_tokens=as_tokens(counts.get("output_tokens")),
        )
        text = "".join(texts) if answer is None else answer
        tool_calls = self._tool_calls(uses, model)
        self._checked_answer(
            model,
            text,
            has_calls=bool(tool_calls),
            cut=stop_reason if stop_reason in CUT_FINISH_REASONS else None,
            # Anthropic's stop_reason "refusal" (streaming classifiers) says no more.
            refusal="(stop_reason: refusal)" if stop_reason == "refusal" else None,
            reasoning="".join(thoughts) or None,
            max_tokens=DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
            usage=usage,
        )
        return ChatResponse(
            text=text,
            reasoning="".join(thoughts) or None,
            usage=usage,
            finish_reason="tool_calls" if stop_reason == "tool_use" else stop_reason,
            model=optional_str(data.get("model")),
            rate_limit=rate_limit,
            tool_calls=tool_calls,
        )

    def _tool_calls(
        self, uses: list[tuple[int, dict[str, Any]]], model: str
    ) -> tuple[ToolCall, ...]:
        """The reply's ``tool_use`` blocks (with their indexes in ``content``) as calls."""

        def malformed(what: str) -> MalformedResponse:
            return self._malformed(model, what)

        calls = []
        for index, block in checked_count(uses, "content[].tool_use", malformed):
            where = f"content[{index}]"
            tool_input = _tool_input(block.get("input"))
            if not isinstance(tool_input, dict):
                raise malformed(f"the 'input' of tool_use block '{where}' is not an object")
            calls.append(
                checked_call(block.get("id"), block.get("name"), tool_input, where, malformed)
            )
        return tuple(calls)

    @staticmethod
    def _force_schema(
        body: dict[str, Any], response_format: ResponseFormat
    ) -> tuple[str, bool] | None:
        """Make ``body`` (extras merged) ask for ``response_format``'s schema: a forced tool
        (returns its name and whether the schema is wrapped), or, with extended thinking on,
        an instruction at the end of the system prompt (returns ``None``)."""
        if _thinking(body):
            instruction = _schema_instruction(response_format)
            system = body.get("system")
            if isinstance(system, list):
                body["system"] = [*system, {"type": "text", "text": instruction}]
            else:
                body["system"] = f"{system}\n\n{instruction}" if system else instruction
            return None
        tool, wrapped = _tool_for(response_format)
        body["tools"] = [tool]
        body["tool_choice"] = {"type": "tool", "name": tool["name"]}
        return tool["name"], wrapped

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Always raises: Anthropic has no embeddings API.

        Raises:
            BadRequest: always.
        """
        raise BadRequest(
            "Anthropic has no embeddings API", provider=self._provider.name, model=request.model
        )
