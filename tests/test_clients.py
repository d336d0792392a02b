"""Model clients over httpx.MockTransport: wire formats, transport retry, timeouts, secrets."""

from __future__ import annotations

import ast
import gzip
import json
import logging
import random
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom.clients as gc
from gridloom.clients import (
    AnthropicClient,
    ChatRequest,
    EmbeddingRequest,
    Message,
    ModelClient,
    OpenAIClient,
    ResponseFormat,
    RetryPolicy,
    Secret,
    adapter_for,
    api_key_from_env,
    build_http_client,
    http_limits,
    http_timeout,
)
from gridloom.clients._http import response_caps
from gridloom.clients._post import not_json
from gridloom.clients._wire import WireTransport
from gridloom.config import ModelConfig, ProviderConfig
from gridloom.errors import (
    AuthenticationFailed,
    BadRequest,
    ConfigError,
    ConnectionFailed,
    EmptyAnswer,
    MalformedResponse,
    ModelError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ResponseTooLarge,
    is_retryable,
)

KEY_ENV = "GRIDLOOM_TEST_API_KEY"
FAKE_KEY = "sk-gridloom-FAKE-KEY-7c1d9e"

OPENAI = ProviderConfig(
    name="oa",
    endpoint="http://openai.test/v1",
    api_key_env=KEY_ENV,
    headers={"x-team": "data"},
    extra_body={"seed": 1, "user": "gridloom"},
)
ANTHROPIC = ProviderConfig(
    name="an", type="anthropic", endpoint="http://anthropic.test/v1", api_key_env=KEY_ENV
)
MODELS = [
    ModelConfig(alias="writer", provider="oa", model="w-8b", max_parallel_requests=3, timeout=30),
    ModelConfig(alias="judge", provider="oa", model="j-70b", max_parallel_requests=5, timeout=90),
    ModelConfig(
        alias="far", provider="elsewhere", model="x", max_parallel_requests=50, timeout=900
    ),
]

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Script:
    """A MockTransport handler replaying scripted replies (the last one repeats)."""

    def __init__(self, *replies: Callable[[httpx.Request], Any]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(trio.current_time())
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        result = reply(request)
        if isinstance(result, httpx.Response):
            return result
        response: httpx.Response = await result
        return response

    def body(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)


def ok(body: Any, headers: dict[str, str] | None = None) -> Callable[[httpx.Request], Any]:
    return lambda request: httpx.Response(200, json=body, headers=headers)


def status(
    code: int, body: Any = None, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], Any]:
    return lambda request: httpx.Response(
        code, json=body or {"error": {"message": "nope"}}, headers=headers
    )


def raw(code: int, text: str) -> Callable[[httpx.Request], Any]:
    return lambda request: httpx.Response(code, text=text)


def fail(kind: type[httpx.TransportError], text: str = "boom") -> Callable[[httpx.Request], Any]:
    def reply(request: httpx.Request) -> httpx.Response:
        raise kind(text, request=request)

    return reply


