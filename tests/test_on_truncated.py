"""``on_truncated``: an answer cut at max_tokens is kept and counted, dropped with its reason,
or asked again within the retry budget; ``llm_agent`` counts its cut turns, applies the
policy to its final answer and moves a leading ``<think>`` block to the reasoning."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.errors import AnswerTruncated, ConfigError, is_retryable
from gridloom.progress import render_summary
from tests.json_server import completion, json_server

#: The simulated model's answers run well past this many tokens: every one is cut.
SHORT = 4
#: ... and never reach this many.
LONG = 4000


def lookup(city: str) -> str:
    """Look up a city.

    Args:
        city: the city's name.
    """
    return f"{city}: sunny"


def _run_settings(**run: Any) -> dict[str, Any]:
    return {
        "row_group_size": 8,
        "seed": 5,
        "max_cell_attempts": 3,
        "salvage_rounds": 1,
        "retry_backoff_seconds": 0,
        "retry_backoff_max_seconds": 0,
        "generator_first_rows": 0,
        "generator_error_rate": None,
        "allow_drops": 1.0,
        **run,
    }


def _pipeline(policy: str | None, weights: list[int], seed: int = 5, **run: Any) -> dict[str, Any]:
    """A text column whose cells draw max_tokens SHORT (cut) or LONG (whole) with
    ``weights``; the drawn value is kept in ``summary__inference``."""
    column: dict[str, Any] = {
        "model": "m",
        "prompt": "Explain {{ topic }}.",
        "max_tokens": {"values": [SHORT, LONG], "weights": weights},
    }
    if policy is not None:
        column["on_truncated"] = policy
    return {
        "providers": [{"name": "sim", "type": "simulated", "simulation": {"seed": 3}}],
        "models": [{"alias": "m", "provider": "sim", "model": "w"}],
        "columns": [
            {"name": "topic", "category": {"values": ["rivers", "volcanoes", "deserts"]}},
            {"name": "summary", "llm_text": column},
        ],
        "run": _run_settings(seed=seed, **run),
    }


def _cut_rows(out: Path) -> set[int]:
    """The row ids of a keep run (every row written, in order) whose drawn max_tokens was
    SHORT: their answers are cut."""
    parts = sorted((out / "data").glob("part-*.parquet"))
    rows = [row for part in parts for row in pq.read_table(part).to_pylist()]
    return {i for i, row in enumerate(rows) if row["summary__inference"]["max_tokens"] == SHORT}


def _drops(out: Path) -> list[dict[str, Any]]:
    folder = out / "dropped"
    if not folder.exists() or not any(folder.iterdir()):
        return []
    return sorted(pq.read_table(folder).to_pylist(), key=lambda d: d["row_id"])


def _counts(out: Path) -> dict[str, Any]:
    metadata = json.loads((out / "metadata.json").read_text())
    counts: dict[str, Any] = metadata["counts"]["summary"]
    return counts


async def test_each_policy_counts_and_says_what_became_of_cut_answers(tmp_path: Path) -> None:
    """keep: written and counted 'kept'; drop: the rows dropped with the reason, counted
    'dropped'; retry: asked again max_cell_attempts + salvage_rounds times in all, then
    dropped, counted 'asked again' (was: always kept, no setting)."""
    keep = await gl.acreate(_pipeline("keep", [1, 2]), num_records=24, output_dir=tmp_path / "k")
    cut = _cut_rows(tmp_path / "k")
    assert 0 < len(cut) < 24
    assert keep.num_rows == 24
    assert _counts(tmp_path / "k")["truncated"] == len(cut)
    text = render_summary(keep.summary)
    assert f"summary: {len(cut)} truncated (finish_reason length: cut at max_tokens, kept)" in text

    drop = await gl.acreate(_pipeline("drop", [1, 2]), num_records=24, output_dir=tmp_path / "d")
    drops = _drops(tmp_path / "d")
    assert {d["row_id"] for d in drops} == cut
    assert drop.num_rows == 24 - len(cut)
    assert {d["error_type"] for d in drops} == {"AnswerTruncated"}
    assert all(
        d["message"]
        == f"column 'summary': answer cut at max_tokens ({SHORT} tokens); raise max_tokens"
        " or set on_truncated: keep"
        for d in drops
    )
    counts = _counts(tmp_path / "d")
    assert (counts.get("truncated", 0), counts["truncated_dropped"]) == (0, len(cut))
    assert "truncated_retries" not in counts
    text = render_summary(drop.summary)
    assert (
        f"summary: {len(cut)} truncated (finish_reason length: cut at max_tokens,"
        f" {len(cut)} rows dropped)" in text
    )
    assert drop.summary["models"]["m"]["requests"] == 24

    retry = await gl.acreate(_pipeline("retry", [1, 2]), num_records=24, output_dir=tmp_path / "r")
    drops = _drops(tmp_path / "r")
    assert {d["row_id"] for d in drops} == cut
    assert all(
        "answer cut at max_tokens (4 tokens), on_truncated: retry; raise max_tokens" in d["message"]
        and "(gave up after 4 attempts, 1 of them in salvage rounds)" in d["message"]
        for d in drops
    )
    counts = _counts(tmp_path / "r")
    # 3 attempts + 1 salvage round: each cut cell was asked 4 times, 3 of them again.
    assert counts["truncated_dropped"] == len(cut)
    assert counts["truncated_retries"] == 3 * len(cut)
    assert retry.summary["models"]["m"]["requests"] == 24 + 3 * len(cut)
    text = render_summary(retry.summary)
    assert (
        f"summary: {len(cut)} truncated (finish_reason length: cut at max_tokens, asked again"
        f" {3 * len(cut)} times, {len(cut)} rows dropped)" in text
    )


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**20),
    weights=st.tuples(st.integers(0, 3), st.integers(0, 3)).filter(lambda w: sum(w) > 0),
    num_records=st.integers(1, 20),
)
def test_every_row_is_accounted_for_under_each_policy(
    tmp_path_factory: pytest.TempPathFactory, seed: int, weights: tuple[int, int], num_records: int
) -> None:
    """Over random cut patterns per row: written + dropped == requested for every policy;
    keep counts exactly the cut answers; drop and retry drop exactly those rows."""
    base = tmp_path_factory.mktemp("prop")
    outcomes = {}
    for policy in ("keep", "drop", "retry"):
        out = base / policy
        result = gl.create(
            _pipeline(policy, list(weights), seed=seed, salvage_rounds=0, max_cell_attempts=2),
            num_records=num_records,
            output_dir=out,
        )
        assert result.num_rows + len(_drops(out)) == num_records
        assert result.summary["num_dropped"] == len(_drops(out))
        outcomes[policy] = (result, out)
    cut = _cut_rows(outcomes["keep"][1])
    assert _counts(outcomes["keep"][1]).get("truncated", 0) == len(cut)
    assert not _drops(outcomes["keep"][1])
    for policy in ("drop", "retry"):
        out = outcomes[policy][1]
        assert {d["row_id"] for d in _drops(out)} == cut
        assert _counts(out).get("truncated_dropped", 0) == len(cut)
        assert _counts(out).get("truncated", 0) == 0
    assert _counts(outcomes["retry"][1]).get("truncated_retries", 0) == len(cut)


def test_a_bad_policy_fails_at_load_naming_the_column_and_values() -> None:
    """A value other than keep, drop or retry is a config error naming the column, the
    field and the allowed values, before any request; the default keeps the config hash."""
    doc = _pipeline("toss", [1, 1])
    with pytest.raises(ConfigError) as info:
        gl.load_config(doc)
    message = str(info.value)
    assert "column 'summary', field 'llm_text.on_truncated'" in message
    assert "'keep', 'drop', 'retry'" in message
    assert "'toss'" in message
    from gridloom.config import config_hash
    from gridloom.config._llm import LLMColumn

    with pytest.raises(ValueError, match="on_truncated must be one of keep, drop, retry"):
        LLMColumn(name="x", model="m", prompt="p", on_truncated="toss")  # type: ignore[arg-type]
    plain, kept = _pipeline(None, [1, 1]), _pipeline("keep", [1, 1])
    assert config_hash(gl.load_config(plain)) == config_hash(gl.load_config(kept))


def test_the_error_is_final_for_drop_and_may_pass_for_retry() -> None:
    """AnswerTruncated is an InvalidOutput; only retry's may pass."""
    assert not is_retryable(AnswerTruncated("x", max_tokens=4, retryable=False))
    assert is_retryable(AnswerTruncated("x", max_tokens=4, retryable=True))


