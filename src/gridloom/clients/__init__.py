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
