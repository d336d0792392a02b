"""The response cache in runs: the handle's lookups (before the throttle), the default rule
and overrides, per-model accounting and cost, traces and summaries, and the quickstart rerun
with only its last column changed, over real sockets."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.cli import cli
from gridloom.clients import (
    CacheScope,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ModelHandle,
    ResponseCache,
    Usage,
)
from gridloom.config import ModelConfig
from gridloom.errors import ConfigError
from gridloom.progress import render_summary

ROOT = Path(__file__).resolve().parent.parent
SCOPE = CacheScope(provider_type="openai", endpoint="http://127.0.0.1:1/v1")


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The response cache turned on, in a folder of the test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GRIDLOOM_CACHE_DIR", str(folder))
    monkeypatch.delenv("GRIDLOOM_NO_CACHE", raising=False)
    return folder


@attrs.define
class CountingClient:
    """Answers every request after ``delay`` seconds, counting them."""

    delay: float = 0.0
    served_by: str = "online"
    batched: bool = False
    calls: int = 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        await trio.sleep(self.delay)
        text = f"answer {self.calls} to {request.messages[-1].content}"
        usage = Usage(input_tokens=100, output_tokens=10)
        return ChatResponse(text=text, usage=usage, served_by=self.served_by)  # type: ignore[arg-type]

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        self.calls += 1
        return EmbeddingResponse(
            vectors=tuple((float(len(t)),) for t in request.inputs),
            usage=Usage(input_tokens=len(request.inputs)),
        )


def ask(text: str, temperature: float | None = 0.0, **extra: Any) -> ChatRequest:
    return ChatRequest(
        model="m",
        messages=[Message(role="user", content=text)],
        temperature=temperature,
        extra_body=extra,
    )


def handle(
    tmp_path: Path, client: Any, limiter: trio.CapacityLimiter | None = None, **model: Any
) -> ModelHandle:
    config = ModelConfig(alias="w", provider="p", model="m", **model)
    cache = ResponseCache(tmp_path / "c.sqlite3")
    return ModelHandle(config, client, limiter or trio.CapacityLimiter(4), cache=cache, scope=SCOPE)


async def test_a_hit_skips_a_full_limiter(tmp_path: Path, autojump_clock: Any) -> None:
    """With every slot of the limiter held, a cached answer returns at once (virtual time
    0), is no request to the client, and is counted as cached with its tokens."""
    client = CountingClient()
    limiter = trio.CapacityLimiter(1)
    h = handle(tmp_path, client, limiter)
    first = await h.chat(ask("hello"))
    assert client.calls == 1
    assert first.served_by == "online"
    held = trio.Event()
    async with trio.open_nursery() as nursery:

        async def hold() -> None:
            async with limiter:
                held.set()
                await trio.sleep_forever()

        nursery.start_soon(hold)
        await held.wait()
        started = trio.current_time()
        again = await h.chat(ask("hello"))
        assert trio.current_time() == started
        assert limiter.borrowed_tokens == 1
        nursery.cancel_scope.cancel()
    assert again.served_by == "cache"
    assert again.text == first.text
    assert client.calls == 1
    usage = h.usage()
    assert (usage.requests, usage.cached_requests) == (1, 1)
    assert (usage.cached_input_tokens, usage.cached_output_tokens) == (100, 10)
    assert (usage.input_tokens, usage.online_requests) == (100, 1)


async def test_the_default_rule_and_the_overrides(tmp_path: Path, autojump_clock: Any) -> None:
    """By default only deterministic requests are cached; cache: true caches any; a
    column's setting beats the model's; false never looks up."""
    client = CountingClient()
    h = handle(tmp_path, client)
    for _ in range(2):
        await h.chat(ask("t0"))  # temperature 0: cached
        await h.chat(ask("seeded", temperature=1.0, seed=5))  # fixed seed: cached
        await h.chat(ask("warm", temperature=0.8))  # sampled: sent each time
    assert client.calls == 4
    assert h.usage().cached_requests == 2
    await h.chat(ask("warm", temperature=0.8), cache=True)
    await h.chat(ask("warm", temperature=0.8), cache=True)
    assert client.calls == 5
    await h.chat(ask("t0"), cache=False)
    assert client.calls == 6
    on = handle(tmp_path, CountingClient(), cache=True)
    await on.chat(ask("warm", temperature=0.8))  # stored by the column setting above
    assert on.usage().cached_requests == 1
    off = handle(tmp_path, CountingClient(), cache=False)
    await off.chat(ask("t0"))
    assert off.usage().cached_requests == 0
    await off.chat(ask("t0"), cache=True)  # the column's setting wins
    assert off.usage().cached_requests == 1


async def test_read_only_looks_up_but_never_stores(tmp_path: Path, autojump_clock: Any) -> None:
    """read_only serves what is there and stores nothing new."""
    client = CountingClient()
    h = handle(tmp_path, client, cache="read_only")
    await h.chat(ask("new"))
    await h.chat(ask("new"))
    assert client.calls == 2
    assert h.cache is not None
    assert h.cache.stats_sync().entries == 0
    writer = handle(tmp_path, CountingClient(), cache=True)
    await writer.chat(ask("known"))
    await h.chat(ask("known"))
    assert client.calls == 2
    assert h.usage().cached_requests == 1


async def test_embeddings_are_cached(tmp_path: Path, autojump_clock: Any) -> None:
    """An embedding request is deterministic: the second one is served from the cache."""
    client = CountingClient()
    h = handle(tmp_path, client)
    one = await h.embed(EmbeddingRequest(model="m", inputs=["a", "bb"]))
    two = await h.embed(EmbeddingRequest(model="m", inputs=["a", "bb"]))
    assert client.calls == 1
    assert two.vectors == one.vectors
    assert two.served_by == "cache"


async def test_batched_clients_hold_no_slot(tmp_path: Path, autojump_clock: Any) -> None:
    """A client marked batched waits without a limiter slot, and its answers count as batch
    requests; the estimated cost discounts their tokens."""
    limiter = trio.CapacityLimiter(1)
    client = CountingClient(delay=3600.0, served_by="batch", batched=True)
    price = {"input": 2.0, "output": 8.0, "batch_discount": 0.5}
    h = handle(tmp_path, client, limiter, cache=False, price=price)
    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(h.chat, ask(f"q{i}"))
        await trio.sleep(1.0)
        assert limiter.borrowed_tokens == 0
        assert client.calls == 5
    assert trio.current_time() == 3600.0
    usage = h.usage()
    assert (usage.requests, usage.batch_requests, usage.online_requests) == (5, 5, 0)
    assert (usage.batch_input_tokens, usage.batch_output_tokens) == (500, 50)
    assert usage.estimated_cost == pytest.approx(0.5 * (500 * 2.0 + 50 * 8.0) / 1e6)
    assert usage.as_dict()["batch_requests"] == 5


async def test_cost_splits_online_batch_and_cached(tmp_path: Path, autojump_clock: Any) -> None:
    """Online tokens at full price, cached ones free (their price shown as savings)."""
    h = handle(tmp_path, CountingClient(), price={"input": 1.0, "output": 10.0})
    await h.chat(ask("x"))
    await h.chat(ask("x"))
    usage = h.usage()
    assert usage.estimated_cost == pytest.approx((100 * 1.0 + 10 * 10.0) / 1e6)
    assert usage.cache_savings == pytest.approx((100 * 1.0 + 10 * 10.0) / 1e6)
    plain = handle(tmp_path, CountingClient())
    assert plain.usage().estimated_cost is None
    assert plain.usage().cache_savings is None


# --------------------------------------------------------------------------- config


def test_cache_and_price_settings_validate_and_stay_out_of_the_hash() -> None:
    """cache takes true/false/read_only/null on models and LLM columns; a bad value or price
    fails at load naming the column or model and field; neither changes config_hash."""
    data = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    base = gl.config.config_hash(gl.config.structure_pipeline(data))
    data["models"][0].update(cache="read_only", price={"input": 1, "output": 2})
    data["columns"][2]["llm_text"]["cache"] = False
    changed = gl.config.structure_pipeline(data)
    assert changed.models[0].cache == "read_only"
    assert getattr(changed.columns[2], "cache", None) is False
    assert gl.config.config_hash(changed) == base
    assert "cache: false" in gl.config.dump_config(changed)
    bad_column = json.loads(json.dumps(data))
    bad_column["columns"][2]["llm_text"]["cache"] = "sometimes"
    with pytest.raises(ConfigError) as caught:
        gl.config.structure_pipeline(bad_column)
    assert "summary" in str(caught.value)
    assert "cache" in str(caught.value)
    bad_price = json.loads(json.dumps(data))
    bad_price["models"][0]["price"] = {"input": -1, "output": 2}
    with pytest.raises(ConfigError) as caught:
        gl.config.structure_pipeline(bad_price)
    assert "input" in str(caught.value)
    bad_discount = json.loads(json.dumps(data))
    bad_discount["models"][0]["price"] = {"input": 1, "output": 2, "batch_discount": 2}
    with pytest.raises(ConfigError, match="batch_discount"):
        gl.config.structure_pipeline(bad_discount)


async def test_a_sampled_request_cached_by_choice_keeps_an_answer_per_cell(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """cache: true on a sampled request keys it by its cell (run seed, row, column): rows
    asking the same question get answers of their own, a rerun of the same cells finds each
    one's own again, another seed draws anew; a deterministic request is shared by every
    cell asking it."""
    client = CountingClient()
    h = handle(tmp_path, client, cache=True)
    cells = [(7, row, "draft") for row in range(3)]
    first = [await h.chat(ask("same", temperature=0.8), cell=cell) for cell in cells]
    assert client.calls == 3
    assert len({r.text for r in first}) == 3
    again = [await h.chat(ask("same", temperature=0.8), cell=cell) for cell in cells]
    assert client.calls == 3
    assert [r.text for r in again] == [r.text for r in first]
    await h.chat(ask("same", temperature=0.8), cell=(8, 0, "draft"))
    await h.chat(ask("same", temperature=0.8), cell=(7, 0, "other"))
    assert client.calls == 5
    for cell in cells:
        await h.chat(ask("fixed"), cell=cell)  # temperature 0
        await h.chat(ask("seeded", temperature=0.8, seed=3), cell=cell)  # a fixed seed
    assert client.calls == 7


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),  # the prompt
            st.sampled_from([0.0, 0.8, None]),  # temperature (None: the provider's default)
            st.integers(0, 3),  # the row
            st.sampled_from([None, True, "read_only"]),  # the column's cache setting
        ),
        max_size=25,
    )
)
def test_requests_sent_are_the_distinct_keys(calls: list[Any]) -> None:
    """Whatever the mix, the client is asked once per distinct answer a run may share: a
    deterministic request per prompt, a sampled one cached by choice per prompt and cell; a
    sampled one left to the default rule every time, and a read-only lookup stores nothing."""
    client = CountingClient()
    sent: list[Any] = []
    stored: set[Any] = set()
    for prompt, temperature, row, setting in calls:
        deterministic = temperature == 0.0
        mode = setting if setting is not None else deterministic
        key = (prompt, temperature, None if deterministic else row)
        if mode is False:
            sent.append(key)
        elif key not in stored:
            sent.append(key)
            if mode is True:
                stored.add(key)

    async def main() -> None:
        with tempfile.TemporaryDirectory() as folder:
            h = handle(Path(folder), client)
            for prompt, temperature, row, setting in calls:
                request = ask(prompt, temperature=temperature)
                await h.chat(request, cache=setting, cell=(1, row, "c"))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert client.calls == len(sent)


# --------------------------------------------------------------------------- runs


def quickstart(*, judge_prompt: str | None = None) -> dict[str, Any]:
    """The quickstart pipeline with fast simulated latencies and the cache on for both
    models (their requests are sampled, so the default rule would leave it off)."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    simulation = data["providers"][0]["simulation"]
    simulation["default"]["latency"] = {"median": 0.002, "sigma": 0.1}
    simulation["models"]["judge-70b"]["latency"] = {"median": 0.002, "sigma": 0.1}
    for model in data["models"]:
        model["cache"] = True
        model["price"] = {"input": 1.0, "output": 4.0}
    if judge_prompt is not None:
        assert data["columns"][-1]["name"] == "quality"
        data["columns"][-1]["llm_judge"]["prompt"] = judge_prompt
    data["run"]["trace"] = True
    return data


