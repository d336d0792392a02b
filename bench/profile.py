"""Where gridloom's CPU per LLM cell goes (issue 21): a sampled profile of the overhead case.

The run is ``bench/overhead.py``'s *engine* case (a sampler and three LLM text columns, the
simulated endpoint in its own process answering in 1-5 ms, ``max_parallel_requests`` 64, row
groups of 1,000) at ``--rows`` rows, in a fresh child process sampled by py-spy (``--rate``
samples per second; py-spy reads the child from outside, so the child's own CPU is barely
touched). Two sampled runs: one writes the collapsed stacks (``-f raw``), from which the table
below is computed; the other writes the flame graph (``-f flamegraph``, an SVG). A third run,
not sampled, measures the CPU per LLM cell and the time Python's cyclic garbage collector took
(``gc.callbacks``).

Each sample is put in one bucket by the innermost frame that matches a rule (in this order):
cyclic GC (py-spy sees a collection under the ``gc.callbacks`` hook that times it), trace,
storage, tracker, render, response decode, request encode, transport, throttle, client, llm
generator, scheduler, trio (the event loop, its locks, cancel scopes and socket calls when no
gridloom frame above them says more). Samples of the event loop waiting in ``epoll`` are idle
time, not CPU, and are left out. A bucket's *ms per cell* is its share of the samples times
the CPU per LLM cell measured in the third run. The GC time the hook measured is reported beside
the table.

    python bench/profile.py                        # 10,000 rows (py-spy installed: the bench extra)
    python bench/profile.py --rows 3000 --trace    # with tracing on
    python bench/profile.py --name before          # results/profile-before.{md,json,svg,txt}
"""

from __future__ import annotations

import argparse
import collections
import gc
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness
import overhead

RESULTS = Path(__file__).resolve().parent / "results"

#: (bucket, a substring of a frame), tried from the innermost frame outwards; first match wins.
RULES: tuple[tuple[str, str], ...] = (
    # py-spy sees a collection as the GC callback's frame (below): the collector's own time.
    ("cyclic GC", "child.<locals>.timed"),
    ("trace", "gridloom/trace/"),
    ("trace", "clients/_span.py"),
    ("storage", "gridloom/storage/"),
    ("storage", "pyarrow"),
    ("tracker", "engine/tracker.py"),
    ("tracker", "engine/_outcomes.py"),
    ("tracker", "engine/_stats.py"),
    ("tracker", "engine/generator_health.py"),
    ("render", "jinja2/"),
    ("render", "generators/_jinja"),
    ("render", "generators/_template"),
    ("response decode", "json/decoder"),
    ("response decode", "decode_chat"),
    ("response decode", "clients/_openai.py"),
    ("response decode", "_decoded ("),
    ("request encode", "json/encoder"),
    ("request encode", "chat_body"),
    ("transport", "clients/_wire.py"),
    ("transport", "clients/_exchange.py"),
    ("transport", "clients/_post.py"),
    ("transport", "clients/_http.py"),
    ("transport", "clients/_retry.py"),
    ("transport", "httptools"),
    ("transport", "h11/"),
    ("transport", "httpx/"),
    ("transport", "trio/_socket.py"),
    ("transport", "trio/_highlevel_socket.py"),
    ("throttle", "gridloom/throttle/"),
    ("throttle", "clients/_throttled.py"),
    ("client", "gridloom/clients/"),
    ("client", "gridloom/run/_health.py"),
    ("llm generator", "generators/llm.py"),
    ("llm generator", "gridloom/kinds/"),
    ("scheduler", "gridloom/engine/"),
    ("scheduler", "gridloom/run/"),
    ("trio", "trio/"),
    ("trio", "outcome/"),
)
IDLE = ("EpollIOManager.get_events", "epoll.poll")


