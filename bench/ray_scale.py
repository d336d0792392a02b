"""Scale-out on Ray (issue 19, item 4): goodput vs shards, and throughput vs workers.

**goodput** — the *wide* shape (5 independent LLM columns) behind ``max_parallel_requests:
32`` against ONE simulated endpoint shared by every shard: capacity 8, beyond it 429 with
``Retry-After: 1``, lognormal latency (sigma 0.25). The endpoint is served by this process
(``serve_simulated``) and the pipeline's provider points at its URL, so the shards (Ray tasks,
``cpus_per_shard`` 0.5 so four fit on two cores) share it as they would share a real API; each
shard's limiter starts at its share of the cap (``cap_share``) and its AIMD has to find its
share of the capacity. Run with the local executor (the reference) and 1, 2, 4 shards. Per
run: served requests / s over the capacity bound (capacity / mean served latency, as in
``bench/throttle.py``), over the endpoint's busy span (first request to last answer: the
throttling) and over the whole ``gl.acreate`` call (Ray's start and stop included); the 429s;
each shard's final limit. Target: ≥ 0.9 of the bound for every K.

**cpu** — a CPU-bound pipeline: a ``custom`` column (a pure-Python loop calibrated here to
cost ``--cell-ms`` of CPU per cell; its function lives in a module next to a temporary config)
and 2 LLM columns on a simulated endpoint without a capacity limit. The local executor and 1
and 2 shards (``cpus_per_shard`` 1): rows/s over the whole call and over the endpoint's busy
span, and the speed-up vs 1 shard (near 2x is the limit on a 2-core machine). Then the fixed
cost of a sharded run, with a near-empty pipeline (one sampler, 20 rows in 4 row groups): Ray's own
start and stop (``ray.init`` + ``ray.shutdown`` here), and the whole call with the local
executor and 1, 2 and 4 shards; the cost of a sharded run is its wall minus the local one's,
the cost per extra shard the slope over K.

The goodput and throughput runs share one local Ray instance, started here before them
(gridloom keeps a connection it finds, as on a running cluster), so their "whole call" figures
hold task and shard-engine start but not Ray's own start; ``--fresh-ray`` starts and stops
Ray inside each call instead. The fixed-cost runs always start a fresh instance, as
``gl.create(..., executor="ray")`` does for a user without a cluster. The address is ``local``
(a new instance): with ``None`` Ray would join the latest ``ray start`` cluster on the machine
if there is one. The CPU columns split the machine's busy time between this process (driver
and simulator), its descendants (Ray's processes, shards included; sampled every 0.25 s) and
everything else. Results go to ``bench/results/ray_scale.{json,md}`` (``ray_scale-quick.*``
with ``--quick``, so a quick run does not overwrite the full figures the docs quote).

    python bench/ray_scale.py             # full: 400 rows at 0.3 s; 3,000 CPU-bound rows
    python bench/ray_scale.py --quick     # about 90 s: 40 rows at 0.2 s; 400 CPU-bound rows
    python bench/ray_scale.py --part goodput
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Ray 2.60 authenticates the nodes of a local instance with ~/.ray/auth_token.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("GRIDLOOM_PROGRESS", "off")

import psutil  # type: ignore[import-untyped]
import trio

import _harness

RESULTS = Path(__file__).resolve().parent / "results"
GOODPUT_TARGET = 0.9
WORK_MODULE = "ray_scale_work"
WORK_SOURCE = '''"""The CPU-bound cell of bench/ray_scale.py: a pure-Python loop."""


def burn(row, ctx):
    total = 0
    for i in range(ctx.params["loops"]):
        total += i * i % 7
    return float(total % 1000)
'''


# ----------------------------------------------------------------------------- helpers


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, all processes) so far."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


class DescendantsCpu:
    """CPU seconds spent by this process's descendants (a local Ray instance: its raylet, GCS
    and workers) since this object was made, sampled every ``SAMPLE_SECONDS`` (a process that
    ends loses its last interval)."""

    SAMPLE_SECONDS = 0.25

    def __init__(self) -> None:
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.sample(new_from_zero=False)

    def sample(self, new_from_zero: bool = True) -> None:
        for proc in psutil.Process().children(recursive=True):
            try:
                times = proc.cpu_times()
            except psutil.Error:  # ended meanwhile
                continue
            cpu = float(times.user + times.system)
            self.base.setdefault(proc.pid, 0.0 if new_from_zero else cpu)
            self.last[proc.pid] = cpu

    def seconds(self) -> float:
        return sum(self.last[pid] - self.base[pid] for pid in self.last)

    async def watch(self) -> None:
        while True:
            await trio.sleep(self.SAMPLE_SECONDS)
            await trio.to_thread.run_sync(self.sample)


def occupancy(served: list[Any], capacity: int, slices: int = 10) -> list[float]:
    """The endpoint's mean requests being served over each of ``slices`` equal slices of its
    busy span, as a fraction of ``capacity`` (the start-up and the tail show here)."""
    first, last = min(e.start for e in served), max(e.end for e in served)
    width = (last - first) / slices
    out = []
    for i in range(slices):
        lo, hi = first + i * width, first + (i + 1) * width
        busy = sum(max(0.0, min(e.end, hi) - max(e.start, lo)) for e in served)
        out.append(round(busy / width / capacity, 3))
    return out


def served_span(timeline: list[Any], since: int) -> tuple[list[Any], float]:
    """The endpoint's answers after index ``since`` that were served, and the span from the
    first request's arrival to the last answer."""
    entries = timeline[since:]
    served = [e for e in entries if e.status == 200]
    span = max(e.end for e in entries) - min(e.start for e in entries)
    return served, span


