"""Scale smoke benchmark: samplers + expressions at growing row counts.

Each size runs in a fresh subprocess so its peak RSS is its own. Reports cells/s, CPU seconds
per cell and peak RSS, and the RSS ratio between the largest and smallest size (flat memory
means a ratio near 1). Results go to ``bench/results/scale-<date>-<host>.json`` and ``.md``.

    python bench/scale.py                 # 10,000 and 100,000 rows
    python bench/scale.py --rows 1000 5000
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

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "examples" / "people.yaml"


def _child(rows: int, out: str) -> None:
    import gridloom as gl

    t0, c0 = time.perf_counter(), time.process_time()
    result = gl.create(CONFIG, num_records=rows, output_dir=out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    cells = sum(c.done for c in result.columns.values())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rows": rows,
                "rows_written": result.num_rows,
                "cells": cells,
                "wall_s": wall,
                "cpu_s": cpu,
                "cells_per_s": cells / wall,
                "cpu_us_per_cell": 1e6 * cpu / cells,
                "peak_rss_mib": peak_kib / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.out)
        return
    runs = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(rows), "--out", f"{tmp}/out"],
                check=True,
                capture_output=True,
                text=True,
            )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]))
    ratio = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    report = {
        "benchmark": "scale: samplers + expressions (examples/people.yaml)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "runs": runs,
        "peak_rss_ratio_largest_vs_smallest": ratio,
    }
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stem = f"scale-{dt.date.today().isoformat()}-{platform.node()}"
    (results / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "| rows | cells | wall s | cells/s | CPU µs/cell | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['rows']:,} | {r['cells']:,} | {r['wall_s']:.2f} | {r['cells_per_s']:,.0f}"
            f" | {r['cpu_us_per_cell']:.1f} | {r['peak_rss_mib']:.0f} |"
            for r in runs
        ),
        "",
        f"Peak RSS ratio, {runs[-1]['rows']:,} vs {runs[0]['rows']:,} rows: {ratio:.2f}",
    ]
    (results / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
