"""Generator health: a column that fails the same way row after row stops the run early,
naming the column and quoting the error, before the request budget is spent."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.engine import GeneratorHealth, ShutdownReason
from gridloom.errors import (
    GenerationError,
    InvalidOutput,
    ProviderUnavailable,
    RateLimited,
    ValueTypeError,
)

# ---------------------------------------------------------------------- the monitor alone


def health(
    *,
    first_rows: int = 5,
    error_rate: float | None = 0.5,
    window: int = 20,
    min_outcomes: int = 10,
    rows: int = 1000,
) -> tuple[GeneratorHealth, list[ShutdownReason]]:
    """A monitor for a run whose plan is rows ``0 .. rows - 1`` (announced in two groups)."""
    monitor = GeneratorHealth(
        first_rows=first_rows, error_rate=error_rate, window=window, min_outcomes=min_outcomes
    )
    monitor.watch_rows(0, 3)
    monitor.watch_rows(3, rows - 3)
    trips: list[ShutdownReason] = []
    monitor.on_trip(trips.append)
    return monitor, trips


#: The kinds of outcome a column's cell can have: ``ok``, or a final error class.
ERRORS = {
    "template": lambda: GenerationError("column 'c': template failed to render: UndefinedError"),
    "schema": lambda: InvalidOutput("column 'c': not valid against the schema"),
    "dtype": lambda: ValueTypeError("column 'c': cannot store 'x' as int"),
    "custom": lambda: ValueError("the function raised"),
    "model": lambda: ProviderUnavailable("503", provider="p", model="m"),
    "rate": lambda: RateLimited("429", provider="p", model="m"),
}
KINDS = {
    "template": "GenerationError",
    "schema": "InvalidOutput",
    "dtype": "ValueTypeError",
    "custom": "ValueError",
}


def feed(monitor: GeneratorHealth, outcomes: list[tuple[int, str]], column: str = "c") -> None:
    """Record ``(row id, outcome)`` pairs in the order given."""
    for row, outcome in outcomes:
        if outcome == "ok":
            monitor.record_success(column, row)
        elif outcome == "skip":
            monitor.record_skipped(column, row)
        else:
            monitor.record_failure(column, ERRORS[outcome](), row)


def lower_bound(failed: int, total: int) -> float:
    """The 99% Wilson lower bound, written out independently of the module."""
    z = 2.5758293035489
    p = failed / total
    root = math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (p + z * z / (2 * total) - z * root) / (1 + z * z / total)


def first_rows_trip(known: dict[int, str], first_rows: int) -> str | None:
    """Reference model of the first-rows rule: walk the watched rows (the first
    ``4 * first_rows``) in plan order while their outcomes are known, passing over skipped
    rows and errors that are not the column's; the error type when ``first_rows`` failures of
    one type come before any success or other type, else ``None``."""
    failures: list[str] = []
    for row in range(4 * first_rows):
        if row not in known:
            return None
        outcome = known[row]
        if outcome == "skip" or (outcome != "ok" and outcome not in KINDS):
            continue
        if outcome == "ok" or (failures and KINDS[outcome] != failures[0]):
            return None
        failures.append(KINDS[outcome])
        if len(failures) == first_rows:
            return failures[0]
    return None


def expected_trip(
    arrivals: list[tuple[int, str]],
    first_rows: int,
    error_rate: float | None,
    window: int,
    least: int,
) -> int | None:
    """Reference model: the index in ``arrivals`` at which the monitor must trip."""
    known: dict[int, str] = {}
    recent: list[str | None] = []
    for i, (row, outcome) in enumerate(arrivals):
        known[row] = outcome
        if first_rows and first_rows_trip(known, first_rows) is not None:
            return i
        if outcome == "skip" or (outcome != "ok" and outcome not in KINDS):
            continue
        name = None if outcome == "ok" else KINDS[outcome]
        recent = [*recent, name][-window:]
        if name is None:
            continue
        judged = error_rate is not None and len(recent) >= min(least, window)
        if judged and lower_bound(recent.count(name), len(recent)) > error_rate:  # type: ignore[operator]
            return i
    return None


@st.composite
def arrivals(draw: st.DrawFn) -> list[tuple[int, str]]:
    """Outcomes of rows ``0 .. n - 1``, arriving in any order."""
    outcomes = draw(st.lists(st.sampled_from(["ok", "skip", *ERRORS]), max_size=60))
    rows = draw(st.permutations(range(len(outcomes))))
    return [(row, outcomes[row]) for row in rows]


@given(
    seen=arrivals(),
    first_rows=st.integers(0, 6),
    error_rate=st.one_of(st.none(), st.sampled_from([0.1, 0.25, 0.5, 0.9, 1.0])),
    window=st.integers(1, 40),
    least=st.integers(1, 40),
)
def test_trips_exactly_when_a_rule_holds(
    seen: list[tuple[int, str]],
    first_rows: int,
    error_rate: float | None,
    window: int,
    least: int,
) -> None:
    """Over any outcomes arriving in any order the monitor trips once, at the first outcome
    where the first-rows rule (the run's first N rows all failed with one error type,
    whatever order they ended in) or the rate rule (one error type's share of the recent
    window clearly above the rate) holds; model errors and errors that may pass never count."""
    monitor, trips = health(
        first_rows=first_rows, error_rate=error_rate, window=window, min_outcomes=least
    )
    at = expected_trip(seen, first_rows, error_rate, window, least)
    for i, outcome in enumerate(seen):
        feed(monitor, [outcome])
        assert len(trips) == (1 if at is not None and i >= at else 0), (seen, i, at)
    if trips:
        assert trips[0].column == "c"
        assert monitor.tripped is trips[0]


def test_the_first_rows_rule_quotes_the_error_and_names_the_column() -> None:
    """The first five rows failing with one template error trip, in any order, with a message
    naming the column, the count, the error (quoted, without repeating the column) and a row
    id."""
    monitor, trips = health(error_rate=None)
    for row in (3, 1, 4, 0):
        monitor.record_failure("grade", GenerationError("column 'grade': bad 'replyy'"), row)
    assert trips == []
    monitor.record_failure("grade", GenerationError("column 'grade': bad 'replyy'"), 2)
    [reason] = trips
    assert reason.column == "grade"
    assert reason.row_id == 3
    assert reason.top_error == "GenerationError"
    assert (reason.failed, reason.total) == (5, 5)
    assert reason.alias is None
    assert reason.model is None
    assert reason.message.startswith(
        "column 'grade' failed on each of its first 5 rows with GenerationError: bad 'replyy'"
        " (e.g. row 3)"
    )
    assert reason.as_dict()["example"] == "bad 'replyy'"


def test_the_first_rows_rule_judges_the_first_rows_not_the_first_outcomes() -> None:
    """Failures that end before the successes of the first rows do not trip: the rule waits
    for those rows, so a column failing every third row is never stopped by a race."""
    monitor, trips = health(error_rate=None)
    for row in (0, 3, 6, 9, 12, 15, 18):
        monitor.record_failure("c", ValueError("unlucky"), row)
    assert trips == []
    monitor.record_success("c", 1)
    for row in range(21, 60, 3):
        monitor.record_failure("c", ValueError("unlucky"), row)
    assert trips == []


def test_the_first_rows_rule_passes_over_skipped_rows_and_model_errors() -> None:
    """Rows whose cell was skipped, or whose row a model error dropped, do not count: the rule
    judges the next rows of the plan instead (up to four times ``first_rows`` rows in)."""
    monitor, trips = health(error_rate=None)
    monitor.record_skipped("c", 0)
    monitor.record_failure("c", ProviderUnavailable("503", provider="p", model="m"), 2)
    for row in (1, 3, 4, 5):
        monitor.record_failure("c", ValueError("x"), row)
    assert trips == []
    monitor.record_failure("c", ValueError("x"), 6)
    assert [(t.column, t.total) for t in trips] == [("c", 5)]
    monitor, trips = health(first_rows=2, error_rate=None)
    for row in range(8):
        monitor.record_skipped("c", row)
    for row in range(8, 20):
        monitor.record_failure("c", ValueError("x"), row)
    assert trips == []  # eight rows passed over: the rule gave up


def test_the_first_rows_are_the_plan_s_first_rows() -> None:
    """On a resumed run the first rows are the first rows still to generate."""
    monitor = GeneratorHealth(first_rows=3, error_rate=None, window=10, min_outcomes=10)
    trips: list[ShutdownReason] = []
    monitor.on_trip(trips.append)
    monitor.watch_rows(40, 2)
    monitor.watch_rows(70, 10)
    for row in (0, 1, 2, 41, 40):
        monitor.record_failure("c", ValueError("x"), row)
    assert trips == []
    monitor.record_failure("c", ValueError("x"), 70)
    assert [t.total for t in trips] == [3]


def test_a_success_or_another_error_clears_the_first_rows_rule() -> None:
    """A column whose first rows include a success, or two different errors, is not judged by
    the first-rows rule."""
    monitor, trips = health(error_rate=None)
    monitor.record_success("a", 2)
    for row in (0, 1, 3, 4, 5, 6):
        monitor.record_failure("a", ValueError("x"), row)
    monitor.record_failure("b", ValueError("x"), 0)
    for row in range(1, 10):
        monitor.record_failure("b", KeyError("y"), row)
    assert trips == []


def test_columns_are_judged_apart() -> None:
    """Failures of one column never count for another."""
    monitor, trips = health(first_rows=3, error_rate=None)
    monitor.record_failure("a", ValueError("x"), 0)
    monitor.record_failure("b", ValueError("x"), 1)
    monitor.record_failure("a", ValueError("x"), 2)
    assert trips == []
    monitor.record_failure("a", ValueError("x"), 1)
    assert [t.column for t in trips] == ["a"]


def test_batches_count_every_row() -> None:
    """A batch's successes count one outcome per row for the rate rule, and clear the
    first-rows rule when they include a first row."""
    monitor, trips = health(first_rows=0, error_rate=0.5, window=40, min_outcomes=10)
    monitor.record_successes("c", range(100, 104))
    for row in range(15):
        monitor.record_failure("c", ValueError("x"), row)
    assert trips == []  # 15 of 19: the bound is 0.494
    monitor.record_failure("c", ValueError("x"), 15)
    assert len(trips) == 1  # 16 of 20: the bound is 0.512
    assert (trips[0].failed, trips[0].total) == (16, 20)
    assert "failed on 16 of its last 20 rows" in trips[0].message
    monitor, trips = health(first_rows=5, error_rate=None)
    monitor.record_successes("c", [7, 3])
    for row in (0, 1, 2, 4, 5, 6):
        monitor.record_failure("c", ValueError("x"), row)
    assert trips == []


def test_a_broken_column_stops_after_min_outcomes_and_a_third_never() -> None:
    """With the defaults, a column that fails every row stops at the 20th outcome even when
    its first rows never end (the first-rows rule cannot judge them), while one that fails a
    third of its rows at random — or 90% of them, with two error types sharing the failures —
    runs its 100,000 rows to the end."""
    run = gl.RunConfig()
    monitor = GeneratorHealth.from_run_config(run)
    trips: list[ShutdownReason] = []
    monitor.on_trip(trips.append)
    monitor.watch_rows(0, 100_000)
    for row in range(100, 119):
        monitor.record_failure("c", ValueError("x"), row)
    assert trips == []
    monitor.record_failure("c", ValueError("x"), 119)
    assert [(t.failed, t.total) for t in trips] == [(20, 20)]
    for shares in ((1 / 3, 0.0), (0.45, 0.45)):
        monitor = GeneratorHealth.from_run_config(run)
        monitor.on_trip(trips.append)
        monitor.watch_rows(0, 100_000)
        draws = random.Random(5)
        for row in range(100_000):
            draw = draws.random()
            if draw < shares[0]:
                monitor.record_failure("c", ValueError("x"), row)
            elif draw < shares[0] + shares[1]:
                monitor.record_failure("c", KeyError("y"), row)
            else:
                monitor.record_success("c", row)
    assert len(trips) == 1


def test_settings_out_of_range_are_refused() -> None:
    """Bad settings fail at construction."""
    for kwargs in (
        {"first_rows": -1},
        {"error_rate": 0.0},
        {"error_rate": 1.5},
        {"window": 0},
        {"min_outcomes": 0},
    ):
        args: dict[str, Any] = {"first_rows": 5, "error_rate": 0.5, "window": 5, "min_outcomes": 5}
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            GeneratorHealth(**{**args, **kwargs})


# ---------------------------------------------------------------------- in a run


async def info_of(row: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A custom column's value: a dict whose keys no schema declares (async: it runs on the
    loop, so virtual time cannot leap ahead while a worker thread computes it)."""
    return {"reply": row["text"][:10]}


