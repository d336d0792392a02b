"""What tracing costs per LLM cell, in instructions (issue 21, item 2: tracing on ≤ 1.2 x off).

``bench/overhead.py --with-trace`` measures the ratio in CPU seconds, which this VM's speed
drift (a factor of two from one hour to the next, and within a run) can move by more than the
20 % the target allows. callgrind counts instructions instead, which do not drift: the
engine case of ``bench/overhead.py`` (a sampler and three LLM text columns against ``gridloom
simulate`` in its own process, 1-5 ms latency, 64 parallel) runs at two sizes, traced and
untraced, each under callgrind in a fresh process against a fresh simulator. The difference
between the sizes, over the LLM cells it adds, is the instructions per LLM cell without the
fixed start-up: the trace's export at the end of the run scales with the cells and is part of
it.

Needs ``valgrind`` on the PATH; about 50 x the runs' CPU time (some minutes).

    python bench/trace_instructions.py                 # 1,000 and 3,000 rows
    python bench/trace_instructions.py --rows 2000 6000

Results: ``bench/results/trace-instructions-<date>-<host>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import overhead
from _harness import save, start_simulator
from instructions import count

HERE = Path(__file__).resolve().parent


def counted(rows: int, *, trace: bool, seed: int) -> int:
    """Instructions of one engine run of ``rows`` rows (the whole process)."""
    proc, url = start_simulator("--latency", str(overhead.ENGINE_LATENCY), "--seed", str(seed))
    try:
        spec = {
            "url": url,
            "columns": overhead.ENGINE_COLUMNS,
            "parallel": 64,
            "row_group_size": 1000,
            "row_groups_in_flight": 4,
            "rows": rows,
            "trace": trace,
        }
        command = [sys.executable, str(HERE / "overhead.py"), "--child", json.dumps(spec)]
        return count(command)["total"]
    finally:
        overhead.stop(proc)


def markdown(report: dict[str, Any]) -> str:
    small, large = report["rows"]
    cells = report["llm_cells_added"]
    off, on = report["per_cell"]["off"], report["per_cell"]["on"]
    lines = [
        f"**Tracing's cost in instructions** (callgrind; the engine case of `bench/overhead.py`"
        f" at {small:,} and {large:,} rows; the difference over the {cells:,} LLM cells it"
        " adds)",
        "",
        f"| tracing | instructions at {small:,} rows (M) | at {large:,} rows (M) |"
        " per LLM cell (k) |",
        "|---|---:|---:|---:|",
    ]
    for side in ("off", "on"):
        totals = report["totals"][side]
        lines.append(
            f"| {side} | {totals[0] / 1e6:,.0f} | {totals[1] / 1e6:,.0f} |"
            f" {report['per_cell'][side] / 1e3:,.1f} |"
        )
    ratio = on / off
    verdict = "met" if ratio <= 1.2 else "**missed**"
    lines += [
        "",
        f"Tracing on / off, per LLM cell: **{ratio:.3f} x** (target ≤ 1.2: {verdict}). The"
        " counts are the gridloom process's (the simulator runs in its own process) and include"
        " the trace's export at the end of the run.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, nargs=2, default=[1000, 3000], metavar=("SMALL", "LARGE")
    )
    parser.add_argument("--seed", type=int, default=0, help="simulator latency seed")
    parser.add_argument("--name", default="trace-instructions", help="results file prefix")
    args = parser.parse_args()
    small, large = args.rows
    totals: dict[str, list[int]] = {"off": [], "on": []}
    for rows in (small, large):
        for side in ("off", "on"):
            totals[side].append(counted(rows, trace=side == "on", seed=args.seed))
            print(f"{side} {rows}: {totals[side][-1]:,}", flush=True)
    cells = len(overhead.ENGINE_COLUMNS) * (large - small)
    per_cell = {side: (t[1] - t[0]) / cells for side, t in totals.items()}
    report = {
        "rows": [small, large],
        "llm_cells_added": cells,
        "totals": totals,
        "per_cell": per_cell,
        "ratio": per_cell["on"] / per_cell["off"],
    }
    text = markdown(report)
    save(args.name, report, text)
    print(text)


if __name__ == "__main__":
    main()
