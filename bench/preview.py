"""How soon ``gridloom preview`` prints its rows (issue 21, item 4).

Runs ``python -m gridloom preview examples/quickstart.yaml -n 5`` as a fresh process several
times and measures, from just before the process is spawned: the wall time until its last row
line (the ``N of N rows in ...`` summary) arrives on the pipe, and until the process has
exited. The preview writes its phase marks to a file (``GRIDLOOM_PREVIEW_TIMES``, see
``gridloom/cli/_startup.py``; the marks are ``time.perf_counter`` values, which on Linux is
``CLOCK_MONOTONIC``, the same clock in both processes), which split the wall time into:

* **start-up**: spawn → the command runs (interpreter start, imports, option parsing); the
  bare interpreter (``python -c pass``, measured alike) is reported beside it, and so is a
  fresh interpreter importing only the core dependencies a preview needs before its first
  request (:data:`CORE_IMPORTS`), the floor no code of gridloom's can go below, and the same
  with pyarrow (imported after the first request since the lazy-arrow change; kept as the
  machine's pace, comparable with the earlier passes of ``docs/performance.md``);
* **config**: reading, validating and building the pipeline config;
* **to first request**: event loop start, compiling the pipeline, opening the models (the
  built-in simulated endpoint), until the first model request went out;
* **models**: first request sent → last answer received;
* **after last answer**: → the rows are stored and the run has returned;
* **printing**, and **exit** (last row line seen → process gone).

The run is traced (``GRIDLOOM_TRACE=1``): each model request's sent and answer times give the
latencies the endpoint actually served. The **critical path** is, per row, the longest chain
of its LLM cells' served latencies through the pipeline's dependencies (from ``gl.validate``;
cells that call no model add nothing), the maximum over the rows. The verdict is the issue's:
wall time to the rows ≤ critical path + 0.5 s.

``--without numpy pandas`` runs the child with those modules made unimportable (``None`` in
``sys.modules`` before gridloom is imported, then ``runpy`` runs ``gridloom`` as ``-m`` does):
what a plain ``pip install gridloom`` gets, where neither is installed (neither is a
dependency; this machine's venv has both for tests and extras, and pyarrow imports numpy when
it is there, pandas on its first conversion).

Bytecode: one unmeasured run first, with ``PYTHONDONTWRITEBYTECODE`` removed from the child's
environment, so the measured runs import from cached ``.pyc`` files as an installed package
does. ``other cores``: CPU the rest of the machine used during each run (cores busy on average,
psutil), and the 1-minute load average before it: well above 0, the run competed for the CPU.

``--against SRC`` runs another source tree's preview (its ``src/`` folder, e.g. a commit
exported with ``git archive``; it needs the phase marks) alternately with this one, so both
see the same machine load; the report then has a column pair for each. The marks also record
the process's CPU time, steadier than wall time when the machine is busy.

    python bench/preview.py                 # 5 runs
    python bench/preview.py --runs 7 --against /tmp/before/src
    python bench/preview.py --without numpy pandas --name preview-minimal

Results: ``bench/results/preview-<date>-<host>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from _harness import save

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "quickstart.yaml"
#: The issue's allowance over the critical path.
ALLOWANCE_S = 0.5


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, all processes) so far."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(times: Path | None, pythonpath: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    env.pop("GRIDLOOM_PROGRESS", None)
    env["GRIDLOOM_TRACE"] = "1"
    if times is not None:
        env["GRIDLOOM_PREVIEW_TIMES"] = str(times)
    return env


def interpreter_start(runs: int) -> float:
    """Median wall time of ``python -c pass`` (spawn to exit)."""
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=_env(None))
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


#: What a preview of the quickstart cannot start without, whatever gridloom's own code does:
#: the event loop, the HTTP client and its parser, templates, the config's classes and
#: converter, YAML, JSON Schema (its llm_structured column checks its schema when compiled),
#: the command line. Arrow is not among them: a preview imports it once its first requests
#: are out (``gridloom/cli/_startup.py``).
CORE_IMPORTS = (
    "trio",
    "httpx",
    "httptools",
    "jinja2",
    "attrs",
    "cattrs",
    "yaml",
    "jsonschema",
    "click",
)


def core_imports_start(runs: int, without: list[str], *extra: str) -> float:
    """Median wall time (spawn to exit) of a fresh interpreter importing :data:`CORE_IMPORTS`
    (and ``extra``) alone, the way the command does (httpx's own command line left out;
    ``without`` made unimportable): without ``extra``, the floor under the preview's
    start-up."""
    code = "import sys\n"
    code += "".join(f"sys.modules[{name!r}] = None\n" for name in ["httpx._main", *without])
    code += f"import {', '.join((*CORE_IMPORTS, *extra))}\n"
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=_env(None))
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def dependencies(config: Path) -> tuple[dict[str, list[str]], set[str]]:
    """The pipeline's nodes → their upstream nodes, and the nodes that call a model."""
    import gridloom as gl

    described = gl.validate(config).describe()
    upstream = {str(n["node"]): [str(u) for u in n["depends_on"]] for n in described}
    llm = {str(n["node"]) for n in described if n["model_bound"]}
    return upstream, llm


