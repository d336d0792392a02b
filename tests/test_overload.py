"""An overloaded or briefly unreachable provider — 529 ``overloaded_error``, a gateway's
502/503, mostly with no ``Retry-After`` — is a capacity refusal like a 429: the limit is cut,
the request waits out the cooldown and is sent again, and no failure is counted."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

from gridloom.clients import ChatRequest, ChatResponse, Message, ThrottledModelClient, Usage
from gridloom.config import ThrottleConfig
from gridloom.errors import ProviderUnavailable
from gridloom.throttle import AdaptiveLimiter, ThrottleRegistry

REQUEST = ChatRequest(model="m", messages=(Message(role="user", content="hi"),))


def limiter(cap: int) -> AdaptiveLimiter:
    return ThrottleRegistry(ThrottleConfig()).limiter("p", "m", "chat", cap)


@attrs.define
class Outage:
    """An inner client answering ``status`` with no Retry-After until ``until`` (trio time),
    then succeeding; notes every attempt's start."""

    status: int
    until: float
    starts: list[float] = attrs.Factory(list)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.starts.append(trio.current_time())
        if trio.current_time() < self.until:
            raise ProviderUnavailable(f"p/m: HTTP {self.status}: overloaded", status=self.status)
        return ChatResponse(text="ok", usage=Usage(output_tokens=1))

    async def embed(self, request: Any) -> Any:
        raise AssertionError


@pytest.mark.parametrize("status", [502, 503, 529])
async def test_a_minute_long_outage_is_waited_out(autojump_clock: Any, status: int) -> None:
    """8 requests at once into a 60 s outage answered with no Retry-After: the first refusal
    cuts the limit 8 → 6, every request is sent again every cooldown (2 s), and all 8
    succeed once the outage ends (they used to fail at once and stop the run after 5 s)."""
    inner = Outage(status, until=60.0)
    lim = limiter(8)
    client = ThrottledModelClient(inner, chat=lim, embedding=limiter(8))
    answers: list[float] = []

    async def one() -> None:
        await client.chat(REQUEST)
        answers.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(one)
        await trio.sleep(0.5)
        assert lim.statistics().limit == 6
    assert len(answers) == 8
    assert min(answers) >= 60.0
    assert max(answers) <= 62.0
    stats = lim.statistics()
    assert stats.rate_limited == len(inner.starts) - 8  # every attempt but the last was refused


async def test_a_gateway_timeout_is_not_a_capacity_refusal(autojump_clock: Any) -> None:
    """504 stays the request's own failure: raised at the first attempt, the limit uncut."""
    inner = Outage(504, until=60.0)
    lim = limiter(8)
    client = ThrottledModelClient(inner, chat=lim, embedding=limiter(8))
    with pytest.raises(ProviderUnavailable):
        await client.chat(REQUEST)
    assert inner.starts == [0.0]
    assert lim.statistics().limit == 8
