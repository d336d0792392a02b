"""The four DAG shapes, cell-level vs column mode, against the ideal bound.

Shapes (one sampler ``topic``, LLM text columns on simulated models):

- narrow: topic → a → b → c → d (a chain of 4, each prompt references the previous);
- deep: topic → summary, trivia; summary → analysis → conclusion;
- wide: 5 independent LLM columns off the sampler;
- dual: 3 generator columns on model A, 3 judge columns on model B, judge *i* referencing
  generator *i* (two providers, each with its own ``max_parallel_requests``).

The simulated endpoint runs in its own process (``gridloom simulate``: lognormal latency, sigma
0.3, median ``--latency``), so the CPU and peak RSS measured are gridloom's alone. Each run gets
a fresh one seeded with ``--seed`` + trial, so cell and column mode of a trial draw the same
latency stream. Both dual
models are served by the same simulator process (two model names, each with its own limit in
gridloom), so their timeline shares one clock. Every run (warm-up and trials) is a fresh
``python bench/shapes.py --child`` process; before timing it imports gridloom and writes one
tiny Parquet table (a one-off ~0.3 s per process that is not the pipeline's). Per case: one
warm-up run (cell mode, ``--warmup-records`` rows), then ``--trials`` runs interleaved cell,
column, cell, column, ...

Bounds per trial. The issue's ideal, from the simulator's timeline of that trial (served
requests only)::

    L_m      = mean latency (end - start) of the requests served for model m
    capacity = max over models m of  cells_m * L_m / concurrency_m      (concurrency_m = 16)
    depth    = max over LLM dependency paths p of  sum over the cells of p of L_model(cell)
    ideal    = max(depth, capacity)

``depth`` uses mean latencies, so it is not a lower bound: a run ends with its slowest row, and
the slowest of 10 rows' 4-step chains is well above 4 x the mean when latencies vary (sigma 0.3).
Two bounds from the run's *realised* latencies say more:

- ``realised`` = max(the slowest row's critical path, summing each cell's own model time
  ``response - sent`` from the run's trace; the served latencies summed / concurrency). No
  scheduler can beat it on these latencies.
- ``replay`` = gridloom's cell-level policy replayed on the same model times with zero engine
  cost (a list scheduler: earliest ready cell first whenever its model has a free slot).
  ``wall / replay`` is the engine's own overhead; ``replay / realised`` is what not knowing
  latencies in advance costs (waves of 16 requests at 10 records).

``outside`` is wall time minus the endpoint's busy span (first request start to last response
end): setup before the first request and finishing after the last answer.

    python bench/shapes.py                        # 10 and 1,000 records, 3 trials
    python bench/shapes.py --quick                # 10 records x 3 trials, 100 x 1 (~4 min)
    python bench/shapes.py --shapes wide --records 1000 --trials 1
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import heapq
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _harness

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = ("narrow", "deep", "wide", "dual")
MODES = ("cell", "column")


# ----------------------------------------------------------------------------- shapes


def _text(model: str, prompt: str) -> dict[str, Any]:
    return {"llm_text": {"model": model, "prompt": prompt}}


def shape_columns(shape: str) -> list[dict[str, Any]]:
    """The columns of ``shape`` (after the sampler)."""
    if shape == "narrow":
        names = ["topic", "a", "b", "c", "d"]
        return [
            {"name": cur, **_text("m", f"Continue from: {{{{ {prev} }}}}")}
            for prev, cur in itertools.pairwise(names)
        ]
    if shape == "deep":
        return [
            {"name": "summary", **_text("m", "Summarize {{ topic }}.")},
            {"name": "trivia", **_text("m", "Trivia about {{ topic }}.")},
            {"name": "analysis", **_text("m", "Analyse: {{ summary }}")},
            {"name": "conclusion", **_text("m", "Conclude: {{ analysis }}")},
        ]
    if shape == "wide":
        return [{"name": f"c{i}", **_text("m", f"Angle {i} on {{{{ topic }}}}.")} for i in range(5)]
    if shape == "dual":
        gens = [
            {"name": f"gen{i}", **_text("a", f"Write {i} about {{{{ topic }}}}.")} for i in range(3)
        ]
        judges = [
            {"name": f"judge{i}", **_text("b", f"Judge this: {{{{ gen{i} }}}}")} for i in range(3)
        ]
        return gens + judges
    raise ValueError(shape)


def shape_paths(shape: str) -> list[list[str]]:
    """The LLM dependency paths (root to leaf) of one row, as model names per cell."""
    return {
        "narrow": [["m"] * 4],
        "deep": [["m"] * 3, ["m"]],
        "wide": [["m"]] * 5,
        "dual": [["a", "b"]] * 3,
    }[shape]


def shape_column_paths(shape: str) -> list[list[str]]:
    """The LLM dependency paths (root to leaf) of one row, as column names."""
    return {
        "narrow": [["a", "b", "c", "d"]],
        "deep": [["summary", "analysis", "conclusion"], ["trivia"]],
        "wide": [[f"c{i}"] for i in range(5)],
        "dual": [[f"gen{i}", f"judge{i}"] for i in range(3)],
    }[shape]


def column_models(shape: str) -> dict[str, str]:
    """The model alias of each LLM column."""
    return {c["name"]: c["llm_text"]["model"] for c in shape_columns(shape)}


def replay(shape: str, durations: dict[tuple[int, str], float], parallel: int) -> float:
    """The makespan of gridloom's cell-level policy with zero engine cost: the realised model
    times of this run, replayed by a list scheduler that starts the earliest ready cell (row
    order, then column order) whenever its model has a free slot. What the wall time would be
    if scheduling, HTTP and the simulator's own processing cost nothing."""
    models = column_models(shape)
    order = list(models)
    parents: dict[str, str | None] = {}
    for path in shape_column_paths(shape):
        for prev, cur in zip([None, *path], path, strict=False):
            parents[cur] = prev
    rows = sorted({r for r, _ in durations})
    ready: list[tuple[int, int, int, str]] = []
    for r in rows:
        for c in order:
            if parents[c] is None:
                heapq.heappush(ready, (r, order.index(c), r, c))
    children: dict[str, list[str]] = {c: [] for c in order}
    for c, p in parents.items():
        if p is not None:
            children[p].append(c)
    free = dict.fromkeys(set(models.values()), parallel)
    running: list[tuple[float, int, str]] = []
    now = 0.0
    while ready or running:
        waiting = []
        while ready:
            item = heapq.heappop(ready)
            _, _, r, c = item
            if free[models[c]] > 0:
                free[models[c]] -= 1
                heapq.heappush(running, (now + durations[(r, c)], r, c))
            else:
                waiting.append(item)
        for item in waiting:
            heapq.heappush(ready, item)
        now, r, c = heapq.heappop(running)
        free[models[c]] += 1
        for child_col in children[c]:
            heapq.heappush(ready, (r, order.index(child_col), r, child_col))
    return now