def chat_reply(content: Any = "Hello.", **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "w-8b-2025",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


REQUEST = ChatRequest(model="w-8b", messages=[Message(role="user", content="Hi")])
FULL_REQUEST = ChatRequest(
    model="w-8b",
    messages=[
        Message(role="system", content="Be brief."),
        Message(role="user", content="Three facts about rivers."),
    ],
    temperature=0.7,
    top_p=0.9,
    max_tokens=64,
    timeout=12.5,
    response_format=ResponseFormat(
        name="facts", schema={"type": "object", "properties": {"facts": {"type": "array"}}}
    ),
    extra_body={"user": "column-facts", "logprobs": False},
)


def http_for(
    script: Script, provider: ProviderConfig = OPENAI, models: list[ModelConfig] = MODELS
) -> httpx.AsyncClient:
    return build_http_client(provider, models, transport=httpx.MockTransport(script))


def openai(
    script: Script, *, key: str | None = FAKE_KEY, retry: RetryPolicy | None = None
) -> OpenAIClient:
    return OpenAIClient(
        http_for(script),
        provider=OPENAI,
        api_key=None if key is None else Secret(key),
        retry=retry or RetryPolicy(rng=random.Random(0)),
    )


def anthropic(script: Script, provider: ProviderConfig = ANTHROPIC) -> AnthropicClient:
    return AnthropicClient(http_for(script, provider), provider=provider, api_key=Secret(FAKE_KEY))


# --------------------------------------------------------------------------- public face


def test_all_is_sorted_and_complete() -> None:
    """gridloom.clients.__all__ is sorted and every name in it exists."""
    assert gc.__all__ == sorted(gc.__all__)
    for name in gc.__all__:
        assert hasattr(gc, name), name


def test_clients_layer_imports_nothing_above_it() -> None:
    """No module of gridloom.clients imports engine, generators or simulated."""
    forbidden = {"engine", "generators", "simulated", "cli", "_api"}
    for path in Path(gc.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = set(node.module.split("."))
                assert not parts & forbidden, f"{path.name} imports {node.module}"


def test_adapters_satisfy_the_protocol() -> None:
    """Both adapters are ModelClients, and adapter_for picks one by provider type."""
    script = Script(ok({}))
    sim = ProviderConfig(name="sim", type="simulated")
    for provider, cls in (
        (OPENAI, OpenAIClient),
        (ANTHROPIC, AnthropicClient),
        (sim, OpenAIClient),
    ):
        http = build_http_client(
            provider, MODELS, transport=httpx.MockTransport(script), base_url="http://x.test/v1"
        )
        client = adapter_for(provider, http, api_key=None)
        assert type(client) is cls
        assert isinstance(client, ModelClient)


# --------------------------------------------------------------------------- http client


def test_limits_and_timeout_from_the_provider_models() -> None:
    """Pool = sum of max_parallel_requests, read timeout = longest timeout, this provider only."""
    limits = http_limits(OPENAI, MODELS)
    assert (limits.max_connections, limits.max_keepalive_connections) == (8, 8)
    assert limits.keepalive_expiry is not None
    timeout = http_timeout(OPENAI, MODELS)
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (10.0, 90.0, 90.0, 90.0)


def test_limits_and_timeout_edges() -> None:
    """No models still gives one connection; a model timeout below 10 s caps connect too."""
    assert http_limits(OPENAI, []).max_connections == 1
    short = [ModelConfig(alias="a", provider="oa", model="m", timeout=4.0)]
    assert http_timeout(OPENAI, short) == httpx.Timeout(4.0)


async def test_built_client_uses_explicit_settings() -> None:
    """The network client's pool and timeouts come from the config, not httpx's defaults."""
    async with build_http_client(OPENAI, MODELS) as http:
        assert http.timeout == httpx.Timeout(90.0, connect=10.0)
        assert str(http.base_url) == "http://openai.test/v1/"
        assert http.headers["x-team"] == "data"
        assert http.headers["user-agent"].startswith("gridloom")
        # httpx keeps the limits on the transport only; this checks what the transport got.
        transport = http._transport
        assert isinstance(transport, WireTransport)
        assert transport.limits.max_connections == transport.limits.max_keepalive_connections
        assert transport.limits.max_connections >= 8


async def test_base_url_override_and_missing_endpoint() -> None:
    """A given base_url wins over the endpoint; a provider with neither is a ConfigError."""
    sim = ProviderConfig(name="sim", type="simulated")
    async with build_http_client(OPENAI, MODELS, base_url="http://127.0.0.1:9/v1") as http:
        assert str(http.base_url) == "http://127.0.0.1:9/v1/"
    with pytest.raises(ConfigError, match="'sim' has no endpoint"):
        build_http_client(sim, MODELS)


def test_reply_size_cap_per_model_name_is_the_largest_of_its_aliases() -> None:
    """Aliases of one (provider, model) share the largest max_response_bytes; models of other
    providers do not count."""
    models = [
        ModelConfig(alias="a", provider="oa", model="x", max_response_bytes=1000),
        ModelConfig(alias="b", provider="oa", model="x", max_response_bytes=5000),
        ModelConfig(alias="c", provider="oa", model="y"),
        ModelConfig(alias="d", provider="elsewhere", model="y", max_response_bytes=1),
    ]
    caps = response_caps(OPENAI, models)
    assert (caps["x"].limit, caps["x"].aliases) == (5000, ("a", "b"))
    assert (caps["y"].limit, caps["y"].aliases) == (8 * 1024 * 1024, ("c",))


async def test_reply_over_the_cap_is_refused_and_not_retried(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A reply longer than the model's max_response_bytes raises ResponseTooLarge after one
    request (no transport retry), naming the alias and the cap, with no httpx exception
    (nor its request) reachable from it; a reply within the cap passes, gzip decoded."""
    models = [ModelConfig(alias="writer", provider="oa", model="w-8b", max_response_bytes=300)]
    long_reply = chat_reply("x" * 400)
    script = Script(ok(long_reply))
    http = build_http_client(OPENAI, models, transport=httpx.MockTransport(script))
    client = OpenAIClient(http, provider=OPENAI, api_key=None)
    with pytest.raises(ResponseTooLarge) as caught:
        await client.chat(REQUEST)
    assert len(script.requests) == 1
    error = caught.value
    assert (error.retryable, error.limit, error.status) == (False, 300, None)
    assert "max_response_bytes = 300 (300 bytes) of model alias 'writer'" in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None

    packed = gzip.compress(json.dumps(chat_reply("short")).encode())
    zipped = Script(
        lambda r: httpx.Response(200, content=packed, headers={"content-encoding": "gzip"})
    )
    http = build_http_client(OPENAI, models, transport=httpx.MockTransport(zipped))
    assert (await OpenAIClient(http, provider=OPENAI, api_key=None).chat(REQUEST)).text == "short"
    assert zipped.requests[0].headers["accept-encoding"] == "gzip, deflate"


async def test_reply_cap_of_a_client_made_elsewhere_is_the_default() -> None:
    """A client not made by build_http_client is read through its public API, within the
    default cap (8 MiB)."""
    big = chat_reply("x" * (8 * 1024 * 1024))
    async with httpx.AsyncClient(
        base_url="http://x.test/v1", transport=httpx.MockTransport(Script(ok(big)))
    ) as http:
        with pytest.raises(ResponseTooLarge, match=r"8388608 \(8 MiB\) \(the default cap\)"):
            await OpenAIClient(http, provider=OPENAI, api_key=None).chat(REQUEST)


# --------------------------------------------------------------------------- OpenAI wire format


async def test_openai_chat_request_is_exact() -> None:
    """The chat body carries params, JSON-schema response_format and merged extras; headers too."""
    script = Script(ok(chat_reply()))
    await openai(script).chat(FULL_REQUEST)
    request = script.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "http://openai.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-team"] == "data"
    assert script.body() == {
        "model": "w-8b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Three facts about rivers."},
        ],
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 64,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "facts",
                "schema": {"type": "object", "properties": {"facts": {"type": "array"}}},
                "strict": True,
            },
        },
        "seed": 1,
        "user": "column-facts",
        "logprobs": False,
    }
    timeout = request.extensions["timeout"]
    assert (timeout["connect"], timeout["read"]) == (10.0, 12.5)


async def test_openai_minimal_request_and_parsed_reply() -> None:
    """Unset params are left out; the reply's text, usage, finish reason and model are read."""
    script = Script(ok(chat_reply()))
    client = openai(script, key=None)
    response = await client.chat(REQUEST)
    assert script.body() == {
        "model": "w-8b",
        "messages": [{"role": "user", "content": "Hi"}],
        "seed": 1,
        "user": "gridloom",
    }
    assert "authorization" not in script.requests[0].headers
    assert script.requests[0].extensions["timeout"]["read"] == 90.0
    assert response.text == "Hello."
    assert response.reasoning is None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert (response.finish_reason, response.model) == ("stop", "w-8b-2025")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"reasoning_content": "Rivers flow downhill."}, "Rivers flow downhill."),
        ({"reasoning": "Think first."}, "Think first."),
        ({"reasoning_content": None, "reasoning": "Fallback."}, "Fallback."),
        ({}, None),
    ],
)
async def test_openai_reasoning_is_extracted(message: dict[str, Any], expected: str | None) -> None:
    """Reasoning comes from reasoning_content, else reasoning, when the provider sends it."""
    client = openai(Script(ok(chat_reply("Answer.", **message))))
    response = await client.chat(REQUEST)
    assert (response.text, response.reasoning) == ("Answer.", expected)


