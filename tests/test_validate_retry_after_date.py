"""The ``http`` validator reads ``Retry-After`` as the model clients do
(:func:`gridloom.clients.parse_retry_after`): delay-seconds or an HTTP date, the date measured
from the reply's own ``Date`` header (the server's clock, however far from ours). Before, it
read seconds only, and a date was no Retry-After at all."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.kinds.validate import ValidateColumn
from gridloom.kinds.validate.http import HttpCheck, HttpChecker
from gridloom.throttle._holds import MAX_SERVER_HOLD_SECONDS

#: The server's clock: years away from the test machine's.
SERVER_NOW = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=dt.UTC)


async def _serve(
    delay: int, times: list[float], *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A one-request-per-connection HTTP server on 127.0.0.1: the first request is refused
    (429) with a Retry-After date ``delay`` seconds after its Date header; the rest pass."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        times.append(trio.current_time())
        if len(times) == 1:
            until = SERVER_NOW + dt.timedelta(seconds=delay)
            status, payload = "429 Too Many Requests", b"{}"
            extra = (
                f"Date: {email.utils.format_datetime(SERVER_NOW, usegmt=True)}\r\n"
                f"Retry-After: {email.utils.format_datetime(until, usegmt=True)}\r\n"
            )
        else:
            status, extra = "200 OK", ""
            payload = json.dumps({"is_valid": True, "messages": []}).encode()
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        await stream.send_all(head.encode() + payload)
        await stream.aclose()

    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


@settings(max_examples=15, deadline=None)
@given(delay=st.integers(1, 600))
def test_a_retry_after_date_holds_the_validator_until_then(delay: int) -> None:
    """A 429 whose Retry-After is an HTTP date ``delay`` seconds after its Date: the
    validator's limiter holds admission for exactly ``delay`` seconds (virtual clock; at most
    the limiter's MAX_SERVER_HOLD_SECONDS), and the request is tried again no sooner than the
    wait the policy allows for it."""
    times: list[float] = []

    async def main() -> tuple[object, HttpChecker, Any]:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_serve, delay, times)
            check = HttpCheck(url=f"http://127.0.0.1:{port}/", max_parallel=4)
            column = ValidateColumn(name="v", target="value", check=check)
            checker = HttpChecker(check, column=column, api_key=None)
            ctx = gl.CellContext(row={"value": "once"}, row_id=0, column="v", seed=0)
            found = await checker.acheck("once", ctx)
            nursery.cancel_scope.cancel()
        return found, checker, checker.limiter.statistics()

    found, checker, stats = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert found == {"is_valid": True, "messages": []}
    assert (stats.rate_limited, stats.succeeded) == (1, 1)
    # the date, measured from the reply's Date
    assert stats.blocked_until == min(float(delay), MAX_SERVER_HOLD_SECONDS)
    first, second = times
    assert second - first >= min(float(delay), checker.policy.cap)
