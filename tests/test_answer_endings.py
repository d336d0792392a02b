"""How an answer ended: partial answers (abort, error, content_filter) are not stored as
complete; answers cut at max_tokens are kept and counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.clients import ChatRequest, ChatResponse, Message, Usage
from gridloom.clients._types import CUT_FINISH_REASONS
from gridloom.errors import EmptyAnswer, IncompleteAnswer, is_retryable
from gridloom.generators._corrections import TRUNCATED_REASONS
from gridloom.generators.llm import cut_words
from gridloom.progress import render_summary
from tests.json_server import json_server
from tests.test_clients import Script, anthropic
from tests.test_content_parts import REQUEST, client

ANTHROPIC_REQUEST = ChatRequest(model="c", messages=[Message(role="user", content="Hi")])


def reply(content: Any, finish: str | None) -> dict[str, Any]:
    return {
        "choices": [
            {"message": {"role": "assistant", "content": content}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }


@pytest.mark.parametrize(
    ("finish", "retryable", "text"),
    [
        ("abort", True, "the server stopped generating after 11 characters (finish_reason: abort)"),
        ("error", True, "(finish_reason: error): it gave up mid-answer"),
        ("content_filter", False, "content filter cut it after 11 characters"),
    ],
)
def test_partial_answers_are_refused(finish: str, retryable: bool, text: str) -> None:
    """Content with finish_reason abort or error (the server gave up: retryable) or
    content_filter (cut by a filter: final) is IncompleteAnswer, usage kept (was: stored as
    a complete answer)."""
    with pytest.raises(IncompleteAnswer) as info:
        client().decode_chat(reply("partial ans", finish), REQUEST)
    assert isinstance(info.value, EmptyAnswer)
    assert is_retryable(info.value) == retryable
    assert info.value.reason == finish
    assert text in str(info.value)
    assert (info.value.input_tokens, info.value.output_tokens) == (3, 4)


@pytest.mark.parametrize("finish", ["stop", "length", None, "tool_calls", "eos"])
def test_other_endings_with_content_are_kept(finish: str | None) -> None:
    """Content that ended otherwise (length included: kept, truncated) is the answer."""
    response = client().decode_chat(reply("an answer", finish), REQUEST)
    assert (response.text, response.finish_reason) == ("an answer", finish)


def _pipeline(max_tokens: int) -> gl.PipelineConfig:
    return gl.load_config(
        {
            "providers": [{"name": "sim", "type": "simulated", "simulation": {"seed": 3}}],
            "models": [{"alias": "m", "provider": "sim", "model": "w", "max_tokens": max_tokens}],
            "columns": [
                {"name": "topic", "category": {"values": ["rivers", "volcanoes"]}},
                {"name": "summary", "llm_text": {"model": "m", "prompt": "Explain {{ topic }}."}},
                {"name": "short", "llm_text": {"model": "m", "prompt": "Name {{ topic }}."}},
            ],
            "run": {"row_group_size": 4, "seed": 5},
        }
    )


async def test_truncated_answers_are_counted_per_column(tmp_path: Path) -> None:
    """Answers cut at max_tokens are kept and counted per column, in the summary, its
    rendering and metadata.json, and survive reading the run back (was: 'complete', no
    count)."""
    result = await gl.acreate(_pipeline(4), num_records=10, output_dir=tmp_path / "out")
    assert result.num_rows == 10
    columns = result.summary["columns"]
    assert columns["summary"]["truncated"] == 10
    assert "truncated" not in columns["topic"]
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert metadata["counts"]["summary"]["truncated"] == 10
    assert sum(g["counts"]["summary"]["truncated"] for g in metadata["row_groups"].values()) == 10
    text = render_summary(result.summary)
    assert "summary: 10 truncated (finish_reason length" in text
    whole = await gl.acreate(_pipeline(4000), num_records=4, output_dir=tmp_path / "whole")
    assert all("truncated" not in c for c in whole.summary["columns"].values())
    assert "truncated" not in render_summary(whole.summary).replace(str(tmp_path), "")


def test_the_anthropic_max_tokens_default_is_documented() -> None:
    """The reference says what an Anthropic request without max_tokens gets (was: 'the
    model's', though 1024 is sent)."""
    from gridloom.clients._anthropic import DEFAULT_MAX_TOKENS
    from gridloom.config import ModelConfig
    from gridloom.config._llm import LLMColumn

    for config in (LLMColumn, ModelConfig):
        assert (
            f"anthropic`` provider, whose API requires one: {DEFAULT_MAX_TOKENS} is sent"
            in " ".join((config.__doc__ or "").split())
        )


# ------------------------------------------------- refusals after text, context-window cuts


def _anthropic_reply(text: str | None, stop: str | None) -> dict[str, Any]:
    blocks = [] if text is None else [{"type": "text", "text": text}]
    return {
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": blocks,
        "stop_reason": stop,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }


def _decode(provider: str, reply_: dict[str, Any]) -> ChatResponse:
    if provider == "anthropic":
        return anthropic(Script()).decode_chat(reply_, ANTHROPIC_REQUEST, None)
    return client().decode_chat(reply_, REQUEST)


def test_an_anthropic_refusal_after_some_text_is_not_an_answer() -> None:
    """``stop_reason: refusal`` after a text block (Anthropic's streaming classifiers stop a
    reply part-way) is a final IncompleteAnswer with reason ``refusal`` (was: the text was
    stored as a complete answer); without text it stays an EmptyAnswer."""
    with pytest.raises(IncompleteAnswer) as info:
        _decode("anthropic", _anthropic_reply("I can't help with that", "refusal"))
    assert info.value.reason == "refusal"
    assert not is_retryable(info.value)
    assert "the model refused after 22 characters" in str(info.value)
    with pytest.raises(EmptyAnswer) as empty:
        _decode("anthropic", _anthropic_reply(None, "refusal"))
    assert not isinstance(empty.value, IncompleteAnswer)
    assert empty.value.reason == "refusal"


def test_an_openai_refusal_beside_content_is_not_an_answer() -> None:
    """OpenAI's ``message.refusal`` beside content: the content is not an answer."""
    body = reply("Here is part", "stop")
    body["choices"][0]["message"]["refusal"] = "I can't continue with this."
    with pytest.raises(IncompleteAnswer) as info:
        _decode("openai", body)
    assert info.value.reason == "refusal"
    assert "I can't continue with this." in str(info.value)
    for blank in ("", "  ", None):  # an empty refusal field says nothing
        body["choices"][0]["message"]["refusal"] = blank
        assert _decode("openai", body).text == "Here is part"


