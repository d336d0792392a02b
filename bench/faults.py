"""Faults and a kill: what 10% injected 503s and one SIGKILL cost a 5,000-row run.

Four runs of the same pipeline (a sampler and three LLM text columns, two of them chained)
against the built-in simulated endpoint over real sockets, each a ``gridloom create`` process:

1. the reference: no faults;
2. the same with 10% of requests answered 503 (with ``Retry-After: 1``), run to the end;
3. the faulty run again, killed with SIGKILL once half its row groups are on disk;
4. ``gridloom create --resume`` on what the kill left.

Reports rows completed before the kill, rows dropped (by column and reason), rows generated
again on resume, the wall time the faults and the kill cost against the reference, and whether
the final datasets equal the reference row for row (answers depend only on the request).

    python bench/faults.py                    # 5,000 rows
    python bench/faults.py --rows 1000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

RESULTS = Path(__file__).resolve().parent / "results"
ROW_GROUP_SIZE = 250


def pipeline(error_rate: float, latency: float) -> dict[str, Any]:
    model = {"latency": {"median": latency, "sigma": 0.3}, "error_503_rate": error_rate}
    return {
        "providers": [
            {"name": "sim", "type": "simulated", "simulation": {"seed": 3, "default": model}}
        ],
        "models": [
            {"alias": "writer", "provider": "sim", "model": "writer", "max_parallel_requests": 64}
        ],
        "columns": [
            {"name": "topic", "category": {"values": ["rivers", "volcanoes", "deserts"]}},
            {"name": "draft", "llm_text": {"model": "writer", "prompt": "Write on {{ topic }}."}},
            {"name": "edit", "llm_text": {"model": "writer", "prompt": "Tighten: {{ draft }}"}},
            {"name": "title", "llm_text": {"model": "writer", "prompt": "Title for {{ topic }}"}},
        ],
        "run": {"seed": 11, "row_group_size": ROW_GROUP_SIZE},
    }


def create(config: Path, rows: int, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gridloom", "create", str(config), "-n", str(rows)]
    return subprocess.Popen(
        [*command, "-o", str(out), "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"gridloom create failed ({proc.returncode}): {stderr.decode()}")
    summary: dict[str, Any] = json.loads(stdout)
    return summary


def timed(config: Path, rows: int, out: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    summary = finish(create(config, rows, out, *extra))
    return time.perf_counter() - started, summary


def parts(out: Path) -> list[Path]:
    return sorted((out / "data").glob("part-*.parquet"))


def table(out: Path) -> Any:
    return pq.read_table(sorted(parts(out)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--error-rate", type=float, default=0.10)
    args = parser.parse_args()
    groups = -(-args.rows // ROW_GROUP_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clean, faulty = root / "clean.yaml", root / "faulty.yaml"
        clean.write_text(yaml.safe_dump(pipeline(0.0, args.latency)))
        faulty.write_text(yaml.safe_dump(pipeline(args.error_rate, args.latency)))

        reference_s, _ = timed(clean, args.rows, root / "reference")
        faults_s, with_faults = timed(faulty, args.rows, root / "faults")

        started = time.perf_counter()
        proc = create(faulty, args.rows, root / "killed")
        while len(parts(root / "killed")) < groups // 2:
            if proc.poll() is not None:
                raise RuntimeError("the run ended before it could be killed")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_s = time.perf_counter() - started
        kept = table(root / "killed").num_rows
        kept_groups = len(parts(root / "killed"))
        resume_s, resumed = timed(faulty, args.rows, root / "killed", "--resume")

        reference_table = table(root / "reference")
        report = {
            "rows": args.rows,
            "row_groups": groups,
            "error_503_rate": args.error_rate,
            "median_latency_s": args.latency,
            "reference_wall_s": round(reference_s, 2),
            "faults_wall_s": round(faults_s, 2),
            "faults_cost": round(faults_s / reference_s - 1, 4),
            "faults_rows": with_faults["num_rows"],
            "faults_drop_reasons": with_faults["drop_reasons"],
            "faults_requests": with_faults["models"]["writer"]["requests"],
            "faults_errors": with_faults["models"]["writer"]["errors"],
            "faults_transport_retries": with_faults["models"]["writer"]["transport_retries"],
            "faults_throttle_retries": with_faults["models"]["writer"]["rate_limited"],
            "kill_after_s": round(killed_s, 2),
            "kill_row_groups_on_disk": kept_groups,
            "kill_rows_on_disk": kept,
            "resume_wall_s": round(resume_s, 2),
            "resume_rows_generated": resumed["num_rows"] - kept,
            "final_rows": resumed["num_rows"],
            "final_drop_reasons": resumed["drop_reasons"],
            "kill_and_resume_cost": round((killed_s + resume_s) / reference_s - 1, 4),
            "faults_equal_reference": table(root / "faults").equals(reference_table),
            "resumed_equal_reference": table(root / "killed").equals(reference_table),
        }
    RESULTS.mkdir(exist_ok=True)
    stamp = f"{dt.date.today().isoformat()}-{platform.node()}"
    report |= {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    (RESULTS / f"faults-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
