"""Model clients: canonical request/response types and adapters over one ``httpx.AsyncClient``
per provider.

A typical wiring::

    http = build_http_client(provider, models)
    client = adapter_for(provider, http, api_key=api_key_from_env(provider))
    async with http:
        response = await client.chat(ChatRequest(model="m", messages=[Message(...)]))

Every failure is a :class:`~gridloom.errors.ModelError`; 502/503/504 and broken connections are
retried here (:class:`RetryPolicy`), a 429 never is. Each provider's requests go through the
transport its HTTP settings allow (:func:`transport_plan`: gridloom's fast HTTP/1.1 one, or
httpx's own for proxies and HTTP/2), and replies are refused past the model's
``max_response_bytes``. API keys travel as :class:`Secret` and
never appear in reprs, logs or error messages. A success carries the quota its headers report
(:class:`RateLimitState`), which :class:`ThrottledModelClient` holds admissions on.
"""

import typing as _typing

from .._lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from ._anthropic import AnthropicClient
    from ._batch import BatchClientStatistics, BatchingClient, BatchPolling
    from ._cache import CacheStats, CacheUnavailable, ResponseCache, default_cache_path
    from ._cache_key import CacheScope, request_key, scope_digest
    from ._errors import error_from_exception, error_from_response, parse_retry_after
    from ._factory import adapter_for, batching_client
    from ._handle import ModelHandle, ModelUsage
    from ._http import api_key_from_env, build_http_client, http_limits, http_timeout
    from ._openai import OpenAIClient
    from ._policy import TransportPlan, transport_plan
    from ._quota import parse_rate_limit_headers
    from ._retry import RetryPolicy, send_with_retry
    from ._secret import Secret
    from ._throttled import ThrottledModelClient
    from ._types import (
        ChatRequest,
        ChatResponse,
        EmbeddingRequest,
        EmbeddingResponse,
        Message,
        ModelClient,
        RateLimitState,
        ResponseFormat,
        ToolCall,
        ToolSpec,
        Usage,
    )

#: Each public name and the module defining it, imported on first use: a run loads the
#: adapters, batching and caching its models use, not every one.
_PUBLIC: dict[str, str] = {
    "AnthropicClient": "._anthropic",
    "BatchClientStatistics": "._batch",
    "BatchPolling": "._batch",
    "BatchingClient": "._batch",
    "CacheScope": "._cache_key",
    "CacheStats": "._cache",
    "CacheUnavailable": "._cache",
    "ChatRequest": "._types",
    "ChatResponse": "._types",
    "EmbeddingRequest": "._types",
    "EmbeddingResponse": "._types",
    "Message": "._types",
    "ModelClient": "._types",
    "ModelHandle": "._handle",
    "ModelUsage": "._handle",
    "OpenAIClient": "._openai",
    "RateLimitState": "._types",
    "ResponseCache": "._cache",
    "ResponseFormat": "._types",
    "RetryPolicy": "._retry",
    "Secret": "._secret",
    "ThrottledModelClient": "._throttled",
    "ToolCall": "._types",
    "ToolSpec": "._types",
    "TransportPlan": "._policy",
    "Usage": "._types",
    "adapter_for": "._factory",
    "api_key_from_env": "._http",
    "batching_client": "._factory",
    "build_http_client": "._http",
    "default_cache_path": "._cache",
    "error_from_exception": "._errors",
    "error_from_response": "._errors",
    "http_limits": "._http",
    "http_timeout": "._http",
    "parse_rate_limit_headers": "._quota",
    "parse_retry_after": "._errors",
    "request_key": "._cache_key",
    "scope_digest": "._cache_key",
    "send_with_retry": "._retry",
    "transport_plan": "._policy",
}

__all__ = [
    "AnthropicClient",
    "BatchClientStatistics",
    "BatchPolling",
    "BatchingClient",
    "CacheScope",
    "CacheStats",
    "CacheUnavailable",
    "ChatRequest",
    "ChatResponse",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "Message",
    "ModelClient",
    "ModelHandle",
    "ModelUsage",
    "OpenAIClient",
    "RateLimitState",
    "ResponseCache",
    "ResponseFormat",
    "RetryPolicy",
    "Secret",
    "ThrottledModelClient",
    "ToolCall",
    "ToolSpec",
    "TransportPlan",
    "Usage",
    "adapter_for",
    "api_key_from_env",
    "batching_client",
    "build_http_client",
    "default_cache_path",
    "error_from_exception",
    "error_from_response",
    "http_limits",
    "http_timeout",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "request_key",
    "scope_digest",
    "send_with_retry",
    "transport_plan",
]

__getattr__, __dir__ = _lazy_exports(__name__, _PUBLIC)
