"""Early shutdown: a failing model stops the run, the completed row groups stay on disk."""

from __future__ import annotations

import functools
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import gridloom as gl
from gridloom.clients import ChatRequest, ChatResponse, Message, ModelHandle, OpenAIClient, Usage
from gridloom.config import ModelConfig, structure_pipeline
from gridloom.engine import ShutdownReason
from gridloom.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ProviderUnavailable,
    RateLimited,
)
from gridloom.run import HealthMonitor

# ---------------------------------------------------------------------- the monitor alone


class Clock:
    """A hand-driven clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def monitor(
    clock: Clock | None = None,
    *,
    error_rate: float | None = 0.5,
    window: int = 10,
    window_seconds: float = 60.0,
    min_outcomes: int = 4,
) -> HealthMonitor:
    return HealthMonitor(
        error_rate=error_rate,
        window=window,
        window_seconds=window_seconds,
        min_outcomes=min_outcomes,
        clock=clock or Clock(),
    )


def down() -> ConnectionFailed:
    return ConnectionFailed("connection refused", provider="p", model="judge-70b")


def tick(health: HealthMonitor, clock: Clock, *aliases: str) -> None:
    """A second passes: the seconds sent so far are complete, and judged."""
    clock.now = float(int(clock.now) + 1)
    for alias in aliases or ("judge",):
        health.check(alias)


def test_trips_when_the_failed_share_exceeds_the_rate() -> None:
    """3 failures of 4 exceed 0.5, judged once their second is complete; the reason counts
    them and names the error class."""
    clock = Clock()
    health = monitor(clock)
    for ok in (True, False, False, False):
        health.record("judge", ok, None if ok else down())
    assert health.tripped is None  # the second may still fill
    tick(health, clock)
    reason = health.tripped
    assert reason is not None
    assert (reason.alias, reason.failed, reason.total) == ("judge", 3, 4)
    assert reason.top_error == "ConnectionFailed"
    assert reason.window_seconds == 60.0


def test_a_share_equal_to_the_rate_does_not_trip() -> None:
    """The share must exceed the rate: half failed at error_rate 0.5 is not enough."""
    clock = Clock()
    health = monitor(clock)
    for ok in (True, False) * 5:
        health.record("judge", ok, None if ok else down())
    tick(health, clock)
    assert health.tripped is None
    assert health.recent("judge") == (5, 10)


def test_too_few_outcomes_are_not_judged() -> None:
    """Below min_outcomes even a 100 % failure rate does not trip."""
    clock = Clock()
    health = monitor(clock, min_outcomes=5)
    for _ in range(4):
        health.record("judge", False, down())
    tick(health, clock)
    assert health.tripped is None
    health.record("judge", False, down())
    tick(health, clock)
    assert health.tripped is not None


def test_min_outcomes_above_the_window_is_capped_at_the_window() -> None:
    """A window smaller than min_outcomes still trips once the window is full."""
    clock = Clock()
    health = monitor(clock, window=3, min_outcomes=10)
    for _ in range(3):
        health.record("judge", False, down())
    tick(health, clock)
    assert health.tripped is not None


def test_the_window_keeps_only_the_last_outcomes() -> None:
    """Old seconds leave the window as new requests arrive (bounded by count, a whole second
    at a time, oldest first; the newest two seconds always stay, so the last complete one is
    judged however many requests the one still filling holds)."""
    clock = Clock()
    health = monitor(clock, window=10, min_outcomes=10)
    for _ in range(5):
        health.record("judge", False, down())
    clock.now = 1.0
    for _ in range(10):
        health.record("judge", True)
    assert health.recent("judge") == (5, 15)  # the newest two seconds
    clock.now = 2.0
    for ok in [False] * 4 + [True] * 6:  # the first second is dropped whole
        health.record("judge", ok, None if ok else down())
    tick(health, clock)
    assert health.recent("judge") == (4, 20)
    assert health.tripped is None
    for _ in range(10):  # second 3: second 1 leaves, seconds 2 and 3 fail at 40 % and 100 %
        health.record("judge", False, down())
    assert health.recent("judge") == (14, 20)
    assert health.tripped is None  # second 3 is still filling
    tick(health, clock)
    assert health.tripped is not None
    assert (health.tripped.failed, health.tripped.total) == (14, 20)


def test_outcomes_older_than_the_window_seconds_do_not_count() -> None:
    """Failures spread thinly over time never gather enough recent outcomes to trip."""
    clock = Clock()
    health = monitor(clock, window=100, window_seconds=10.0, min_outcomes=4)
    for _ in range(20):
        health.record("judge", False, down())
        clock.now += 4.0  # at most 3 outcomes within any 10 s
        health.check("judge")
    assert health.tripped is None
    assert health.recent("judge") == (2, 2)  # at 80 s: those of 72 and 76 s
    for _ in range(2):
        health.record("judge", False, down())
    tick(health, clock)
    assert health.tripped is not None
    assert health.tripped.total == 4


def test_aliases_are_judged_apart() -> None:
    """One alias's successes do not dilute another's failures."""
    clock = Clock()
    health = monitor(clock)
    for _ in range(20):
        health.record("writer", True)
    for _ in range(3):
        health.record("judge", False, down())
    tick(health, clock, "judge", "writer")
    assert health.tripped is None
    health.record("judge", False, down())
    tick(health, clock, "judge", "writer")
    assert health.tripped is not None
    assert health.tripped.alias == "judge"


def test_trips_once_and_calls_back_once() -> None:
    """The first alias to cross the line is the reason; callbacks run once, late ones at once."""
    clock = Clock()
    health = monitor(clock)
    seen: list[ShutdownReason] = []
    health.on_trip(seen.append)
    for alias in ("judge", "writer"):
        for _ in range(6):
            health.record(alias, False, down())
    tick(health, clock, "judge", "writer")
    assert len(seen) == 1
    assert seen[0].alias == "judge"
    assert health.tripped is seen[0]
    late: list[ShutdownReason] = []
    health.on_trip(late.append)
    assert late == seen


def test_the_message_names_the_model_counts_error_and_what_next() -> None:
    """One line: alias, failed of total, the most common error, its latest message, kept row
    groups, --resume."""
    clock = Clock()
    health = monitor(clock, min_outcomes=5)
    health.register("judge", model="judge-70b", provider="p")
    health.record("judge", False, ProviderUnavailable("HTTP 500"))
    for _ in range(4):
        health.record("judge", False, down())
    tick(health, clock)
    reason = health.tripped
    assert reason is not None
    assert reason.model == "judge-70b"
    assert reason.top_error == "ConnectionFailed"
    assert reason.message == (
        "model 'judge' failed 5 of its last 5 requests (ConnectionFailed), a failure rate of"
        " 100% second by second over 1 s; the latest: p/judge-70b: connection refused;"
        " stopping the run — completed row groups are kept; resume it to generate the rest"
    )
    assert reason.example == "p/judge-70b: connection refused"
    assert "\n" not in reason.message
    assert reason.as_dict()["failed"] == 5


def test_a_refused_api_key_trips_at_once_and_names_the_variable() -> None:
    """A 401 trips on the first outcome, before min_outcomes; the variable is named."""
    health = monitor(min_outcomes=10)
    health.register("judge", model="judge-70b", provider="cloud", api_key_env="CLOUD_KEY")
    for _ in range(5):
        health.record("judge", True)
    health.record(
        "judge",
        False,
        AuthenticationFailed("HTTP 401: bad key", status=401, provider="cloud", model="judge-70b"),
    )
    reason = health.tripped
    assert reason is not None
    assert reason.top_error == "AuthenticationFailed"
    assert (reason.failed, reason.total) == (1, 6)
    assert "API key was refused" in reason.message
    assert "HTTP 401" in reason.message
    assert "CLOUD_KEY" in reason.message
    assert "'judge'" in reason.message


def test_a_refused_key_without_a_variable_says_so() -> None:
    """Without api_key_env the message points at the provider's missing setting."""
    health = monitor()
    health.register("judge", model="m", provider="cloud")
    health.record("judge", False, AuthenticationFailed("HTTP 403", status=403))
    assert health.tripped is not None
    assert "provider 'cloud' names no api_key_env" in health.tripped.message


