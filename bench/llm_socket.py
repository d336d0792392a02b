"""LLM cells over real sockets: requests/s and the engine's CPU per LLM cell.

The simulated endpoint runs in its own process (``gridloom simulate``), so the CPU measured here
is gridloom's alone: scheduler, generators, HTTP client. The pipeline is one sampler and three
LLM text columns (two chained, one independent) at about 5 ms simulated latency.

    python bench/llm_socket.py                   # 10,000 rows
    python bench/llm_socket.py --rows 2000 --latency 0.005 --parallel 64
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _harness

RESULTS = Path(__file__).resolve().parent / "results"


def start_simulator(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridloom", "simulate", "--port", "0", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        detail = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"simulator did not start: {line!r} {detail}")
    url = next(word for word in line.split() if word.startswith("http://"))
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--parallel", type=int, default=64)
    args = parser.parse_args()

    gl = _harness.load_gridloom()

    proc, url = start_simulator(args.latency)
    try:
        config = (
            gl.PipelineBuilder(seed=1)
            .provider("sim", endpoint=url)
            .model("m", provider="sim", model="small", max_parallel_requests=args.parallel)
            .category("topic", ["rivers", "volcanoes", "deserts"])
            .llm_text("summary", "m", "Summarize {{ topic }}.")
            .llm_text("analysis", "m", "Analyse: {{ summary }}")
            .llm_text("trivia", "m", "Trivia about {{ topic }}.")
            .run(row_group_size=1000)
            .build()
        )
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            result = gl.create(config, num_records=args.rows, output_dir=f"{tmp}/out")
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    models = result.summary["models"]["m"]
    llm_cells = 3 * result.num_rows
    report = {
        "benchmark": "LLM cells over real sockets (simulator in its own process)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "rows": args.rows,
        "latency_s": args.latency,
        "max_parallel_requests": args.parallel,
        "requests": models["requests"],
        "failed": models["failed"],
        "wall_s": round(wall, 3),
        "requests_per_s": round(models["requests"] / wall, 1),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_llm_cell": round(1000 * cpu / llm_cells, 3),
        "mean_latency_s": models["mean_latency"],
        "ideal_wall_s": round(models["requests"] * args.latency / args.parallel, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"llm-socket-{dt.date.today().isoformat()}-{platform.node()}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
