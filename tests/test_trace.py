"""Task traces: the spans, trace.parquet, the Perfetto JSON (trace.json) and the plots."""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import matplotlib.image
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.plots import compare_gantt, draw_gantt, render_plots
from gridloom.trace import (
    ORIGIN_KEY,
    TRACE_SCHEMA,
    _chrome,
    assign_lanes,
    chrome_trace,
    chrome_trace_chunks,
    column_order,
    requests_in_flight,
    trace_origin,
)

LATENCY = 0.5
COLUMNS = ["topic", "summary", "trivia", "label"]


def pipeline(
    *, trace: bool = True, scheduling: str = "cell", error_500_rate: float = 0.0
) -> gl.PipelineConfig:
    """topic (sampler) → summary, trivia (LLM) → label (expression), on a simulated model
    mounted in-process with a fixed latency and 4 requests at once."""
    text = lambda prompt: {"model": "m", "prompt": prompt}  # noqa: E731
    return structure_pipeline(
        {
            "providers": [
                {
                    "name": "sim",
                    "type": "simulated",
                    "simulation": {
                        "transport": "asgi",
                        "default": {
                            "latency": {"fixed": LATENCY},
                            "error_500_rate": error_500_rate,
                        },
                    },
                }
            ],
            "models": [{"alias": "m", "provider": "sim", "model": "m", "max_parallel_requests": 4}],
            "columns": [
                {"name": "topic", "category": {"values": ["rivers", "deserts", "glaciers"]}},
                {"name": "summary", "llm_text": text("Summarize {{ topic }}.")},
                {"name": "trivia", "llm_text": text("Trivia on {{ topic }}.")},
                {
                    "name": "label",
                    "expression": "{{ topic }}: {{ summary[:10] }} / {{ trivia[:10] }}",
                },
            ],
            "run": {
                "seed": 4,
                "row_group_size": 10,
                "max_row_groups_in_flight": 2,
                "scheduling": scheduling,
                "trace": trace,
                "retry_backoff_seconds": 0.2,
                "retry_backoff_max_seconds": 1.0,
                "shutdown_error_rate": None,
            },
        }
    )


async def traced_run(out: Path, **kwargs: Any) -> gl.RunResult:
    result = await gl.acreate(pipeline(**kwargs), num_records=30, output_dir=out)
    assert result.status == "complete"
    assert result.num_rows == 30
    assert result.trace is not None
    return result


def spans(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


# ---------------------------------------------------------------------- the spans


@pytest.mark.parametrize("scheduling", ["cell", "column"])
async def test_span_times_are_in_order(
    tmp_path: Path, autojump_clock: Any, scheduling: str
) -> None:
    """ready ≤ dispatched ≤ slot ≤ completed for every attempt, and slot ≤ sent ≤ response ≤
    completed for those that called the model, exactly (virtual time); the model took exactly
    its latency."""
    result = await traced_run(tmp_path / "run", scheduling=scheduling)
    assert result.trace is not None
    assert result.trace.schema.equals(TRACE_SCHEMA)
    rows = spans(result.trace)
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["column"] for r in rows} == set(COLUMNS)
    model_spans = 0
    for r in rows:
        assert 0.0 <= r["ready"] <= r["dispatched"] <= r["slot"] <= r["completed"], r
        if r["column"] in ("summary", "trivia"):
            model_spans += 1
            assert r["model"] == "m"
            assert r["requests"] == 1
            assert r["slot"] <= r["sent"] <= r["response"] <= r["completed"], r
            assert r["response"] - r["sent"] == pytest.approx(LATENCY, abs=1e-9)
        else:
            assert r["model"] is None
            assert math.isnan(r["sent"])
            assert math.isnan(r["response"])
    assert model_spans == 60
    # Cells: one attempt per cell of an LLM column; the sampler and the expression run as
    # batches or cells, but cover every row once.
    covered = defaultdict(int)
    for r in rows:
        covered[r["column"]] += r["rows"]
    assert dict(covered) == dict.fromkeys(COLUMNS, 30)
    # At most 4 requests at once: the model's cap.
    assert max(v for _, v in requests_in_flight(result.trace)["m"]) == 4


