"""Batch mode end to end against the simulated endpoint: pipelines with a ``batch: true`` model
(in process on the virtual clock), partial failures, expiry, missing and repeated results,
and a resumed run that re-attaches to its recorded job instead of paying again."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

import gridloom as gl
import gridloom.simulated
from gridloom.clients import (
    BatchingClient,
    BatchPolling,
    ChatRequest,
    EmbeddingRequest,
    Message,
    OpenAIClient,
    batching_client,
)
from gridloom.clients._batch_journal import BatchJournal, JobRecord
from gridloom.config import (
    BatchSimulation,
    ModelConfig,
    ProviderConfig,
    SimulationConfig,
    config_hash,
    structure_pipeline,
)
from gridloom.errors import ConfigError, MalformedResponse, ProviderUnavailable
from gridloom.run import _run, open_models, serve_models
from gridloom.simulated import SimulatedApp, serve_simulated
from gridloom.storage import location_of


def pipeline(batch: bool, *, rows: int = 12, size: int = 4, **sim: Any) -> Any:
    """topic → summary → analysis, both model columns on one model."""
    return structure_pipeline(
        {
            "providers": [
                {
                    "name": "sim",
                    "type": "simulated",
                    "simulation": {"transport": "asgi", "seed": 3, "batch": sim},
                }
            ],
            "models": [
                {
                    "alias": "writer",
                    "provider": "sim",
                    "model": "writer-8b",
                    "max_parallel_requests": 64,
                    "batch": batch,
                    "batch_max_size": size,
                    "batch_wait": 2.0,
                }
            ],
            "columns": [
                {"name": "topic", "category": {"values": ["rivers", "volcanoes", "deserts"]}},
                {"name": "summary", "llm_text": {"model": "writer", "prompt": "Sum {{ topic }}"}},
                {"name": "analysis", "llm_text": {"model": "writer", "prompt": "On {{ summary }}"}},
            ],
            "run": {"seed": 2, "row_group_size": rows},
        }
    )


@pytest.fixture
def apps(monkeypatch: pytest.MonkeyPatch) -> list[SimulatedApp]:
    """The simulated apps the runs of the test mount in process (to read their statistics)."""
    made: list[SimulatedApp] = []

    class Recorded(SimulatedApp):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(gridloom.simulated, "SimulatedApp", Recorded)
    return made


async def test_batch_mode_gives_the_online_dataset(
    autojump_clock: Any, apps: list[SimulatedApp]
) -> None:
    """A pipeline whose model runs in batch mode produces exactly the online run's table, its
    requests sent as jobs of at most batch_max_size (none online)."""
    online = await gl.apreview(pipeline(False), num_records=12)
    batched = await gl.apreview(pipeline(True, completion_delay=30.0), num_records=12)
    assert batched.table.equals(online.table)
    assert batched.columns["analysis"].done == 12
    stats = apps[1].batches.statistics()
    assert stats.items_submitted == 24
    assert stats.jobs_created == 6  # 12 summaries, then 12 analyses, four per job
    paths = {entry.path for entry in apps[1].timeline()}
    assert paths == {"/v1/chat/completions"}  # each item answered as its online request
    assert len(apps[1].timeline()) == 24


async def test_downstream_cells_start_when_their_rows_batch_returns(
    autojump_clock: Any, apps: list[SimulatedApp]
) -> None:
    """A row's analysis is asked for once the job holding its summary has ended, not once
    every summary is: with room for four requests at a time, the first four rows' analyses
    go (as one job) before the last four rows' summaries."""
    config = pipeline(True, completion_delay=30.0, rows=8, size=4)
    model = attrs.evolve(config.models[0], max_parallel_requests=2)  # lanes of 4 tasks
    columns = [
        attrs.evolve(c, temperature=0.1 if c.name == "summary" else 0.9) if c.name != "topic" else c
        for c in config.columns
    ]
    config = attrs.evolve(config, models=[model], columns=columns)
    result = await gl.apreview(config, num_records=8)
    assert result.columns["analysis"].done == 8
    ended = sorted((entry.end, entry.temperature) for entry in apps[0].timeline())
    kinds = ["summary" if t == 0.1 else "analysis" for _, t in ended]
    assert kinds == ["summary"] * 4 + ["analysis"] * 4 + ["summary"] * 4 + ["analysis"] * 4
    assert apps[0].batches.statistics().jobs_created == 4