async def test_openai_null_content_cut_at_max_tokens_is_an_empty_answer() -> None:
    """A null content (all tokens spent on reasoning, finish_reason length) is EmptyAnswer
    saying so, final (was: empty text, counted a success)."""
    reply = chat_reply(None, reasoning_content="long thought")
    reply["choices"][0]["finish_reason"] = "length"
    with pytest.raises(EmptyAnswer) as info:
        await openai(Script(ok(reply))).chat(attrs.evolve(REQUEST, max_tokens=64))
    assert info.value.reason == "length"
    assert not is_retryable(info.value)
    assert str(info.value) == (
        "oa/w-8b: no answer: the model was cut short (finish_reason: length) before any"
        " content, spent on 12 characters of reasoning; raise max_tokens (now 64) on the model"
        " or column"
    )


@pytest.mark.parametrize(
    ("message", "finish", "reason", "text"),
    [
        ({"content": ""}, "content_filter", "content_filter", "content filter withheld it"),
        (
            {"content": None, "refusal": "I'm sorry, I cannot help with that."},
            "stop",
            "refusal",
            'the model refused: "I\'m sorry, I cannot help with that."',
        ),
        ({"content": None, "refusal": "no " * 500}, "stop", "refusal", "refused: 'no no no"),
        ({"content": "  \n "}, "stop", "empty", "empty content and no tool calls"),
        ({"content": None}, None, "empty", "empty content and no tool calls"),
    ],
)
async def test_openai_answer_without_content_is_an_empty_answer(
    message: dict[str, Any], finish: str | None, reason: str, text: str
) -> None:
    """No content (or only whitespace) and no tool calls is EmptyAnswer naming why: a
    content filter, the refusal (quoted, at most REFUSAL_CHARS), or nothing; only the last
    is retryable."""
    reply = {"choices": [{"message": {"role": "assistant", **message}, "finish_reason": finish}]}
    with pytest.raises(EmptyAnswer) as info:
        await openai(Script(ok(reply))).chat(REQUEST)
    assert info.value.reason == reason
    assert is_retryable(info.value) == (reason == "empty")
    assert text in str(info.value)
    assert len(str(info.value)) < 300
    if "no " * 10 in str(message.get("refusal")):
        assert str(info.value).endswith("…'")