def test_disabled_rate_still_stops_on_a_refused_key() -> None:
    """error_rate None: any number of failures is tolerated, but a refused key is not."""
    health = monitor(error_rate=None)
    for _ in range(50):
        health.record("judge", False, down())
    assert health.tripped is None
    health.record("judge", False, AuthenticationFailed("HTTP 401", status=401))
    assert health.tripped is not None
    assert health.tripped.top_error == "AuthenticationFailed"


def test_bad_settings_are_refused() -> None:
    """Out-of-range settings raise ValueError."""
    for name, value in (
        ("error_rate", 0.0),
        ("window", 0),
        ("window_seconds", 0.0),
        ("min_outcomes", 0),
    ):
        settings: dict[str, Any] = {name: value}
        with pytest.raises(ValueError, match=name):
            monitor(**settings)


# ---------------------------------------------------------------------- the handle

MODEL = ModelConfig(alias="w", provider="p", model="writer-8b")


class Client:
    """Answers, raises, or hangs, as told."""

    def __init__(self, outcome: ChatResponse | Exception | None):
        self.outcome = outcome

    async def chat(self, request: ChatRequest) -> ChatResponse:
        await trio.sleep(0 if self.outcome is not None else 1_000)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        assert self.outcome is not None
        return self.outcome

    async def embed(self, request: Any) -> Any:
        raise NotImplementedError


