"""tokens_per_minute is enforced on an estimate when a reply reports no usage, with one
warning per budget (it used to cost nothing: 40 rows in 0.35 s under 300 tokens a minute)."""

from __future__ import annotations

import logging
import math
from typing import Any

import attrs
import httpx
import hypothesis.strategies as st
import pytest
import trio
from hypothesis import given

from gridloom.clients import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    OpenAIClient,
    ThrottledModelClient,
    Usage,
    build_http_client,
)
from gridloom.clients._token_estimate import CHARS_PER_TOKEN, budget_cost
from gridloom.config import ModelConfig, ProviderConfig, ThrottleConfig
from gridloom.throttle import AdaptiveLimiter, ThrottleRegistry, TokenBucket

PROMPT = "p" * 40  # 10 tokens at 4 characters a token
ANSWER = "a" * 80  # 20 tokens
REQUEST = ChatRequest(model="m-1", messages=(Message(role="user", content=PROMPT),))


def limiter(cap: int) -> AdaptiveLimiter:
    return ThrottleRegistry(ThrottleConfig(slow_start_seconds=0)).limiter("p", "m", "chat", cap)


@attrs.define
class Server:
    """Answers ANSWER, reporting ``usage`` (``None``: no usage block)."""

    usage: Usage | None
    starts: list[float] = attrs.field(factory=list)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.starts.append(trio.current_time())
        return ChatResponse(text=ANSWER, usage=self.usage or Usage())

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        self.starts.append(trio.current_time())
        return EmbeddingResponse(vectors=((0.0,),) * len(request.inputs))


async def _paced(server: Server, rows: int = 6, per_minute: float = 1800) -> list[float]:
    tokens = TokenBucket.per_minute(per_minute, trio.current_time)
    client = ThrottledModelClient(server, chat=limiter(8), embedding=limiter(8), tokens=tokens)
    for _ in range(rows):
        await client.chat(REQUEST)
    return server.starts


async def test_no_usage_paces_like_the_same_usage_reported(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A server sending no usage is held back as one reporting the estimated 10 + 20 tokens
    (was: never held back), and the budget warns once that it runs on estimates."""
    with caplog.at_level(logging.WARNING, logger="gridloom.throttle"):
        silent = await _paced(Server(usage=None))
    begin = trio.current_time()
    reporting = [
        t - begin for t in await _paced(Server(usage=Usage(input_tokens=10, output_tokens=20)))
    ]
    assert [t - silent[0] for t in silent] == reporting
    assert reporting[-1] >= 4.0  # 30 tokens each, 30 a second: held back, not all at once
    warnings = [r for r in caplog.records if "enforced on estimates" in r.getMessage()]
    assert len(warnings) == 1
    assert "'m-1'" in warnings[0].getMessage()


async def test_reported_usage_is_charged_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    """A reply reporting both counts is charged them, with no warning."""
    bucket = TokenBucket.per_minute(60, trio.current_time)
    answer = ChatResponse(text=ANSWER, usage=Usage(input_tokens=3, output_tokens=7))
    with caplog.at_level(logging.WARNING, logger="gridloom.throttle"):
        assert budget_cost(bucket, REQUEST, answer) == 10
    assert not caplog.records


async def test_a_missing_side_is_estimated_alone() -> None:
    """Only the side reported as 0 is estimated (a prompt-only usage block keeps its count)."""
    bucket = TokenBucket.per_minute(60, trio.current_time)
    answer = ChatResponse(text=ANSWER, usage=Usage(input_tokens=3))
    assert budget_cost(bucket, REQUEST, answer) == 3 + 20
    embedded = EmbeddingResponse(vectors=((0.0,),), usage=Usage())
    request = EmbeddingRequest(model="e", inputs=("x" * 9,))
    assert budget_cost(bucket, request, embedded) == 3  # an embedding has no output side


async def test_each_budget_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """Many estimated replies: one warning per budget (a provider's model)."""
    first = TokenBucket.per_minute(60, trio.current_time)
    second = TokenBucket.per_minute(60, trio.current_time)
    with caplog.at_level(logging.WARNING, logger="gridloom.throttle"):
        for bucket in (first, first, second, first, second):
            budget_cost(bucket, REQUEST, ChatResponse(text=ANSWER))
    assert sum("enforced on estimates" in r.getMessage() for r in caplog.records) == 2


@given(prompt=st.text(max_size=300), answer=st.text(max_size=300))
def test_the_estimate_is_characters_over_four(prompt: str, answer: str) -> None:
    """Without usage a reply costs ceil(prompt chars / 4) + ceil(answer chars / 4)."""
    bucket = TokenBucket.per_minute(60, lambda: 0.0)
    request = ChatRequest(model="m", messages=(Message(role="user", content=prompt),))
    expected = math.ceil(len(prompt) / CHARS_PER_TOKEN) + math.ceil(len(answer) / CHARS_PER_TOKEN)
    assert budget_cost(bucket, request, ChatResponse(text=answer)) == expected


async def test_an_openai_reply_without_usage_is_paced(autojump_clock: Any) -> None:
    """Through the OpenAI client: replies with no usage block under 300 tokens a minute are
    spread out (the reviewer's 40 rows had gone in 0.35 s)."""
    sent: list[float] = []

    def reply(request: httpx.Request) -> httpx.Response:
        sent.append(trio.current_time())
        message = {"role": "assistant", "content": ANSWER}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return httpx.Response(200, json={"id": "c", "choices": [choice]})

    provider = ProviderConfig(name="p", endpoint="http://x.test/v1")
    models = [ModelConfig(alias="m", provider="p", model="m-1")]
    http = build_http_client(provider, models, transport=httpx.MockTransport(reply))
    tokens = TokenBucket.per_minute(300, trio.current_time)  # 5 tokens a second
    client = ThrottledModelClient(
        OpenAIClient(http, provider=provider, api_key=None),
        chat=limiter(4),
        embedding=limiter(4),
        tokens=tokens,
    )
    async with http:
        for _ in range(5):
            await client.chat(REQUEST)
    # 30 estimated tokens a reply at 5 a second: 6 s between requests after the first two.
    assert sent[-1] - sent[0] >= 3 * 6.0
