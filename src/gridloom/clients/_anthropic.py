"""Adapter for the Anthropic Messages API (``POST messages``)."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ._base import AdapterBase, as_tokens, optional_str
from ._types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
)

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicClient"]

#: The ``anthropic-version`` header sent unless the provider's headers set another.
ANTHROPIC_VERSION = "2023-06-01"
#: ``max_tokens`` is required by the Messages API; this is sent when the request leaves it unset.
DEFAULT_MAX_TOKENS = 1024


class AnthropicClient(AdapterBase):
    """A :class:`~gridloom.clients.ModelClient` for the Anthropic Messages API.

    Sends the key, when there is one, as ``x-api-key``, and ``anthropic-version``. The Messages
    API has no JSON-schema response format: ``ChatRequest.response_format`` is ignored (the
    structured generator puts the schema in the prompt for such models). It has no embeddings
    API either.

    Args:
        http: the provider's shared client; its base URL ends in ``/v1``.
        provider: the provider's config; its ``extra_body`` is merged into every request body.
        api_key: the API key, or ``None`` (e.g. behind a gateway that adds it).
        retry: the transport retry policy; ``RetryPolicy()`` when ``None``.
    """

    __slots__ = ()

    def _auth_headers(self) -> dict[str, str]:
        headers = {}
        if "anthropic-version" not in self._http.headers:
            headers["anthropic-version"] = ANTHROPIC_VERSION
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key.reveal()
        return headers

    @staticmethod
    def chat_body(request: ChatRequest) -> dict[str, Any]:
        """The request's wire body, before any extra fields are merged."""
        system = [m.content for m in request.messages if m.role == "system"]
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        }
        if system:
            body["system"] = "\n\n".join(system)
        for key in ("temperature", "top_p"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One message (``POST messages``).

        Args:
            request: the canonical request; system messages go to the top-level ``system``.

        Returns:
            The concatenated ``text`` blocks, the concatenated ``thinking`` blocks as reasoning,
            usage, the stop reason and the quota reported by the ``anthropic-ratelimit-*``
            headers.

        Raises:
            ModelError: the request failed; ``MalformedResponse`` when the reply lacks the
                documented fields.
        """
        body = self._body(self.chat_body(request), request.extra_body)
        data, rate_limit = await self._post(
            "messages", body, model=request.model, time_limit=request.timeout
        )
        model = request.model
        blocks = data.get("content") if isinstance(data, dict) else None
        if not isinstance(blocks, list):
            raise self._malformed(model, "no 'content' list")
        texts: list[str] = []
        thoughts: list[str] = []
        for block in blocks:
            if not isinstance(block, dict):
                raise self._malformed(model, "a content block is not an object")
            kind = block.get("type")
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise self._malformed(model, "a text block has no 'text'")
                texts.append(block["text"])
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                thoughts.append(block["thinking"])
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return ChatResponse(
            text="".join(texts),
            reasoning="".join(thoughts) or None,
            usage=Usage(
                input_tokens=as_tokens(usage.get("input_tokens")),
                output_tokens=as_tokens(usage.get("output_tokens")),
            ),
            finish_reason=optional_str(data.get("stop_reason")),
            model=optional_str(data.get("model")),
            rate_limit=rate_limit,
        )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Always raises: Anthropic has no embeddings API.

        Raises:
            BadRequest: always.
        """
        raise BadRequest(
            "Anthropic has no embeddings API", provider=self._provider.name, model=request.model
        )
