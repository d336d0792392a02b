"""How a run ends when an endpoint keeps refusing or failing: a spent quota stops it at once,
a model refused for capacity with no success for ``shutdown_refused_seconds`` stops it, a
stop reason quotes the provider's latest message, and ``check-models`` gives up soon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import gridloom as gl
from gridloom.clients import error_from_response
from gridloom.config import RunConfig
from gridloom.errors import (
    BadRequest,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
)
from gridloom.run import HealthMonitor

from .test_faults import BUDGET, ROWS, pipeline
from .test_shutdown import refusing_endpoint

QUOTA = {
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "type": "insufficient_quota",
    "param": None,
    "code": "insufficient_quota",
}


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers or {})


# ---------------------------------------------------------------- a spent quota is no rate limit


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, {"error": QUOTA}),
        (429, {"error": {"message": "no", "type": "insufficient_quota"}}),
        (429, {"error": {"message": "Your account is not active", "code": "billing_not_active"}}),
        (400, {"error": {"message": "hard limit", "code": "billing_hard_limit_reached"}}),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "Your credit balance is too low to access the Anthropic API.",
                },
            },
        ),
        (402, {"error": {"message": "Insufficient Balance"}}),
    ],
)
def test_a_spent_quota_is_final(status: int, body: Any) -> None:
    """A 429 (or 400) whose error code says the quota or credit is spent, and any 402, is
    QuotaExhausted — final, not a rate limit — with the provider's message."""
    error = error_from_response(reply(status, body, {"retry-after": "1"}), provider="p", model="m")
    assert type(error) is QuotaExhausted
    assert isinstance(error, BadRequest)
    assert not error.retryable
    assert error.status == status
    assert body["error"]["message"] in str(error)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "Rate limit reached for requests", "code": "rate_limit_exceeded"}},
        {"error": {"message": "You exceeded your current quota"}},  # no code: a rate limit
        "slow down",
    ],
)
def test_an_ordinary_429_stays_a_rate_limit(body: Any) -> None:
    """A 429 that does not name a spent quota is still RateLimited, Retry-After kept."""
    error = error_from_response(reply(429, body, {"retry-after": "3"}), provider="p", model="m")
    assert type(error) is RateLimited
    assert error.retry_after == 3.0


def test_a_spent_quota_message_is_redacted() -> None:
    """A key the provider echoes in its quota message is masked."""
    secret = "sk-quota-0123456789abcdef"
    body = {"error": {**QUOTA, "message": f"quota spent for key {secret}"}}
    error = error_from_response(
        reply(429, body), provider="p", model="m", secrets=[gl.clients.Secret(secret)]
    )
    assert type(error) is QuotaExhausted
    assert secret[:8] not in str(error)


# ---------------------------------------------------------------------- the monitor alone


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def monitor(clock: Clock, refused_seconds: float | None = 60.0) -> HealthMonitor:
    return HealthMonitor(
        error_rate=None,
        window=10,
        window_seconds=60.0,
        min_outcomes=4,
        clock=clock,
        refused_seconds=refused_seconds,
    )


def busy(n: int = 0) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"HTTP 503 Service Unavailable: overloaded #{n}",
        status=503,
        retry_after=1.0,
        provider="p",
        model="writer-8b",
    )


def test_a_spent_quota_trips_at_once() -> None:
    """One QuotaExhausted trips the monitor, even with error_rate None; the reason quotes the
    provider's message and names the key's variable, never a key."""
    health = monitor(Clock())
    health.register("writer", model="writer-8b", provider="p", api_key_env="P_KEY")
    error = QuotaExhausted(
        f"HTTP 429 Too Many Requests: {QUOTA['message']}", status=429, provider="p", model="m"
    )
    health.record("writer", False, error)
    reason = health.tripped
    assert reason is not None
    assert reason.alias == "writer"
    assert reason.top_error == "QuotaExhausted"
    assert reason.example == f"p/m: HTTP 429 Too Many Requests: {QUOTA['message']}"
    assert reason.message == (
        "model 'writer': the provider says the account's quota or credit is spent, which"
        f" waiting does not fix (p/m: HTTP 429 Too Many Requests: {QUOTA['message']}); check"
        " the plan and billing of the account whose key is in the environment variable"
        " P_KEY; stopping the run — completed row groups are kept; resume it to generate the"
        " rest"
    )


