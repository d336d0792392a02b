"""The ``validate`` column kind over sockets: the ``http`` validator against a real local
server (retries, an oversize answer), a pipeline whose model-written code is linted beside the
model column against the simulated endpoint, and properties of the python and regex checkers
over arbitrary text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.kinds.validate import VERDICT_TYPE, ValidateColumn, verdict
from gridloom.kinds.validate.http import HttpCheck, HttpChecker
from gridloom.kinds.validate.python import PythonCheck, PythonChecker, find_ruff
from gridloom.kinds.validate.regex import RegexCheck, RegexChecker
from tests.test_validators import VALUES, bad, ok, pipeline, verdicts

# --------------------------------------------------------------------------- http


async def serve(
    answer: Callable[[dict[str, Any]], tuple[int, bytes]],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A minimal HTTP/1.1 server on 127.0.0.1: one JSON request per connection."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        length = int(found.group(1)) if found else 0
        while len(body) < length:
            body += await stream.receive_some(65536)
        status, payload = answer(json.loads(body))
        reply = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        if status == 429:
            reply += "Retry-After: 3\r\n"
        reply += f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        await stream.send_all(reply.encode() + payload)
        await stream.aclose()

    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def test_http_validator_posts_and_retries(autojump_clock: Any) -> None:
    """Each value is POSTed with its column and row; a 500 is tried again; the answer is the
    verdict."""
    seen: list[dict[str, Any]] = []

    def answer(body: dict[str, Any]) -> tuple[int, bytes]:
        seen.append(body)
        if body["value"] == "flaky" and sum(b["value"] == "flaky" for b in seen) == 1:
            return 500, b"{}"
        valid = body["value"] != "bad"
        return 200, json.dumps({"is_valid": valid, "messages": [] if valid else ["nope"]}).encode()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, answer)
        VALUES[:] = ["good", "bad", "flaky"]
        check = {"kind": "http", "target": "value", "url": f"http://127.0.0.1:{port}/check"}
        result = await gl.apreview(
            pipeline(VALUES, {"name": "v", "validate": check}), num_records=3
        )
        nursery.cancel_scope.cancel()
    assert verdicts(result) == [ok(), bad("nope"), ok()]
    assert sorted((b["value"], b["column"], b["row_id"]) for b in seen) == [
        ("bad", "value", 1),
        ("flaky", "value", 2),
        ("flaky", "value", 2),
        ("good", "value", 0),
    ]


async def test_http_validator_backs_off_on_429_through_an_adaptive_limiter(
    autojump_clock: Any,
) -> None:
    """A 429 with Retry-After is tried again no sooner than it asks, and the validator's
    adaptive limiter records the refusal (its limit cut, admission held for the Retry-After)
    like a model's throttle."""
    times: list[tuple[str, float]] = []

    def answer(body: dict[str, Any]) -> tuple[int, bytes]:
        times.append((body["value"], trio.current_time()))
        if len(times) == 1:
            return 429, b"{}"
        return 200, json.dumps({"is_valid": True, "messages": []}).encode()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, answer)
        check = HttpCheck(url=f"http://127.0.0.1:{port}/", max_parallel=4)
        column = ValidateColumn(name="v", target="value", check=check)
        checker = HttpChecker(check, column=column, api_key=None)
        ctx = gl.CellContext(row={"value": "once"}, row_id=0, column="v", seed=0)
        found = await checker.acheck("once", ctx)
        nursery.cancel_scope.cancel()
    assert found == {"is_valid": True, "messages": []}
    stats = checker.limiter.statistics()
    assert (stats.rate_limited, stats.cuts, stats.succeeded, stats.in_flight) == (1, 1, 1, 0)
    assert stats.limit < 4  # cut by the refusal
    assert stats.blocked_until == 3.0  # held for its Retry-After
    (_, first), (_, second) = times
    assert second - first >= 3.0
    assert second - first < 3.0 + 30.0  # the backoff cap: not a much longer wait