def realised(shape: str, trace: Any, parallel: int) -> dict[str, float]:
    """Bounds from this run's own model times (``response - sent`` of each traced cell, which
    includes the loopback round trip): the slowest row's critical path, and the replay."""
    import pyarrow.compute as pc

    rows = trace.filter(pc.equal(trace["status"], "ok")).to_pylist()
    durations = {(t["row_id"], t["column"]): t["response"] - t["sent"] for t in rows if t["model"]}
    crit = max(
        sum(durations[(r, c)] for c in path)
        for r in {r for r, _ in durations}
        for path in shape_column_paths(shape)
    )
    return {"crit_realised_s": crit, "replay_s": replay(shape, durations, parallel)}


# Simulated model name per model alias.
SIM_MODEL = {"m": "sim-m", "a": "sim-gen-a", "b": "sim-judge-b"}


def build_config(
    shape: str, url: str, mode: str, parallel: int, row_group_size: int
) -> dict[str, Any]:
    aliases = ["a", "b"] if shape == "dual" else ["m"]
    return {
        "providers": [{"name": f"sim-{a}", "type": "openai", "endpoint": url} for a in aliases],
        "models": [
            {
                "alias": a,
                "provider": f"sim-{a}",
                "model": SIM_MODEL[a],
                "max_parallel_requests": parallel,
            }
            for a in aliases
        ],
        "columns": [
            {"name": "topic", "category": {"values": ["rivers", "volcanoes", "deserts"]}},
            *shape_columns(shape),
        ],
        "run": {
            "seed": 5,
            "row_group_size": row_group_size,
            "scheduling": mode,
            "progress": "off",
            "trace": True,
        },
    }


# ----------------------------------------------------------------------------- child


