"""The deep shape in cell-level and in column mode, traced, drawn one above the other.

topic (a sampler) → summary, trivia; summary → analysis → conclusion: four LLM text columns on
one simulated model (median latency 0.5 s, lognormal sigma 0.3, ``max_parallel_requests: 16``),
30 rows in one row group, against the built-in simulated endpoint over real sockets (real
time: a few seconds per mode). Writes ``docs/timeline-deep-cell-vs-column.png`` and
``bench/results/timeline-<date>-<host>.json``.

    python bench/timeline.py
"""

from __future__ import annotations

import datetime as dt
import io
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import _harness

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FIGURE = ROOT / "docs" / "timeline-deep-cell-vs-column.png"
ROWS = 30


def deep(scheduling: str) -> dict[str, Any]:
    """The deep shape's pipeline, scheduled ``cell`` or ``column``, traced."""

    def text(prompt: str) -> dict[str, Any]:
        return {"llm_text": {"model": "m", "prompt": prompt}}

    return {
        "providers": [
            {
                "name": "sim",
                "type": "simulated",
                "simulation": {"default": {"latency": {"median": 0.5, "sigma": 0.3}}},
            }
        ],
        "models": [{"alias": "m", "provider": "sim", "model": "m", "max_parallel_requests": 16}],
        "columns": [
            {"name": "topic", "category": {"values": ["rivers", "volcanoes", "deserts"]}},
            {"name": "summary", **text("Summarize {{ topic }}.")},
            {"name": "trivia", **text("Trivia about {{ topic }}.")},
            {"name": "analysis", **text("Analyse: {{ summary }}")},
            {"name": "conclusion", **text("Conclude: {{ analysis }}")},
        ],
        "run": {"seed": 5, "row_group_size": ROWS, "scheduling": scheduling, "trace": True},
    }


def main() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    gl = _harness.load_gridloom()
    from gridloom.plots import compare_gantt

    # The first Parquet write in a process pays ~0.3 s of one-off setup: not the first mode's.
    pq.write_table(pa.table({"x": [1]}), io.BytesIO())

    traces = {}
    report: dict[str, Any] = {
        "benchmark": "deep shape, cell-level vs column mode (traced)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "rows": ROWS,
        "runs": [],
    }
    labels = {"cell": "cell-level scheduling", "column": "column mode (run.scheduling: column)"}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, label in labels.items():
            result = gl.create(deep(mode), num_records=ROWS, output_dir=Path(tmp) / mode)
            assert result.trace is not None
            assert result.num_rows == ROWS
            traces[f"{label}: {result.wall_time:.2f} s"] = result.trace
            report["runs"].append(
                {"scheduling": mode, "wall_s": round(result.wall_time, 3), "rows": result.num_rows}
            )
            print(f"{mode}: {result.wall_time:.2f} s", flush=True)
    compare_gantt(
        traces,
        FIGURE,
        title=(
            f"deep shape, {ROWS} rows: topic → summary, trivia; summary → analysis → conclusion"
            " (LLM: median 0.5 s, 16 in parallel)"
        ),
    )
    RESULTS.mkdir(exist_ok=True)
    stem = f"timeline-{dt.date.today().isoformat()}-{platform.node()}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