async def test_http_validator_refuses_an_oversize_answer(autojump_clock: Any) -> None:
    """An answer over max_response_bytes fails the cell, reason recorded; so does a service
    that keeps failing."""

    def answer(body: dict[str, Any]) -> tuple[int, bytes]:
        if body["value"] == "down":
            return 503, b"{}"
        return 200, json.dumps({"is_valid": True, "messages": ["x" * 500]}).encode()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, answer)
        VALUES[:] = ["big", "down"]
        check = {
            "kind": "http",
            "target": "value",
            "url": f"http://127.0.0.1:{port}/",
            "max_response_bytes": 100,
            "max_attempts": 2,
        }
        result = await gl.apreview(
            pipeline(VALUES, {"name": "v", "validate": check}), num_records=2
        )
        nursery.cancel_scope.cancel()
    assert result.num_rows == 0
    messages = sorted(d["message"] for d in result.dropped.to_pylist())
    assert messages == [
        "column 'v': the validation service failed 2 times; last: HTTP 503",
        "column 'v': the validation service's answer is larger than max_response_bytes (100)",
    ]


# --------------------------------------------------------------------------- end to end


async def test_llm_code_checked_over_sockets(tmp_path: Path, autojump_clock: Any) -> None:
    """Code from the simulated endpoint is linted beside the model column; the verdict is a
    struct in the parquet files and templates read it."""
    config = structure_pipeline(
        {
            "providers": [{"name": "sim", "type": "simulated"}],
            "models": [{"alias": "w", "provider": "sim", "model": "coder-8b"}],
            "columns": [
                {"name": "task", "category": {"values": ["sort a list", "parse a date"]}},
                {
                    "name": "code",
                    "llm_code": {"model": "w", "prompt": "Write Python to {{ task }}."},
                },
                {
                    "name": "check",
                    "validate": {"kind": "python", "target": "code", "rules": ["F", "E9"]},
                },
                {"name": "ok", "expression": {"template": "{{ check.is_valid }}", "dtype": "bool"}},
            ],
            "run": {"seed": 2, "row_group_size": 5, "progress": "off"},
        }
    )
    result = await gl.acreate(config, num_records=10, output_dir=tmp_path / "o")
    assert result.num_rows == 10
    assert result.columns["check"] == gl.ColumnCounts(done=10, failed=0, dropped=0)
    table = pq.read_table(tmp_path / "o" / "data")
    assert table.schema.field("check").type == VERDICT_TYPE
    for code, found, flag in zip(
        table.column("code").to_pylist(),
        table.column("check").to_pylist(),
        table.column("ok").to_pylist(),
        strict=True,
    ):
        checker = PythonChecker(PythonCheck(rules=("F", "E9")), column="check", ruff=find_ruff())
        expected = checker.check(code, None)  # type: ignore[arg-type]
        assert found == expected
        assert flag is found["is_valid"]
    assert pa.types.is_struct(result.table.schema.field("check").type)


# --------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_python_checker_is_total(code: str) -> None:
    """Any text gives a well-formed verdict, never an exception."""
    checker = PythonChecker(PythonCheck(), column="v", ruff=find_ruff())
    found = verdict(checker.check(code, None), column="v")  # type: ignore[arg-type]
    assert isinstance(found["is_valid"], bool)
    assert all(isinstance(m, str) for m in found["messages"])
    assert found["is_valid"] is (not found["messages"])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["full", "search"]), st.booleans())
def test_regex_checker_is_total(text: str, match: str, ignore_case: bool) -> None:
    """Any text gives a well-formed verdict that agrees with re."""
    check = RegexCheck(pattern=r"\w+\s?", match=match, ignore_case=ignore_case)  # type: ignore[arg-type]
    found = verdict(RegexChecker(check).check(text, None), column="v")  # type: ignore[arg-type]
    regex = check.compiled()
    expected = (regex.fullmatch(text) if match == "full" else regex.search(text)) is not None
    assert found["is_valid"] is expected
    assert len(found["messages"]) == (0 if expected else 1)