def critical_path(
    requests: list[dict[str, Any]], upstream: dict[str, list[str]], llm: set[str]
) -> tuple[float, dict[int, float]]:
    """The longest chain of served latencies per row, and the maximum over the rows.

    A cell's served latency is the sum over its attempts of answer time minus sent time.
    ``upstream`` is in topological order (the order ``describe`` gives).
    """
    served: dict[tuple[int, str], float] = {}
    for r in requests:
        key = (int(r["row_id"]), str(r["column"]))
        served[key] = served.get(key, 0.0) + (r["response"] - r["sent"])
    per_row: dict[int, float] = {}
    for row in sorted({row for row, _ in served}):
        chain: dict[str, float] = {}
        for node, ups in upstream.items():
            own = served.get((row, node), 0.0) if node in llm else 0.0
            chain[node] = own + max((chain[u] for u in ups), default=0.0)
        per_row[row] = max(chain.values(), default=0.0)
    return max(per_row.values(), default=0.0), per_row


#: Runs ``gridloom`` as ``python -m gridloom`` does, with the modules named in argv[1] (comma
#: separated) unimportable.
_WITHOUT = (
    "import runpy, sys\n"
    "for name in sys.argv.pop(1).split(','):\n"
    "    sys.modules[name] = None\n"
    "sys.argv[0] = 'gridloom'\n"
    "runpy.run_module('gridloom', run_name='__main__', alter_sys=True)\n"
)


def command(config: Path, num: int, without: list[str]) -> list[str]:
    """The preview's command line (with ``without`` modules unimportable, if any)."""
    args = ["preview", str(config), "-n", str(num)]
    if without:
        return [sys.executable, "-c", _WITHOUT, ",".join(without), *args]
    return [sys.executable, "-m", "gridloom", *args]