def test_refusals_with_no_success_for_refused_seconds_trip() -> None:
    """Refusals every second from t=10: nothing before the streak is 60 s old; the refusal at
    t=70 trips, counting 61 refusals and quoting the latest."""
    clock = Clock()
    health = monitor(clock)
    health.register("writer", model="writer-8b", provider="p")
    for second in range(10, 70):
        clock.now = float(second)
        health.refused("writer", busy(second))
        assert health.tripped is None
    clock.now = 70.0
    health.refused("writer", busy(70))
    reason = health.tripped
    assert reason is not None
    assert (reason.alias, reason.model, reason.failed, reason.total) == (
        "writer",
        "writer-8b",
        61,
        61,
    )
    assert reason.top_error == "ProviderUnavailable"
    assert reason.window_seconds == 60.0
    assert reason.example == "p/writer-8b: HTTP 503 Service Unavailable: overloaded #70"
    assert reason.message == (
        "model 'writer': the provider refused all of its requests for capacity for 60 s,"
        " with no success (61 refusals (ProviderUnavailable)); the latest: p/writer-8b: HTTP"
        " 503 Service Unavailable: overloaded #70; run.shutdown_refused_seconds sets this"
        " check; stopping the run — completed row groups are kept; resume it to generate the"
        " rest"
    )


def test_a_success_ends_the_streak() -> None:
    """Ordinary rate limiting — refusals, with a success now and then — never trips: each
    success starts the count again; failures of other kinds do not."""
    clock = Clock()
    health = monitor(clock)
    for second in range(600):
        clock.now = float(second)
        if second % 50 == 49:
            health.record("writer", True)
        else:
            health.refused("writer", busy())
    assert health.tripped is None
    for second in range(600, 659):
        clock.now = float(second)
        health.refused("writer", busy())
        health.record("writer", False, busy())
    assert health.tripped is None
    clock.now = 660.0
    health.refused("writer", busy())
    assert health.tripped is not None


def test_refused_seconds_none_never_trips() -> None:
    """With the rule off (shutdown_refused_seconds 0), hours of refusals trip nothing."""
    clock = Clock()
    health = monitor(clock, refused_seconds=None)
    for second in range(0, 36_000, 10):
        clock.now = float(second)
        health.refused("writer", busy())
    assert health.tripped is None


def test_the_setting_reaches_the_monitor() -> None:
    """shutdown_refused_seconds: 600 by default; 0 turns the rule off."""
    assert RunConfig().shutdown_refused_seconds == 600.0
    on = HealthMonitor.from_run_config(RunConfig(), clock=Clock())
    assert on.refused_seconds == 600.0
    off = HealthMonitor.from_run_config(RunConfig(shutdown_refused_seconds=0), clock=Clock())
    assert off.refused_seconds is None
    with pytest.raises(ValueError, match="shutdown_refused_seconds"):
        RunConfig(shutdown_refused_seconds=-1)


# ---------------------------------------------------------------------- whole runs


async def test_a_model_refused_for_capacity_stops_the_run(autojump_clock: Any) -> None:
    """Every writer request answered 503 with Retry-After (a capacity refusal, retried behind
    the throttle): with shutdown_refused_seconds 60 the run stops 60 s after the first
    refusal — not after hours of cell attempts — naming the model, the refusals and the
    provider's message."""
    config = pipeline(
        writer={"error_503_rate": 1.0, "retry_after": 1.0},
        run={**BUDGET, "shutdown_refused_seconds": 60.0, "shutdown_error_rate": None},
    )
    started = trio.current_time()
    result = await gl.apreview(config, num_records=ROWS)
    elapsed = trio.current_time() - started
    assert result.status == "stopped"
    assert 60.0 <= elapsed <= 62.0
    stop = result.summary["stop"]
    assert stop["alias"] == "writer"
    assert stop["top_error"] == "ProviderUnavailable"
    assert stop["failed"] > 0
    assert "the simulated model is overloaded" in stop["example"]
    assert result.stop_reason is not None
    assert result.stop_reason.startswith(
        "model 'writer': the provider refused all of its requests for capacity for 60 s"
    )
    assert f"({stop['failed']} refusals (ProviderUnavailable))" in result.stop_reason
    assert "the simulated model is overloaded" in result.stop_reason