def bucket(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in RULES:
            if pattern in frame:
                return name
    return "other"


def breakdown(raw: Path, marker: str) -> dict[str, Any]:
    """Samples per bucket (and the top functions of each) of the stacks through ``marker``."""
    buckets: collections.Counter[str] = collections.Counter()
    top: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if marker not in stack:
            continue
        frames = stack.split(";")
        n = int(count)
        if frames[-1].startswith(IDLE):
            idle += n
            continue
        name = bucket(frames)
        buckets[name] += n
        top[name][frames[-1].split(" (")[0]] += n
    total = sum(buckets.values())
    return {
        "samples": total,
        "idle_samples": idle,
        "buckets": {
            name: {
                "samples": n,
                "share": n / total,
                "top": [f for f, _ in top[name].most_common(3)],
            }
            for name, n in buckets.most_common()
        },
    }


# ----------------------------------------------------------------------------- child


def child(spec: dict[str, Any]) -> None:
    """One run of the engine case; prints CPU, cells and GC time as a JSON line."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    gl = _harness.load_gridloom()

    pq.write_table(pa.table({"x": [1]}), io.BytesIO())  # one-off per process, not the run's
    config = overhead.build_config(spec)
    config["run"]["trace"] = spec["trace"]
    gc_time = [0.0]
    started = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            gc_time[0] += time.process_time() - started[0]

    gc.callbacks.append(timed)
    with tempfile.TemporaryDirectory() as tmp:
        c0 = time.process_time()
        result = run_marked(gl, config, spec["rows"], f"{tmp}/out")
        cpu = time.process_time() - c0
    cells = 3 * result.num_rows
    print(json.dumps({"cpu_s": cpu, "cells": cells, "gc_s": gc_time[0]}))


def run_marked(gl: Any, config: dict[str, Any], rows: int, out: str) -> Any:
    """The measured call: its frame marks the samples that count."""
    return gl.create(config, num_records=rows, output_dir=out)


# ----------------------------------------------------------------------------- parent


def sampled(spec: dict[str, Any], fmt: str, out: Path, rate: int) -> dict[str, Any]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    cmd = [spy, "record", "-r", str(rate), "-f", fmt, "-o", str(out), "--"]
    cmd += [sys.executable, __file__, "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"py-spy failed ({proc.returncode}): {proc.stderr[-3000:]}")
    out_lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return dict(json.loads(out_lines[-1]))


def plain(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, GRIDLOOM_PROGRESS="off"),
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def packed(path: Path) -> Path:
    """``path`` gzipped beside it (collapsed stacks run to megabytes); the original removed."""
    out = path.with_name(path.name + ".gz")
    out.write_bytes(gzip.compress(path.read_bytes(), mtime=0))
    path.unlink()
    return out


def markdown(report: dict[str, Any]) -> str:
    ms = report["cpu_ms_per_cell"]
    lines = [
        f"**Where the CPU per LLM cell goes** ({report['rows']:,} rows, 3 LLM text columns,"
        f" tracing {'on' if report['trace'] else 'off'}; py-spy at {report['rate']} Hz,"
        f" {report['profile']['samples']:,} samples off the idle loop)",
        "",
        f"CPU per LLM cell (unsampled run): **{ms:.3f} ms**; Python's cyclic GC:"
        f" {1000 * report['gc_s'] / report['cells']:.3f} ms per cell"
        f" ({report['gc_s'] / report['cpu_s']:.1%} of the CPU, measured by its hook).",
        "",
        "| bucket | share of samples | ms per cell | top functions |",
        "|---|---:|---:|---|",
    ]
    for name, b in report["profile"]["buckets"].items():
        tops = ", ".join(f"`{f}`" for f in b["top"])
        lines.append(f"| {name} | {b['share']:.1%} | {b['share'] * ms:.3f} | {tops} |")
    lines += ["", f"Flame graph: `{report['flamegraph']}`; stacks: `{report['stacks']}`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--trace", action="store_true", help="with tracing on")
    parser.add_argument("--name", default=None, help="results/profile-NAME.* (default: date)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    name = args.name or time.strftime("%Y-%m-%d") + ("-trace" if args.trace else "")
    RESULTS.mkdir(exist_ok=True)
    stacks, svg = RESULTS / f"profile-{name}.txt", RESULTS / f"profile-{name}.svg"
    runs = []
    for fmt, out in (("raw", stacks), ("flamegraph", svg), (None, None)):
        proc, url = overhead.start_lognormal_simulator(overhead.ENGINE_LATENCY, args.seed)
        try:
            spec = {
                "url": url,
                "columns": overhead.ENGINE_COLUMNS,
                "parallel": 64,
                "row_group_size": 1000,
                "row_groups_in_flight": 4,
                "rows": args.rows,
                "trace": args.trace,
            }
            runs.append(sampled(spec, fmt, out, args.rate) if fmt and out else plain(spec))
        finally:
            overhead.stop(proc)
        print(f"  {fmt or 'unsampled'}: {runs[-1]}", flush=True)
    measured = runs[-1]
    report = {
        "benchmark": "CPU per LLM cell, sampled (issue 21)",
        "rows": args.rows,
        "trace": args.trace,
        "rate": args.rate,
        "cpu_s": measured["cpu_s"],
        "cells": measured["cells"],
        "gc_s": measured["gc_s"],
        "cpu_ms_per_cell": 1000 * measured["cpu_s"] / measured["cells"],
        "sampled_cpu_ms_per_cell": 1000 * runs[0]["cpu_s"] / runs[0]["cells"],
        "profile": breakdown(stacks, "run_marked (profile.py"),
        "flamegraph": str(svg.relative_to(RESULTS.parent.parent)),
        "stacks": str(packed(stacks).relative_to(RESULTS.parent.parent)),
        "load_average": os.getloadavg()[0],
    }
    table = markdown(report)
    (RESULTS / f"profile-{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"profile-{name}.md").write_text(table)
    print()
    print(table)


if __name__ == "__main__":
    main()