def one_run(
    config: Path,
    num: int,
    upstream: dict[str, list[str]],
    llm: set[str],
    without: list[str],
    pythonpath: str | None = None,
) -> dict[str, Any]:
    """One preview process, timed; its phases and its critical path."""
    with tempfile.TemporaryDirectory() as tmp:
        times = Path(tmp) / "times.json"
        cmd = command(config, num, without)
        load = os.getloadavg()[0]
        busy0, child0 = _busy_seconds(), _children_cpu()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(times, pythonpath),
            cwd=ROOT,
        )
        assert proc.stdout is not None
        rows_seen = None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if " rows in " in line and rows_seen is None:
                rows_seen = time.perf_counter()
        stderr = proc.stderr.read() if proc.stderr else ""
        code = proc.wait()
        exited = time.perf_counter()
        child_cpu = _children_cpu() - child0
        others = max(0.0, _busy_seconds() - busy0 - child_cpu)
        if code != 0 or rows_seen is None:
            raise RuntimeError(
                f"preview failed ({code}): {''.join(lines)[-2000:]} {stderr[-2000:]}"
            )
        doc = json.loads(times.read_text())
    marks = {k: v - t0 for k, v in doc["marks"].items()}
    cpu = doc.get("cpu", {})
    requests = doc["requests"]
    first_sent = min(r["sent"] for r in requests) - t0
    last_answer = max(r["response"] for r in requests) - t0
    path, _per_row = critical_path(requests, upstream, llm)
    wall_rows = rows_seen - t0
    warm = doc.get("warmup_started"), doc.get("warmup_ended")
    return {
        "wall_to_rows_s": wall_rows,
        "wall_to_exit_s": exited - t0,
        "startup_s": marks["command"],
        "config_s": marks["config_loaded"] - marks["command"],
        "to_first_request_s": first_sent - marks["config_loaded"],
        "first_request_s": first_sent,
        "models_s": last_answer - first_sent,
        "after_last_answer_s": marks["run_returned"] - last_answer,
        "printing_s": marks["printed"] - marks["run_returned"],
        "pipe_s": wall_rows - marks["printed"],
        "exit_s": exited - rows_seen,
        "critical_path_s": path,
        "over_critical_path_s": wall_rows - path,
        "within_allowance": wall_rows <= path + ALLOWANCE_S,
        "requests": len(requests),
        "warmup_s": None if None in warm else [w - t0 for w in warm],
        "cpu_s": child_cpu,
        "startup_cpu_s": cpu.get("command", math.nan),
        "config_cpu_s": cpu.get("config_loaded", math.nan) - cpu.get("command", math.nan),
        "run_cpu_s": cpu.get("run_returned", math.nan) - cpu.get("config_loaded", math.nan),
        "other_cores": others / (exited - t0),
        "load_average_before": load,
    }


PHASES = [
    ("startup_s", "start-up (interpreter + imports)"),
    ("config_s", "config load + validation"),
    ("to_first_request_s", "loop, compile, models open → first request"),
    ("models_s", "first request → last answer"),
    ("after_last_answer_s", "last answer → run returned"),
    ("printing_s", "printing"),
    ("wall_to_rows_s", "**wall to rows printed**"),
    ("exit_s", "rows → process exited"),
    ("wall_to_exit_s", "wall to exit"),
    ("critical_path_s", "**critical path of served latencies**"),
    ("over_critical_path_s", "wall to rows minus critical path"),
    ("startup_cpu_s", "CPU: start-up"),
    ("config_cpu_s", "CPU: config"),
    ("run_cpu_s", "CPU: loop start → run returned (all threads)"),
    ("cpu_s", "CPU: whole process"),
    ("other_cores", "other cores"),
]


def markdown(report: dict[str, Any]) -> str:
    variants = report["variants"]
    names = list(variants)
    head = " | ".join(f"{name} median s | {name} max s" for name in names)
    lines = [
        f"**gridloom preview {report['config']} -n {report['num_records']}**"
        f" ({report['runs_each']} fresh processes each; bare interpreter"
        f" {report['interpreter_s']:.3f} s"
        + (f"; without {', '.join(report['without'])}" if report["without"] else "")
        + ")",
        "",
        f"| phase | {head} |",
        "|---|" + "---:|---:|" * len(names),
    ]
    for key, label in PHASES:
        cells = " | ".join(
            f"{variants[n]['median'][key]:.3f} | {variants[n]['max'][key]:.3f}" for n in names
        )
        lines.append(f"| {label} | {cells} |")
    lines.append("")
    for name in names:
        v = variants[name]
        lines.append(
            f"{name} ({v['source']}): wall to rows ≤ critical path + {ALLOWANCE_S} s in"
            f" {v['within_allowance']} of {len(v['runs'])} runs; median margin"
            f" {v['median_margin_s']:+.3f} s (negative: within)."
        )
    if "core_imports_s" in report:
        lines.append(
            f"The core dependencies' imports alone ({', '.join(report['core_imports'])}; a fresh"
            f" interpreter, spawn to exit) take {report['core_imports_s']:.3f} s here: a floor"
            " under the start-up that no code of gridloom's can go below"
            + (
                f", already above the {ALLOWANCE_S} s allowance on this machine."
                if report["core_imports_s"] > ALLOWANCE_S
                else "."
            )
        )
    if "core_imports_with_arrow_s" in report:
        lines.append(
            f"With pyarrow too (the pace figure of the earlier passes) they take"
            f" {report['core_imports_with_arrow_s']:.3f} s."
        )
    lines += [
        "",
        "Phases are from the preview's own marks (GRIDLOOM_PREVIEW_TIMES) against the spawn"
        " time; the critical path is per row the longest chain of its LLM cells' served"
        " latencies (sent → answer, from the trace), the max over rows. other cores: CPU the"
        " rest of the machine used during the run (cores busy on average). With two sources"
        " their runs alternate, so both see the same load.",
    ]
    return "\n".join(lines) + "\n"


