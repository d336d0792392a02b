"""What the response cache keys on and stores: request keys and response records.

A key is the SHA-256 of a canonical JSON document holding everything that changes a model's
answer and nothing that does not:

- the provider's type (``openai``, ``anthropic``, ``simulated``) and where it is served: its
  endpoint, or for a simulated provider its simulation settings (a simulated endpoint's URL is
  a new port each run, but its answers depend on its settings only);
- the provider's ``extra_body`` (merged into every request body by the client);
- the provider's HTTP ``headers`` (``anthropic-version``, ``anthropic-beta``, a routing
  header: they may change the answer), except credentials — a header whose name mentions
  auth, key, token, secret, cookie, password, session, signature or credential is left out
  (so no secret is hashed into a key, and a rotated key keeps its cache);
- the endpoint kind (chat or embeddings) and the canonical request as the client turns it into
  a wire body: model, messages, sampling parameters, response format, tools, extra body fields;
- for a sampled request (not :func:`is_deterministic`) cached because its column or model says
  ``cache: true``: the cell asking (run seed, row id, column), when the caller names it. Rows
  whose prompts are equal then keep answers of their own, as without a cache, and a rerun with
  the same seed finds each row's own sample again. A deterministic request is keyed without
  it: every row asking the same question shares one answer.

Left out: the request's ``timeout``, credential headers, API keys (never part of a request
object), proxies and TLS settings. Mappings are written with sorted keys and floats as JSON
numbers, so equal requests give equal keys in any process.

A record is the answer in JSON, without the quota headers it came with (``rate_limit``: stale
by the next run) and without the inference parameters a generator attaches afterwards.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import attrs

from .._attrs import frozen
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
    "CellKey",
    "decode_chat",
    "decode_embedding",
    "encode_response",
    "is_deterministic",
    "keyed_headers",
    "request_key",
    "scope_digest",
]

A = TypeVar("A", ChatResponse, EmbeddingResponse)

#: Bumped when the key document or the record format changes (old entries then miss).
KEY_VERSION = 1


@frozen(kw_only=True)
class CacheScope:
    """Where one model alias's requests go, as far as its answers depend on it.

    Attributes:
        provider_type: the provider's type.
        endpoint: its base URL, or for a simulated provider a digest of its settings.
        extra_body: the provider's fields merged into every request body.
        headers: the provider's HTTP headers (credentials among them are not keyed on).
    """

    provider_type: str
    endpoint: str
    extra_body: Mapping[str, Any] = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict)


#: Parts of a header name that mark a credential (left out of cache keys).
_CREDENTIAL_MARKS = (
    "auth",
    "key",
    "token",
    "secret",
    "cookie",
    "password",
    "session",
    "signature",
    "credential",
)


def keyed_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers a cache key holds: names lowercased, credentials left out."""
    out = {}
    for name, value in headers.items():
        lowered = str(name).lower()
        if not any(mark in lowered for mark in _CREDENTIAL_MARKS):
            out[lowered] = str(value)
    return out


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


#: A cell of a run, as a sampled request's cache key names it: (run seed, row id, column).
CellKey = tuple[int, int, str]


def request_key(
    scope: CacheScope, request: ChatRequest | EmbeddingRequest, cell: CellKey | None = None
) -> bytes:
    """The 32-byte cache key of ``request`` sent within ``scope``; with ``cell``, the key of
    that cell's own answer (a sampled request: each cell keeps its own sample)."""
    body = _plain(request)
    body.pop("timeout", None)
    kind = "chat" if isinstance(request, ChatRequest) else "embedding"
    document = {
        "v": KEY_VERSION,
        "provider": scope.provider_type,
        "endpoint": scope.endpoint,
        "provider_extra_body": _plain(scope.extra_body),
        "kind": kind,
        "body": body,
    }
    headers = keyed_headers(scope.headers)
    if headers:  # (absent when none: keys of providers without headers stay as they were)
        document["headers"] = headers
    if cell is not None:
        document["cell"] = list(cell)
    return _digest(document)


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
    try:
        document = json.loads(record.decode("utf-8"))
    except RecursionError:  # nested deeper than a record ever is
        raise ValueError("not a record: nested too deeply") from None
    if not isinstance(document, dict) or document.get("k") != kind:
        raise ValueError("not a record of this kind")
    return document


def _whole(kind: Literal["c", "e"], decode: Callable[[dict[str, Any]], A]) -> Callable[[bytes], A]:
    """``decode`` applied to a record's document, any failure to read it (a field missing or
    of the wrong shape, a number out of range) raised as ``ValueError``: a record in the file
    may have been written by anyone, and must be a miss, not a crash."""

    def whole(record: bytes) -> A:
        document = _load(record, kind)
        try:
            return decode(document)
        except ValueError:
            raise
        except (ArithmeticError, KeyError, LookupError, TypeError, RecursionError) as exc:
            raise ValueError(f"not a whole record ({type(exc).__name__})") from None

    return whole


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("token counts are not whole numbers >= 0")
    return value


def _usage(value: Any) -> Usage:
    input_tokens, output_tokens = value
    return Usage(input_tokens=_count(input_tokens), output_tokens=_count(output_tokens))


def _optional_text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("not text")
    return value


def _chat(doc: dict[str, Any]) -> ChatResponse:
    text = doc["text"]
    if not isinstance(text, str):
        raise ValueError("text is not text")
    listed = doc["tool_calls"]
    if not isinstance(listed, list):
        raise ValueError("tool calls are not a list")
    calls = []
    for call in listed:
        call_id, name, arguments = call
        if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str)):
            raise ValueError("a tool call's fields are not text")
        calls.append(ToolCall(id=call_id, name=name, arguments=arguments))
    return ChatResponse(
        text=text,
        reasoning=_optional_text(doc["reasoning"]),
        usage=_usage(doc["usage"]),
        finish_reason=_optional_text(doc["finish_reason"]),
        model=_optional_text(doc["model"]),
        tool_calls=calls,
        served_by="cache",
    )


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a vector holds something other than a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("a vector holds a number out of range")
    return number


def _embedding(doc: dict[str, Any]) -> EmbeddingResponse:
    vectors = doc["vectors"]
    if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
        raise ValueError("vectors are not lists")
    found = tuple(tuple(_number(x) for x in vector) for vector in vectors)
    return EmbeddingResponse(vectors=found, usage=_usage(doc["usage"]), served_by="cache")


#: The chat answer a record holds, marked ``served_by="cache"``. Raises ``ValueError`` when
#: the record is not a whole chat record (it is then treated as a miss).
decode_chat = _whole("c", _chat)
#: The embeddings a record holds, marked ``served_by="cache"``. Raises ``ValueError`` when
#: the record is not a whole embedding record.
decode_embedding = _whole("e", _embedding)