# --------------------------------------------------------------------- a scripted server


def _answer(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    prompt = json.dumps(body["messages"][:2])
    with server.lock:
        server.seen[prompt] = server.seen.get(prompt, 0) + 1
        times = server.seen[prompt]
    answered = any(m.get("role") == "tool" for m in body["messages"])
    if body.get("tools") and not answered:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "<think>I need the weather.</think>Looking it up.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"city": "Lima"}'},
                }
            ],
        }
        finish = server.tool_finish
    else:
        message = {"role": "assistant", "content": "<think>All set.</think>It is sunny in"}
        # the first answer to each prompt is cut, the next ones whole
        finish = "length" if times <= server.cut_times else "stop"
    return completion(body["model"], message, finish, completion_tokens=5)


@pytest.fixture
def server() -> Iterator[Any]:
    """An OpenAI-compatible server on 127.0.0.1 that cuts the first answer to each prompt
    (``cut_times`` of them) at max_tokens."""
    with json_server(
        _answer, seen={}, lock=threading.Lock(), cut_times=1, tool_finish=None
    ) as httpd:
        yield httpd


def _scripted(server: Any, column: dict[str, Any], kind: str = "llm_text") -> dict[str, Any]:
    url = server.url
    return {
        "providers": [{"name": "p", "type": "openai", "endpoint": url}],
        "models": [{"alias": "m", "provider": "p", "model": "x", "temperature": 0.9}],
        "columns": [
            {"name": "city", "uuid": {}},  # every prompt differs
            {"name": "out", kind: {"model": "m", "prompt": "Weather in {{ city }}?", **column}},
        ],
        "run": _run_settings(salvage_rounds=0),
    }