@pytest.mark.parametrize(
    ("reported", "counted"),
    [
        ({"prompt_tokens": 10**30, "completion_tokens": 2**63}, (0, 0)),
        ({"prompt_tokens": -3, "completion_tokens": "7"}, (0, 0)),
        ({"prompt_tokens": 12.0, "completion_tokens": 1.5}, (12, 0)),
        ({"prompt_tokens": 100_000_000, "completion_tokens": True}, (100_000_000, 0)),
    ],
)
async def test_openai_absurd_usage_counts_as_unknown(
    reported: dict[str, Any], counted: tuple[int, int]
) -> None:
    """Usage beyond MAX_REPORTED_TOKENS, negative, or not a whole number counts as 0, so one
    reply cannot stall a token budget or put 3e30 tokens in the summary."""
    reply = chat_reply("hi")
    reply["usage"] = reported
    response = await openai(Script(ok(reply))).chat(REQUEST)
    assert (response.usage.input_tokens, response.usage.output_tokens) == counted


async def test_openai_answer_cut_at_max_tokens_is_kept_and_told_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An answer with content cut by finish_reason length is kept (truncated), and a warning
    says so once per model; a tool call with no content is an answer."""
    reply = chat_reply("truncated answ")
    reply["choices"][0]["finish_reason"] = "length"
    client = openai(Script(ok(reply), ok(reply)))
    for _ in range(2):
        response = await client.chat(REQUEST)
        assert (response.text, response.finish_reason) == ("truncated answ", "length")
    cut = [r for r in caplog.records if "was cut short" in r.getMessage()]
    assert [r.levelname for r in cut] == ["WARNING"]
    assert (
        cut[0].getMessage().startswith("oa/w-8b: an answer was cut short (finish_reason: length)")
    )


@pytest.mark.parametrize(
    "reply",
    [
        raw(200, "not json at all"),
        raw(200, ""),
        ok(["a", "list"]),
        ok({"id": "x"}),
        ok({"choices": []}),
        ok({"choices": ["text"]}),
        ok({"choices": [{"index": 0}]}),
        ok({"choices": [{"message": {"role": "assistant"}}]}),
        ok({"choices": [{"message": {"content": 42}}]}),
    ],
)
async def test_openai_malformed_replies(reply: Callable[[httpx.Request], Any]) -> None:
    """A 200 whose body is not JSON or lacks choices[0].message.content is MalformedResponse."""
    script = Script(reply)
    with pytest.raises(MalformedResponse) as info:
        await openai(script).chat(REQUEST)
    assert len(script.requests) == 1
    assert info.value.provider == "oa"


async def test_openai_embeddings_request_and_order() -> None:
    """Embeddings are requested as an input list and returned in input order by index."""
    reply = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 2, "embedding": [0.2, 2]},
            {"object": "embedding", "index": 0, "embedding": [0.0, 0.5]},
            {"object": "embedding", "index": 1, "embedding": [1.0, -1.5]},
        ],
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }
    script = Script(ok(reply))
    request = EmbeddingRequest(model="e-1", inputs=["a", "b", "c"], extra_body={"dimensions": 2})
    response = await openai(script).embed(request)
    assert str(script.requests[0].url) == "http://openai.test/v1/embeddings"
    assert script.body() == {
        "model": "e-1",
        "input": ["a", "b", "c"],
        "seed": 1,
        "user": "gridloom",
        "dimensions": 2,
    }
    assert response.vectors == ((0.0, 0.5), (1.0, -1.5), (0.2, 2.0))
    assert response.usage.input_tokens == 9


@pytest.mark.parametrize(
    "data",
    [
        None,
        [{"index": 0, "embedding": [1.0]}],
        [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}],
        [{"index": 0, "embedding": [1.0]}, {"index": 5, "embedding": [2.0]}],
        [{"index": 0, "embedding": [1.0]}, {"embedding": [2.0]}],
        [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": "AAAA"}],
        [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [True]}],
    ],
)
async def test_openai_malformed_embeddings(data: Any) -> None:
    """Embeddings not exactly one numeric vector per input index are MalformedResponse."""
    client = openai(Script(ok({"data": data})))
    with pytest.raises(MalformedResponse):
        await client.embed(EmbeddingRequest(model="e-1", inputs=["a", "b"]))


# --------------------------------------------------------------------------- Anthropic wire format


def anthropic_reply(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": list(blocks),
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 20, "output_tokens": 7},
    }


async def test_anthropic_request_is_exact() -> None:
    """System goes top-level, max_tokens defaults to 1024, response_format is a forced tool."""
    script = Script(ok(anthropic_reply({"type": "text", "text": "ok"})))
    request = ChatRequest(
        model="claude-x",
        messages=[
            Message(role="system", content="Be brief."),
            Message(role="user", content="Hi"),
            Message(role="assistant", content="Hello"),
            Message(role="user", content="Facts?"),
        ],
        temperature=0.2,
        response_format=ResponseFormat(name="f", schema={"type": "object"}),
        extra_body={"metadata": {"user_id": "u1"}},
    )
    await anthropic(script).chat(request)
    sent = script.requests[0]
    assert str(sent.url) == "http://anthropic.test/v1/messages"
    assert sent.headers["x-api-key"] == FAKE_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert script.body() == {
        "model": "claude-x",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Facts?"},
        ],
        "temperature": 0.2,
        "metadata": {"user_id": "u1"},
        "tools": [
            {
                "name": "f",
                "description": "Record the answer: the tool's input is the whole answer.",
                "input_schema": {"type": "object"},
            }
        ],
        "tool_choice": {"type": "tool", "name": "f"},
    }


async def test_anthropic_explicit_max_tokens_and_version_header() -> None:
    """A set max_tokens is sent; an anthropic-version in the provider headers is kept."""
    provider = ProviderConfig(
        name="an",
        type="anthropic",
        endpoint="http://anthropic.test/v1",
        headers={"anthropic-version": "2099-01-01"},
    )
    script = Script(ok(anthropic_reply({"type": "text", "text": "ok"})))
    request = ChatRequest(
        model="claude-x", messages=[Message(role="user", content="Hi")], max_tokens=10
    )
    await anthropic(script, provider).chat(request)
    assert script.requests[0].headers.get_list("anthropic-version") == ["2099-01-01"]
    assert script.body()["max_tokens"] == 10
    assert "system" not in script.body()


async def test_anthropic_reply_text_thinking_usage() -> None:
    """Text blocks are concatenated, thinking blocks become reasoning, usage is read."""
    reply = anthropic_reply(
        {"type": "thinking", "thinking": "Consider rivers.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "xyz"},
        {"type": "text", "text": "Rivers "},
        {"type": "text", "text": "flow."},
    )
    response = await anthropic(Script(ok(reply))).chat(REQUEST)
    assert response.text == "Rivers flow."
    assert response.reasoning == "Consider rivers."
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 7)
    assert (response.finish_reason, response.model) == ("end_turn", "claude-x")


@pytest.mark.parametrize(
    "reply",
    [
        raw(200, "<html>"),
        ok({"type": "message"}),
        ok({"content": ["x"]}),
        ok({"content": [{"type": "text"}]}),
    ],
)
async def test_anthropic_malformed_replies(reply: Callable[[httpx.Request], Any]) -> None:
    """A reply without a list of well-formed content blocks is MalformedResponse."""
    with pytest.raises(MalformedResponse):
        await anthropic(Script(reply)).chat(REQUEST)


async def test_anthropic_has_no_embeddings() -> None:
    """embed raises BadRequest without sending anything."""
    script = Script(ok({}))
    with pytest.raises(BadRequest, match="no embeddings API"):
        await anthropic(script).embed(EmbeddingRequest(model="claude-x", inputs=["a"]))
    assert script.requests == []


# --------------------------------------------------------------------------- retry boundary


def expected_waits(seed: int, n: int, base: float = 0.5, cap: float = 8.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0.0, min(cap, base * 2.0**i)) for i in range(n)]


async def test_429_surfaces_after_one_request(autojump_clock: trio.abc.Clock) -> None:
    """A 429 is never retried here: RateLimited after exactly one request, no time spent."""
    script = Script(status(429, headers={"retry-after": "3"}), ok(chat_reply()))
    start = trio.current_time()
    with pytest.raises(RateLimited) as info:
        await openai(script).chat(REQUEST)
    assert len(script.requests) == 1
    assert info.value.retry_after == 3.0
    assert trio.current_time() == start


async def test_503_is_retried_then_surfaces(autojump_clock: trio.abc.Clock) -> None:
    """503 is retried with seeded full-jitter backoff, then raised after max_attempts requests."""
    script = Script(status(503))
    start = trio.current_time()
    with pytest.raises(ProviderUnavailable) as info:
        await openai(script, retry=RetryPolicy(max_attempts=3, rng=random.Random(7))).chat(REQUEST)
    assert info.value.status == 503
    assert len(script.requests) == 3
    w1, w2 = expected_waits(7, 2)
    gaps = [b - a for a, b in zip(script.times, script.times[1:], strict=False)]
    assert gaps == pytest.approx([w1, w2], abs=1e-9)
    assert trio.current_time() - start == pytest.approx(w1 + w2, abs=1e-9)


async def test_503_retry_after_is_the_minimum_wait(autojump_clock: trio.abc.Clock) -> None:
    """A Retry-After on a 503 raises the jittered wait to at least that many seconds."""
    script = Script(status(503, headers={"retry-after": "2"}), ok(chat_reply()))
    start = trio.current_time()
    response = await openai(script, retry=RetryPolicy(rng=random.Random(1))).chat(REQUEST)
    assert response.text == "Hello."
    assert trio.current_time() - start == pytest.approx(2.0, abs=1e-9)


async def test_503_retry_after_beyond_cap_surfaces_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A Retry-After longer than the cap is left to the fault policy: raised after one request."""
    script = Script(status(503, headers={"retry-after": "60"}), ok(chat_reply()))
    with pytest.raises(ProviderUnavailable) as info:
        await openai(script).chat(REQUEST)
    assert info.value.retry_after == 60.0
    assert len(script.requests) == 1