async def timed_create(
    config: Any, rows: int, shards: int | None, cpus: float, address: str, base_dir: str | None
) -> tuple[Any, dict[str, float]]:
    """``gl.acreate`` into a temporary folder, with the local executor (``shards`` None) or
    ``shards`` Ray shards of ``cpus`` CPUs each; the result and the call's wall, this process's
    CPU and the machine's busy cores over it."""
    import attrs

    gl = _harness.load_gridloom()

    if shards is not None:
        ray_cfg = attrs.evolve(config.run.ray, cpus_per_shard=cpus)
        config = attrs.evolve(config, run=attrs.evolve(config.run, ray=ray_cfg))
    kwargs: dict[str, Any] = {}
    if shards is not None:
        kwargs = {"executor": "ray", "shards": shards, "ray_address": address}
    descendants = await trio.to_thread.run_sync(DescendantsCpu)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0, b0 = time.perf_counter(), time.process_time(), busy_seconds()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(descendants.watch)
            result = await gl.acreate(
                config, num_records=rows, output_dir=f"{tmp}/out", base_dir=base_dir, **kwargs
            )
            nursery.cancel_scope.cancel()
        wall = time.perf_counter() - t0
        cpu, busy = time.process_time() - c0, busy_seconds() - b0
        await trio.to_thread.run_sync(descendants.sample)
        kids = descendants.seconds()
    if result.status != "complete":
        raise RuntimeError(f"run ended {result.status}: {result.stop_reason}")
    return result, {
        "wall_s": wall,
        "bench_cpu_cores": cpu / wall,
        "ray_cpu_cores": kids / wall,
        "machine_cores": busy / wall,
        "other_cores": max(0.0, busy - cpu - kids) / wall,
    }


def label(shards: int | None) -> str:
    return "local" if shards is None else f"ray x{shards}"


# ----------------------------------------------------------------------------- goodput