def pipeline(run: dict[str, Any] | None = None) -> gl.PipelineConfig:
    """topic → text (a model) → info (a dict) → grade, whose template asks info for a key it
    does not have: every grade cell fails, and no validation can know it beforehand."""
    return structure_pipeline(
        {
            "providers": [
                {
                    "name": "sim",
                    "type": "simulated",
                    "simulation": {"default": {"latency": {"fixed": 0.2}}, "transport": "asgi"},
                }
            ],
            "models": [
                {"alias": "writer", "provider": "sim", "model": "w", "max_parallel_requests": 4}
            ],
            "columns": [
                {"name": "topic", "category": {"values": ["rivers", "deserts"]}},
                {"name": "text", "llm_text": {"model": "writer", "prompt": "On {{ topic }}."}},
                {
                    "name": "info",
                    "custom": {"function": f"{__name__}:info_of", "dtype": "json"},
                    "depends_on": ["text"],
                },
                {"name": "grade", "expression": "{{ info.replyy }}"},
            ],
            "run": {"seed": 4, "row_group_size": 25, "progress": "off", **(run or {})},
        }
    )


async def test_a_broken_column_stops_the_run_before_the_budget_is_spent(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """400 rows whose every grade fails: the run stops after a handful of requests (not 400),
    status "stopped", the reason naming the column and quoting the Jinja error."""
    result = await gl.acreate(pipeline(), num_records=400, output_dir=tmp_path / "o")
    assert result.status == "stopped"
    reason = result.stop_reason or ""
    assert reason.startswith("column 'grade' failed on each of its first 5 rows with")
    assert "has no attribute 'replyy'" in reason
    stop = result.summary["stop"]
    assert stop["column"] == "grade"
    assert stop["top_error"] == "GenerationError"
    requests = result.summary["models"]["writer"]["requests"]
    # Waves of max_parallel_requests (4) answered every 0.2 s: the second wave's answers
    # bring the 5th failure, by when the third wave was sent; not 400.
    assert requests == 3 * 4
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert meta["status"] == "stopped"


async def row_number(row: dict[str, Any], ctx: Any) -> int:
    """The row's id (async: it runs on the loop)."""
    return int(ctx.row_id)


async def always_fails(row: dict[str, Any], ctx: Any) -> int:
    """Raises on every row it is called for."""
    raise ValueError("cannot do it")


async def test_a_broken_column_behind_skip_when_stops_on_the_rows_it_runs(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """A broken column whose first rows are skipped is judged on the first rows it runs: the
    run stops after five of them, not after twenty, and names the column."""
    config = structure_pipeline(
        {
            "columns": [
                {"name": "i", "custom": {"function": f"{__name__}:row_number", "dtype": "int"}},
                {
                    "name": "bad",
                    "custom": {"function": f"{__name__}:always_fails", "dtype": "int"},
                    "skip_when": "i < 3",
                },
            ],
            "run": {"seed": 1, "row_group_size": 10, "max_row_groups_in_flight": 1},
        }
    )
    result = await gl.acreate(config, num_records=200, output_dir=tmp_path / "run")
    assert result.status == "stopped"
    assert (result.stop_reason or "").startswith(
        "column 'bad' failed on each of its first 5 rows with ValueError: cannot do it"
    )
    assert result.columns["bad"].skipped == 3
    assert result.columns["bad"].failed < 20


async def test_the_check_can_be_turned_off(tmp_path: Path, autojump_clock: Any) -> None:
    """With both rules off the run goes to the end and reports every row dropped, status
    "incomplete" (not "complete")."""
    config = pipeline({"generator_first_rows": 0, "generator_error_rate": None})
    result = await gl.acreate(config, num_records=50, output_dir=tmp_path / "o")
    assert result.status == "incomplete"
    assert result.num_rows == 0
    assert result.drop_reasons == {"grade": {"GenerationError": 50}}
    [example] = result.drop_examples
    assert (example.column, example.error_type, example.rows) == ("grade", "GenerationError", 50)
    assert "has no attribute 'replyy'" in example.message
    assert 0 <= example.row_id < 50
    assert result.summary["shortfall"] == {"missing": 50, "allowed": 0, "allow_drops": 0.0}


async def test_allow_drops_lets_a_share_go_missing(tmp_path: Path, autojump_clock: Any) -> None:
    """Rows missing within run.allow_drops leave the run "complete"; one more is
    "incomplete"."""

    def config(allow: float) -> gl.PipelineConfig:
        return structure_pipeline(
            {
                "columns": [
                    {"name": "n", "uniform": {"low": 0, "high": 10, "convert_to": "int"}},
                    {"name": "q", "expression": {"template": "{{ 10 // n }}", "dtype": "int"}},
                ],
                "run": {"seed": 1, "row_group_size": 10, "allow_drops": allow},
            }
        )

    first = await gl.acreate(config(0.0), num_records=100, output_dir=tmp_path / "a")
    missing = first.num_records - first.num_rows
    assert 0 < missing < 20
    assert first.status == "incomplete"
    enough = await gl.acreate(config(missing / 100), num_records=100, output_dir=tmp_path / "b")
    assert enough.status == "complete"
    assert "shortfall" not in enough.summary
    short = await gl.acreate(
        config((missing - 1) / 100), num_records=100, output_dir=tmp_path / "c"
    )
    assert short.status == "incomplete"


def test_cli_exits_4_naming_the_column(tmp_path: Path) -> None:
    """`gridloom create` on such a pipeline exits 4 and prints the stop reason once, naming
    the column and quoting the error; --json says the same in `stop`."""
    config = tmp_path / "p.yaml"
    (tmp_path / "helpers.py").write_text(
        "def info_of(row, ctx):\n    return {'reply': row['text'][:10]}\n"
    )
    doc = gl.dump_config(pipeline()).replace(f"{__name__}:info_of", "helpers:info_of")
    config.write_text(doc.replace("transport: asgi", "transport: socket"))
    proc = subprocess.run(
        [sys.executable, "-m", "gridloom", "create", config, "-n", "200", "-o", tmp_path / "o"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 4, proc.stderr
    both = proc.stdout + proc.stderr
    assert both.count("column 'grade' failed on each of its first 5 rows") == 1
    assert "has no attribute 'replyy'" in both