def test_retry_asks_again_until_an_answer_is_whole(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sampled answer cut once is asked again and the whole one kept: nothing dropped,
    nothing counted truncated, the re-asks counted (was: the cut answer kept). With the
    response cache on (``cache: true``) the cut answer is neither served again nor stored;
    a rerun takes every whole answer from the cache."""
    monkeypatch.setenv("GRIDLOOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GRIDLOOM_NO_CACHE", raising=False)
    doc = _scripted(server, {"max_tokens": 5, "on_truncated": "retry", "cache": True})
    result = gl.create(doc, num_records=8, output_dir=tmp_path / "out")
    assert result.num_rows == 8
    counts = _counts_of(tmp_path / "out", "out")
    assert counts.get("truncated", 0) == 0
    assert counts["truncated_retries"] == 8
    assert result.summary["models"]["m"]["requests"] == 16
    assert "asked again 8 times" in render_summary(result.summary)
    again = gl.create(doc, num_records=8, output_dir=tmp_path / "again")
    assert again.summary["models"]["m"]["requests"] == 0
    assert again.summary["models"]["m"]["cached_requests"] == 8
    assert "truncated_retries" not in _counts_of(tmp_path / "again", "out")


def test_structured_answers_cut_short_say_so(server: Any, tmp_path: Path) -> None:
    """A cut structured answer that does not parse fails saying it was cut at max_tokens and
    to raise it (was: only a JSON parse error)."""
    server.cut_times = 99
    doc = _scripted(
        server,
        {"max_tokens": 5, "max_correction_attempts": 1, "schema": {"type": "object"}},
        "llm_structured",
    )
    gl.create(doc, num_records=2, output_dir=tmp_path / "out")
    drops = _drops(tmp_path / "out")
    assert drops
    assert all(d["error_type"] == "InvalidOutput" for d in drops)
    assert all(
        "(answer cut at max_tokens (5 tokens): finish_reason length); raise max_tokens"
        in d["message"]
        for d in drops
    )


def _counts_of(out: Path, column: str) -> dict[str, Any]:
    metadata = json.loads((out / "metadata.json").read_text())
    counts: dict[str, Any] = metadata["counts"][column]
    return counts


def _agent(server: Any, **column: Any) -> dict[str, Any]:
    return _scripted(
        server,
        {
            "tools": [{"python": "tests.test_on_truncated:lookup"}],
            "max_turns": 4,
            "max_tokens": 5,
            "with_reasoning": True,
            **column,
        },
        "llm_agent",
    )


def test_agents_count_cut_turns_and_move_think_blocks(server: Any, tmp_path: Path) -> None:
    """An agent whose final answer was cut counts in the column's truncated (once per cell),
    and a <think> block leading a turn's content goes to the reasoning (was: neither)."""
    server.cut_times = 99
    server.tool_finish = "length"  # the tool-calling turn is cut too: still one per cell
    result = gl.create(_agent(server), num_records=6, output_dir=tmp_path / "out")
    assert result.num_rows == 6
    assert _counts_of(tmp_path / "out", "out")["truncated"] == 6
    rows = pq.read_table(tmp_path / "out" / "data").to_pylist()
    for row in rows:
        contents = [m["content"] for m in row["out"] if m["role"] == "assistant"]
        assert contents == ["Looking it up.", "It is sunny in"]
        assert row["out__answer"] == "It is sunny in"
        assert row["out__reasoning"] == "All set."


def test_agents_apply_the_policy_to_their_final_answer(server: Any, tmp_path: Path) -> None:
    """drop: a trajectory whose final answer was cut drops its row with the reason; retry:
    the trajectory is run again and its whole answer kept."""
    server.cut_times = 99
    gl.create(_agent(server, on_truncated="drop"), num_records=4, output_dir=tmp_path / "d")
    drops = _drops(tmp_path / "d")
    assert len(drops) == 4
    assert all(
        d["message"] == "column 'out': answer cut at max_tokens (5 tokens); raise max_tokens"
        " or set on_truncated: keep"
        for d in drops
    )
    server.cut_times, server.seen = 1, {}
    result = gl.create(
        _agent(server, on_truncated="retry"), num_records=4, output_dir=tmp_path / "r"
    )
    assert result.num_rows == 4
    counts = _counts_of(tmp_path / "r", "out")
    assert counts.get("truncated", 0) == 0
    assert counts["truncated_retries"] == 4