ASK = ChatRequest(model="writer-8b", messages=(Message(role="user", content="hi"),))


async def test_the_handle_reports_successes_and_model_errors() -> None:
    """A success is an ok outcome; a ModelError (a rate limit that got through too) a failure."""
    health = monitor(min_outcomes=10)
    ok = ModelHandle(
        MODEL, Client(ChatResponse(text="x", usage=Usage())), trio.CapacityLimiter(1), health=health
    )
    await ok.chat(ASK)
    limited = ModelHandle(
        MODEL, Client(RateLimited("HTTP 429", status=429)), trio.CapacityLimiter(1), health=health
    )
    with pytest.raises(RateLimited):
        await limited.chat(ASK)
    assert health.recent("w") == (1, 2)
    assert ok.health is health


async def test_a_cancelled_request_is_no_outcome(autojump_clock: Any) -> None:
    """Cancelling a request in flight tells the monitor nothing."""
    health = monitor()
    handle = ModelHandle(MODEL, Client(None), trio.CapacityLimiter(1), health=health)
    with trio.move_on_after(1.0):
        await handle.chat(ASK)
    assert health.recent("w") == (0, 0)
    assert handle.usage().requests == 1


async def test_a_cancelled_cell_sends_no_request() -> None:
    """A cell still running when its run is stopped (its scope cancelled between two of its
    checkpoints) sends nothing: the handle takes a free slot without a checkpoint and the wire
    transport writes a request before its first one, so the handle checks first. Before, a
    run stopped by a refused key could send one more request per runnable cell."""
    sent: list[ChatRequest] = []

    class Recording(Client):
        async def chat(self, request: ChatRequest) -> ChatResponse:
            sent.append(request)
            return await super().chat(request)

    health = monitor()
    handle = ModelHandle(
        MODEL,
        Recording(ChatResponse(text="x", usage=Usage())),
        trio.CapacityLimiter(1),
        health=health,
    )
    with trio.CancelScope() as scope:
        scope.cancel()
        await handle.chat(ASK)
    assert scope.cancelled_caught
    assert sent == []
    assert handle.usage().requests == 0
    assert health.recent("w") == (0, 0)
    await handle.chat(ASK)  # outside the cancelled scope it is sent
    assert sent == [ASK]


# ---------------------------------------------------------------------- runs


def llm_pipeline(
    provider: dict[str, Any],
    *,
    run: dict[str, Any] | None = None,
    max_parallel: int = 4,
) -> gl.PipelineConfig:
    """topic → text (model alias ``judge``)."""
    return structure_pipeline(
        {
            "providers": [provider],
            "models": [
                {
                    "alias": "judge",
                    "provider": provider["name"],
                    "model": "judge-70b",
                    "max_parallel_requests": max_parallel,
                }
            ],
            "columns": [
                {"name": "topic", "category": {"values": ["rivers", "deserts"]}},
                {"name": "text", "llm_text": {"model": "judge", "prompt": "On {{ topic }}."}},
            ],
            "run": {"seed": 4, "row_group_size": 25, **(run or {})},
        }
    )