async def goodput_case(args: argparse.Namespace) -> dict[str, Any]:
    gl = _harness.load_gridloom()
    from gridloom.config import LatencyConfig, SimulatedModel, SimulationConfig
    from gridloom.simulated import serve_simulated

    model = SimulatedModel(
        latency=LatencyConfig(median=args.latency, sigma=0.25),
        capacity=args.capacity,
        retry_after=1.0,
    )
    runs = []
    async with serve_simulated(SimulationConfig(seed=1, default=model)) as server:
        builder = (
            gl.PipelineBuilder(seed=1)
            .provider("sim", endpoint=server.url)
            .model("m", provider="sim", model="wide", max_parallel_requests=args.parallel)
            .category("topic", ["rivers", "volcanoes", "deserts"])
        )
        for i in range(5):
            builder = builder.llm_text(f"c{i}", "m", f"Angle {i} on {{{{ topic }}}}.")
        config = builder.run(row_group_size=args.row_group_size).build()
        for shards in [*([] if args.no_local else [None]), *args.shards]:
            since = len(server.app.timeline())
            result, measured = await timed_create(
                config, args.rows, shards, args.cpus_per_shard, args.ray_address, None
            )
            timeline = server.app.timeline()
            served, span = served_span(timeline, since)
            mean_latency = statistics.fmean(e.end - e.start for e in served)
            bound = args.capacity / mean_latency
            shard_reports = result.extras.get("shards") or []
            # A shard that generated no row group (the others took them all) has no throttle.
            reports = shard_reports or [result.extras]
            limits = [r["models"]["m"].get("throttle", {}).get("chat", {}) for r in reports]
            run = {
                "executor": label(shards),
                "shards": shards,
                "requests_ok": len(served),
                "responses_429": sum(1 for e in timeline[since:] if e.status == 429),
                **measured,
                "span_s": span,
                "mean_latency_s": mean_latency,
                "capacity_bound_rps": bound,
                "goodput_rps_span": len(served) / span,
                "goodput_fraction_span": len(served) / span / bound,
                "goodput_fraction_wall": len(served) / measured["wall_s"] / bound,
                "shard_caps": [t.get("cap", "-") for t in limits],
                "shard_final_limits": [t.get("limit", "-") for t in limits],
                "shard_cuts": [t.get("cuts", 0) for t in limits],
                "shard_429s": [t.get("rate_limited", 0) for t in limits],
                "shard_row_groups": [len(s.get("row_groups_generated", [])) for s in shard_reports],
                "shard_walls_s": [s["invocation"]["wall_time"] for s in shard_reports],
                "shard_pids": [s["pid"] for s in shard_reports],
                "occupancy_by_tenth": occupancy(served, args.capacity),
            }
            runs.append(run)
            print(
                f"  goodput {run['executor']:>8}: {run['goodput_fraction_span']:.3f} of the bound"
                f" over the span ({run['goodput_fraction_wall']:.3f} over the call),"
                f" {run['responses_429']} x 429, wall {run['wall_s']:.1f} s, final limits"
                f" {run['shard_final_limits']}",
                flush=True,
            )
    return {
        "rows": args.rows,
        "llm_columns": 5,
        "latency": f"lognormal, median {args.latency} s, sigma 0.25",
        "capacity": args.capacity,
        "max_parallel_requests": args.parallel,
        "row_group_size": args.row_group_size,
        "cpus_per_shard": args.cpus_per_shard,
        "target": GOODPUT_TARGET,
        "target_met_span": all(r["goodput_fraction_span"] >= GOODPUT_TARGET for r in runs),
        "target_met_wall": all(r["goodput_fraction_wall"] >= GOODPUT_TARGET for r in runs),
        "runs": runs,
    }


# ----------------------------------------------------------------------------- cpu


def calibrate(cell_ms: float) -> tuple[int, float]:
    """Loop iterations of ``burn`` costing ``cell_ms`` of CPU here, and the measured cost."""
    namespace: dict[str, Any] = {}
    exec(WORK_SOURCE, namespace)  # our own loop, timed in this interpreter
    burn: Callable[[Any, Any], float] = namespace["burn"]

    class Ctx:
        def __init__(self, loops: int) -> None:
            self.params = {"loops": loops}

    def cost_of(loops: int) -> float:
        ctx = Ctx(loops)
        return statistics.median(_cpu_of(lambda: burn(None, ctx)) for _ in range(15))

    loops = 200_000
    for _ in range(3):  # rescale until the median cost of a call is the one asked
        loops = max(1, round(loops * cell_ms / 1000 / cost_of(loops)))
    return loops, 1000 * cost_of(loops)


