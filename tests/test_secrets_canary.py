"""Canaries: an API key and configured header values never reach a message, a file or a log,
even when a server echoes the request back, and wherever an excerpt is cut."""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path
from typing import Any

import httpx
import hypothesis.strategies as st
import pyarrow.parquet as pq
import pytest
import trio
from hypothesis import given

import gridloom as gl
from gridloom.clients._errors import EXCERPT_CHARS, error_from_response
from gridloom.clients._secret import Secret, redact
from gridloom.config import structure_pipeline

KEY_ALPHABET = string.ascii_uppercase + string.digits
FILLER = st.text(alphabet="abcdef ghij\n{}:,", max_size=2 * EXCERPT_CHARS)


def leaks(text: str, secret: str, size: int = 6) -> list[str]:
    """Substrings of ``secret`` of ``size`` characters found in ``text``."""
    return [
        secret[i : i + size] for i in range(len(secret) - size + 1) if secret[i : i + size] in text
    ]


@given(
    key=st.text(alphabet=KEY_ALPHABET, min_size=16, max_size=80),
    before=FILLER,
    after=FILLER,
    as_json=st.booleans(),
)
def test_an_echoed_key_never_shows_in_an_error_message(
    key: str, before: str, after: str, as_json: bool
) -> None:
    """Wherever the key stands in an echoed error body — across the excerpt's cut included —
    no part of it is in the message (it was redacted after the cut, leaking a prefix)."""
    body = before + f"Bearer {key}" + after
    text = json.dumps({"error": {"message": body}}) if as_json else body
    response = httpx.Response(400, text=text, request=httpx.Request("POST", "http://x/v1"))
    error = error_from_response(response, provider="p", model="m", secrets=[Secret(key)])
    assert leaks(str(error), key) == []


@given(
    key=st.text(alphabet=KEY_ALPHABET, min_size=8, max_size=40),
    cut=st.integers(8, 40),
    before=FILLER,
)
def test_a_partial_echo_of_a_secret_is_masked(key: str, cut: int, before: str) -> None:
    """A server that cut the key short still does not leak what it echoed of it."""
    partial = key[: min(cut, len(key))]
    assert leaks(redact(before + partial + " end", [Secret(key)]), key, 8) == []


# ---------------------------------------------------------------------- over sockets


async def echo_server(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Answers every request 400 with the request itself (headers and body) in its error
    message, as some gateways do."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(rest) < length:
            rest += await stream.receive_some(65536)
        echoed = (head + b"\n\n" + rest).decode("utf-8", "replace")
        body = json.dumps({"error": {"message": "you sent: " + echoed}}).encode()
        await stream.send_all(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        await stream.aclose()

    await trio.serve_listeners(handle, listeners)


async def test_canaries_never_reach_files_messages_or_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An API key and a header value, both echoed back by the server in every answer: the
    drop messages, the summary, metadata.json, config.yaml, the trace and the logs hold no part
    of either (the header value used to be echoed verbatim in drop messages)."""
    key = "SK" + "7Q4Z" * 10
    token = "HDR" + "9XW3" * 10
    monkeypatch.setenv("GRIDLOOM_CANARY_KEY", key)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(echo_server)
        config = structure_pipeline(
            {
                "providers": [
                    {
                        "name": "gw",
                        "endpoint": f"http://127.0.0.1:{port}/v1",
                        "api_key_env": "GRIDLOOM_CANARY_KEY",
                        "headers": {"X-Gateway-Token": token},
                    }
                ],
                "models": [{"alias": "m", "provider": "gw", "model": "m1"}],
                "columns": [
                    {"name": "t", "category": {"values": ["a", "b"]}},
                    {"name": "x", "llm_text": {"model": "m", "prompt": "On {{ t }}"}},
                ],
                "run": {"seed": 1, "trace": True, "progress": "off", "allow_drops": 1.0},
            }
        )
        with caplog.at_level(logging.DEBUG):
            result = await gl.acreate(config, num_records=6, output_dir=tmp_path / "o")
        nursery.cancel_scope.cancel()
    assert result.num_dropped > 0
    messages = result.dropped.column("message").to_pylist()
    assert any("you sent" in m for m in messages)  # the echo reached the messages
    files = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    texts = [
        *messages,
        json.dumps(result.summary),
        repr(result),
        caplog.text,
        # Parquet pages are compressed: read them back rather than search their bytes.
        *(
            json.dumps(pq.read_table(p).to_pylist(), default=str)
            for p in files
            if p.suffix == ".parquet"
        ),
        *(p.read_text("utf-8", "replace") for p in files if p.suffix != ".parquet"),
    ]
    assert len(files) >= 4
    for text in texts:
        assert leaks(text, key) == []
        assert leaks(text, token) == []
