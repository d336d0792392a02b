"""An overloaded or briefly unreachable provider — 529 ``overloaded_error``, a gateway's
502/503, mostly with no ``Retry-After`` — is a capacity refusal like a 429: the limit is cut,
the request waits out the cooldown and is sent again, and no failure is counted."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import gridloom as gl
from gridloom.clients import ChatRequest, ChatResponse, Message, ThrottledModelClient, Usage
from gridloom.config import ThrottleConfig
from gridloom.errors import ProviderUnavailable
from gridloom.throttle import AdaptiveLimiter, ThrottleRegistry

from .test_shutdown import llm_pipeline, read_request, serving

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


#: What nginx answers when the upstream it proxies to does not exist.
BAD_GATEWAY = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


async def test_a_gateway_with_nothing_behind_it_stops_the_run_soon(tmp_path: Path) -> None:
    """`gridloom create` against a proxy answering 502 to every request (real sockets, real
    time), with shutdown_unavailable_seconds 1.5: the run stops about 1.5 s after the first
    refusal with exit status 4, saying no request ever succeeded, naming the status and
    quoting nginx's page; metadata.json records the same reason (it used to wait out
    shutdown_refused_seconds, 600 s by default)."""
    received: list[float] = []
    answer = (
        b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (len(BAD_GATEWAY), BAD_GATEWAY)
    )

    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                if await read_request(stream) is not None:
                    received.append(time.monotonic())
                    await stream.send_all(answer)
            except trio.BrokenResourceError:
                return

    async with serving(serve) as url:
        config = llm_pipeline(
            {"name": "gw", "endpoint": url},
            run={
                "shutdown_unavailable_seconds": 1.5,
                "throttle": {"cooldown_seconds": 0.1},
                "progress": "off",
            },
        )
        path = tmp_path / "p.yaml"
        path.write_text(gl.dump_config(config), encoding="utf-8")
        out = tmp_path / "o"
        with trio.fail_after(60):
            proc = await trio.run_process(
                [sys.executable, "-m", "gridloom", "create", str(path), "-n", "50", "-o", str(out)],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env={**os.environ, "GRIDLOOM_PROGRESS": "off"},
            )
            ended = time.monotonic()
    both = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 4, both
    assert received
    assert 1.5 <= ended - received[0] < 10.0
    expected = (
        "model 'judge': no request of this model has succeeded in this run: its requests were"
        " refused with HTTP 502 for "
    )
    assert both.count(expected) == 1, both
    assert "check the provider's endpoint (its base URL) and any gateway or proxy" in both
    assert "502 Bad Gateway" in both
    assert "resume it to generate the rest" in both
    metadata = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["status"] == "stopped"
    stop = metadata["summary"]["stop"]
    assert stop["alias"] == "judge"
    assert stop["top_error"] == "ProviderUnavailable"
    assert stop["window_seconds"] == 1.5
    assert stop["message"].startswith(expected)