def _cpu_of(fn: Callable[[], object]) -> float:
    c0 = time.thread_time()
    fn()
    return time.thread_time() - c0


def cpu_config(url: str, loops: int, parallel: int, row_group_size: int) -> Any:
    from gridloom.config import load_config

    return load_config(
        {
            "providers": [{"name": "sim", "type": "openai", "endpoint": url}],
            "models": [
                {
                    "alias": "m",
                    "provider": "sim",
                    "model": "fast",
                    "max_parallel_requests": parallel,
                }
            ],
            "columns": [
                {"name": "topic", "category": {"values": ["rivers", "volcanoes", "deserts"]}},
                {
                    "name": "work",
                    "custom": {
                        "function": f"{WORK_MODULE}:burn",
                        "dtype": "float",
                        "params": {"loops": loops},
                    },
                    "depends_on": ["topic"],
                },
                {"name": "c0", "llm_text": {"model": "m", "prompt": "About {{ topic }}."}},
                {"name": "c1", "llm_text": {"model": "m", "prompt": "More on {{ topic }}."}},
            ],
            "run": {"seed": 3, "row_group_size": row_group_size},
        }
    )


def empty_config(row_group_size: int) -> Any:
    from gridloom.config import load_config

    return load_config(
        {
            "columns": [{"name": "topic", "category": {"values": ["a", "b", "c"]}}],
            "run": {"seed": 3, "row_group_size": row_group_size},
        }
    )


def ray_start_stop(address: str) -> tuple[float, float]:
    """Seconds to start a Ray instance (``address`` ``local``: a new one), and to stop it."""
    import ray

    t0 = time.perf_counter()
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    t1 = time.perf_counter()
    ray.shutdown()
    return t1 - t0, time.perf_counter() - t1


async def cpu_case(args: argparse.Namespace) -> dict[str, Any]:
    from gridloom.config import LatencyConfig, SimulatedModel, SimulationConfig
    from gridloom.simulated import serve_simulated

    loops, cell_ms = calibrate(args.cell_ms)
    print(f"  calibrated: {loops:,} loop iterations = {cell_ms:.2f} ms CPU per cell", flush=True)
    model = SimulatedModel(latency=LatencyConfig(median=args.cpu_latency, sigma=0.25))
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / f"{WORK_MODULE}.py").write_text(WORK_SOURCE)
        async with serve_simulated(SimulationConfig(seed=2, default=model)) as server:
            config = cpu_config(server.url, loops, args.parallel, args.cpu_row_group_size)
            for shards in [None, *args.workers]:
                since = len(server.app.timeline())
                result, measured = await timed_create(
                    config, args.cpu_rows, shards, 1.0, args.ray_address, folder
                )
                served, span = served_span(server.app.timeline(), since)
                shard_reports = result.extras.get("shards") or []
                run = {
                    "executor": label(shards),
                    "shards": shards,
                    "rows": result.num_rows,
                    "requests_ok": len(served),
                    **measured,
                    "span_s": span,
                    "rows_per_s": result.num_rows / measured["wall_s"],
                    "rows_per_s_span": result.num_rows / span,
                    "shard_walls_s": [s["invocation"]["wall_time"] for s in shard_reports],
                    "shard_pids": [s["pid"] for s in shard_reports],
                }
                runs.append(run)
                print(
                    f"  cpu {run['executor']:>8}: {run['rows_per_s']:.1f} rows/s over the call,"
                    f" {run['rows_per_s_span']:.1f} over the span, wall {run['wall_s']:.1f} s,"
                    f" CPU: this process {run['bench_cpu_cores']:.2f} cores, Ray's"
                    f" {run['ray_cpu_cores']:.2f}, others {run['other_cores']:.2f}",
                    flush=True,
                )
    one = next(r for r in runs if r["shards"] == 1)
    for run in runs:
        run["speedup_vs_1_shard"] = run["rows_per_s"] / one["rows_per_s"]
        run["speedup_vs_1_shard_span"] = run["rows_per_s_span"] / one["rows_per_s_span"]
    return {
        "rows": args.cpu_rows,
        "row_group_size": args.cpu_row_group_size,
        "cell_ms_asked": args.cell_ms,
        "loops": loops,
        "cell_cpu_ms": cell_ms,
        "llm_columns": 2,
        "latency": f"lognormal, median {args.cpu_latency} s, sigma 0.25, no capacity limit",
        "max_parallel_requests": args.parallel,
        "cpus_per_shard": 1.0,
        "runs": runs,
    }