ENDINGS = {
    "openai": ["stop", "length", "model_length", "content_filter", "abort", "tool_calls", None],
    "anthropic": ["end_turn", "max_tokens", "model_context_window_exceeded", "stop_sequence"],
}


@given(
    data=st.data(),
    text=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(str.strip),
)
@settings(max_examples=200, deadline=None)
def test_every_cut_ending_is_counted_as_cut(data: st.DataObject, text: str) -> None:
    """Whatever the provider and whichever of its endings: an answer is kept with its finish
    reason and counted as cut exactly when that reason is a cut (max_tokens or a full context
    window: Mistral's ``model_length``, Anthropic's ``model_context_window_exceeded``; those
    two were kept as whole answers), and refused when it is partial."""
    provider = data.draw(st.sampled_from(sorted(ENDINGS)))
    ending = data.draw(st.sampled_from(ENDINGS[provider]) | st.text(max_size=12))
    body = _anthropic_reply(text, ending) if provider == "anthropic" else reply(text, ending)
    if ending in ("content_filter", "abort", "error", "refusal"):
        with pytest.raises(IncompleteAnswer):
            _decode(provider, body)
        return
    response = _decode(provider, body)
    assert response.text == text
    assert (response.finish_reason in TRUNCATED_REASONS) == (ending in CUT_FINISH_REASONS)


