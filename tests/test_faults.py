"""The fault-injection matrix: small real pipelines against the simulated endpoint, one fault
at a time (and one mix), each with the exact accounting the design promises.

The pipeline is ``topic``, ``n`` (samplers) → ``draft`` (alias ``writer``) → ``final`` (alias
``editor``). Faults that may pass (429, 503, hangs, malformed replies, dropped connections)
must cost no row; a model that never answers must cost every row once its attempts are spent
(or stop the run); a refused key stops the run at once; unusable structured output drops its
rows without cell retries. Everything timing-related runs in process (``transport: asgi``) on
trio's virtual clock; dropped connections and one more case use real sockets (``transport:
socket``) with a short latency and short backoffs.

Runs that need the simulator's own counters get them from the :func:`simulators` fixture,
which records every :class:`~gridloom.simulated.SimulatedApp` a run opens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import gridloom as gl
import gridloom.simulated
from gridloom.config import SimulationConfig, structure_pipeline
from gridloom.simulated import ModelStatistics, SimulatedApp, SimulatedServer

from .test_shutdown import refusing_endpoint

#: Rows per run, and rows per row group.
ROWS = 200
GROUP = 50
#: Simulated latency per request: in virtual time, and over real sockets.
LATENCY = 0.2
SOCKET_LATENCY = 0.01
#: Cell retry backoffs short enough for real-time runs.
FAST_BACKOFF = {"retry_backoff_seconds": 0.05, "retry_backoff_max_seconds": 0.2}

WRITER, EDITOR = "writer-8b", "editor-70b"

TEXT_COLUMNS: list[dict[str, Any]] = [
    {"name": "topic", "category": {"values": ["rivers", "deserts", "glaciers", "reefs"]}},
    {"name": "n", "uniform": {"low": 0, "high": 999, "convert_to": "int"}},
    {
        "name": "draft",
        "llm_text": {"model": "writer", "prompt": "Write about {{ topic }}, item {{ n }}."},
    },
    {"name": "final", "llm_text": {"model": "editor", "prompt": "Edit this: {{ draft }}"}},
]


def pipeline(
    writer: Mapping[str, Any] | None = None,
    editor: Mapping[str, Any] | None = None,
    *,
    transport: str = "asgi",
    latency: float = LATENCY,
    models: Mapping[str, Mapping[str, Any]] | None = None,
    run: Mapping[str, Any] | None = None,
    columns: list[dict[str, Any]] | None = None,
    providers: list[dict[str, Any]] | None = None,
) -> gl.PipelineConfig:
    """The test pipeline on one simulated provider ``sim``.

    Args:
        writer, editor: simulated behaviour of each model (faults, capacity...).
        transport: ``asgi`` (virtual time) or ``socket`` (real HTTP on 127.0.0.1).
        latency: fixed seconds per simulated answer.
        models: per alias, fields merged into its model config.
        run: fields merged into the run config.
        columns: instead of :data:`TEXT_COLUMNS`.
        providers: more providers, next to ``sim``.
    """
    simulation = {
        "seed": 7,
        "transport": transport,
        "models": {
            WRITER: {"latency": {"fixed": latency}, **(writer or {})},
            EDITOR: {"latency": {"fixed": latency}, **(editor or {})},
        },
    }
    aliases = [
        {"alias": "writer", "provider": "sim", "model": WRITER, "max_parallel_requests": 8},
        {"alias": "editor", "provider": "sim", "model": EDITOR, "max_parallel_requests": 8},
    ]
    for alias in aliases:
        alias.update((models or {}).get(alias["alias"], {}))
    return structure_pipeline(
        {
            "providers": [
                {"name": "sim", "type": "simulated", "simulation": simulation},
                *(providers or []),
            ],
            "models": aliases,
            "columns": columns or TEXT_COLUMNS,
            "run": {"seed": 11, "row_group_size": GROUP, **(run or {})},
        }
    )


@pytest.fixture
def simulators(monkeypatch: pytest.MonkeyPatch) -> list[SimulatedApp]:
    """Every simulated app the runs of a test open, in-process or served over sockets.

    ``open_models`` imports ``SimulatedApp`` and ``serve_simulated`` from
    ``gridloom.simulated`` when it opens a simulated provider, so replacing them there is
    enough.
    """
    apps: list[SimulatedApp] = []
    serve = gridloom.simulated.serve_simulated

    class RecordedApp(SimulatedApp):
        def __init__(self, config: SimulationConfig, **kwargs: Any):
            super().__init__(config, **kwargs)
            apps.append(self)

    @asynccontextmanager
    async def recorded_serve(
        config: SimulationConfig, **kwargs: Any
    ) -> AsyncIterator[SimulatedServer]:
        async with serve(config, **kwargs) as server:
            apps.append(server.app)
            yield server

    monkeypatch.setattr(gridloom.simulated, "SimulatedApp", RecordedApp)
    monkeypatch.setattr(gridloom.simulated, "serve_simulated", recorded_serve)
    return apps


def served(apps: list[SimulatedApp]) -> dict[str, ModelStatistics]:
    """The counters per model of the one simulated endpoint a run used."""
    assert len(apps) == 1
    return dict(apps[0].statistics().models)


def assert_complete(result: gl.RunResult, rows: int = ROWS) -> None:
    """Every row written, none dropped, and the run never stopped."""
    assert result.status == "complete"
    assert result.stop_reason is None
    assert "stop" not in result.summary
    assert (result.num_rows, result.num_dropped) == (rows, 0)
    assert result.drop_reasons == {}
    assert result.table.num_rows == rows
    assert all(result.table.column(name).null_count == 0 for name in ("draft", "final"))


def outcomes(app: SimulatedApp, model: str) -> Counter[str]:
    """How each request to ``model`` ended, by the endpoint's one-word outcome."""
    return Counter(entry.outcome for entry in app.timeline() if entry.model == model)