@pytest.mark.parametrize("code", [502, 503, 504])
async def test_gateway_errors_then_success(code: int, autojump_clock: trio.abc.Clock) -> None:
    """A 502/503/504 followed by a 200 succeeds after two requests."""
    script = Script(status(code), ok(chat_reply()))
    response = await openai(script).chat(REQUEST)
    assert response.text == "Hello."
    assert len(script.requests) == 2


@pytest.mark.parametrize(
    "kind", [httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError]
)
async def test_connection_errors_are_retried(
    kind: type[httpx.TransportError], autojump_clock: trio.abc.Clock
) -> None:
    """A refused, reset or dropped connection is retried; a later success is returned."""
    script = Script(fail(kind), ok(chat_reply()))
    response = await openai(script).chat(REQUEST)
    assert response.text == "Hello."
    assert len(script.requests) == 2


async def test_connection_errors_surface_after_max_attempts(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Connection errors on every attempt raise ConnectionFailed after max_attempts requests."""
    script = Script(fail(httpx.ConnectError, "[Errno 111] Connection refused"))
    with pytest.raises(ConnectionFailed, match="ConnectError: \\[Errno 111\\]") as info:
        await openai(script, retry=RetryPolicy(max_attempts=4)).chat(REQUEST)
    assert len(script.requests) == 4
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (status(500), ProviderUnavailable),
        (status(529), ProviderUnavailable),
        (status(408), ProviderTimeout),
        (status(400), BadRequest),
        (status(401), AuthenticationFailed),
        (fail(httpx.ReadTimeout), ProviderTimeout),
        (fail(httpx.ConnectTimeout), ProviderTimeout),
        (fail(httpx.PoolTimeout), ProviderTimeout),
    ],
)
async def test_not_retried_here(
    reply: Callable[[httpx.Request], Any], error: type[ModelError], autojump_clock: trio.abc.Clock
) -> None:
    """500, 529, 408, 4xx and timeouts surface after exactly one request."""
    script = Script(reply, ok(chat_reply()))
    start = trio.current_time()
    with pytest.raises(error):
        await openai(script).chat(REQUEST)
    assert len(script.requests) == 1
    assert trio.current_time() == start


async def test_single_attempt_policy(autojump_clock: trio.abc.Clock) -> None:
    """max_attempts=1 disables transport retry."""
    script = Script(status(503), ok(chat_reply()))
    with pytest.raises(ProviderUnavailable):
        await openai(script, retry=RetryPolicy(max_attempts=1)).chat(REQUEST)
    assert len(script.requests) == 1


def test_backoff_is_capped_full_jitter() -> None:
    """Each wait lies in [0, min(cap, base * 2**(n-1))]."""
    policy = RetryPolicy(base=0.5, cap=8.0, rng=random.Random(3))
    for retry in range(1, 12):
        for _ in range(50):
            assert 0.0 <= policy.backoff(retry) <= min(8.0, 0.5 * 2 ** (retry - 1))


# --------------------------------------------------------------------------- timeouts


async def test_hanging_reply_times_out_at_the_request_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A reply that never comes raises ProviderTimeout at request.timeout, without retry."""

    async def hang(request: httpx.Request) -> httpx.Response:
        await trio.sleep(10_000)
        raise AssertionError("unreachable")

    script = Script(hang)
    start = trio.current_time()
    request = ChatRequest(model="w-8b", messages=[Message(role="user", content="Hi")], timeout=7)
    with pytest.raises(ProviderTimeout, match="no answer within 7 s"):
        await openai(script).chat(request)
    assert trio.current_time() - start == pytest.approx(7.0, abs=1e-9)
    assert len(script.requests) == 1


async def test_hanging_reply_defaults_to_the_client_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Without request.timeout, an attempt is bounded by the client's read timeout."""

    async def hang(request: httpx.Request) -> httpx.Response:
        await trio.sleep(10_000)
        raise AssertionError("unreachable")

    start = trio.current_time()
    with pytest.raises(ProviderTimeout):
        await openai(Script(hang)).embed(EmbeddingRequest(model="e", inputs=["a"]))
    assert trio.current_time() - start == pytest.approx(90.0, abs=1e-9)


# --------------------------------------------------------------------------- secrets


def test_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is read from the named variable and wrapped in a Secret that hides itself."""
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    key = api_key_from_env(OPENAI)
    assert key is not None
    assert key.reveal() == FAKE_KEY
    assert repr(key) == str(key) == f"{key}" == "Secret('***')"
    assert api_key_from_env(ProviderConfig(name="local", endpoint="http://x/v1")) is None


@pytest.mark.parametrize("value", [None, ""])
def test_missing_api_key_is_a_config_error(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset or empty key variable is a ConfigError naming provider and variable only."""
    if value is None:
        monkeypatch.delenv(KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(ConfigError) as info:
        api_key_from_env(OPENAI)
    assert info.value.field == "api_key_env"
    assert "'oa'" in str(info.value)
    assert repr(KEY_ENV) in str(info.value)


@settings(max_examples=40, deadline=None)
@given(
    before=st.text(alphabet=" \t\r\n\x0b\x0c", max_size=4),
    after=st.text(alphabet=" \t\r\n\x0b\x0c", max_size=4),
)
def test_api_key_surrounding_whitespace_is_stripped(before: str, after: str) -> None:
    """A key read from a file keeps its trailing newline (or spaces, CR): stripped, so the
    key sent is the key meant (was: every request refused as an unsendable header)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(KEY_ENV, before + FAKE_KEY + after)
        key = api_key_from_env(OPENAI)
    assert key is not None
    assert key.reveal() == FAKE_KEY


@pytest.mark.parametrize("inner", ["\n", "\r\n", "\x01", "\x7f", "\u2028"])
def test_api_key_with_an_inner_control_character_is_a_config_error(
    inner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key with a control (or non-Latin-1) character inside is a ConfigError naming the
    variable, before any request, never showing the key."""
    monkeypatch.setenv(KEY_ENV, FAKE_KEY[:8] + inner + FAKE_KEY[8:])
    with pytest.raises(ConfigError) as info:
        api_key_from_env(OPENAI)
    message = str(info.value)
    assert info.value.field == "api_key_env"
    assert repr(KEY_ENV) in message
    assert "an HTTP header cannot carry" in message
    assert FAKE_KEY[:8] not in message
    assert FAKE_KEY[8:] not in message


def _failures() -> list[Callable[[httpx.Request], Any]]:
    echo = {"error": {"message": f"Incorrect API key provided: {FAKE_KEY}"}}
    return [
        status(401, echo),
        status(400, echo),
        status(429, echo, {"retry-after": "1"}),
        status(503, echo),
        raw(200, f"oops {FAKE_KEY}"),
        fail(httpx.ConnectError, f"connect to proxy with {FAKE_KEY} failed"),
        fail(httpx.ReadTimeout),
        fail(httpx.UnsupportedProtocol),
    ]


@pytest.mark.parametrize("reply", _failures())
@pytest.mark.parametrize("provider", [OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
async def test_api_key_never_leaks(
    reply: Callable[[httpx.Request], Any],
    provider: ProviderConfig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.abc.Clock,
) -> None:
    """The key is sent, but is in no repr, error message, traceback or log line."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    script = Script(reply)
    http = http_for(script, provider)
    client = adapter_for(provider, http, api_key=api_key_from_env(provider))
    with pytest.raises(ModelError) as info:
        await client.chat(REQUEST)
    sent = script.requests[0].headers
    assert FAKE_KEY in (sent.get("authorization", "") + sent.get("x-api-key", ""))
    err = info.value
    chain = "".join(traceback.format_exception(err))
    for text in (repr(client), repr(http), str(err), repr(err), chain, caplog.text):
        assert FAKE_KEY not in text
    assert FAKE_KEY not in repr(dict(http.headers))
    # The httpx exception (which holds the request, headers included) is not reachable.
    assert err.__cause__ is None
    assert err.__context__ is None


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_an_empty_answer_carries_its_usage_and_the_handle_counts_it(kind: str) -> None:
    """A reply with no answer (out of tokens before any text) was served and billed: the
    EmptyAnswer carries its reported usage, and the model's usage (and so its cost) counts
    it, as it counts an answer's."""
    from gridloom.clients import ModelHandle

    if kind == "openai":
        reply = chat_reply(None, reasoning_content="long thought")
        reply["choices"][0]["finish_reason"] = "length"
        client: Any = openai(Script(ok(reply)))
        expected = (12, 3)
    else:
        reply = anthropic_reply({"type": "thinking", "thinking": "hm", "signature": "s"})
        reply["stop_reason"] = "max_tokens"
        client = anthropic(Script(ok(reply)))
        expected = (20, 7)
    handle = ModelHandle(MODELS[0], client, trio.CapacityLimiter(2))
    for _ in range(2):
        with pytest.raises(EmptyAnswer) as info:
            await handle.chat(REQUEST)
        assert (info.value.input_tokens, info.value.output_tokens) == expected
    usage = handle.usage()
    assert (usage.input_tokens, usage.output_tokens) == (2 * expected[0], 2 * expected[1])
    assert usage.errors == {"EmptyAnswer": 2}


_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    errors=st.dictionaries(st.text(max_size=8), st.integers(0, 9), max_size=3),
    throttle=st.dictionaries(st.text(max_size=8), st.dictionaries(st.text(max_size=8), _PLAIN)),
    latency=st.none() | st.floats(0, 60),
)
@settings(max_examples=200, deadline=None)
def test_a_usage_as_dict_is_what_attrs_asdict_gives(
    errors: dict[str, int], throttle: dict[str, dict[str, Any]], latency: float | None
) -> None:
    """``ModelUsage.as_dict`` (a copy of plain containers, fast for a long throttle history)
    gives what ``attrs.asdict`` gives, and shares no container with the snapshot."""
    usage = gc.ModelUsage(
        alias="a",
        model="m",
        provider="p",
        requests=3,
        succeeded=2,
        failed=1,
        errors=errors,
        transport_retries={"ReadTimeout": 1},
        rate_limited=0,
        throttle=throttle,
        input_tokens=5,
        output_tokens=6,
        mean_latency=latency,
        p95_latency=latency,
        estimated_cost=0.5,
    )
    plain = usage.as_dict()
    assert plain == attrs.asdict(usage)
    assert list(plain) == list(attrs.asdict(usage))
    assert plain["errors"] is not usage.errors
    assert plain["throttle"] is not usage.throttle
    for domain, stats in throttle.items():
        assert plain["throttle"][domain] is not stats  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"choices": [{"message": {"content": "caf\xc3"}}]}', "byte 41 is not UTF-8"),
        (b'{"choices": [', "Expecting value at line 1, column 14"),
        (b"<html>Bad Gateway</html>", "Expecting value at line 1, column 1"),
    ],
)
async def test_a_reply_that_is_not_json_says_where_it_breaks(body: bytes, says: str) -> None:
    """A 200 that is not JSON says why: bytes that are not UTF-8 (a server that split a
    character between tokens) or where the JSON breaks off (was: only "is not JSON")."""
    with pytest.raises(MalformedResponse) as info:
        await openai(Script(lambda request: httpx.Response(200, content=body))).chat(REQUEST)
    assert f"HTTP 200 reply is not JSON ({len(body)} bytes): {says}" in str(info.value)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_why_a_body_is_not_json_is_one_bounded_line(body: bytes) -> None:
    """Whatever the bytes, the reason is one line of bounded length that starts the same."""
    message = not_json(200, body)
    assert message.startswith(f"HTTP 200 reply is not JSON ({len(body)} bytes)")
    assert "\n" not in message
    assert len(message) < 200