def simulated(**model: Any) -> dict[str, Any]:
    return {
        "name": "sim",
        "type": "simulated",
        "simulation": {
            "default": {"latency": {"fixed": 0.2}, **model},
            "transport": "asgi",
        },
    }


async def test_a_dead_model_stops_the_run_within_its_window(
    tmp_path: Path, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every request answered 500: the run stops as soon as the failures were sent over
    shutdown_min_seconds (plus the answer that shows it), not after 400 rows."""
    config = llm_pipeline(simulated(error_500_rate=1.0))
    out = tmp_path / "o"
    started = trio.current_time()
    with caplog.at_level(logging.INFO, logger="gridloom"):
        result = await gl.acreate(config, num_records=400, output_dir=out)
    elapsed = trio.current_time() - started
    assert result.status == "stopped"
    assert result.stop_reason is not None
    assert "model 'judge'" in result.stop_reason
    assert "ProviderUnavailable" in result.stop_reason
    run = config.run
    assert run.shutdown_min_seconds <= elapsed <= run.shutdown_min_seconds + 0.2
    assert result.summary["models"]["judge"]["requests"] >= run.shutdown_min_outcomes
    assert result.summary["stop_reason"] == result.stop_reason
    assert result.summary["stop"]["alias"] == "judge"
    assert result.summary["stop"]["model"] == "judge-70b"
    assert "stop_reason=" in repr(result)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "stopped"
    assert meta["summary"]["stop_reason"] == result.stop_reason
    assert meta["summary"]["stop"]["top_error"] == "ProviderUnavailable"
    # Logged once, at INFO: the status and stop_reason carry it, and the CLI prints it once.
    stops = [r for r in caplog.records if "run stopped early" in r.getMessage()]
    assert [r.levelno for r in stops] == [logging.INFO]
    assert "model 'judge'" in stops[0].getMessage()


async def test_a_model_dying_mid_run_keeps_the_finished_row_groups(
    tmp_path: Path, autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row groups finished before the model died stay on disk; a resume generates the rest."""
    state = {"calls": 0, "dead": True}
    original = OpenAIClient.chat

    async def chat(self: OpenAIClient, request: ChatRequest) -> ChatResponse:
        state["calls"] += 1
        if state["dead"] and state["calls"] > 60:
            raise ConnectionFailed("connection refused", provider="sim", model=request.model)
        return await original(self, request)

    monkeypatch.setattr(OpenAIClient, "chat", chat)
    config = llm_pipeline(simulated(), run={"row_group_size": 10})
    out = tmp_path / "o"
    stopped = await gl.acreate(config, num_records=200, output_dir=out)
    assert stopped.status == "stopped"
    assert stopped.stop_reason is not None
    assert "ConnectionFailed" in stopped.stop_reason
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "stopped"
    groups = meta["row_groups"]
    assert 3 <= len(groups) < 20
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        f"part-{int(i):05d}.parquet" for i in sorted(groups, key=int)
    ]
    assert stopped.table.num_rows == stopped.num_rows
    assert stopped.num_rows + stopped.num_dropped == 10 * len(groups)
    # The row groups in flight at the stop are accounted for: not written, redone on resume.
    abandoned = meta["summary"]["invocation"]["rows_abandoned"]
    assert abandoned % 10 == 0
    assert 10 <= abandoned <= 10 * 4  # at most max_row_groups_in_flight groups

    state["dead"] = False
    resumed = await gl.acreate(config, num_records=200, output_dir=out, resume=True)
    assert resumed.status == "complete"
    assert resumed.stop_reason is None
    assert resumed.num_rows + resumed.num_dropped == 200
    assert resumed.num_rows >= stopped.num_rows + 10 * (20 - len(groups))
    assert json.loads((out / "metadata.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("fault", ["error_503_rate", "error_500_rate"])
async def test_a_healthy_model_with_some_errors_never_trips(
    fault: str, autojump_clock: Any
) -> None:
    """10 % injected errors, default settings: the run completes. (503s carry Retry-After and
    are retried beneath the handle; 500s reach it as failures, too few to stop the run.)"""
    config = llm_pipeline(simulated(**{fault: 0.1}), max_parallel=8)
    result = await gl.apreview(config, num_records=400)
    assert result.status == "complete"
    assert result.stop_reason is None
    assert "stop" not in result.summary
    if fault == "error_500_rate":
        assert result.summary["models"]["judge"]["failed"] > 0


def closed_port() -> int:
    """A localhost port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_endpoint_stops_the_run_within_seconds(tmp_path: Path) -> None:
    """Real sockets, nothing listening: refused connections stop the run in a few seconds
    (shutdown_min_seconds lowered to 1 s to keep the test short)."""
    provider = {"name": "down", "endpoint": f"http://127.0.0.1:{closed_port()}/v1"}
    config = llm_pipeline(provider, max_parallel=10, run={"shutdown_min_seconds": 1.0})
    started = trio.current_time()
    result = await gl.acreate(config, num_records=500, output_dir=tmp_path / "o")
    assert trio.current_time() - started < 15.0
    assert result.status == "stopped"
    assert result.stop_reason is not None
    assert "model 'judge'" in result.stop_reason
    assert "ConnectionFailed" in result.stop_reason
    assert result.num_rows == 0


async def read_request(
    stream: trio.abc.ReceiveStream, buffer: bytes = b""
) -> tuple[bytes, bytes, bytes] | None:
    """Read one HTTP/1.1 request from ``stream`` (``buffer``: bytes already received): its
    head, its body (by content-length) and what followed it; ``None`` if the peer closed
    first."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        rest += chunk
    return head, rest[:length], rest[length:]


@asynccontextmanager
async def serving(
    serve: Callable[[trio.SocketStream], Awaitable[None]],
) -> AsyncIterator[str]:
    """Serve each connection to a port on 127.0.0.1 with ``serve``; yields the base URL
    (``http://127.0.0.1:<port>/v1``)."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}/v1"
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def refusing_endpoint(
    status: bytes = b"401 Unauthorized",
    error: dict[str, Any] | None = None,
    *,
    reply: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An HTTP server on 127.0.0.1 answering every request ``status`` with ``{"error":
    error}`` — by default 401, as OpenAI does to a bad key — or with ``reply`` when given.

    Yields its base URL and the raw requests it received (head, blank line, body).
    """
    received: list[bytes] = []
    if error is None:
        error = {"message": "Incorrect API key provided", "code": "invalid_api_key"}
    body = json.dumps({"error": error} if reply is None else reply).encode()
    answer = (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, len(body), body)
    )

    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                request = await read_request(stream)
                if request is None:
                    return
                head, body, _ = request
                received.append(head + b"\r\n\r\n" + body)
                await stream.send_all(answer)
            except trio.BrokenResourceError:
                return

    async with serving(serve) as url:
        yield url, received


async def test_a_refused_api_key_stops_the_run_at_the_first_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """401 to the first requests: the run stops at once, naming the key's variable, not the key."""
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("GRIDLOOM_TEST_SHUTDOWN_KEY", secret)
    async with refusing_endpoint() as (url, received):
        provider = {"name": "cloud", "endpoint": url, "api_key_env": "GRIDLOOM_TEST_SHUTDOWN_KEY"}
        config = llm_pipeline(provider, max_parallel=4)
        started = trio.current_time()
        result = await gl.acreate(config, num_records=300, output_dir=tmp_path / "o")
        elapsed = trio.current_time() - started
    assert elapsed < 10.0
    assert result.status == "stopped"
    assert 1 <= len(received) <= 4  # only the requests already in flight
    assert all(b"authorization: Bearer " + secret.encode() in r for r in received)
    assert result.stop_reason is not None
    assert "API key was refused" in result.stop_reason
    assert "GRIDLOOM_TEST_SHUTDOWN_KEY" in result.stop_reason
    assert secret not in result.stop_reason
    assert secret not in (tmp_path / "o" / "metadata.json").read_text()
    assert result.summary["stop"]["top_error"] == "AuthenticationFailed"


async def test_a_preview_is_stopped_too(autojump_clock: Any) -> None:
    """apreview returns a stopped result the same way (nothing is written)."""
    config = llm_pipeline(
        simulated(error_500_rate=1.0),
        run={"shutdown_min_outcomes": 3, "shutdown_min_seconds": 0.0},
    )
    started = trio.current_time()
    result = await gl.apreview(config, num_records=100)
    assert result.status == "stopped"
    # Judged at the first outcome after its first second of sends is complete.
    assert 1.0 <= trio.current_time() - started < 2.0
    assert result.num_rows == 0