async def test_retried_attempts_are_numbered_per_cell(tmp_path: Path, autojump_clock: Any) -> None:
    """With injected 500s, a cell's attempts are 1, 2, ...: each failed one ``retry`` with its
    error, the last ``ok``."""
    result = await traced_run(tmp_path / "run", error_500_rate=0.3)
    assert result.trace is not None
    attempts: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in spans(result.trace):
        if r["model"] is not None:
            attempts[(r["column"], r["row_id"])].append(r)
    assert len(attempts) == 60
    retried = 0
    for cell in attempts.values():
        cell.sort(key=lambda r: r["attempt"])
        assert [r["attempt"] for r in cell] == list(range(1, len(cell) + 1))
        assert [r["status"] for r in cell] == ["retry"] * (len(cell) - 1) + ["ok"]
        assert all(r["error"] == "ProviderUnavailable" for r in cell[:-1])
        assert cell[-1]["error"] == ""
        # A retry is queued again only after the failed attempt ended.
        for before, after in itertools.pairwise(cell):
            assert before["completed"] <= after["ready"]
        retried += len(cell) > 1
    assert retried >= 5


async def test_trace_files_match_the_result(tmp_path: Path, autojump_clock: Any) -> None:
    """trace.parquet equals RunResult.trace, both record the run's start on the clock, and
    trace.json is valid JSON with a counter track per model."""
    out = tmp_path / "run"
    result = await traced_run(out)
    assert result.trace is not None
    on_disk = pq.read_table(out / "trace.parquet")
    # NaN is never equal to itself for pyarrow: compare the values with pandas, which matches
    # NaN with NaN, and the schemas with their metadata.
    assert on_disk.schema.equals(result.trace.schema, check_metadata=True)
    assert on_disk.to_pandas().equals(result.trace.to_pandas())
    assert trace_origin(on_disk) is not None
    assert ORIGIN_KEY.encode() in on_disk.schema.metadata
    text = (out / "trace.json").read_text()
    document = json.loads(text)
    assert json.loads(json.dumps(document)) == document
    check_chrome_trace(document)
    counters = {e["name"] for e in document["traceEvents"] if e["ph"] == "C"}
    assert counters == {"m AIMD limit", "m in flight (throttle)", "m in flight (trace)"}
    # Every attempt of the trace is a slice in its column's process.
    processes = {
        e["pid"]: e["args"]["name"]
        for e in document["traceEvents"]
        if e["ph"] == "M" and e["name"] == "process_name"
    }
    assert sorted(processes.values()) == sorted([*COLUMNS, "models"])
    attempts = [e for e in document["traceEvents"] if e.get("cat") == "attempt"]
    assert len(attempts) == result.trace.num_rows
    assert {processes[e["pid"]] for e in attempts} == set(COLUMNS)
    # The model phase of each LLM attempt lasts exactly the latency (in microseconds).
    models = [e for e in document["traceEvents"] if e["ph"] == "X" and e["name"] == "model"]
    assert len(models) == 60
    assert {round(e["dur"]) for e in models} == {round(LATENCY * 1e6)}


