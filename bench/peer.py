"""gridloom vs NVIDIA NeMo Data Designer 0.9.7 on the four DAG shapes, same simulated endpoint.

For each shape (narrow, deep, wide, dual; see ``bench/shapes.py``) and records count, every
run gets a fresh ``gridloom simulate`` process (lognormal latency, sigma 0.3, median
``--latency``, seed ``--seed`` + trial), so both peers of a trial draw the same latencies.
Both use ``max_parallel_requests`` ``--parallel`` per model and the same simulated model names
(``shapes.SIM_MODEL``: dual sends its generator and judge columns to two model names on that
one simulator). Per case: one warm-up run of each peer, then ``--trials``
interleaved trials (gridloom, Data Designer, gridloom, ...), every run a fresh process:

- gridloom: ``python bench/shapes.py --child JSON`` (``shapes.run_child``), cell-level mode;
  wall and CPU (``time.process_time``) of the ``gridloom.create`` call;
- Data Designer: ``DD_PYTHON bench/peer_dd.py --shape ... --url ...`` (its OpenAI-compatible
  provider pointed at the simulator; ``create()`` + ``load_dataset()``); wall and CPU of that
  call (``call_cpu_s``). Its lazily imported modules are imported before timing, as the
  gridloom child imports gridloom and writes a tiny Parquet table first.

After each run its slice of the simulator's timeline gives the ideal bound (the issue's
formula, as ``shapes.analyse``: max(depth, capacity) from the mean served latency per model),
so both peers are measured against the same kind of bound. CPU per LLM cell is the call's
CPU over the LLM cells produced. A run that fails, or whose rows or LLM cells fall short,
is reported as an error; its case then gets no ratio, and the exit status is 1.

    python bench/peer.py                                   # 4 shapes, 10 records, 3 trials
    python bench/peer.py --records 10 200
    python bench/peer.py --records 10 1000 --trials-large 1    # 3 trials at 10, 1 at 1,000
    python bench/peer.py --shapes narrow dual --records 10 --trials 1
    python bench/peer.py --dd-python /path/to/dd-venv/bin/python   # or GRIDLOOM_DD_PYTHON

Results: ``bench/results/peer-<date>-<host>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import peer_dd  # stdlib-only at import: its shape definitions, checked against shapes.py
import shapes

HERE = Path(__file__).resolve().parent
PEER_DD = HERE / "peer_dd.py"
RESULTS = HERE / "results"
PEERS = ("gridloom", "data-designer")
DD_VERSION = "0.9.7"
DEFAULT_DD_PYTHON = os.environ.get("GRIDLOOM_DD_PYTHON", "/work/dd-venv/bin/python")
TIMELINE_CAP = 99_000  # the simulator keeps the last 100,000 requests
DD_PROBE = (
    "import importlib.metadata as m, data_designer.interface; print(m.version('data-designer'))"
)
# peer_dd's model aliases for shapes.py's ("m" and "a" are model A, "b" model B).
DD_ALIAS = {"m": "model-a", "a": "model-a", "b": "model-b"}


# ----------------------------------------------------------------------------- checks


def shape_mismatches() -> list[str]:
    """Where peer_dd.py's shapes differ from shapes.py's (column names, prompts, models, topics)."""
    problems = []
    for shape in shapes.SHAPES:
        ours = [
            (c["name"], c["llm_text"]["prompt"], DD_ALIAS[c["llm_text"]["model"]])
            for c in shapes.shape_columns(shape)
        ]
        if ours != peer_dd._columns(shape):
            problems.append(f"{shape}: LLM columns differ")
    topics = shapes.build_config("narrow", "http://x/v1", "cell", 1, 1)["columns"][0]
    if topics.get("category", {}).get("values") != peer_dd.TOPICS:
        problems.append("topic values differ")
    return problems


def dd_version(dd_python: str) -> str:
    """The data-designer version ``dd_python`` imports; exits with a clear message otherwise."""
    try:
        proc = subprocess.run(
            [dd_python, "-c", DD_PROBE], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        sys.exit(f"peer: cannot run the Data Designer python {dd_python!r}: {exc}")
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        sys.exit(
            f"peer: {dd_python} cannot import data_designer:\n{tail}\n"
            "create its venv with: python bench/dd_env.py VENV_DIR (then --dd-python)"
        )
    version = proc.stdout.strip()
    if version != DD_VERSION:
        print(f"peer: WARNING: {dd_python} has data-designer {version}, not {DD_VERSION}")
    return version


def dd_models(shape: str) -> tuple[str, str]:
    """The simulated model names peer_dd sends for its model A and model B."""
    if shape == "dual":
        return shapes.SIM_MODEL["a"], shapes.SIM_MODEL["b"]
    return shapes.SIM_MODEL["m"], shapes.SIM_MODEL["b"]


def llm_columns(shape: str) -> int:
    return len(shapes.shape_columns(shape))


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def run_gridloom(shape: str, records: int, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """One gridloom run (fresh process, cell mode): the measurements, or ``error`` set."""
    spec = {
        "shape": shape,
        "url": url,
        "parallel": args.parallel,
        "row_group_size": args.row_group_size,
        "mode": "cell",
        "records": records,
    }
    try:
        run = shapes.run_child(spec)
    except subprocess.CalledProcessError as exc:
        return {"error": f"exit {exc.returncode}: {_tail(exc.stderr or exc.stdout or '')}"}
    except (ValueError, IndexError) as exc:  # no JSON line
        return {"error": f"no result line: {exc}"}
    expected = records * llm_columns(shape)
    if run["status"] != "complete":
        run["error"] = f"status {run['status']!r}"
    elif run["rows"] != records:
        run["error"] = f"produced {run['rows']} rows, expected {records}"
    elif run["llm_cells"] != expected:
        run["error"] = f"produced {run['llm_cells']} LLM cells, expected {expected}"
    else:
        run["error"] = None
    return run


def run_dd(shape: str, records: int, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """One Data Designer run (fresh process): the measurements, or ``error`` set."""
    model_a, model_b = dd_models(shape)
    cmd = [args.dd_python, str(PEER_DD), "--shape", shape, "--records", str(records)]
    cmd += ["--url", url, "--parallel", str(args.parallel), "--model-a", model_a]
    if shape == "dual":
        cmd += ["--url-b", url, "--model-b", model_b]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": f"exit {proc.returncode}, no result line: {_tail(proc.stderr)}"}
    out: dict[str, Any] = json.loads(lines[-1])
    expected = records * llm_columns(shape)
    if out.get("error"):
        out["error"] = f"{out['error']} (exit {proc.returncode})"
    elif proc.returncode != 0:
        out["error"] = f"exit {proc.returncode}: {_tail(proc.stderr)}"
    elif out["rows"] != records:
        out["error"] = f"produced {out['rows']} rows, expected {records}"
    elif out["llm_cells"] != expected:
        out["error"] = f"produced {out['llm_cells']} LLM cells, expected {expected}"
    if out.get("error") is None and out.get("warm_missing"):
        print(f"    (peer_dd could not pre-import {out['warm_missing']})", flush=True)
    # endpoint_bound() reads cpu_s: the CPU of the timed call, as for gridloom.
    return {**out, "process_cpu_s": out.get("cpu_s"), "cpu_s": out.get("call_cpu_s")}


def run_peer(peer: str, shape: str, records: int, url: str, args: argparse.Namespace) -> Any:
    if peer == "gridloom":
        return run_gridloom(shape, records, url, args)
    return run_dd(shape, records, url, args)


def run_case(
    shape: str, records: int, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[str]]:
    """The trials of one (shape, records) case and its warm-up errors.

    Every run gets a simulator of its own, seeded with ``seed + trial``: both peers of a trial
    draw from the same latency stream, so neither is luckier than the other, and the trials
    differ from each other.
    """
    warnings: list[str] = []
    trials: list[dict[str, Any]] = []
    warm = min(records, args.warmup_records)
    for peer in PEERS:
        proc, url = shapes.start_simulator(args.latency, args.seed)
        try:
            run = run_peer(peer, shape, warm, url, args)
        finally:
            _stop(proc)
        if run.get("error"):
            warnings.append(f"{shape}/{records} {peer} warm-up: {run['error']}")
            print(f"  {shape:6} {records:5} {peer:13} warm-up ERROR: {run['error']}")
    for trial in range(args.trials if records <= 10 else args.trials_large or args.trials):
        for peer in PEERS:
            proc, url = shapes.start_simulator(args.latency, args.seed + trial)
            try:
                run = run_peer(peer, shape, records, url, args)
                entries = shapes.fetch_timeline(url)
            finally:
                _stop(proc)
            if len(entries) >= TIMELINE_CAP:
                raise RuntimeError("simulator timeline too long; lower --records")
            row: dict[str, Any] = dict(run)
            if not run.get("error"):
                try:
                    row = shapes.endpoint_bound(shape, run, entries, args.parallel)
                except (KeyError, ValueError, ZeroDivisionError) as exc:
                    row["error"] = f"no ideal bound from the timeline ({len(entries)} "
                    row["error"] += f"requests): {type(exc).__name__}: {exc}"
            row.update(shape=shape, records=records, peer=peer, trial=trial)
            trials.append(row)
            if row.get("error"):
                print(f"  {shape:6} {records:5} {peer:13} #{trial}: ERROR {row['error']}")
            else:
                print(
                    f"  {shape:6} {records:5} {peer:13} #{trial}: wall {row['wall_s']:.2f} s,"
                    f" ideal {row['ideal_s']:.2f} s, wall/ideal {row['ratio']:.3f},"
                    f" cpu {row['cpu_ms_per_cell']:.2f} ms/cell,"
                    f" {row['requests']} requests",
                    flush=True,
                )
    return trials, warnings


def _stop(proc: Any) -> None:
    proc.terminate()
    proc.wait(timeout=10)


# ----------------------------------------------------------------------------- report


def _peer_summary(ts: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [t for t in ts if not t.get("error")]
    out: dict[str, Any] = {"trials": len(ts), "ok": len(ok)}
    if not ok:
        return out

    def med(key: str) -> float:
        return float(statistics.median(t[key] for t in ok))

    walls = [t["wall_s"] for t in ok]
    out.update(
        wall_median_s=med("wall_s"),
        wall_min_s=min(walls),
        wall_max_s=max(walls),
        cpu_s=med("cpu_s"),
        cpu_ms_per_cell=med("cpu_ms_per_cell"),
        ideal_s=med("ideal_s"),
        ratio_ideal=med("ratio"),
        outside_s=med("outside_s"),
        requests=med("requests"),
        llm_cells=ok[0]["llm_cells"],
    )
    if all(t.get("gen_s") is not None for t in ok):  # Data Designer's scheduler run
        out["gen_median_s"] = med("gen_s")
    if all(t.get("replay_s") for t in ok):  # gridloom's zero-cost replay (shapes.py)
        out["ratio_replay"] = float(statistics.median(t["wall_s"] / t["replay_s"] for t in ok))
    return out


def summarise(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted(
        {(t["shape"], t["records"]) for t in trials},
        key=lambda k: (shapes.SHAPES.index(k[0]), k[1]),
    )
    for shape, records in keys:
        case = [t for t in trials if (t["shape"], t["records"]) == (shape, records)]
        per = {p: _peer_summary([t for t in case if t["peer"] == p]) for p in PEERS}
        errors = [f"{t['peer']} #{t['trial']}: {t['error']}" for t in case if t.get("error")]
        gl, dd = per["gridloom"], per["data-designer"]
        valid = not errors and gl.get("ok") and dd.get("ok")
        rows.append(
            {
                "shape": shape,
                "records": records,
                "gridloom": gl,
                "data_designer": dd,
                # None whenever any timed run of the case failed: no ratio from partial data.
                "wall_ratio": gl["wall_median_s"] / dd["wall_median_s"] if valid else None,
                "cpu_ratio": gl["cpu_ms_per_cell"] / dd["cpu_ms_per_cell"] if valid else None,
                "errors": errors,
            }
        )
    return rows


def _trend(values: list[tuple[int, float]], low: str, high: str) -> str:
    if all(0.95 <= v <= 1.05 for _, v in values):
        word = "on par"
    elif all(v < 1 for _, v in values):
        word = low
    elif all(v > 1 for _, v in values):
        word = high
    else:
        word = "mixed"
    detail = ", ".join(f"{v:.2f} at {n:,} records" for n, v in values)
    return f"gridloom {word} (gridloom/DD {detail})"


def _overlap(r: dict[str, Any]) -> bool:
    """The two peers' wall-time ranges over the trials overlap (more than one trial each)."""
    gl, dd = r["gridloom"], r["data_designer"]
    if min(gl["ok"], dd["ok"]) < 2:
        return False
    return bool(gl["wall_min_s"] <= dd["wall_max_s"] and dd["wall_min_s"] <= gl["wall_max_s"])