async def overhead_case(args: argparse.Namespace) -> dict[str, Any]:
    """The fixed cost of a sharded run, with a near-empty pipeline (see the module)."""
    started, stopped = await trio.to_thread.run_sync(ray_start_stop, args.ray_address)
    config = empty_config(5)
    walls: dict[str, list[float]] = {}
    for _ in range(args.trials):
        for shards in [None, *args.overhead_shards]:
            cpus = 1.0 if shards is None or shards <= 2 else 0.5
            _, measured = await timed_create(config, 20, shards, cpus, args.ray_address, None)
            walls.setdefault(label(shards), []).append(measured["wall_s"])
    best = {name: min(values) for name, values in walls.items()}
    local = best["local"]
    per_k = {k: best[label(k)] - local for k in args.overhead_shards}
    ks = sorted(per_k)
    slope = (per_k[ks[-1]] - per_k[ks[0]]) / (ks[-1] - ks[0]) if len(ks) > 1 else 0.0
    out = {
        "rows": 20,
        "row_groups": 4,
        "trials": args.trials,
        "ray_init_s": started,
        "ray_shutdown_s": stopped,
        "walls_s": walls,
        "best_wall_s": best,
        "sharded_cost_s": {str(k): v for k, v in per_k.items()},
        "per_extra_shard_s": slope,
        "per_shard_s": {str(k): v / k for k, v in per_k.items()},
    }
    print(
        f"  overhead: local {local:.2f} s; sharded run costs "
        + ", ".join(f"K={k}: +{v:.2f} s" for k, v in per_k.items())
        + f"; Ray init {started:.2f} s + shutdown {stopped:.2f} s; {slope:.2f} s per extra shard",
        flush=True,
    )
    return out