async def test_untraced_runs_write_no_trace(
    tmp_path: Path, autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without run.trace (nor GRIDLOOM_TRACE) there is no trace; GRIDLOOM_TRACE=1 turns it on."""
    monkeypatch.delenv("GRIDLOOM_TRACE", raising=False)
    out = tmp_path / "plain"
    result = await gl.acreate(pipeline(trace=False), num_records=10, output_dir=out)
    assert result.trace is None
    assert not (out / "trace.parquet").exists()
    assert not (out / "trace.json").exists()
    preview = await gl.apreview(pipeline(trace=False), num_records=5)
    assert preview.trace is None

    monkeypatch.setenv("GRIDLOOM_TRACE", "1")
    out = tmp_path / "env"
    result = await gl.acreate(pipeline(trace=False), num_records=10, output_dir=out)
    assert result.trace is not None
    assert result.trace.num_rows > 0
    assert (out / "trace.parquet").is_file()
    assert (out / "trace.json").is_file()
    # A traced preview keeps the trace in memory only.
    preview = await gl.apreview(pipeline(trace=False), num_records=5)
    assert preview.trace is not None


async def test_overwriting_a_traced_run_removes_its_trace(
    tmp_path: Path, autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untraced run over a traced one leaves no stale trace behind."""
    monkeypatch.delenv("GRIDLOOM_TRACE", raising=False)
    out = tmp_path / "run"
    await traced_run(out)
    assert (out / "trace.parquet").is_file()
    await gl.acreate(pipeline(trace=False), num_records=10, output_dir=out, overwrite=True)
    assert not (out / "trace.parquet").exists()
    assert not (out / "trace.json").exists()


# ---------------------------------------------------------------------- Chrome trace events

_NUMBER = {"type": "number", "minimum": 0}
_COMMON = ["name", "ph", "ts", "pid", "tid"]

#: The trace-event format's JSON Object Format, as far as gridloom uses it.
TRACE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["traceEvents", "displayTimeUnit", "otherData"],
    "properties": {
        "displayTimeUnit": {"enum": ["ms", "ns"]},
        "otherData": {"type": "object"},
        "traceEvents": {
            "type": "array",
            "items": {
                "type": "object",
                "required": _COMMON,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "cat": {"type": "string"},
                    "ph": {"enum": ["X", "B", "E", "b", "e", "C", "M", "i", "I"]},
                    "ts": _NUMBER,
                    "dur": _NUMBER,
                    "pid": {"type": "integer", "minimum": 0},
                    "tid": {"type": "integer", "minimum": 0},
                    "id": {"type": ["string", "integer"]},
                    "args": {"type": "object"},
                },
                "allOf": [
                    {
                        "if": {"properties": {"ph": {"const": "X"}}},
                        "then": {"required": ["dur"]},
                    },
                    {
                        "if": {"properties": {"ph": {"enum": ["b", "e"]}}},
                        "then": {"required": ["id", "cat"]},
                    },
                    {
                        "if": {"properties": {"ph": {"const": "C"}}},
                        "then": {
                            "required": ["args"],
                            "properties": {
                                "args": {
                                    "type": "object",
                                    "minProperties": 1,
                                    "additionalProperties": {"type": "number"},
                                }
                            },
                        },
                    },
                    {
                        "if": {"properties": {"ph": {"const": "M"}}},
                        "then": {
                            "required": ["args"],
                            "properties": {
                                "name": {
                                    "enum": [
                                        "process_name",
                                        "process_sort_index",
                                        "thread_name",
                                        "thread_sort_index",
                                    ]
                                }
                            },
                        },
                    },
                ],
            },
        },
    },
}


_TRACE_EVENTS = jsonschema.Draft202012Validator(TRACE_EVENT_SCHEMA)


def check_chrome_trace(document: dict[str, Any]) -> None:
    """Valid against the schema, times in whole microseconds; on each (pid, tid), complete
    events nest properly (each one inside the one it starts in, or after it ends) and attempts
    never overlap (one may end at the moment the next begins)."""
    _TRACE_EVENTS.validate(document)
    threads: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for event in document["traceEvents"]:
        assert type(event["ts"]) is int  # whole microseconds, so slices nest exactly
        if event["ph"] == "X":
            assert type(event["dur"]) is int
            threads[(event["pid"], event["tid"])].append(event)
    for events in threads.values():
        bounds = sorted((e["ts"], -e["dur"], e["cat"]) for e in events)
        stack: list[int] = []  # ends of the open slices
        for start, neg_dur, cat in bounds:
            end = start - neg_dur
            while stack and stack[-1] <= start:
                stack.pop()
            assert not stack or end <= stack[-1], "a slice crosses its parent's end"
            if cat == "attempt" and end > start:
                assert not stack, "an attempt nested in another slice"
            stack.append(end)
        attempts = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e["cat"] == "attempt")
        for (_, end), (start, _) in itertools.pairwise(attempts):
            assert start >= end, "two attempts overlap on one lane"


def table_of(rows: list[dict[str, Any]]) -> pa.Table:
    base = {
        "row_group": 0,
        "rows": 1,
        "model": None,
        "attempt": 1,
        "dispatched": math.nan,
        "slot": math.nan,
        "sent": math.nan,
        "response": math.nan,
        "completed": math.nan,
        "requests": 0,
        "status": "ok",
        "error": "",
    }
    return pa.Table.from_pylist([base | row for row in rows], schema=TRACE_SCHEMA)