def child(spec: dict[str, Any]) -> None:
    """One run in this fresh process; print its measurements as a JSON line."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    gl = _harness.load_gridloom()

    pq.write_table(pa.table({"x": [1]}), io.BytesIO())  # one-off per process, not the run's
    config = build_config(
        spec["shape"], spec["url"], spec["mode"], spec["parallel"], spec["row_group_size"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        result = gl.create(config, num_records=spec["records"], output_dir=f"{tmp}/out")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    llm_cells = sum(c.done for name, c in result.columns.items() if name != "topic")
    bounds = realised(spec["shape"], result.trace, spec["parallel"])
    print(
        json.dumps(
            {
                **bounds,
                "status": result.status,
                "rows": result.num_rows,
                "llm_cells": llm_cells,
                "wall_s": wall,
                "engine_wall_s": result.wall_time,
                "cpu_s": cpu,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


# ----------------------------------------------------------------------------- parent


def start_simulator(latency: float, seed: int) -> tuple[subprocess.Popen[str], str]:
    """``gridloom simulate``: lognormal latency, sigma 0.3, median ``latency`` s."""
    return _harness.start_simulator("--latency", str(latency), "--seed", str(seed))


def fetch_timeline(url: str) -> list[dict[str, Any]]:
    root = url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/timeline", timeout=60) as resp:
        entries: list[dict[str, Any]] = json.loads(resp.read())
    return entries


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, GRIDLOOM_PROGRESS="off")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def served_latencies(
    entries: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """The timeline's served completions, and their latencies per model alias."""
    served = [e for e in entries if e["status"] == 200 and e["path"].endswith("/completions")]
    by_alias: dict[str, list[float]] = {}
    for alias, name in SIM_MODEL.items():
        lat = [e["end"] - e["start"] for e in served if e["model"] == name]
        if lat:
            by_alias[alias] = lat
    return served, by_alias


def endpoint_bound(
    shape: str, run: dict[str, Any], entries: list[dict[str, Any]], parallel: int
) -> dict[str, Any]:
    """``run`` plus the issue's ideal bound from its slice of the simulator timeline. It needs
    only the endpoint's view, so it applies to any client (bench/peer.py uses it for both)::

        L_m = mean latency of the requests served for model m
        ideal = max(max over paths p of sum of L_model over p's cells,
                    max over models m of served_m * L_m / parallel)
    """
    served, by_alias = served_latencies(entries)
    paths = shape_paths(shape)
    missing = sorted({m for p in paths for m in p} - by_alias.keys())
    if missing:
        names = [SIM_MODEL[m] for m in missing]
        seen = sorted({e["model"] for e in entries})
        raise ValueError(f"no served requests for model(s) {names}; the timeline has {seen}")
    mean = {a: statistics.fmean(v) for a, v in by_alias.items()}
    depth = max(sum(mean[m] for m in p) for p in paths)
    capacity = max(len(v) * mean[a] / parallel for a, v in by_alias.items())
    ideal = max(depth, capacity)
    span = max(e["end"] for e in served) - min(e["start"] for e in served)
    wall = run["wall_s"]
    return {
        **run,
        "requests": len(served),
        "non_200": len(entries) - len(served),
        "mean_latency_s": {a: round(v, 4) for a, v in mean.items()},
        "ideal_depth_s": depth,
        "ideal_capacity_s": capacity,
        "ideal_s": ideal,
        "ratio": wall / ideal,
        "span_s": span,
        "outside_s": wall - span,
        "cpu_ms_per_cell": 1000 * run["cpu_s"] / max(1, run["llm_cells"]),
    }


def analyse(
    shape: str, run: dict[str, Any], entries: list[dict[str, Any]], parallel: int, records: int
) -> dict[str, Any]:
    """``endpoint_bound`` plus the bounds from the run's own trace (realised, replay)."""
    row = endpoint_bound(shape, run, entries, parallel)
    served, by_alias = served_latencies(entries)
    # From this run's own latencies: the capacity term exactly, the slowest row's path.
    capacity_realised = max(sum(v) / parallel for v in by_alias.values())
    ideal_realised = max(run["crit_realised_s"], capacity_realised)
    busy = sum(sum(v) for v in by_alias.values())
    wall = run["wall_s"]
    return {
        **row,
        "ideal_realised_s": ideal_realised,
        "ratio_realised": wall / ideal_realised,
        "ratio_replay": wall / run["replay_s"],
        "utilisation": busy / (row["span_s"] * parallel * len(by_alias)),
        "requests_per_s": len(served) / wall,
    }


def trials_for(records: int, args: argparse.Namespace) -> int:
    """Trials per mode: ``--trials``, else 3 (in quick mode only 1 above 10 records)."""
    if args.trials:
        return int(args.trials)
    return 1 if args.quick and records > 10 else 3


