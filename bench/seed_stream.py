"""Peak memory of a run over a large parquet seed: streamed by row group, never loaded whole.

Writes two parquet seeds of the same schema and row size (an id, a score and about 200
characters of text per row, in parquet row groups of ``--group-rows`` rows) in a temporary
folder under /tmp: a small one (``--small-mb``, 50 MB by default: read whole, under the
64 MiB streaming threshold) and a big one (``--big-mb``, 5,000 MB by default: streamed). Then,
for each, runs ``python -m gridloom create CONFIG -n ROWS -o DIR`` (the seed plus two
expression columns) in a fresh process, through a small wrapper process that reports its
child's peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss``). The same ROWS for both
(200,000 by default: 20 parquet row groups of the big seed). Writes
bench/results/seed_stream.json (``seed_stream_shuffled.json`` with ``--order shuffled``) with
both peaks and their ratio (the target is at most 1.2). The folder is deleted afterwards.
At full size it takes about two minutes (most of it writing the 5 GB file), so it is not
part of the ``bench`` nox session: run it by hand.

    python bench/seed_stream.py                    # 50 MB vs 5 GB: about 2 minutes
    python bench/seed_stream.py --big-mb 500       # a quick run
    python bench/seed_stream.py --order shuffled   # the windowed shuffle
"""

from __future__ import annotations

import argparse
import array
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TEXT_CHARS = 200
#: Rows generated per write (one parquet row group per ``--group-rows``).
_CHUNK_ROWS = 50_000


def write_seed(path: Path, megabytes: float, group_rows: int) -> dict[str, Any]:
    """A parquet seed of about ``megabytes`` MB: ``id``, ``score`` and random hex ``text``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = int(megabytes * 1_000_000)
    schema = pa.schema([("id", pa.int64()), ("score", pa.float64()), ("text", pa.string())])
    rows = 0
    started = time.perf_counter()
    with pq.ParquetWriter(path, schema) as writer:
        while rows == 0 or path.stat().st_size < target:
            count = _CHUNK_ROWS
            data = os.urandom(count * TEXT_CHARS // 2).hex().encode()
            offsets = array.array("i", range(0, count * TEXT_CHARS + 1, TEXT_CHARS)).tobytes()
            text = pa.Array.from_buffers(
                pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
            )
            ids = pa.array(range(rows, rows + count), type=pa.int64())
            scores = pa.array([(i % 1000) / 10 for i in range(rows, rows + count)])
            table = pa.Table.from_arrays([ids, scores, text], schema=schema)
            writer.write_table(table, row_group_size=group_rows)
            rows += count
    return {
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "rows": rows,
        "row_groups": pq.ParquetFile(path).metadata.num_row_groups,
        "write_s": round(time.perf_counter() - started, 1),
    }


def write_config(path: Path, seed: Path, order: str) -> None:
    path.write_text(
        "seed_dataset: {path: " + json.dumps(str(seed)) + f", order: {order}, cycle: true}}\n"
        "columns:\n"
        '  - {name: short, expression: {template: "{{ text[:12] }}"}}\n'
        '  - {name: double, expression: {template: "{{ score * 2 }}", dtype: float}}\n'
        "run: {seed: 1}\n"
    )


def measure_child(command: list[str]) -> None:
    """Run ``command``; print its exit code and peak RSS (KiB) as one JSON line."""
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"code": proc.returncode, "peak_kib": peak, "stderr": proc.stderr[-2000:]}))


def run_once(config: Path, rows: int, out: Path) -> dict[str, Any]:
    """One ``gridloom create`` in a fresh process; its wall time and peak RSS."""
    command = [sys.executable, "-m", "gridloom", "create", str(config), "-n", str(rows)]
    command += ["-o", str(out), "--overwrite"]
    started = time.perf_counter()
    wrapper = subprocess.run(
        [sys.executable, __file__, "--measure", "--", *command],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GRIDLOOM_PROGRESS": "off"},
    )
    wall = time.perf_counter() - started
    report = json.loads(wrapper.stdout.strip().splitlines()[-1])
    if report["code"] != 0:
        raise SystemExit(f"gridloom create failed ({report['code']}): {report['stderr']}")
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(report["peak_kib"] / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small-mb", type=float, default=50)
    parser.add_argument("--big-mb", type=float, default=5000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--group-rows", type=int, default=10_000)
    parser.add_argument("--order", choices=["ordered", "shuffled"], default="ordered")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_child(args.command)
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="gridloom-seed-stream-", dir="/tmp") as tmp:
        folder = Path(tmp)
        for label, megabytes in (("small", args.small_mb), ("big", args.big_mb)):
            seed = folder / f"{label}.parquet"
            written = write_seed(seed, megabytes, args.group_rows)
            config = folder / f"{label}.yaml"
            write_config(config, seed, args.order)
            measured = run_once(config, args.rows, folder / f"out-{label}")
            runs.append({"seed": label, **written, **measured})
            print(json.dumps(runs[-1]), flush=True)
            seed.unlink()
    ratio = runs[1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    report = {
        "benchmark": "peak RSS of gridloom create over a small (read whole) and a big"
        " (streamed) parquet seed",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "rows_generated": args.rows,
        "order": args.order,
        "parquet_row_group_rows": args.group_rows,
        "runs": runs,
        "peak_rss_ratio_big_vs_small": round(ratio, 3),
        "target_ratio": 1.2,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "seed_stream.json" if args.order == "ordered" else f"seed_stream_{args.order}.json"
    (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"peak RSS: {runs[0]['peak_rss_mib']} MiB vs {runs[1]['peak_rss_mib']} MiB,"
        f" ratio {ratio:.3f} (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
