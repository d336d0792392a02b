"""Shared plumbing for the benchmark scripts: one fresh process per size, reports on disk."""

from __future__ import annotations

import datetime as dt
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def load_gridloom() -> ModuleType:
    """``gridloom`` with every public name imported: its engine, run, storage and kinds.

    ``import gridloom`` loads each part on first use; a benchmark that times a run calls this
    before its clock starts, so that it times the run and not the imports (what ``import
    gridloom`` did by itself before it became lazy)."""
    import gridloom

    for name in gridloom.__all__:
        getattr(gridloom, name)
    return gridloom


def measure(run: Callable[[str], Any], rows: int) -> dict[str, Any]:
    """Run ``run(output_dir)`` (returning a RunResult) and measure it; for child processes."""
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        result = run(f"{tmp}/out")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    cells = sum(c.done for c in result.columns.values())
    return {
        "rows": rows,
        "rows_written": result.num_rows,
        "cells": cells,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "cells_per_s": round(cells / wall),
        "cpu_us_per_cell": round(1e6 * cpu / cells, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_sizes(script: str, sizes: list[int], *extra: str) -> list[dict[str, Any]]:
    """Run ``script --child N`` in a fresh interpreter per size; collect its JSON line."""
    runs = []
    for rows in sizes:
        proc = subprocess.run(
            [sys.executable, script, "--child", str(rows), *extra],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    return runs


def write_report(name: str, title: str, runs: list[dict[str, Any]]) -> str:
    """Write ``bench/results/<name>-<date>-<host>.{json,md}``; return the Markdown."""
    ratio = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    report = {
        "benchmark": title,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "runs": runs,
        "peak_rss_ratio_largest_vs_smallest": round(ratio, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"{name}-{dt.date.today().isoformat()}-{platform.node()}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"**{title}**",
        "",
        "| rows | cells | wall s | cells/s | CPU µs/cell | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['rows']:,} | {r['cells']:,} | {r['wall_s']:.2f} | {r['cells_per_s']:,}"
            f" | {r['cpu_us_per_cell']:.1f} | {r['peak_rss_mib']:.0f} |"
            for r in runs
        ),
        "",
        f"Peak RSS ratio, {runs[-1]['rows']:,} vs {runs[0]['rows']:,} rows: {ratio:.2f}",
    ]
    markdown = "\n".join(lines) + "\n"
    (RESULTS / f"{stem}.md").write_text(markdown)
    return markdown


def start_simulator(*options: str) -> tuple[subprocess.Popen[str], str]:
    """A ``gridloom simulate`` process on a free loopback port with ``options`` (e.g.
    ``--latency 0.5 --seed 0``); returns it and its base URL once it is listening."""
    cmd = [sys.executable, "-m", "gridloom", "simulate", "--port", "0", "--json", *options]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        url = json.loads(line)["url"]
    except (ValueError, KeyError) as exc:
        proc.kill()
        detail = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"simulator did not start: {line!r} {detail}") from exc
    return proc, str(url)


def save(kind: str, report: dict[str, Any], markdown: str) -> Path:
    """Write ``bench/results/<kind>-<date>-<host>.{json,md}``; return the JSON's path."""
    RESULTS.mkdir(exist_ok=True)
    stem = f"{kind}-{dt.date.today().isoformat()}-{platform.node()}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown)
    return RESULTS / f"{stem}.json"