def verdicts(rows: list[dict[str, Any]], shape_list: list[str]) -> list[str]:
    """One line per shape: faster in wall time? lower CPU per LLM cell?"""
    lines = []
    for shape in shape_list:
        rs = [r for r in rows if r["shape"] == shape]
        valid = [r for r in rs if r["wall_ratio"] is not None]
        if not valid:
            lines.append(f"- **{shape}**: no verdict: every case had errors.")
            continue
        wall = _trend([(r["records"], r["wall_ratio"]) for r in valid], "faster", "slower")
        cpu = _trend([(r["records"], r["cpu_ratio"]) for r in valid], "lower", "higher")
        line = f"- **{shape}**: wall time: {wall}; CPU per LLM cell: {cpu}"
        overlapping = [f"{r['records']:,}" for r in valid if _overlap(r)]
        if overlapping:
            line += f"; wall-time ranges overlap at {', '.join(overlapping)} records"
        if len(valid) < len(rs):
            line += " (cases with errors left out)"
        lines.append(line + ".")
    return lines


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, meta: dict[str, Any]) -> str:
    def wall(p: dict[str, Any]) -> str:
        if not p.get("ok"):
            return "ERROR"
        return f"{p['wall_median_s']:.2f} ({p['wall_min_s']:.2f}-{p['wall_max_s']:.2f})"

    def num(p: dict[str, Any], key: str, fmt: str = ".2f") -> str:
        return format(p[key], fmt) if p.get("ok") and p.get(key) is not None else "-"

    def ratio(value: float | None) -> str:
        return "**ERROR**" if value is None else f"{value:.2f}"

    lines = [
        f"**gridloom {meta['gridloom']} vs Data Designer {meta['data_designer']}** (same"
        f" simulated endpoint: lognormal latency median {args.latency} s, sigma 0.3, seed"
        f" {args.seed}; max_parallel_requests {args.parallel}; medians of {args.trials}"
        f" interleaved trials ({args.trials_large or args.trials} above 10 records) after one"
        f" warm-up each; {meta['cpus']} CPUs, load average"
        f" {meta['loadavg_start']} at start)",
        "",
        "| shape | records | wall s gridloom | wall s DD | wall gl/DD | CPU ms/cell gridloom"
        " | CPU ms/cell DD | CPU gl/DD | ideal s | wall/ideal gridloom | wall/ideal DD"
        " | DD gen s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        gl, dd = r["gridloom"], r["data_designer"]
        ideal = " / ".join(num(p, "ideal_s") for p in (gl, dd))
        lines.append(
            f"| {r['shape']} | {r['records']:,} | {wall(gl)} | {wall(dd)}"
            f" | {ratio(r['wall_ratio'])} | {num(gl, 'cpu_ms_per_cell')}"
            f" | {num(dd, 'cpu_ms_per_cell')} | {ratio(r['cpu_ratio'])} | {ideal}"
            f" | {num(gl, 'ratio_ideal', '.3f')} | {num(dd, 'ratio_ideal', '.3f')}"
            f" | {num(dd, 'gen_median_s')} |"
        )
    lines += [
        "",
        "wall: the create call (gridloom `create`; DD `create()` + `load_dataset()`, which"
        " includes its Parquet write and post-run profiler; DD gen s is its scheduler run"
        " alone). CPU: the call's process CPU time over the LLM cells produced. ideal:"
        " max(depth, capacity) from each run's own simulator timeline (gridloom / DD). Each"
        " run has a fresh simulator seeded with seed + trial, so both peers of a trial draw"
        " the same latency stream (in the order their requests arrive).",
        "",
        *verdicts(rows, args.shapes),
    ]
    errors = [(r, e) for r in rows for e in r["errors"]]
    if errors or meta["warnings"]:
        lines += ["", "**Errors** (cases with an error get no ratio):", ""]
        lines += [f"- {r['shape']}/{r['records']}: {e}" for r, e in errors]
        lines += [f"- {w}" for w in meta["warnings"]]
    if meta["shape_mismatches"]:
        lines += ["", f"**Warning**: peer_dd.py vs shapes.py: {meta['shape_mismatches']}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dd-python", default=DEFAULT_DD_PYTHON, help="Data Designer's python")
    parser.add_argument("--shapes", nargs="+", choices=shapes.SHAPES, default=list(shapes.SHAPES))
    parser.add_argument("--records", type=int, nargs="+", default=[10])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument(
        "--trials-large", type=int, default=None, help="trials above 10 records (--trials)"
    )
    parser.add_argument("--latency", type=float, default=0.5, help="median latency, s")
    parser.add_argument("--parallel", type=int, default=16, help="max_parallel_requests/model")
    parser.add_argument("--seed", type=int, default=0, help="simulator latency seed")
    parser.add_argument("--warmup-records", type=int, default=10)
    parser.add_argument(
        "--row-group-size",
        type=int,
        default=1000,
        help="gridloom row group size (Data Designer's buffer_size default is 1000)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="per Data Designer run, s")
    args = parser.parse_args()

    from importlib.metadata import version

    mismatches = shape_mismatches()
    if mismatches:
        print(f"peer: WARNING: peer_dd.py's shapes differ from shapes.py's: {mismatches}")
    meta: dict[str, Any] = {
        "gridloom": version("gridloom"),
        "data_designer": dd_version(args.dd_python),
        "cpus": os.cpu_count(),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "shape_mismatches": mismatches,
    }
    started = time.perf_counter()
    trials: list[dict[str, Any]] = []
    warnings: list[str] = []
    for shape in args.shapes:
        for n in args.records:
            case_trials, case_warnings = run_case(shape, n, args)
            trials.extend(case_trials)
            warnings.extend(case_warnings)
    meta["warnings"] = warnings
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    rows = summarise(trials)
    table = markdown(rows, args, meta)
    report = {
        "benchmark": "gridloom vs Data Designer 0.9.7, four DAG shapes, same simulated endpoint",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        **meta,
        "args": vars(args),
        "summary": rows,
        "trials": trials,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"peer-{dt.date.today().isoformat()}-{platform.node()}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(table)
    print()
    print(table)
    print(f"written: {RESULTS / stem}.json, .md")
    failed = any(r["errors"] for r in rows) or bool(warnings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
