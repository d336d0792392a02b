"""``max_tokens_param``: OpenAI's reasoning models take ``max_completion_tokens`` and refuse
``max_tokens`` with HTTP 400; a model says which field its requests carry the limit in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.clients import ChatRequest, Message, error_from_response
from gridloom.clients._anthropic import AnthropicClient
from gridloom.clients._openai import OpenAIClient
from gridloom.config import ModelConfig, load_config
from gridloom.errors import BadRequest, ConfigError

from .test_shutdown import read_request, serving

#: OpenAI's answer to ``max_tokens`` sent to a reasoning model.
REFUSAL = {
    "error": {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model."
        " Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }
}


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "model": "o-test",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def _http(status: bytes, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        len(data),
        data,
    )


@asynccontextmanager
async def reasoning_endpoint() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server on 127.0.0.1 that behaves like OpenAI's reasoning models: a request
    carrying ``max_tokens`` gets 400 (OpenAI's message), any other an answer. Yields its base
    URL and the JSON bodies it received."""
    bodies: list[dict[str, Any]] = []

    async def serve(stream: trio.SocketStream) -> None:
        buffer = b""
        try:
            while (request := await read_request(stream, buffer)) is not None:
                _head, raw, buffer = request
                body = json.loads(raw)
                bodies.append(body)
                if "max_tokens" in body:
                    await stream.send_all(_http(b"400 Bad Request", REFUSAL))
                else:
                    await stream.send_all(_http(b"200 OK", _completion("A short answer.")))
        except trio.BrokenResourceError:
            return

    async with serving(serve) as url:
        yield url, bodies


def pipeline(url: str, **model: Any) -> dict[str, Any]:
    return {
        "providers": [{"name": "cloud", "endpoint": url}],
        "models": [{"alias": "o", "provider": "cloud", "model": "o-test", **model}],
        "columns": [
            {"name": "topic", "category": {"values": ["rivers", "stone walls"]}},
            {"name": "text", "llm_text": {"model": "o", "prompt": "On {{ topic }}."}},
        ],
    }


async def test_a_reasoning_model_runs_with_max_completion_tokens(tmp_path: Path) -> None:
    """With ``max_tokens_param: max_completion_tokens`` every request carries the limit in
    that field, never in ``max_tokens``, and the run completes against a server that refuses
    ``max_tokens``."""
    async with reasoning_endpoint() as (url, bodies):
        config = pipeline(url, max_tokens=300, max_tokens_param="max_completion_tokens")
        with trio.fail_after(60):
            result = await gl.acreate(config, num_records=12, output_dir=tmp_path / "o")
    assert result.status == "complete", result.stop_reason
    assert result.num_records == 12
    assert len(bodies) == 12
    assert all(b["max_completion_tokens"] == 300 and "max_tokens" not in b for b in bodies)


async def test_the_refusal_says_which_setting_fixes_it(tmp_path: Path) -> None:
    """Without it, the provider's 400 is final: the rows are dropped, the run does not call
    itself complete, and the drop reason quotes OpenAI's message with the setting to
    change."""
    async with reasoning_endpoint() as (url, _bodies):
        with trio.fail_after(60):
            result = await gl.acreate(
                pipeline(url, max_tokens=300), num_records=12, output_dir=tmp_path / "o"
            )
    assert result.status != "complete"
    assert result.num_rows == 0
    reasons = json.dumps(result.summary, default=str)
    assert "Unsupported parameter: 'max_tokens'" in reasons
    assert "(set max_tokens_param: max_completion_tokens on this model)" in reasons


@settings(max_examples=60, deadline=None)
@given(
    param=st.sampled_from(["max_tokens", "max_completion_tokens"]),
    limit=st.one_of(st.none(), st.integers(1, 10**6)),
    temperature=st.one_of(st.none(), st.floats(0, 2)),
)
def test_the_openai_body_carries_the_limit_in_the_chosen_field_only(
    param: str, limit: int | None, temperature: float | None
) -> None:
    """The OpenAI body has the limit in ``param`` alone (none when unset); Anthropic's always
    in ``max_tokens``, whatever the setting."""
    request = ChatRequest(
        model="m",
        messages=[Message(role="user", content="hi")],
        max_tokens=limit,
        temperature=temperature,
        max_tokens_param=param,  # type: ignore[arg-type]
    )
    body = OpenAIClient.chat_body(request)
    fields = {"max_tokens", "max_completion_tokens"} & body.keys()
    assert fields == (set() if limit is None else {param})
    if limit is not None:
        assert body[param] == limit
    assert body.get("temperature") == temperature
    anthropic = AnthropicClient.chat_body(request)
    assert "max_completion_tokens" not in anthropic
    if limit is not None:
        assert anthropic["max_tokens"] == limit


@pytest.mark.parametrize("value", ["max_output_tokens", "", 1, None])
def test_other_values_are_config_errors(value: Any) -> None:
    """Any other value is refused before a request, naming the field."""
    with pytest.raises(ConfigError, match=r"models\[0\]\.max_tokens_param"):
        load_config(pipeline("http://127.0.0.1:9/v1", max_tokens_param=value))


def test_the_default_is_max_tokens() -> None:
    """Most servers (vLLM, llama.cpp, older gateways) read ``max_tokens``: it stays the
    default."""
    assert ModelConfig(alias="a", provider="p", model="m").max_tokens_param == "max_tokens"


@pytest.mark.parametrize(
    ("message", "hinted"),
    [
        (REFUSAL["error"]["message"], True),
        ("max_tokens must be at most 4096", False),
        ("'max_completion_tokens' is not supported by this server", False),
        ("temperature must be between 0 and 2", False),
    ],
)
def test_only_the_field_refusal_gets_the_hint(message: str, hinted: bool) -> None:
    """The hint is added to a 400 that refuses ``max_tokens`` in favour of
    ``max_completion_tokens``, not to other complaints about either."""
    response = httpx.Response(400, json={"error": {"message": message}})
    error = error_from_response(response, provider="cloud", model="o-test")
    assert isinstance(error, BadRequest)
    assert ("max_tokens_param: max_completion_tokens" in str(error)) is hinted


def test_changing_it_keeps_the_config_hash() -> None:
    """How the limit is spelled on the wire does not change a run's output: a run whose rows
    a 400 refusing ``max_tokens`` dropped resumes with the setting changed (the hash, which
    resume compares, is the same), and configs written before the setting existed keep
    theirs."""
    from gridloom.config import config_hash

    hashes = {
        config_hash(load_config(pipeline("http://127.0.0.1:9/v1", max_tokens_param=p)))
        for p in ("max_tokens", "max_completion_tokens")
    }
    assert len(hashes) == 1
    assert hashes == {config_hash(load_config(pipeline("http://127.0.0.1:9/v1")))}
