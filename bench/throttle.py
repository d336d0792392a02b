"""The 429 scenario: the *wide* shape against an endpoint whose capacity is below the limit.

An endpoint of capacity 8 (beyond it: 429 with Retry-After 1 s) behind
``max_parallel_requests: 32``; 1,000 rows x 5 independent LLM columns. Reports goodput as a
fraction of the capacity bound (capacity / mean latency of served requests), the 429 count
(in the whole run and in its first 10 s), the time from the start to the first 429, and a
PNG of the AIMD limit and the requests in flight over time.

    python bench/throttle.py                      # 1,000 rows, median latency 0.5 s
    python bench/throttle.py --rows 200 --latency 0.2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import trio

import _harness

RESULTS = Path(__file__).resolve().parent / "results"
#: The start-up window whose refusals are counted apart (a slow start's are all in it).
EARLY_SECONDS = 10.0


async def run(rows: int, latency: float, capacity: int, parallel: int) -> dict[str, Any]:
    gl = _harness.load_gridloom()
    from gridloom.config import LatencyConfig, SimulatedModel, SimulationConfig
    from gridloom.simulated import serve_simulated

    model = SimulatedModel(
        latency=LatencyConfig(median=latency, sigma=0.25), capacity=capacity, retry_after=1.0
    )
    async with serve_simulated(SimulationConfig(seed=1, default=model)) as server:
        builder = (
            gl.PipelineBuilder(seed=1)
            .provider("sim", endpoint=server.url)
            .model("m", provider="sim", model="wide", max_parallel_requests=parallel)
            .category("topic", ["rivers", "volcanoes", "deserts"])
        )
        for i in range(5):
            builder = builder.llm_text(f"c{i}", "m", f"Angle {i} on {{{{ topic }}}}.")
        config = builder.run(row_group_size=250).build()
        with tempfile.TemporaryDirectory() as tmp:
            started = trio.current_time()
            result = await gl.acreate(config, num_records=rows, output_dir=f"{tmp}/out")
            wall = trio.current_time() - started
        timeline = server.app.timeline()
    served = [e for e in timeline if e.status == 200]
    mean_latency = sum(e.end - e.start for e in served) / len(served)
    bound = capacity / mean_latency
    refused = sorted(e.start - started for e in timeline if e.status == 429)
    usage = result.summary["models"]["m"]
    throttle = usage["throttle"]["chat"]
    return {
        "rows": rows,
        "requests_ok": len(served),
        "responses_429": len(refused),
        "responses_429_first_10s": sum(1 for t in refused if t < EARLY_SECONDS),
        "first_429_s": round(refused[0], 3) if refused else None,
        "wall_s": round(wall, 3),
        "goodput_rps": round(len(served) / wall, 3),
        "capacity_bound_rps": round(bound, 3),
        "goodput_fraction": round(len(served) / wall / bound, 4),
        "final_limit": throttle["limit"],
        "ceiling": throttle["ceiling"],
        "cuts": throttle["cuts"],
        "history": throttle["history"],
        "timeline": [[e.start - started, e.end - started, e.status] for e in timeline],
        "started": started,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = report["started"]
    history = report["history"]
    times = [t - start for t, _, _ in history]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.step(times, [limit for _, limit, _ in history], where="post", label="AIMD limit")
    ax.step(times, [flight for _, _, flight in history], where="post", label="in flight", alpha=0.6)
    refused = [s for s, _, status in report["timeline"] if status == 429]
    ax.plot(refused, [0.5] * len(refused), "rx", label="429")
    ax.axhline(report["capacity"], color="grey", linestyle="--", label="endpoint capacity")
    ax.set_xlabel("seconds")
    ax.set_ylabel("requests")
    ax.set_title(
        f"wide shape, {report['rows']} rows: goodput {report['goodput_fraction']:.2f}"
        f" of the capacity bound, {report['responses_429']} x 429"
    )
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=32)
    args = parser.parse_args()
    report = trio.run(run, args.rows, args.latency, args.capacity, args.parallel)
    report["capacity"] = args.capacity
    RESULTS.mkdir(exist_ok=True)
    stem = f"throttle-{dt.date.today().isoformat()}-{platform.node()}"
    plot(report, RESULTS / f"{stem}.png")
    summary = {k: v for k, v in report.items() if k not in ("history", "timeline", "started")} | {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],  # others' benchmarks too
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