def summary(runs: list[dict[str, Any]], source: str) -> dict[str, Any]:
    margins = [r["wall_to_rows_s"] - r["critical_path_s"] - ALLOWANCE_S for r in runs]
    return {
        "source": source,
        "median": {key: statistics.median(r[key] for r in runs) for key, _ in PHASES},
        "max": {key: max(r[key] for r in runs) for key, _ in PHASES},
        "median_margin_s": statistics.median(margins),
        "within_allowance": sum(r["within_allowance"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("-n", "--num-records", type=int, default=5)
    parser.add_argument("--name", default="preview", help="results file prefix")
    parser.add_argument(
        "--without", nargs="*", default=[], help="modules the child cannot import (numpy pandas)"
    )
    parser.add_argument(
        "--against",
        metavar="SRC",
        help="another gridloom source folder (its src/) to run alternately, e.g. a commit's",
    )
    args = parser.parse_args()
    config = args.config.resolve()
    upstream, llm = dependencies(config)
    sources: dict[str, str | None] = {"this": None}
    if args.against:
        sources["against"] = str(Path(args.against).resolve())
    for path in sources.values():  # unmeasured: bytecode cached
        one_run(config, args.num_records, upstream, llm, args.without, path)
    interpreter = interpreter_start(args.runs)
    core = core_imports_start(args.runs, args.without)
    core_arrow = core_imports_start(args.runs, args.without, "pyarrow")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    for _ in range(args.runs):
        for name, path in sources.items():
            r = one_run(config, args.num_records, upstream, llm, args.without, path)
            runs[name].append(r)
            print(
                f"{name}: rows {r['wall_to_rows_s']:.3f} s  exit {r['wall_to_exit_s']:.3f} s"
                f"  critical path {r['critical_path_s']:.3f} s  start-up {r['startup_s']:.3f}"
                f"  config {r['config_s']:.3f}  first request {r['first_request_s']:.3f}"
                f"  after last answer {r['after_last_answer_s']:.3f}  other cores"
                f" {r['other_cores']:.2f}  load {r['load_average_before']:.2f}",
                flush=True,
            )
    this_source = os.environ.get("PYTHONPATH") or "installed gridloom"
    report = {
        "benchmark": "gridloom preview: wall time to the rows vs the critical path",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "config": str(config.relative_to(ROOT)) if config.is_relative_to(ROOT) else str(config),
        "num_records": args.num_records,
        "without": args.without,
        "interpreter_s": interpreter,
        "core_imports": list(CORE_IMPORTS),
        "core_imports_s": core,
        "core_imports_with_arrow_s": core_arrow,
        "allowance_s": ALLOWANCE_S,
        "runs_each": args.runs,
        "variants": {
            name: summary(runs[name], path or this_source) for name, path in sources.items()
        },
    }
    text = markdown(report)
    print(text)
    print(save(args.name, report, text))


if __name__ == "__main__":
    main()