def test_chrome_trace_places_overlapping_attempts_on_lanes() -> None:
    """Overlapping attempts of a column go to different lanes, phases nest inside them, an
    attempt cut short ends with the trace, counters before the start fold into one at 0."""
    table = table_of(
        [
            {
                "row_id": 0,
                "column": "a",
                "ready": 0.0,
                "dispatched": 0.5,
                "slot": 0.5,
                "completed": 1.0,
            },
            {
                "row_id": 0,
                "column": "b",
                "model": "m",
                "ready": 1.0,
                "dispatched": 1.0,
                "slot": 1.25,
                "sent": 1.5,
                "response": 2.5,
                "completed": 2.5,
                "requests": 1,
            },
            {
                "row_id": 1,
                "column": "b",
                "model": "m",
                "ready": 1.0,
                "dispatched": 1.0,
                "slot": 1.0,
                "sent": 1.0,
                "response": 2.0,
                "completed": 2.0,
                "requests": 1,
                "status": "retry",
                "error": "RateLimited",
            },
            {
                "row_id": 1,
                "column": "b",
                "model": "m",
                "ready": 2.0,
                "dispatched": 2.0,
                "slot": 2.0,
                "sent": 2.0,
                "status": "cancelled",
                "attempt": 2,
            },
            {
                "row_id": -1,
                "rows": 5,
                "column": "c",
                "ready": 3.0,
                "dispatched": 3.0,
                "slot": 3.0,
                "completed": 3.0,
            },
        ]
    )
    counters = {"m AIMD limit": [(-2.0, 1.0), (-1.0, 4.0), (1.75, 3.0)]}
    document = chrome_trace(table, counters=counters, metadata={"note": "x"})
    check_chrome_trace(document)
    events = document["traceEvents"]
    assert document["otherData"] == {"source": "gridloom", "attempts": 5, "note": "x"}
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert names == {1: "a", 2: "b", 3: "c", 4: "models"}
    b_attempts = sorted(
        (e["ts"], e["dur"], e["tid"], e["name"], e["args"]["attempt"])
        for e in events
        if e.get("cat") == "attempt" and e["pid"] == 2
    )
    assert b_attempts == [
        (1e6, 1e6, 0, "row 1 (retry)", 1),
        (1e6, 1.5e6, 1, "row 0", 1),
        (2e6, 1e6, 0, "row 1 (cancelled)", 2),  # cut short: ends at the trace's end, 3 s
    ]
    phases = sorted(
        (e["ts"], e["name"], e["dur"]) for e in events if e.get("cat") == "phase" and e["pid"] == 2
    )
    assert phases == [
        (1e6, "model", 1e6),
        (1e6, "slot wait", 0.25e6),
        (1.25e6, "throttle", 0.25e6),
        (1.5e6, "model", 1e6),
        (2e6, "model", 1e6),
    ]
    retry = next(e for e in events if e.get("name") == "row 1 (retry)")
    assert retry["args"] == {
        "row_group": 0,
        "row_id": 1,
        "attempt": 1,
        "status": "retry",
        "model": "m",
        "requests": 1,
        "error": "RateLimited",
    }
    batch = next(e for e in events if e.get("cat") == "attempt" and e["pid"] == 3)
    assert batch["name"] == "batch of 5 rows"
    assert batch["dur"] == 0
    counter = defaultdict(list)
    for e in events:
        if e["ph"] == "C":
            counter[e["name"]].append((e["ts"], e["args"]["value"]))
    assert counter["m AIMD limit"] == [(0.0, 4.0), (1.75e6, 3.0)]
    assert counter["m in flight (trace)"] == [
        (0.0, 0),
        (1e6, 1),
        (1.5e6, 2),
        (2e6, 2),
        (2.5e6, 1),
        (3e6, 0),
    ]


#: Times a trace may hold: on a grid (so many coincide), off it, not reached, and broken ones.
_TIMES = st.one_of(
    st.integers(0, 40).map(lambda k: k / 8),
    st.floats(0, 6, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.5, -0.0]),
    st.none(),
)
_MOMENTS = ("ready", "dispatched", "slot", "sent", "response", "completed")
#: Any text, including quotes, backslashes, control characters and non-ASCII.
_TEXT = st.text(max_size=12)
_NAME = st.text(min_size=1, max_size=12)  # columns, models and counters have names


@st.composite
def trace_tables(draw: st.DrawFn, times: st.SearchStrategy[float | None] = _TIMES) -> pa.Table:
    """A trace table of 0-30 attempts with arbitrary times, names and outcomes."""
    columns = draw(st.lists(_NAME, min_size=1, max_size=4, unique=True))
    models = draw(st.lists(_NAME, min_size=1, max_size=3, unique=True))
    rows = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "row_group": st.integers(0, 5),
                    "row_id": st.integers(-1, 99),
                    "rows": st.sampled_from([1, 1, 7]),
                    "column": st.sampled_from(columns),
                    "model": st.none() | st.sampled_from(models),
                    "attempt": st.integers(1, 4),
                    **dict.fromkeys(_MOMENTS, times),
                    "requests": st.integers(0, 5),
                    "cached": st.none() | st.integers(0, 3),
                    "status": st.sampled_from(["ok", "retry", "failed", ""]) | _TEXT,
                    "error": _TEXT,
                    "inference": st.none() | _TEXT,
                }
            ),
            max_size=30,
        )
    )
    return pa.Table.from_pylist(rows, schema=TRACE_SCHEMA)