def assert_retried(
    result: gl.RunResult, app: SimulatedApp, *, fault: str, error: str, rows: int = ROWS
) -> None:
    """On each model, every request that met ``fault`` surfaced once at the alias as
    ``error`` and cost exactly one more request; every cell ended in one good answer."""
    for alias, model in (("writer", WRITER), ("editor", EDITOR)):
        usage = result.summary["models"][alias]
        ends = outcomes(app, model)
        faults = ends.pop(fault, 0)
        assert ends == {"ok": rows}, f"{model}: unexpected outcomes {ends}"
        assert app.statistics().models[model].requests == rows + faults
        assert usage["succeeded"] == rows
        assert usage["errors"] == ({error: faults} if faults else {})
        assert usage["requests"] == rows + faults


# ---------------------------------------------------------------------- rate limits


async def test_a_429_storm_on_a_capacity_of_two_costs_no_row(
    autojump_clock: Any, simulators: list[SimulatedApp]
) -> None:
    """Capacity 2 behind max_parallel_requests 16: the writer is refused, the throttle's slow
    start (opening at 16) takes the 2 then in flight for the capacity, and every 429 is retried
    beneath the cell."""
    config = pipeline(writer={"capacity": 2}, models={"writer": {"max_parallel_requests": 16}})
    result = await gl.apreview(config, num_records=ROWS)
    assert_complete(result)
    stats = served(simulators)
    usage = result.summary["models"]["writer"]
    refused = stats[WRITER].by_status["429"]
    # Every refusal reached the throttle (a 429 is never retried by the transport layer) and
    # none outlasted it: the alias saw no failure.
    assert usage["rate_limited"] == refused
    assert stats[WRITER].requests == ROWS + refused
    assert usage["errors"] == {}
    assert usage["requests"] == usage["succeeded"] == ROWS
    throttle = usage["throttle"]["chat"]
    # The first refusal that may cut ends the slow start at the estimate (later ones of its
    # burst were sent at a higher limit); a probe above the capacity may cost one more.
    assert throttle["cuts"] >= 1
    assert refused >= throttle["cuts"]
    assert throttle["limit"] <= 2 + 1
    assert result.summary["models"]["editor"]["rate_limited"] == 0


