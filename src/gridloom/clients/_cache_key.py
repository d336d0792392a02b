"""What the response cache keys on and stores: request keys and response records.

A key is the SHA-256 of a canonical JSON document holding everything that changes a model's
answer and nothing that does not:

- the provider's type (``openai``, ``anthropic``, ``simulated``) and where it is served: its
  endpoint, or for a simulated provider its simulation settings (a simulated endpoint's URL is
  a new port each run, but its answers depend on its settings only);
- the provider's ``extra_body`` (merged into every request body by the client);
- the endpoint kind (chat or embeddings) and the canonical request as the client turns it into
  a wire body: model, messages, sampling parameters, response format, tools, extra body fields.

Left out: the request's ``timeout``, HTTP headers, API keys (never part of a request object),
proxies and TLS settings. Mappings are written with sorted keys and floats as JSON numbers, so
equal requests give equal keys in any process.

A record is the answer in JSON, without the quota headers it came with (``rate_limit``: stale
by the next run) and without the inference parameters a generator attaches afterwards.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ._types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ToolCall,
    Usage,
)

__all__ = [
    "CacheScope",
    "decode_chat",
    "decode_embedding",
    "encode_response",
    "is_deterministic",
    "request_key",
    "scope_digest",
]

#: Bumped when the key document or the record format changes (old entries then miss).
KEY_VERSION = 1


@attrs.frozen(kw_only=True)
class CacheScope:
    """Where one model alias's requests go, as far as its answers depend on it.

    Attributes:
        provider_type: the provider's type.
        endpoint: its base URL, or for a simulated provider a digest of its settings.
        extra_body: the provider's fields merged into every request body.
    """

    provider_type: str
    endpoint: str
    extra_body: Mapping[str, Any] = attrs.field(factory=dict)


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data (attrs objects as mappings, tuples as lists)."""
    if attrs.has(type(value)):
        return {k: _plain(v) for k, v in attrs.asdict(value, recurse=False).items()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _digest(document: Any) -> bytes:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).digest()


def request_key(scope: CacheScope, request: ChatRequest | EmbeddingRequest) -> bytes:
    """The 32-byte cache key of ``request`` sent within ``scope``."""
    body = _plain(request)
    body.pop("timeout", None)
    kind = "chat" if isinstance(request, ChatRequest) else "embedding"
    return _digest(
        {
            "v": KEY_VERSION,
            "provider": scope.provider_type,
            "endpoint": scope.endpoint,
            "provider_extra_body": _plain(scope.extra_body),
            "kind": kind,
            "body": body,
        }
    )


def is_deterministic(scope: CacheScope, request: ChatRequest | EmbeddingRequest) -> bool:
    """Whether ``request`` should get the same answer each time it is sent: an embedding
    request, or a chat request with ``temperature`` 0 or a whole-number ``seed`` in its body
    (its own ``extra_body`` or its provider's)."""
    if isinstance(request, EmbeddingRequest):
        return True
    if request.temperature is not None and request.temperature == 0:
        return True
    seed = request.extra_body.get("seed", scope.extra_body.get("seed"))
    return isinstance(seed, int) and not isinstance(seed, bool)


def scope_digest(settings: Any) -> str:
    """A short, stable digest of ``settings`` (an attrs object or plain data)."""
    return _digest(_plain(settings)).hex()[:32]


def encode_response(response: ChatResponse | EmbeddingResponse) -> bytes:
    """The record stored for ``response`` (compact JSON, UTF-8)."""
    usage = [response.usage.input_tokens, response.usage.output_tokens]
    if isinstance(response, EmbeddingResponse):
        document: dict[str, Any] = {"k": "e", "vectors": response.vectors, "usage": usage}
    else:
        document = {
            "k": "c",
            "text": response.text,
            "reasoning": response.reasoning,
            "usage": usage,
            "finish_reason": response.finish_reason,
            "model": response.model,
            "tool_calls": [[c.id, c.name, c.arguments] for c in response.tool_calls],
        }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _load(record: bytes, kind: Literal["c", "e"]) -> dict[str, Any]:
    document = json.loads(record.decode("utf-8"))
    if not isinstance(document, dict) or document.get("k") != kind:
        raise ValueError("not a record of this kind")
    return document


def _usage(value: Any) -> Usage:
    input_tokens, output_tokens = value
    if not (isinstance(input_tokens, int) and isinstance(output_tokens, int)):
        raise ValueError("token counts are not integers")
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens)


def _optional_text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("not text")
    return value


def decode_chat(record: bytes) -> ChatResponse:
    """The chat answer a record holds, marked ``served_by="cache"``.

    Raises:
        ValueError: the record is not a whole chat record (it is then treated as a miss).
    """
    doc = _load(record, "c")
    text = doc["text"]
    if not isinstance(text, str):
        raise ValueError("text is not text")
    calls = tuple(
        ToolCall(id=str(call_id), name=str(name), arguments=str(arguments))
        for call_id, name, arguments in doc["tool_calls"]
    )
    return ChatResponse(
        text=text,
        reasoning=_optional_text(doc["reasoning"]),
        usage=_usage(doc["usage"]),
        finish_reason=_optional_text(doc["finish_reason"]),
        model=_optional_text(doc["model"]),
        tool_calls=calls,
        served_by="cache",
    )


def decode_embedding(record: bytes) -> EmbeddingResponse:
    """The embeddings a record holds, marked ``served_by="cache"``.

    Raises:
        ValueError: the record is not a whole embedding record.
    """
    doc = _load(record, "e")
    vectors = tuple(tuple(float(x) for x in vector) for vector in doc["vectors"])
    return EmbeddingResponse(vectors=vectors, usage=_usage(doc["usage"]), served_by="cache")