@settings(max_examples=150, deadline=None)
@given(trace_tables(), st.dictionaries(_NAME, st.lists(st.tuples(_TIMES, _TIMES), max_size=6)))
def test_any_trace_exports_as_valid_nested_json(
    table: pa.Table, counters: dict[str, list[tuple[Any, Any]]]
) -> None:
    """Whatever the times (missing, infinite, negative, out of order) and whatever the text
    (quotes, control characters, non-ASCII), the export is valid JSON of the trace-event format
    in which slices nest; it shows each attempt once, on its column's process, with its own
    strings unchanged, and its phases inside it."""
    counters = {
        name: [(t, v) for t, v in points if t is not None and v is not None]
        for name, points in counters.items()
    }
    text = "".join(chrome_trace_chunks(table, counters=counters, metadata={"note": '\u2603"'}))
    document = json.loads(text)
    assert document == chrome_trace(table, counters=counters, metadata={"note": '\u2603"'})
    check_chrome_trace(document)
    events = document["traceEvents"]
    process = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    attempts = [e for e in events if e.get("cat") == "attempt"]
    assert len(attempts) == table.num_rows
    # Multisets: a model or error may be missing (None) in one attempt, text in another.
    shown = Counter(
        (
            process[e["pid"]],
            e["args"]["row_id"],
            e["args"]["attempt"],
            e["args"]["status"],
            e["args"].get("model"),
            e["args"].get("error", ""),
            e["args"].get("inference") or None,
        )
        for e in attempts
    )
    expected = Counter(
        (
            row["column"],
            row["row_id"],
            row["attempt"],
            row["status"],
            row["model"],
            row["error"],
            row["inference"] or None,
        )
        for row in table.to_pylist()
    )
    assert shown == expected
    lanes = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            lanes[(e["pid"], e["tid"])].append(e)
    for lane in lanes.values():
        for a in (e for e in lane if e["cat"] == "attempt"):
            inside = [
                p for p in lane if p["cat"] == "phase" and a["ts"] <= p["ts"] < a["ts"] + a["dur"]
            ]
            assert sum(p["dur"] for p in inside) <= a["dur"]
            assert all(p["ts"] + p["dur"] <= a["ts"] + a["dur"] for p in inside)
    assert document["otherData"] == {
        "source": "gridloom",
        "attempts": table.num_rows,
        "note": '\u2603"',
    }
    for e in events:
        if e["ph"] == "C":
            assert math.isfinite(e["args"]["value"])