async def test_a_requests_per_second_bucket_costs_no_row(
    autojump_clock: Any, simulators: list[SimulatedApp]
) -> None:
    """A bucket of 5 requests per second: refusals carry the exact wait (Retry-After), the
    throttle waits it out, every row is written, and the run takes as long as the bucket
    demands (5 at once, then 5 a second)."""
    rate = 5.0
    config = pipeline(
        writer={"requests_per_second": rate}, models={"writer": {"max_parallel_requests": 16}}
    )
    result = await gl.apreview(config, num_records=ROWS)
    assert_complete(result)
    stats = served(simulators)
    usage = result.summary["models"]["writer"]
    refused = stats[WRITER].by_status["429"]
    assert refused > 0
    assert usage["rate_limited"] == refused
    assert stats[WRITER].requests == ROWS + refused
    assert usage["errors"] == {}
    assert usage["requests"] == usage["succeeded"] == ROWS
    assert result.wall_time >= (ROWS - rate) / rate


# ---------------------------------------------------------------------- faults that pass


async def test_one_in_five_503s_is_retried_and_never_stops_the_run(
    autojump_clock: Any, simulators: list[SimulatedApp]
) -> None:
    """20 % of requests answered 503 with Retry-After, on both models: the transport layer
    (and, should a 503 outlast it, the throttle) retries them beneath the alias; every cell
    ends in one 200, no request fails at the alias, the run completes."""
    faulty = {"error_503_rate": 0.2, "retry_after": 1.0}
    config = pipeline(writer=faulty, editor=faulty)
    result = await gl.apreview(config, num_records=ROWS)
    assert_complete(result)
    stats = served(simulators)
    for alias, model in (("writer", WRITER), ("editor", EDITOR)):
        usage = result.summary["models"][alias]
        assert set(stats[model].by_status) == {"200", "503"}
        unavailable = stats[model].by_status["503"]
        assert ROWS * 0.1 < unavailable < ROWS * 0.4
        assert stats[model].by_status["200"] == ROWS
        assert stats[model].requests == ROWS + unavailable
        # Retried beneath the alias: one counted request per cell, none failed.
        assert usage["requests"] == usage["succeeded"] == ROWS
        assert usage["errors"] == {}
        # Every 503 is accounted for: retried by the transport, or by the throttle.
        retried = usage["transport_retries"].get("ProviderUnavailable", 0)
        assert retried + usage["rate_limited"] == unavailable
        assert retried > 0


async def test_hangs_are_cut_at_the_model_timeout_and_retried(
    autojump_clock: Any, simulators: list[SimulatedApp]
) -> None:
    """10 % of the writer's requests never answer: each is cut at the writer's 5 s timeout
    (virtual time), counted as a ProviderTimeout, and its cell is tried again; no row lost."""
    timeout = 5.0
    config = pipeline(writer={"hang_rate": 0.1}, models={"writer": {"timeout": timeout}})
    result = await gl.apreview(config, num_records=ROWS)
    assert_complete(result)
    app = simulators[0]
    hangs = outcomes(app, WRITER)["hang"]
    assert ROWS * 0.03 < hangs < ROWS * 0.2
    assert_retried(result, app, fault="hang", error="ProviderTimeout")
    cut = [e for e in app.timeline() if e.outcome == "hang"]
    assert all(e.end - e.start == pytest.approx(timeout) for e in cut)
    assert served(simulators)[WRITER].in_flight == 0


async def test_malformed_replies_are_retried(
    autojump_clock: Any, simulators: list[SimulatedApp]
) -> None:
    """10 % of replies cut in half (status 200, body not JSON) on both models: each is a
    MalformedResponse, which may pass, so the cell is tried again; no row lost."""
    config = pipeline(writer={"malformed_rate": 0.1}, editor={"malformed_rate": 0.1})
    result = await gl.apreview(config, num_records=ROWS)
    assert_complete(result)
    app = simulators[0]
    assert_retried(result, app, fault="malformed", error="MalformedResponse")
    for model in (WRITER, EDITOR):
        assert ROWS * 0.03 < outcomes(app, model)["malformed"] < ROWS * 0.2