async def test_failed_items_are_retried_per_cell(
    autojump_clock: Any, apps: list[SimulatedApp]
) -> None:
    """Items the provider fails, expires or leaves out are retried by the engine as later
    jobs' items: every row is generated, with more items submitted than requests needed."""
    config = pipeline(
        True,
        completion_delay=5.0,
        error_rate=0.2,
        expired_rate=0.1,
        missing_rate=0.1,
        duplicate_rate=0.2,
    )
    # 40% of items fail: past the default health threshold (50% over a window), so it is off.
    config = attrs.evolve(config, run=attrs.evolve(config.run, shutdown_error_rate=None))
    result = await gl.apreview(config, num_records=12)
    assert result.num_rows == 12
    assert result.columns["analysis"].done == 12
    stats = apps[0].batches.statistics()
    assert stats.items_submitted > 24
    online = await gl.apreview(pipeline(False), num_records=12)
    assert result.table.equals(online.table)


async def test_jobs_that_always_expire_drop_rows_with_the_reason(
    autojump_clock: Any, apps: list[SimulatedApp]
) -> None:
    """When every job expires, each cell fails as ProviderTimeout, is retried, and its row is
    finally dropped with that reason."""
    config = pipeline(True, completion_delay=100.0, job_expiry=10.0, rows=4)
    # With the health monitor on, the run would stop instead (every request fails).
    config = attrs.evolve(config, run=attrs.evolve(config.run, shutdown_error_rate=None))
    result = await gl.apreview(config, num_records=4)
    assert result.num_rows == 0
    assert "ProviderTimeout" in json.dumps(result.drop_reasons)
    assert apps[0].batches.statistics().jobs_created >= 2


def sim_client(app: SimulatedApp) -> tuple[httpx.AsyncClient, OpenAIClient]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim.test/v1")
    provider = ProviderConfig(name="sim", type="simulated")
    return http, OpenAIClient(http, provider=provider, api_key=None)


def ask(index: int) -> ChatRequest:
    return ChatRequest(
        model="writer-8b", messages=[Message(role="user", content=f"Tell me about {index}.")]
    )


MODEL = ModelConfig(
    alias="writer",
    provider="sim",
    model="writer-8b",
    batch=True,
    batch_max_size=50,
    batch_wait=1.0,
)


async def gather(client: BatchingClient, count: int) -> list[Any]:
    """``count`` chat calls at once; each answer or error, in order."""
    out: list[Any] = [None] * count

    async def one(index: int) -> None:
        try:
            out[index] = await client.chat(ask(index))
        except MalformedResponse as exc:
            out[index] = exc

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)
    return out


async def test_missing_and_repeated_results(autojump_clock: Any) -> None:
    """A request missing from the results fails as a (retryable) MalformedResponse; a
    repeated one is answered once, from its first line, and counted."""
    app = SimulatedApp(
        SimulationConfig(batch=BatchSimulation(missing_rate=0.3, duplicate_rate=0.4))
    )
    http, adapter = sim_client(app)
    async with http, BatchingClient(adapter, MODEL).running() as client:
        answers = await gather(client, 40)
        stats = client.statistics()
    missing = [a for a in answers if isinstance(a, MalformedResponse)]
    assert missing
    assert all(a.retryable and "without a result" in str(a) for a in missing)
    assert stats.missing == len(missing)
    assert stats.duplicates > 0
    assert all(a.served_by == "batch" for a in answers if not isinstance(a, Exception))
    assert (stats.jobs_submitted, stats.items_submitted) == (1, 40)


async def test_embeddings_and_job_timing(autojump_clock: Any) -> None:
    """Embeddings go as an /v1/embeddings job; a job is flushed batch_wait after its first
    request and its answers come at the first poll after the completion delay."""
    app = SimulatedApp(SimulationConfig(batch=BatchSimulation(completion_delay=10.0)))
    http, adapter = sim_client(app)
    polling = BatchPolling(first=4.0, growth=2.0, longest=100.0, jitter=0.0)
    async with http, BatchingClient(adapter, MODEL, polling=polling).running() as client:
        start = trio.current_time()
        answer = await client.embed(EmbeddingRequest(model="embed-small", inputs=("a", "b")))
        # Flushed at 1 s; polled at 5 s and 13 s (ended at 11 s).
        assert trio.current_time() - start == pytest.approx(13.0)
    assert len(answer.vectors) == 2
    assert answer.served_by == "batch"
    assert app.batches.statistics().polls == 2