def run_case(shape: str, records: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The trials of one (shape, records) case: a warm-up, then cell and column mode
    interleaved. Every run gets a fresh simulator seeded with ``seed + trial``, so both modes
    of a trial draw the same latency stream."""
    base = {"shape": shape, "parallel": args.parallel, "row_group_size": args.row_group_size}
    with simulator(args.latency, args.seed) as url:
        warm = min(records, args.warmup_records)
        run_child({**base, "url": url, "mode": "cell", "records": warm})
    trials = []
    for trial in range(trials_for(records, args)):
        for mode in MODES:
            with simulator(args.latency, args.seed + trial) as url:
                run = run_child({**base, "url": url, "mode": mode, "records": records})
                entries = fetch_timeline(url)
            if len(entries) >= 99_000:  # the simulator keeps the last 100,000 entries
                raise RuntimeError("timeline too long; lower --records")
            row = analyse(shape, run, entries, args.parallel, records)
            row.update(shape=shape, records=records, mode=mode, trial=trial)
            trials.append(row)
            print(
                f"  {shape:6} {records:5} {mode:6} #{trial}: wall {row['wall_s']:.2f} s,"
                f" ideal {row['ideal_s']:.2f} s, ratio {row['ratio']:.3f},"
                f" realised {row['ideal_realised_s']:.2f} s ({row['ratio_realised']:.3f}),"
                f" replay {row['replay_s']:.2f} s, outside {row['outside_s']:.2f} s,"
                f" cpu {row['cpu_ms_per_cell']:.2f} ms/cell",
                flush=True,
            )
    return trials


@contextlib.contextmanager
def simulator(latency: float, seed: int) -> Iterator[str]:
    """A fresh ``gridloom simulate`` process for the block; yields its URL."""
    proc, url = start_simulator(latency, seed)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def summarise(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted(
        {(t["shape"], t["records"]) for t in trials}, key=lambda k: (SHAPES.index(k[0]), k[1])
    )
    for shape, records in keys:
        medians = {}
        for mode in MODES:
            ts = [
                t for t in trials if (t["shape"], t["records"], t["mode"]) == (shape, records, mode)
            ]
            walls = [t["wall_s"] for t in ts]

            def med(key: str, ts: list[dict[str, Any]] = ts) -> float:
                return float(statistics.median(t[key] for t in ts))

            medians[mode] = statistics.median(walls)
            rows.append(
                {
                    "shape": shape,
                    "records": records,
                    "mode": mode,
                    "trials": len(ts),
                    "wall_median_s": statistics.median(walls),
                    "wall_min_s": min(walls),
                    "wall_max_s": max(walls),
                    "ideal_s": med("ideal_s"),
                    "ratio": med("ratio"),
                    "ideal_realised_s": med("ideal_realised_s"),
                    "ratio_realised": med("ratio_realised"),
                    "replay_s": med("replay_s"),
                    "ratio_replay": med("ratio_replay"),
                    "outside_s": med("outside_s"),
                    "utilisation": med("utilisation"),
                    "cpu_ms_per_cell": med("cpu_ms_per_cell"),
                    "peak_rss_mib": max(t["peak_rss_mib"] for t in ts),
                    "requests_per_s": med("requests_per_s"),
                    "llm_cells": ts[0]["llm_cells"],
                }
            )
        speedup = medians["cell"] / medians["column"]
        for r in rows[-2:]:
            r["cell_over_column"] = speedup
    return rows


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"**DAG shapes vs the ideal bound** (latency: lognormal median {args.latency} s, sigma"
        f" 0.3; max_parallel_requests {args.parallel}; row groups of {args.row_group_size})",
        "",
        "| shape | records | mode | n | wall s median (min-max) | ideal s | ratio"
        " | realised s | ratio | replay s | ratio | outside s | cell/column | CPU ms/cell"
        " | peak RSS MiB | req/s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['records']:,} | {r['mode']} | {r['trials']}"
            f" | {r['wall_median_s']:.2f} ({r['wall_min_s']:.2f}-{r['wall_max_s']:.2f})"
            f" | {r['ideal_s']:.2f} | {r['ratio']:.3f} | {r['ideal_realised_s']:.2f}"
            f" | {r['ratio_realised']:.3f} | {r['replay_s']:.2f} | {r['ratio_replay']:.3f}"
            f" | {r['outside_s']:.2f} | {r['cell_over_column']:.2f}"
            f" | {r['cpu_ms_per_cell']:.2f} | {r['peak_rss_mib']:.0f} | {r['requests_per_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--records", type=int, nargs="+", default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument(
        "--quick", action="store_true", help="10 records (3 trials) and 100 records (1 trial)"
    )
    parser.add_argument("--latency", type=float, default=0.5, help="median latency, s")
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--row-group-size", type=int, default=500)
    parser.add_argument("--warmup-records", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="simulator latency seed")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    records = args.records or ([10, 100] if args.quick else [10, 1000])

    trials: list[dict[str, Any]] = []
    for shape in args.shapes:
        for n in records:
            trials.extend(run_case(shape, n, args))
    rows = summarise(trials)
    table = markdown(rows, args)
    report = {
        "benchmark": "DAG shapes, cell-level vs column mode, against the ideal bound",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "child"} | {"records": records},
        "summary": rows,
        "trials": trials,
    }
    _harness.save("shapes", report, table)
    print()
    print(table)


if __name__ == "__main__":
    main()
