"""The search-agent recipe (examples/search_agent/pipeline.yaml) against the simulated
endpoint: trajectories per second, turns per trajectory, CPU per turn. Each size runs in a
fresh process; the MCP search server is started and stopped by the run.

    python bench/agents.py                  # 100 and 300 rows (300 is every path once)
    python bench/agents.py --rows 50
    python bench/agents.py --external       # the endpoint in a process of its own

With ``--external`` the simulated endpoint runs as ``gridloom simulate`` in another process
(the provider becomes ``type: openai`` pointing at it), so the CPU figures are gridloom's own;
by default it is the recipe as written, the endpoint in gridloom's process.

Needs the mcp extra (``pip install -e '.[bench,mcp]'``).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness
from _harness import run_sizes, save, start_simulator

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "search_agent" / "pipeline.yaml"


def config(url: str | None) -> Any:
    """The recipe, or with ``url`` the recipe pointed at an external endpoint."""
    import attrs

    gl = _harness.load_gridloom()

    cfg = gl.load_config(CONFIG)
    if url is None:
        return cfg
    provider = gl.ProviderConfig(name="sim", type="openai", endpoint=url)
    return attrs.evolve(cfg, providers=(provider,))


def child(rows: int, url: str | None) -> dict[str, Any]:
    import pyarrow.compute as pc

    gl = _harness.load_gridloom()

    cfg = config(url)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        result = gl.create(cfg, num_records=rows, output_dir=f"{tmp}/out", base_dir=CONFIG.parent)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        table = result.table
    turns = int(pc.sum(table.column("turns")).as_py() or 0)
    calls = int(pc.sum(table.column("tool_calls")).as_py() or 0)
    requests = sum(m.get("requests", 0) for m in result.summary["models"].values())
    trajectories = result.num_rows
    return {
        "rows": rows,
        "trajectories": trajectories,
        "dropped": result.num_dropped,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "trajectories_per_s": round(trajectories / wall, 2),
        "turns_per_trajectory": round(turns / max(trajectories, 1), 2),
        "tool_calls_per_trajectory": round(calls / max(trajectories, 1), 2),
        "model_requests": requests,
        "cpu_ms_per_turn": round(1000 * cpu / max(turns, 1), 3),
        "cpu_ms_per_request": round(1000 * cpu / max(requests, 1), 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--external", action="store_true", help="endpoint in its own process")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.url)))
        return
    if args.external:
        options = ("--latency", "0", "--sigma", "0", "--tool-turns", "3")
        server, url = start_simulator(*options, "--tool-calls-per-turn", "2")
        try:
            runs = run_sizes(__file__, args.rows, "--url", url)
        finally:
            server.terminate()
            server.wait()
    else:
        runs = run_sizes(__file__, args.rows)
    where = "external simulated endpoint" if args.external else "simulated endpoint in process"
    lines = [
        f"**search-agent recipe (examples/search_agent/pipeline.yaml), {where}**",
        "",
        "| rows | trajectories | wall s | trajectories/s | turns/trajectory"
        " | tool calls/trajectory | CPU ms/turn | CPU ms/request | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['rows']:,} | {r['trajectories']:,} | {r['wall_s']:.2f}"
            f" | {r['trajectories_per_s']:.2f} | {r['turns_per_trajectory']:.2f}"
            f" | {r['tool_calls_per_trajectory']:.2f} | {r['cpu_ms_per_turn']:.2f}"
            f" | {r['cpu_ms_per_request']:.2f} | {r['peak_rss_mib']:.0f} |"
            for r in runs
        ),
    ]
    markdown = "\n".join(lines) + "\n"
    kind = "agents-external" if args.external else "agents"
    path = save(kind, {"benchmark": f"search-agent recipe, {where}", "runs": runs}, markdown)
    print(markdown)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