async def test_resume_polls_the_recorded_job_instead_of_paying_again(
    autojump_clock: Any, tmp_path: Path
) -> None:
    """A run interrupted while its job runs records it; the resumed run's same requests
    re-attach to it (no new job), and only a new request makes a new job."""
    app = SimulatedApp(SimulationConfig(batch=BatchSimulation(completion_delay=60.0)))
    http, adapter = sim_client(app)
    output = location_of(tmp_path)
    async with http:
        journal_file = tmp_path / "batches" / "writer.json"
        recorded = trio.Event()

        class Journal(BatchJournal):
            async def add(self, job: JobRecord) -> None:
                await super().add(job)
                recorded.set()

        client = BatchingClient(
            adapter, MODEL, journal=Journal(output, "writer", "openai", where="simulated")
        )
        async with client.running(), trio.open_nursery() as nursery:
            nursery.start_soon(gather, client, 5)
            await recorded.wait()  # interrupted once the job is on record
            nursery.cancel_scope.cancel()
        assert app.batches.statistics().jobs_created == 1
        journal = json.loads(journal_file.read_text())
        assert len(journal["jobs"]) == 1
        assert len(journal["jobs"][0]["items"]) == 5

        async with batching_client(adapter, MODEL, output=output).running() as client:
            answers = await gather(client, 5)
            stats = client.statistics()
            assert app.batches.statistics().jobs_created == 1  # nothing billed twice
            assert (stats.jobs_resumed, stats.items_resumed, stats.jobs_submitted) == (1, 5, 0)
            await client.chat(ask(99))  # a request no recorded job holds
            assert app.batches.statistics().jobs_created == 2
        online = [await adapter.chat(ask(i)) for i in range(5)]
    assert [a.text for a in answers] == [o.text for o in online]
    assert all(a.served_by == "batch" for a in answers)


async def test_resume_over_sockets_through_open_models(tmp_path: Path) -> None:
    """Through open_models over real sockets, for OpenAI and Anthropic providers: a run
    cancelled mid-job, then resumed with the same output, creates no second job."""
    settings = SimulationConfig(batch=BatchSimulation(completion_delay=0.6))
    async with serve_simulated(settings) as server:
        for kind in ("openai", "anthropic"):
            config = structure_pipeline(
                {
                    "providers": [{"name": "p", "type": kind, "endpoint": server.url}],
                    "models": [
                        {
                            "alias": f"m-{kind}",
                            "provider": "p",
                            "model": "writer-8b",
                            "batch": True,
                            "batch_wait": 0.05,
                        }
                    ],
                    "columns": [{"name": "s", "llm_text": {"model": f"m-{kind}", "prompt": "Hi"}}],
                }
            )
            before = server.app.batches.statistics().jobs_created
            output = tmp_path / kind
            with trio.move_on_after(0.3):
                async with open_models(config, output=output, cache=False) as handles:
                    await handles[f"m-{kind}"].chat(ask(1))
            assert server.app.batches.statistics().jobs_created == before + 1
            async with open_models(config, output=output, cache=False) as handles:
                answer = await handles[f"m-{kind}"].chat(ask(1))
            assert answer.served_by == "batch"
            assert answer.text
            assert server.app.batches.statistics().jobs_created == before + 1


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"batch_max_size": 0}, "models[0].batch_max_size"),
        ({"batch_max_size": 50_001}, "models[0].batch_max_size"),
        ({"batch_wait": -1.0}, "models[0].batch_wait"),
        ({"batch": "maybe"}, "models[0].batch"),
    ],
)
def test_invalid_batch_settings_fail_at_load(settings: dict[str, Any], field: str) -> None:
    """A bad batch setting fails when the config is loaded, naming the field."""
    document = {
        "providers": [{"name": "sim", "type": "simulated"}],
        "models": [{"alias": "writer", "provider": "sim", "model": "m", **settings}],
        "columns": [{"name": "s", "llm_text": {"model": "writer", "prompt": "Hi"}}],
    }
    with pytest.raises(ConfigError, match=re.escape(f"field '{field}'")):
        structure_pipeline(document)


def test_batch_settings_leave_the_config_hash_alone() -> None:
    """Batch mode changes how requests are sent, not what comes back: a run started online
    can be resumed in batch mode (the config hash is the same)."""
    online, batched = pipeline(False), pipeline(True)
    assert online != batched
    assert config_hash(online) == config_hash(batched)


