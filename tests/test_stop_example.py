"""A run stopped early because a model kept failing says what the provider said: the stop
reason quotes the latest error's message, and a 200 whose body is an error object names it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import gridloom as gl
from gridloom.clients import ChatRequest, Message, OpenAIClient
from gridloom.config import ProviderConfig
from gridloom.errors import MalformedResponse

from .test_faults import BUDGET, ROWS, pipeline


async def test_a_stop_reason_quotes_the_latest_error(autojump_clock: Any) -> None:
    """A dead writer (every request 500) stops the run by the failure rate; the reason and
    the summary's stop quote the provider's message, not only the error class."""
    config = pipeline(writer={"error_500_rate": 1.0}, run={**BUDGET, "shutdown_min_seconds": 0})
    result = await gl.apreview(config, num_records=ROWS)
    assert result.status == "stopped"
    stop = result.summary["stop"]
    assert stop["top_error"] == "ProviderUnavailable"
    assert stop["example"].startswith("sim/writer-8b: HTTP 500")
    assert result.stop_reason is not None
    assert f"; the latest: {stop['example']};" in result.stop_reason


def test_an_error_object_in_a_200_is_quoted() -> None:
    """A 200 whose body is {"error": {"message": ...}} (a proxy's failure) raises
    MalformedResponse carrying the message, redacted."""
    secret = "sk-err200-0123456789abcdef"
    client = OpenAIClient(
        httpx.AsyncClient(base_url="http://127.0.0.1:9/v1"),
        provider=ProviderConfig(name="p", endpoint="http://127.0.0.1:9/v1"),
        api_key=gl.clients.Secret(secret),
    )
    request = ChatRequest(model="m", messages=(Message(role="user", content="hi"),))
    body = {"error": {"message": f"upstream failed for {secret}", "code": 500}}
    with pytest.raises(MalformedResponse) as caught:
        client.decode_chat(body, request)
    text = str(caught.value)
    assert "no 'choices'; the body is an error: upstream failed for ***" in text
    assert secret[:8] not in text
    with pytest.raises(MalformedResponse, match=r"no 'choices'$"):
        client.decode_chat({"id": "x"}, request)