def _dropping(provider: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """Two rows of one text column on ``model`` that drops cut answers, tried once."""
    return {
        "providers": [provider],
        "models": [model],
        "columns": [
            {"name": "topic", "category": {"values": ["rivers"]}},
            {
                "name": "out",
                "llm_text": {"model": "m", "prompt": "On {{ topic }}", "on_truncated": "drop"},
            },
        ],
        "run": {"row_group_size": 2, "seed": 1, "max_cell_attempts": 1, "salvage_rounds": 0},
    }


@pytest.mark.parametrize(
    ("ending", "words"),
    [
        ("length", "answer cut at max_tokens (5 tokens); raise max_tokens"),
        ("model_length", "answer cut when the context window was full (4 tokens); shorten the"),
    ],
)
def test_a_context_window_cut_follows_on_truncated(ending: str, words: str, tmp_path: Path) -> None:
    """Over real sockets: an answer cut by a full context window is dropped under
    ``on_truncated: drop`` like one cut at max_tokens, each with its own remedy (was: kept
    as whole, the setting ignored)."""
    with json_server(lambda _server, _body: reply("It was", ending)) as server:
        provider = {"name": "p", "type": "openai", "endpoint": server.url}
        doc = _dropping(provider, {"alias": "m", "provider": "p", "model": "x", "max_tokens": 5})
        result = gl.create(doc, num_records=2, output_dir=tmp_path / "out")
    assert result.num_rows == 0
    drops = pq.read_table(tmp_path / "out" / "dropped").to_pylist()
    assert len(drops) == 2
    assert all(d["error_type"] == "AnswerTruncated" for d in drops)
    assert all(words in d["message"] for d in drops), drops


def test_an_anthropic_cut_with_no_max_tokens_names_the_default_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over real sockets: an Anthropic answer cut with no max_tokens set was cut at the 1,024
    tokens the client sends, and the message says so (was: "no max_tokens sent")."""
    monkeypatch.setenv("GRIDLOOM_TEST_KEY", "k")
    sent: list[str] = []

    def answer(_server: Any, body: dict[str, Any]) -> dict[str, Any]:
        sent.append(str(body["max_tokens"]))
        return _anthropic_reply("It was", "max_tokens")

    with json_server(answer) as server:
        provider = {"name": "p", "type": "anthropic", "endpoint": server.url}
        provider["api_key_env"] = "GRIDLOOM_TEST_KEY"
        doc = _dropping(provider, {"alias": "m", "provider": "p", "model": "c"})
        result = gl.create(doc, num_records=2, output_dir=tmp_path / "out")
    assert result.num_rows == 0
    assert sent == ["1024", "1024"]
    drops = pq.read_table(tmp_path / "out" / "dropped").to_pylist()
    assert [d["message"] for d in drops] == [
        "column 'out': answer cut at max_tokens (1024 tokens, the Anthropic client's default"
        " when the column sets none); raise max_tokens or set on_truncated: keep"
    ] * 2


@pytest.mark.parametrize(
    ("max_tokens", "finish", "words"),
    [
        (7, "length", "answer cut at max_tokens (7 tokens)"),
        (7, "max_tokens", "answer cut at max_tokens (7 tokens)"),
        (None, "max_tokens", "answer cut at max_tokens (1024 tokens, the Anthropic client's"),
        (None, "length", "answer cut at the server's output limit (4 tokens; no max_tokens sent)"),
        (7, "model_length", "answer cut when the context window was full (4 tokens)"),
        (None, "model_context_window_exceeded", "when the context window was full (4 tokens)"),
    ],
)
def test_each_cut_is_described_by_what_cut_it(
    max_tokens: int | None, finish: str, words: str
) -> None:
    request = ChatRequest(
        model="c", messages=[Message(role="user", content="Hi")], max_tokens=max_tokens
    )
    response = ChatResponse(text="It", finish_reason=finish, usage=Usage(output_tokens=4))
    assert words in cut_words(request, response)