# ----------------------------------------------------------------------------- report


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"**Scale-out on Ray** ({report['date']}, `{report['host']}`, {report['cpus']} cores,"
        f" Ray {report['ray']}, {report['ray_instance']}; `{report['command']}`)",
    ]
    g = report.get("goodput")
    if g:
        lines += [
            "",
            f"Goodput vs shards: wide shape, {g['rows']:,} rows x 5 LLM columns, one endpoint"
            f" of capacity {g['capacity']} (429 + Retry-After 1 s beyond it), latency"
            f" {g['latency']}, max_parallel_requests {g['max_parallel_requests']} for the run,"
            f" cpus_per_shard {g['cpus_per_shard']}.",
            "",
            "| executor | goodput / bound (span) | goodput / bound (whole call) | 429s | wall s"
            " | span s | shard caps | shard final limits | other processes' CPU (cores) |",
            "|---|---:|---:|---:|---:|---:|---|---|---:|",
            *(
                f"| {r['executor']} | {r['goodput_fraction_span']:.3f}"
                f" | {r['goodput_fraction_wall']:.3f} | {r['responses_429']}"
                f" | {r['wall_s']:.1f} | {r['span_s']:.1f}"
                f" | {', '.join(map(str, r['shard_caps']))}"
                f" | {', '.join(map(str, r['shard_final_limits']))} | {r['other_cores']:.2f} |"
                for r in g["runs"]
            ),
            "",
            f"Target ≥ {g['target']} of the bound for every K: over the endpoint's busy span"
            f" {'met' if g['target_met_span'] else '**missed**'}; over the whole call"
            f" {'met' if g['target_met_wall'] else '**missed**'}.",
        ]
    c = report.get("cpu")
    if c:
        lines += [
            "",
            f"Throughput vs workers: {c['rows']:,} rows of a custom column costing"
            f" {c['cell_cpu_ms']:.2f} ms CPU per cell (pure Python) + 2 LLM columns (latency"
            f" {c['latency']}), cpus_per_shard 1.",
            "",
            "| executor | rows/s (whole call) | speed-up vs 1 shard | rows/s (span)"
            " | speed-up (span) | wall s | CPU, cores: bench process / Ray's / others |",
            "|---|---:|---:|---:|---:|---:|---|",
            *(
                f"| {r['executor']} | {r['rows_per_s']:.1f} | {r['speedup_vs_1_shard']:.2f}"
                f" | {r['rows_per_s_span']:.1f} | {r['speedup_vs_1_shard_span']:.2f}"
                f" | {r['wall_s']:.1f} | {r['bench_cpu_cores']:.2f} / {r['ray_cpu_cores']:.2f}"
                f" / {r['other_cores']:.2f} |"
                for r in c["runs"]
            ),
        ]
        o = c["overhead"]
        costs = ", ".join(
            f"{k} shard{'s' if k != '1' else ''} +{v:.2f} s ({o['per_shard_s'][k]:.2f} s per shard)"
            for k, v in o["sharded_cost_s"].items()
        )
        lines += [
            "",
            f"Fixed cost of a sharded run (one sampler, {o['rows']} rows, best of"
            f" {o['trials']}): local executor {o['best_wall_s']['local']:.2f} s; sharded,"
            f" over that: {costs}; each extra shard +{o['per_extra_shard_s']:.2f} s. Of it,"
            f" Ray's own start {o['ray_init_s']:.2f} s and stop {o['ray_shutdown_s']:.2f} s"
            f" (importing Ray took {report['import_ray_s']:.2f} s, once per process).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the ~90 s variant")
    parser.add_argument("--part", choices=["goodput", "cpu", "all"], default="all")
    parser.add_argument("--ray-address", default="local", help="Ray cluster (default: a new one)")
    parser.add_argument(
        "--fresh-ray",
        action="store_true",
        help="start and stop Ray in each goodput/throughput run, as gl.create does when not"
        " connected (default: one local instance for those runs)",
    )
    parser.add_argument("--no-local", action="store_true", help="goodput: shards only")
    parser.add_argument("--name", help="results file stem (default: ray_scale[-quick])")
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=32)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--cpus-per-shard", type=float, default=0.5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--overhead-shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--cell-ms", type=float, default=5.0)
    parser.add_argument("--cpu-latency", type=float, default=0.05)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.latency, args.row_group_size = 40, 0.2, 10
        args.cpu_rows, args.cpu_row_group_size, args.trials = 400, 50, 1
        args.overhead_shards = [1, 2]
    else:
        args.rows, args.latency, args.row_group_size = 400, 0.3, 25
        args.cpu_rows, args.cpu_row_group_size, args.trials = 3000, 250, 2
    started = time.perf_counter()
    import ray

    imported = time.perf_counter() - started
    report: dict[str, Any] = {
        "benchmark": "ray_scale",
        "quick": args.quick,
        "command": "python bench/ray_scale.py" + (" --quick" if args.quick else ""),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "import_ray_s": imported,
        "load_average_before": os.getloadavg()[0],
    }
    shared = not args.fresh_ray and args.ray_address == "local"
    if shared:  # one instance for the throughput runs; gridloom keeps a connection it finds
        ray.init(
            address="local",
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    report["ray_instance"] = "one for all runs" if shared else "a fresh one per run"
    if args.part in ("goodput", "all"):
        report["goodput"] = trio.run(goodput_case, args)
    if args.part in ("cpu", "all"):
        report["cpu"] = trio.run(cpu_case, args)
    if shared:
        ray.shutdown()
    if args.part in ("cpu", "all"):
        report["cpu"]["overhead"] = trio.run(overhead_case, args)
    report["bench_wall_s"] = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    stem = args.name or ("ray_scale-quick" if args.quick else "ray_scale")
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
    print(f"written: bench/results/{stem}.json, {stem}.md ({report['bench_wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