async def test_a_recorded_job_the_provider_forgot_is_retried_as_a_new_job(
    autojump_clock: Any, tmp_path: Path
) -> None:
    """A recorded job the provider no longer knows fails its request as retryable; the retry
    goes in a new job. An unreadable journal is ignored."""
    first = SimulatedApp(SimulationConfig())
    http, adapter = sim_client(first)
    async with http, batching_client(adapter, MODEL, output=location_of(tmp_path)).running() as c:
        await c.chat(ask(1))
    other = SimulatedApp(SimulationConfig())  # another provider account: no such job
    http, adapter = sim_client(other)
    async with http, batching_client(adapter, MODEL, output=location_of(tmp_path)).running() as c:
        with pytest.raises(ProviderUnavailable, match="cannot be collected") as caught:
            await c.chat(ask(1))
        assert caught.value.retryable
        assert (await c.chat(ask(1))).text
    assert other.batches.statistics().jobs_created == 1
    (tmp_path / "batches" / "writer.json").write_text("{not json")
    http, adapter = sim_client(other)
    async with http, batching_client(adapter, MODEL, output=location_of(tmp_path)).running() as c:
        assert (await c.chat(ask(2))).text
        assert c.statistics().jobs_resumed == 0


async def test_create_interrupted_mid_batch_resumes_without_a_new_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gl.acreate interrupted while its first job runs, then resumed: the resumed run polls
    the recorded job for its summaries (no second job for them) and the dataset completes."""
    # The run directory reaches the models' service as ``output`` (the run layer passes it;
    # given here too so that this test holds whichever way it is wired).
    monkeypatch.setattr(_run, "serve_models", functools.partial(serve_models, output=tmp_path))
    settings = SimulationConfig(batch=BatchSimulation(completion_delay=1.5))
    async with serve_simulated(settings) as server:
        config = structure_pipeline(
            {
                "providers": [{"name": "p", "type": "openai", "endpoint": server.url}],
                "models": [
                    {
                        "alias": "writer",
                        "provider": "p",
                        "model": "writer-8b",
                        "batch": True,
                        "batch_wait": 0.05,
                        "max_parallel_requests": 16,
                    }
                ],
                "columns": [
                    {"name": "topic", "category": {"values": ["rivers", "deserts"]}},
                    {"name": "s", "llm_text": {"model": "writer", "prompt": "Sum {{ topic }}"}},
                    {"name": "t", "llm_text": {"model": "writer", "prompt": "On {{ s }}"}},
                ],
                "run": {"seed": 1, "row_group_size": 6},
            }
        )
        with trio.move_on_after(0.8):  # the interruption: the summaries' job is running
            await gl.acreate(config, num_records=6, output_dir=tmp_path)
        assert server.app.batches.statistics().jobs_created == 1
        result = await gl.acreate(config, num_records=6, output_dir=tmp_path, resume=True)
        stats = server.app.batches.statistics()
    assert result.status == "complete"
    assert result.num_rows == 6
    # One job of 6 summaries (paid once, collected by the resumed run), one of 6 analyses.
    assert (stats.jobs_created, stats.items_submitted) == (2, 12)
    journal = json.loads((tmp_path / "batches" / "writer.json").read_text())
    assert [len(job["items"]) for job in journal["jobs"]] == [6, 6]


def test_only_a_batch_run_loads_the_batch_apis(tmp_path: Path) -> None:
    """In a fresh interpreter, a whole run on the in-process simulated endpoint (no batch
    mode) imports neither the client's batching nor the simulator's batch APIs; a run in batch
    mode loads both and completes."""
    import subprocess
    import sys
    import textwrap

    def run(batch: bool) -> list[str]:
        model: dict[str, Any] = {"alias": "m", "provider": "sim", "model": "x"}
        if batch:
            model |= {"batch": True, "batch_max_size": 3, "batch_wait": 0.01}
        simulation = {"batch": {"completion_delay": 0.01}}
        config = {
            "providers": [{"name": "sim", "type": "simulated", "simulation": simulation}],
            "models": [model],
            "columns": [
                {"name": "topic", "category": {"values": ["a", "b"]}},
                {"name": "c", "llm_text": {"model": "m", "prompt": "About {{ topic }}."}},
            ],
        }
        code = textwrap.dedent(
            f"""
            import sys
            import gridloom as gl
            result = gl.create({config!r}, num_records=3, output_dir={str(tmp_path / str(batch))!r})
            print(result.status, result.num_rows)
            print("gridloom.simulated._batches" in sys.modules)
            print("gridloom.clients._batch" in sys.modules)
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.split("\n")[:3]

    assert run(batch=False) == ["complete 3", "False", "False"]
    assert run(batch=True) == ["complete 3", "True", "True"]