async def test_a_rerun_with_the_last_prompt_changed_requests_only_that_column(
    tmp_path: Path, cache_dir: Path
) -> None:
    """Over real sockets: the quickstart run, then run again with only its last column's
    prompt changed, sends the second time requests for that column only; the summary,
    metadata.json and the trace count the cached answers."""
    first = await gl.acreate(quickstart(), num_records=60, output_dir=tmp_path / "one")
    sent = {alias: m["requests"] for alias, m in first.summary["models"].items()}
    # The writer samples and its topics repeat: each row still gets answers of its own.
    assert sent["writer"] == 120
    assert first.summary["models"]["writer"]["cached_requests"] == 0
    assert sent["judge"] > 0
    prompt = "Judge strictly.\n" + quickstart()["columns"][-1]["llm_judge"]["prompt"]
    second = await gl.acreate(
        quickstart(judge_prompt=prompt), num_records=60, output_dir=tmp_path / "two"
    )
    models = second.summary["models"]
    assert models["writer"]["requests"] == 0
    assert models["writer"]["cached_requests"] == 120  # summary and facts of 60 rows
    assert models["judge"]["requests"] > 0
    assert models["judge"]["requests"] + models["judge"]["cached_requests"] == 60
    assert second.table.column("summary").to_pylist() == first.table.column("summary").to_pylist()
    meta = json.loads((tmp_path / "two" / "metadata.json").read_text())
    assert json.dumps(meta).count('"cached_requests"') >= 2
    trace = second.trace
    assert trace is not None
    cached = {
        column: sum(
            c
            for c, name in zip(
                trace["cached"].to_pylist(), trace["column"].to_pylist(), strict=False
            )
            if name == column
        )
        for column in ("summary", "facts", "quality")
    }
    assert cached["summary"] == cached["facts"] == 60
    text = render_summary(second.summary)
    assert "cached" in text
    assert "estimated cost writer: $0.0000" in text