async def test_malformed_replies_over_real_sockets_are_retried(
    simulators: list[SimulatedApp],
) -> None:
    """The same truncated replies over real HTTP on 127.0.0.1, in real time (short latency,
    short backoffs): every row written, each malformed reply cost one more request."""
    config = pipeline(
        writer={"malformed_rate": 0.1},
        editor={"malformed_rate": 0.1},
        transport="socket",
        latency=SOCKET_LATENCY,
        run=FAST_BACKOFF,
    )
    result = await gl.apreview(config, num_records=ROWS)
    assert_complete(result)
    assert len(simulators) == 1
    assert_retried(result, simulators[0], fault="malformed", error="MalformedResponse")
    assert result.wall_time < 15.0


async def test_dropped_connections_over_real_sockets_are_retried(
    tmp_path: Path, simulators: list[SimulatedApp]
) -> None:
    """10 % of connections closed before the answer is complete, over real sockets: the
    transport layer reconnects (and a cell whose retries ran out is tried again later); the
    run written to disk holds every row."""
    config = pipeline(
        writer={"disconnect_rate": 0.1},
        editor={"disconnect_rate": 0.1},
        transport="socket",
        latency=SOCKET_LATENCY,
        run=FAST_BACKOFF,
    )
    result = await gl.acreate(config, num_records=ROWS, output_dir=tmp_path / "out")
    assert_complete(result)
    stats = served(simulators)
    for alias, model in (("writer", WRITER), ("editor", EDITOR)):
        usage = result.summary["models"][alias]
        ends = outcomes(simulators[0], model)
        dropped = ends.pop("disconnect")
        assert dropped > 0
        assert ends == {"ok": ROWS}
        assert stats[model].requests == ROWS + dropped
        assert usage["succeeded"] == ROWS
        # Only a cell whose transport retries all broke reaches the alias as a failure.
        assert set(usage["errors"]) <= {"ConnectionFailed"}
        assert usage["requests"] == ROWS + usage["errors"].get("ConnectionFailed", 0)
    assert result.wall_time < 15.0


# ---------------------------------------------------------------------- faults that do not pass

#: Small cell budgets: 2 attempts with backoff, then 1 salvage round.
BUDGET = {
    "max_cell_attempts": 2,
    "salvage_rounds": 1,
    "retry_backoff_seconds": 0.5,
    "retry_backoff_max_seconds": 2.0,
}


async def test_a_dead_model_drops_every_row_once_its_attempts_are_spent(
    autojump_clock: Any, simulators: list[SimulatedApp]
) -> None:
    """Every writer request answered 500, early shutdown off: each draft cell gets exactly
    max_cell_attempts + salvage_rounds attempts, then its row is dropped with the reason;
    the editor is never called; the run ends "incomplete" (every row is missing)."""
    config = pipeline(writer={"error_500_rate": 1.0}, run={**BUDGET, "shutdown_error_rate": None})
    result = await gl.apreview(config, num_records=ROWS)
    assert result.status == "incomplete"
    assert result.stop_reason is None
    assert (result.num_rows, result.num_dropped) == (0, ROWS)
    assert result.drop_reasons == {"draft": {"ProviderUnavailable": ROWS}}
    dropped = result.dropped.to_pylist()
    assert sorted(d["row_id"] for d in dropped) == list(range(ROWS))
    assert all(
        "HTTP 500" in d["message"]
        and "gave up after 3 attempts, 1 of them in salvage rounds" in d["message"]
        for d in dropped
    )
    attempts = BUDGET["max_cell_attempts"] + BUDGET["salvage_rounds"]
    stats = served(simulators)
    assert EDITOR not in stats
    assert stats[WRITER].requests == ROWS * attempts
    assert dict(stats[WRITER].by_status) == {"500": ROWS * attempts}
    writer = result.summary["models"]["writer"]
    assert writer["requests"] == ROWS * attempts  # a 500 is not retried by the transport
    assert writer["errors"] == {"ProviderUnavailable": ROWS * attempts}
    assert result.summary["models"]["editor"]["requests"] == 0
    assert result.columns["draft"].failed == ROWS
    assert result.columns["final"].done == 0