async def test_a_spent_quota_stops_the_run_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint answering every request 429 insufficient_quota (real sockets): the run
    stops at the first answer (no throttle retries), exit status stopped, and the provider's
    message is in the reason and in metadata.json — the key never is."""
    secret = "sk-quota-run-0123456789abcdef"
    monkeypatch.setenv("GRIDLOOM_TEST_QUOTA_KEY", secret)
    async with refusing_endpoint(b"429 Too Many Requests", QUOTA) as (url, received):
        cloud = {"name": "cloud", "endpoint": url, "api_key_env": "GRIDLOOM_TEST_QUOTA_KEY"}
        config = pipeline(
            providers=[cloud],
            models={"writer": {"provider": "cloud", "max_parallel_requests": 2}},
            run=BUDGET,
        )
        with trio.fail_after(30):
            result = await gl.acreate(config, num_records=20, output_dir=tmp_path / "out")
    assert result.status == "stopped"
    assert len(received) <= 2  # the requests in flight when the first answer came
    assert result.stop_reason is not None
    assert "model 'writer'" in result.stop_reason
    assert "quota or credit is spent" in result.stop_reason
    assert QUOTA["message"] in result.stop_reason
    assert "GRIDLOOM_TEST_QUOTA_KEY" in result.stop_reason
    assert result.summary["stop"]["top_error"] == "QuotaExhausted"
    assert result.summary["models"]["writer"]["rate_limited"] == 0
    metadata = (tmp_path / "out" / "metadata.json").read_text(encoding="utf-8")
    assert QUOTA["message"] in metadata
    assert secret not in metadata
    assert secret not in result.stop_reason


# ---------------------------------------------------------------------- check-models


async def test_check_models_gives_up_soon_on_refusals(autojump_clock: Any) -> None:
    """check-models against a writer refusing every request (503 with Retry-After: 1): a few
    tries, seconds not minutes, and the provider's message in the error."""
    config = pipeline(writer={"error_503_rate": 1.0, "retry_after": 1.0})
    started = trio.current_time()
    results = await gl.acheck_models(config)
    elapsed = trio.current_time() - started
    writer = next(row for row in results if row["alias"] == "writer")
    assert writer["ok"] is False
    assert "ProviderUnavailable" in writer["error"]
    assert "the simulated model is overloaded" in writer["error"]
    assert next(row for row in results if row["alias"] == "editor")["ok"] is True
    assert elapsed < 30.0


async def test_check_models_does_not_wait_out_a_long_retry_after(autojump_clock: Any) -> None:
    """A refusal asking to wait an hour ends the probe at once."""
    config = pipeline(writer={"error_503_rate": 1.0, "retry_after": 3600.0})
    started = trio.current_time()
    results = await gl.acheck_models(config)
    assert trio.current_time() - started < 30.0
    writer = next(row for row in results if row["alias"] == "writer")
    assert writer["ok"] is False
    assert "the simulated model is overloaded" in writer["error"]


async def _check_writer(
    status: bytes, error: dict[str, Any] | None = None, *, reply: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[bytes]]:
    """check-models with the writer on an endpoint answering every request ``status`` with
    ``error`` (or ``reply``): the writer's row, and the requests the endpoint received."""
    async with refusing_endpoint(status, error, reply=reply) as (url, received):
        config = pipeline(
            providers=[{"name": "cloud", "endpoint": url}],
            models={"writer": {"provider": "cloud"}},
        )
        with trio.fail_after(30):
            results = await gl.acheck_models(config)
    return next(row for row in results if row["alias"] == "writer"), received


async def test_check_models_reports_a_spent_quota_at_once() -> None:
    """A 429 insufficient_quota is reported as QuotaExhausted with the provider's message,
    after one request."""
    writer, received = await _check_writer(b"429 Too Many Requests", QUOTA)
    assert writer["ok"] is False
    assert writer["error"].startswith("QuotaExhausted: ")
    assert QUOTA["message"] in writer["error"]
    assert len(received) == 1


def _completion(content: str | None, finish_reason: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 64, "total_tokens": 69},
    }


@pytest.mark.parametrize(
    ("content", "finish_reason", "ok"),
    [
        (None, "length", True),  # a reasoning model: all its tokens went on reasoning
        ("", "length", True),
        ("OK", "stop", True),
        ("", "content_filter", False),
        ("", "stop", False),
    ],
)
async def test_check_models_passes_a_model_that_runs_out_of_tokens_reasoning(
    content: str | None, finish_reason: str, ok: bool
) -> None:
    """check-models sends no max_tokens (OpenAI's reasoning models refuse the parameter, and
    a small cap leaves them no token to answer with); a model that answers with no text for
    lack of tokens is reachable and serving, so it passes with a note, while a filtered or
    empty answer still fails."""
    writer, received = await _check_writer(b"200 OK", reply=_completion(content, finish_reason))
    assert writer["ok"] is ok, writer
    assert ("note" in writer) is (ok and finish_reason == "length")
    if "note" in writer:
        assert "max_tokens" in writer["note"]
    for request in received:
        body = json.loads(request.partition(b"\r\n\r\n")[2])
        assert "max_tokens" not in body
        assert "max_completion_tokens" not in body