async def test_no_cache_sends_everything_again(tmp_path: Path, cache_dir: Path) -> None:
    """Run(cache=False) neither reads nor writes the cache: a rerun requests everything."""
    data = quickstart()
    await gl.acreate(data, num_records=20, output_dir=tmp_path / "one")
    run = gl.run.Run(data, cache=False)
    result = await run.create(num_records=20, output_dir=tmp_path / "two")
    assert result.summary["models"]["writer"]["cached_requests"] == 0
    assert result.summary["models"]["writer"]["requests"] >= 40


async def test_a_corrupt_cache_file_warns_and_the_run_goes_on(
    tmp_path: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache file that is not a database: one warning naming it and --no-cache, and the run
    completes without the cache."""
    cache_dir.mkdir(parents=True)
    (cache_dir / "responses.sqlite3").write_bytes(b"not sqlite" * 500)
    result = await gl.acreate(quickstart(), num_records=10, output_dir=tmp_path / "out")
    assert result.summary["status"] == "complete"
    assert result.summary["models"]["writer"]["cached_requests"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "gridloom.cache"]
    assert len(warnings) == 1
    assert "responses.sqlite3" in warnings[0]
    assert "--no-cache" in warnings[0]


def test_create_takes_no_cache(tmp_path: Path, cache_dir: Path) -> None:
    """`gridloom create --no-cache` leaves the cache file untouched (never created)."""
    config = tmp_path / "q.yaml"
    config.write_text(yaml.safe_dump(quickstart()))
    result = CliRunner().invoke(
        cli,
        ["create", str(config), "-n", "5", "-o", str(tmp_path / "out"), "--no-cache", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert not (cache_dir / "responses.sqlite3").exists()
    result = CliRunner().invoke(cli, ["preview", str(config), "-n", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert (cache_dir / "responses.sqlite3").exists()


async def test_the_progress_line_counts_cached_answers(tmp_path: Path, autojump_clock: Any) -> None:
    """A model's progress snapshot carries its cached answers, and its line shows them."""
    from gridloom.progress._snapshot import model_progress

    h = handle(tmp_path, CountingClient())
    assert model_progress(h).cached == 0
    await h.chat(ask("x"))
    await h.chat(ask("x"))
    await h.chat(ask("x"))
    progress = model_progress(h)
    assert (progress.requests, progress.cached) == (1, 2)


def test_progress_lines_show_cached_answers_only_when_there_are_some() -> None:
    """The bar display's model line and the plain status line say `cached N` once a model
    has cached answers, and nothing about the cache before."""
    from gridloom.progress import ProgressReporter
    from gridloom.progress._snapshot import ModelProgress, ProgressSnapshot, format_line

    def snapshot(cached: int) -> ProgressSnapshot:
        model = ModelProgress(
            alias="writer", limit=8, in_flight=2, requests=40, rate_limited=0, cached=cached
        )
        return ProgressSnapshot(time=1.0, total=10, rows=5, rows_dropped=0, models=(model,))

    reporter = ProgressReporter("bar", statistics=lambda: None, total=10)  # type: ignore[arg-type,return-value]
    for cached, shown in ((0, False), (1234, True)):
        text = reporter._renderable(snapshot(cached), final=False, width=200).plain  # type: ignore[union-attr]
        assert ("cached 1,234" in text) is shown
        assert ("cached 1,234" in format_line(snapshot(cached), None)) is shown


async def test_the_endpoint_sees_requests_of_the_changed_column_only(
    tmp_path: Path, cache_dir: Path
) -> None:
    """Counted at the endpoint itself (one simulated server for both runs, reached over a
    socket as an OpenAI provider): the rerun with only the last column's prompt changed
    sends nothing to the writer model, and to the judge model only that column's requests."""
    from gridloom.config import SimulationConfig, converter
    from gridloom.simulated import serve_simulated

    def pipeline(url: str, judge_prompt: str | None = None) -> dict[str, Any]:
        data = quickstart(judge_prompt=judge_prompt)
        data["providers"] = [{"name": "sim", "type": "openai", "endpoint": url}]
        data["run"]["trace"] = False
        return data

    simulation = converter.structure(quickstart()["providers"][0]["simulation"], SimulationConfig)
    async with serve_simulated(simulation) as server:

        def requests() -> dict[str, int]:
            models = server.app.statistics().models
            return {name: stats.requests for name, stats in models.items()}

        await gl.acreate(pipeline(server.url), num_records=60, output_dir=tmp_path / "one")
        first = requests()
        # At most summary and facts of 60 rows (rows asking the same share one answer).
        assert 0 < first["writer-8b"] <= 120
        assert first["judge-70b"] > 0
        prompt = "Judge strictly.\n" + quickstart()["columns"][-1]["llm_judge"]["prompt"]
        await gl.acreate(pipeline(server.url, prompt), num_records=60, output_dir=tmp_path / "two")
        second = requests()
    assert second["writer-8b"] == first["writer-8b"]  # not one more request
    sent = second["judge-70b"] - first["judge-70b"]
    assert 0 < sent <= 60  # the new prompt's answers (rows asking the same share one)