def test_the_export_is_the_same_whatever_its_piece_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attempts are formatted a piece at a time; pieces of 1, 7 or all attempts write the
    same document, and each attempt once."""
    rng = random.Random(3)
    rows = []
    for index in range(60):
        ready = rng.randint(0, 40) / 8
        times = sorted(ready + rng.randint(0, 16) / 8 for _ in range(5))
        rows.append(
            {
                "row_id": index // 3,
                "column": f"c{index % 3}",
                "model": "m" if index % 3 else None,
                "ready": ready,
                "dispatched": times[0],
                "slot": times[1],
                "sent": times[2] if index % 3 else math.nan,
                "response": times[3] if index % 3 else math.nan,
                "completed": times[4] if index % 5 else math.nan,
                "status": "ok" if index % 4 else "retry",
            }
        )
    table = table_of(rows)
    whole = "".join(chrome_trace_chunks(table))
    assert len([e for e in json.loads(whole)["traceEvents"] if e.get("cat") == "attempt"]) == 60
    for piece in (1, 7):
        monkeypatch.setattr(_chrome, "_PIECE", piece)
        assert "".join(chrome_trace_chunks(table)) == whole


@settings(max_examples=150, deadline=None)
@given(trace_tables(st.one_of(st.integers(0, 40).map(lambda k: k / 8), st.just(math.nan))))
def test_requests_in_flight_counts_the_attempts_waiting(table: pa.Table) -> None:
    """At each time of the series, the level is the attempts sent by then and not yet back
    (an attempt's last answer, else its end, else the trace's end); the times are 0 and every
    time an attempt went out or came back, each once, in order."""
    times = [row[name] for row in table.to_pylist() for name in _MOMENTS]
    end = max((t for t in times if t is not None and math.isfinite(t)), default=0.0)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in table.to_pylist():
        sent, response, completed = row["sent"], row["response"], row["completed"]
        if row["model"] is None or not math.isfinite(sent):
            continue
        if math.isfinite(response) and response >= sent:
            back = response
        else:
            back = completed if math.isfinite(completed) else end
        out[row["model"]].append((sent, max(back, sent)))
    series = requests_in_flight(table)
    assert set(series) == set(out)
    for model, attempts in out.items():
        times = [t for t, _ in series[model]]
        assert times == sorted({0.0, *(t for pair in attempts for t in pair)})
        for t, level in series[model]:
            assert level == sum(1 for sent, back in attempts if sent <= t < back)


def test_lanes_are_the_first_free_ones() -> None:
    """Each interval takes the lowest lane free at its start; touching intervals share one."""
    lanes, count = assign_lanes([(0, 2), (1, 3), (2, 4), (0.5, 1), (3, 5), (5, 6)])
    assert lanes == [0, 1, 0, 1, 1, 0]
    assert count == 2
    assert assign_lanes([]) == ([], 0)


# ---------------------------------------------------------------------- plots


def coloured_runs(image: Any, x: int) -> int:
    """Runs of coloured (not white, black or grey) pixels down column ``x`` of an image."""
    runs, inside = 0, False
    for pixel in image[:, x, :3]:
        coloured = float(pixel.max() - pixel.min()) > 0.03
        if coloured and not inside:
            runs += 1
        inside = coloured
    return runs


def check_png(path: Path, *, width: int, min_height: int = 200) -> Any:
    assert path.is_file()
    assert 10_000 < path.stat().st_size < 2_000_000
    image = matplotlib.image.imread(path)
    height, actual_width = image.shape[:2]
    assert actual_width == width
    assert min_height <= height <= 3000
    return image


async def test_render_plots_draws_a_band_per_column(tmp_path: Path, autojump_clock: Any) -> None:
    """columns.png has one coloured band per column (read back from the image), models.png
    and latency.png exist; dest puts them elsewhere."""
    out = tmp_path / "run"
    await traced_run(out, error_500_rate=0.2)
    paths = render_plots(out, dest=tmp_path / "plots")
    assert [p.name for p in paths] == ["columns.png", "models.png", "latency.png"]
    assert all(p.parent == tmp_path / "plots" for p in paths)
    columns = check_png(paths[0], width=1200)
    for share in (0.3, 0.45, 0.6, 0.75):
        assert coloured_runs(columns, int(share * columns.shape[1])) == len(COLUMNS)
    check_png(paths[1], width=1200)
    check_png(paths[2], width=1200, min_height=300)
    assert render_plots(out) == [out / "columns.png", out / "models.png", out / "latency.png"]


async def test_gantt_bands_follow_the_execution_order(tmp_path: Path, autojump_clock: Any) -> None:
    """draw_gantt labels one band per column in execution order; compare_gantt stacks runs on
    one time axis."""
    from matplotlib.figure import Figure

    cell = await traced_run(tmp_path / "cell")
    column = await traced_run(tmp_path / "column", scheduling="column")
    assert cell.trace is not None
    assert column.trace is not None
    assert column_order(cell.trace) == COLUMNS
    figure = Figure()
    ax = figure.subplots()
    assert draw_gantt(ax, cell.trace) == COLUMNS
    assert [t.get_text() for t in ax.get_yticklabels()] == COLUMNS
    assert len(ax.collections) == 2  # the tasks, and their model time
    path = compare_gantt(
        {
            f"cell: {cell.wall_time:.1f} s": cell.trace,
            f"column: {column.wall_time:.1f} s": column.trace,
        },
        tmp_path / "compare.png",
        title="cell vs column",
    )
    image = check_png(path, width=1200)
    assert coloured_runs(image, int(0.5 * image.shape[1])) == 2 * len(COLUMNS)


def test_plots_need_a_trace_and_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An untraced run directory is refused; without matplotlib the error says what to install."""
    with pytest.raises(FileNotFoundError, match="GRIDLOOM_TRACE=1"):
        render_plots(tmp_path)
    pq.write_table(table_of([]), tmp_path / "trace.parquet")
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"pip install 'gridloom\[plot\]'"):
        render_plots(tmp_path)