async def test_a_dead_model_stops_the_run_within_its_window(
    autojump_clock: Any, simulators: list[SimulatedApp]
) -> None:
    """The same dead writer with early shutdown on, judged without a minimum span of time
    (shutdown_min_seconds 0): the run stops once its first second of sends is complete,
    naming the alias — not after rows x attempts of requests."""
    config = pipeline(writer={"error_500_rate": 1.0}, run={**BUDGET, "shutdown_min_seconds": 0.0})
    started = trio.current_time()
    result = await gl.apreview(config, num_records=ROWS)
    elapsed = trio.current_time() - started
    assert result.status == "stopped"
    assert result.stop_reason is not None
    assert "model 'writer'" in result.stop_reason
    assert "ProviderUnavailable" in result.stop_reason
    assert result.summary["stop"]["alias"] == "writer"
    assert result.num_rows == 0
    run = config.run
    # Every outcome a failure: the monitor trips at the first outcome after the first second
    # of sends is complete (cells wait up to retry_backoff_max_seconds between attempts).
    assert 1.0 <= elapsed <= 1.0 + BUDGET["retry_backoff_max_seconds"] + 1.0
    stop = result.summary["stop"]
    assert stop["failed"] == stop["total"] >= run.shutdown_min_outcomes
    writer = result.summary["models"]["writer"]
    # Fewer than the rows x attempts a run without the monitor sends (the test above).
    attempts = BUDGET["max_cell_attempts"] + BUDGET["salvage_rounds"]
    assert writer["failed"] <= writer["requests"] < ROWS * attempts
    assert result.summary["models"]["editor"]["requests"] == 0


