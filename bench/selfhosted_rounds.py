"""Where the self-hosted case's time beyond its wave bound goes, round by round.

The self-hosted case (``bench/overhead.py --case selfhosted``) runs ``max_parallel_requests``
512 against a fixed 1 s latency: every request slot is a chain of requests, one after the
other, and the run lasts as long as its slowest chain. So whatever a request spends beyond the
endpoint's latency adds up along its chain. This runs the same pipeline traced, in this
process, against a fresh ``gridloom simulate --latency 1 --sigma 0``, and splits each round
(512 requests in the order gridloom sent them) into:

- **endpoint latency excess**: the endpoint's own served time (its ``/timeline``: start to end)
  minus the set latency: its timers firing late;
- **transit**: what gridloom saw (the trace: request sent to response decoded) minus what the
  endpoint served, on average: encoding, the socket both ways, both event loops' queues,
  decoding; round 0 also opens the connections;
- **gridloom's turnaround**: from a response to the next request sent on a freed slot (the
  k-th request sent minus the (k - 512)-th response, both on gridloom's clock);
- **endpoint's turnaround**: the same on the endpoint's clock (a response written to the next
  request read), which holds transit as well.

The default 10,240 cells are 20 whole rounds. Results go to
``bench/results/selfhosted_rounds-<date>-<host>.{json,md}``; not part of ``nox -s bench``.

    python bench/selfhosted_rounds.py
    python bench/selfhosted_rounds.py --cells 20000 --parallel 512
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import _harness
import overhead


def _quantiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 and the mean of ``values``, in ms."""
    ordered = sorted(values)

    def at(p: float) -> float:
        return ordered[int(p * (len(ordered) - 1))] * 1000

    return {
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "mean": statistics.fmean(ordered) * 1000,
    }


def _turnaround(starts: list[float], ends: list[float], parallel: int) -> list[float]:
    """Seconds from each freed slot to the next request on it: the k-th start minus the
    (k - parallel)-th end, both sorted."""
    return [starts[k] - ends[k - parallel] for k in range(parallel, len(starts))]


def measure(cells: int, parallel: int, latency: float, seed: int) -> dict[str, Any]:
    gl = _harness.load_gridloom()
    proc, url = overhead.start_fixed_simulator(latency, seed)
    try:
        spec = {
            "url": url,
            "columns": overhead.SELFHOSTED_COLUMNS,
            "parallel": parallel,
            "row_group_size": 2000,
            "row_groups_in_flight": 4,
            "rows": cells,
            "trace": True,
        }
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = gl.create(overhead.build_config(spec), num_records=cells, output_dir=tmp)
            wall = time.perf_counter() - t0
            trace = pq.read_table(Path(tmp) / "trace.parquet").to_pylist()
        timeline = overhead.fetch(url, "/timeline")
    finally:
        overhead.stop(proc)
    attempts = [r for r in trace if r["model"] and r["sent"] is not None and r["response"]]
    served = [e for e in timeline if e["status"] == 200 and e["path"].endswith("/completions")]
    if result.status != "complete" or len(attempts) != cells or len(served) != cells:
        raise RuntimeError(f"run {result.status}: {len(attempts)} traced, {len(served)} served")
    attempts.sort(key=lambda r: r["sent"])
    served.sort(key=lambda e: e["start"])
    rounds = []
    for r in range(0, cells, parallel):
        ours = attempts[r : r + parallel]
        theirs = served[r : r + parallel]
        seen = statistics.fmean(a["response"] - a["sent"] for a in ours)
        endpoint = statistics.fmean(e["end"] - e["start"] for e in theirs)
        rounds.append(
            {
                "round": r // parallel,
                "requests": len(ours),
                "endpoint_excess_ms": (endpoint - latency) * 1000,
                "transit_ms": (seen - endpoint) * 1000,
            }
        )
    sent = [a["sent"] for a in attempts]
    answered = sorted(a["response"] for a in attempts)
    ends = sorted(e["end"] for e in served)
    wave = -(-cells // parallel) * statistics.fmean(e["end"] - e["start"] for e in served)
    return {
        "cells": cells,
        "parallel": parallel,
        "latency_s": latency,
        "wall_s": wall,
        "fraction_of_ideal": cells / wall / (parallel / latency),
        "wave_bound_s": wave,
        "over_wave_s": wall - wave,
        "rounds": rounds,
        "gridloom_turnaround_ms": _quantiles(_turnaround(sent, answered, parallel)),
        "endpoint_turnaround_ms": _quantiles(
            _turnaround([e["start"] for e in served], ends, parallel)
        ),
    }


def markdown(report: dict[str, Any]) -> str:
    rounds = report["rounds"]
    later = rounds[1:] or rounds
    lines = [
        f"**Self-hosted rounds** ({report['cells']:,} cells, {report['parallel']} in flight, "
        f"fixed {report['latency_s']:g} s latency; traced, in one process)",
        "",
        f"Wall {report['wall_s']:.2f} s = {report['fraction_of_ideal']:.3f} of "
        f"{report['parallel'] / report['latency_s']:.0f} cells/s; wave bound "
        f"{report['wave_bound_s']:.2f} s, {report['over_wave_s']:.2f} s over it.",
        "",
        "| round | requests | endpoint latency excess ms | transit ms |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['round']} | {r['requests']} | {r['endpoint_excess_ms']:.1f} | "
        f"{r['transit_ms']:.1f} |"
        for r in rounds
    ]
    mean_excess = statistics.fmean(r["endpoint_excess_ms"] for r in later)
    mean_transit = statistics.fmean(r["transit_ms"] for r in later)
    lines += [
        "",
        f"Rounds after the first: endpoint latency excess {mean_excess:.1f} ms, transit "
        f"{mean_transit:.1f} ms per request; round 0 transit {rounds[0]['transit_ms']:.1f} ms "
        "(it opens the connections).",
        "",
        "| turnaround ms (freed slot → next request) | p50 | p90 | p99 | mean |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("gridloom", "endpoint"):
        q = report[f"{name}_turnaround_ms"]
        lines.append(
            f"| {name} | {q['p50']:.2f} | {q['p90']:.2f} | {q['p99']:.2f} | {q['mean']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=10_240)
    parser.add_argument("--parallel", type=int, default=512)
    parser.add_argument("--latency", type=float, default=1.0, help="fixed, s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--name", default="selfhosted_rounds", help="results file stem")
    args = parser.parse_args()
    report = {
        "benchmark": "Self-hosted case: time beyond the wave bound, per round",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        **measure(args.cells, args.parallel, args.latency, args.seed),
    }
    text = markdown(report)
    print(text)
    print(_harness.save(args.name, report, text))


if __name__ == "__main__":
    main()