async def test_a_refused_api_key_stops_the_run_at_once(
    simulators: list[SimulatedApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The editor's provider answers 401 (real sockets): the first refusal stops the run,
    the reason names the key's variable (never the key), and only the editor requests
    already in flight were sent."""
    secret = "sk-faults-0123456789abcdef"
    monkeypatch.setenv("GRIDLOOM_TEST_FAULTS_KEY", secret)
    async with refusing_endpoint() as (url, received):
        cloud = {"name": "cloud", "endpoint": url, "api_key_env": "GRIDLOOM_TEST_FAULTS_KEY"}
        config = pipeline(
            transport="socket",
            latency=SOCKET_LATENCY,
            models={"editor": {"provider": "cloud", "max_parallel_requests": 4}},
            providers=[cloud],
        )
        result = await gl.apreview(config, num_records=ROWS)
    assert result.status == "stopped"
    assert result.stop_reason is not None
    assert "model 'editor'" in result.stop_reason
    assert "API key was refused" in result.stop_reason
    assert "GRIDLOOM_TEST_FAULTS_KEY" in result.stop_reason
    assert secret not in result.stop_reason
    assert result.summary["stop"]["top_error"] == "AuthenticationFailed"
    assert result.num_rows == 0
    editor = result.summary["models"]["editor"]
    assert 1 <= len(received) <= 4
    assert editor["requests"] <= 4
    assert editor["succeeded"] == 0
    # The writer stopped too: far fewer drafts than rows.
    assert served(simulators)[WRITER].requests < ROWS


async def test_invalid_structured_output_drops_rows_without_cell_retries(
    autojump_clock: Any, simulators: list[SimulatedApp]
) -> None:
    """Every structured answer is invalid against the schema: after the correction attempts
    the cell fails with InvalidOutput, which is final — no cell retry, no salvage — so each
    row costs exactly 1 + max_correction_attempts requests and is dropped."""
    corrections = 1
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"],
        "additionalProperties": False,
    }
    columns = [
        *TEXT_COLUMNS[:2],
        {
            "name": "facts",
            "llm_structured": {
                "model": "writer",
                "prompt": "Facts on {{ topic }}, item {{ n }}.",
                "schema": schema,
                "max_correction_attempts": corrections,
            },
        },
        {"name": "final", "llm_text": {"model": "editor", "prompt": "Use {{ facts }}"}},
    ]
    unwatched = {"generator_first_rows": 0, "generator_error_rate": None}
    config = pipeline(writer={"invalid_output_rate": 1.0}, columns=columns, run=unwatched)
    result = await gl.apreview(config, num_records=ROWS)
    assert result.status == "incomplete"
    assert (result.num_rows, result.num_dropped) == (0, ROWS)
    assert result.drop_reasons == {"facts": {"InvalidOutput": ROWS}}
    assert all(
        f"no valid answer after {corrections} correction attempt(s)" in d["message"]
        for d in result.dropped.to_pylist()
    )
    stats = served(simulators)
    assert stats[WRITER].requests == ROWS * (1 + corrections)
    assert outcomes(simulators[0], WRITER) == {"invalid_output": ROWS * (1 + corrections)}
    writer = result.summary["models"]["writer"]
    assert writer["requests"] == writer["succeeded"] == ROWS * (1 + corrections)
    assert EDITOR not in stats


async def test_invalid_structured_output_on_every_row_stops_the_run(
    autojump_clock: Any, simulators: list[SimulatedApp]
) -> None:
    """The same, with the column health check on (the default): the run stops once the
    column's first 5 cells failed with InvalidOutput, naming the column — a handful of
    requests, not every row's."""
    columns = [
        *TEXT_COLUMNS[:2],
        {
            "name": "facts",
            "llm_structured": {
                "model": "writer",
                "prompt": "Facts on {{ topic }}, item {{ n }}.",
                "schema": {"type": "object", "required": ["title"]},
                "max_correction_attempts": 0,
            },
        },
    ]
    config = pipeline(writer={"invalid_output_rate": 1.0}, columns=columns)
    result = await gl.apreview(config, num_records=ROWS)
    assert result.status == "stopped"
    assert (result.stop_reason or "").startswith(
        "column 'facts' failed on each of its first 5 rows with InvalidOutput"
    )
    assert served(simulators)[WRITER].requests < ROWS


# ---------------------------------------------------------------------- a mix, and determinism


async def test_mixed_faults_leave_the_dataset_identical_to_a_fault_free_run(
    autojump_clock: Any, simulators: list[SimulatedApp]
) -> None:
    """10 % 503s, 5 % malformed replies and 5 % hangs on both models, 300 rows: the run
    completes without a drop, and — answers depending only on the request — its dataset is
    exactly that of the same pipeline without faults."""
    rows = 300
    faulty = {"error_503_rate": 0.1, "malformed_rate": 0.05, "hang_rate": 0.05}
    timeouts = {"writer": {"timeout": 5.0}, "editor": {"timeout": 5.0}}
    run = {"row_group_size": 30}
    mixed = await gl.apreview(
        pipeline(writer=faulty, editor=faulty, models=timeouts, run=run), num_records=rows
    )
    clean = await gl.apreview(pipeline(models=timeouts, run=run), num_records=rows)
    assert_complete(mixed, rows)
    assert_complete(clean, rows)
    assert mixed.table.equals(clean.table)
    faulty_app, clean_app = simulators
    for alias, model in (("writer", WRITER), ("editor", EDITOR)):
        ends = outcomes(faulty_app, model)
        assert ends.keys() == {"ok", "error_503", "malformed", "hang"}
        assert ends["ok"] == rows
        assert outcomes(clean_app, model) == {"ok": rows}
        usage = mixed.summary["models"][alias]
        assert usage["succeeded"] == rows
        # 503s are retried beneath the alias; the others reach it, once per fault.
        assert usage["errors"] == {
            "MalformedResponse": ends["malformed"],
            "ProviderTimeout": ends["hang"],
        }
    assert mixed.wall_time > clean.wall_time
