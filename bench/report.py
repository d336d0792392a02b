"""One report from the latest benchmark results: targets judged, tables, plots, docs.

Reads, for one date and host, the newest ``bench/results/<kind>-<date>-<host>.json`` of each
kind (``shapes``, ``overhead``, ``throttle``, ``peer``; a kind missing on that date is taken
from the newest earlier date, and the report says so; the shapes keep, for each record count,
the newest run that measured it, so a quick run's 10 and 100 records do not hide the full
run's 1,000) and writes:

- ``bench/results/<date>-<host>.json``: the sources, the figures used and every target with
  what was measured and whether it was met (``null``: not measured);
- ``bench/results/<date>-<host>.md``: the targets, then one table per benchmark;
- ``bench/results/<date>-<host>-{shapes,peer,overhead}.png`` (when matplotlib is installed);
- the section of ``docs/performance.md`` between ``<!-- bench:begin -->`` and
  ``<!-- bench:end -->`` (unless ``--no-docs``).

It only reads results; a missed target is reported, not an error (exit status 0).

    python bench/report.py
    python bench/report.py --date 2026-11-24 --host vm --no-docs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
KINDS = ("shapes", "peer", "overhead", "throttle")
SHAPES = ("narrow", "deep", "wide", "dual")


# ----------------------------------------------------------------------------- inputs


def find(kind: str, date: str, host: str) -> Path | None:
    """The result file of ``kind`` for ``date``, else the newest earlier one, for ``host``."""
    pattern = re.compile(rf"{kind}-(\d{{4}}-\d{{2}}-\d{{2}})-{re.escape(host)}\.json")
    found = sorted(
        (m.group(1), p)
        for p in RESULTS.glob(f"{kind}-*-{host}.json")
        if (m := pattern.fullmatch(p.name)) and m.group(1) <= date
    )
    return found[-1][1] if found else None


def shape_results(date: str, host: str) -> tuple[dict[str, Any] | None, str | None]:
    """The newest shapes result up to ``date``, its summary completed, record count by record
    count, from older results (newest first) that measured counts it did not; and the source
    files, each with the counts taken from it."""
    pattern = re.compile(rf"shapes-(\d{{4}}-\d{{2}}-\d{{2}})-{re.escape(host)}\.json")
    paths = sorted(
        (
            (m.group(1), p)
            for p in RESULTS.glob(f"shapes-*-{host}.json")
            if (m := pattern.fullmatch(p.name)) and m.group(1) <= date
        ),
        reverse=True,
    )
    merged: dict[str, Any] | None = None
    used: list[str] = []
    for _, path in paths:
        result = json.loads(path.read_text())
        if merged is None:
            merged = result
            counts = sorted({r["records"] for r in result["summary"]})
        else:
            have = {r["records"] for r in merged["summary"]}
            counts = sorted({r["records"] for r in result["summary"]} - have)
            merged["summary"] += [r for r in result["summary"] if r["records"] in counts]
        if counts:
            used.append(f"{path.name} ({', '.join(f'{n:,}' for n in counts)} records)")
    if merged is not None:
        merged["summary"].sort(key=lambda r: (SHAPES.index(r["shape"]), r["records"]))
    return merged, "; ".join(used) or None


def load(date: str, host: str) -> tuple[dict[str, Any], dict[str, str | None]]:
    data: dict[str, Any] = {}
    sources: dict[str, str | None] = {}
    for kind in KINDS:
        if kind == "shapes":
            data[kind], sources[kind] = shape_results(date, host)
            continue
        path = find(kind, date, host)
        sources[kind] = path.name if path else None
        data[kind] = json.loads(path.read_text()) if path else None
    return data, sources


# ----------------------------------------------------------------------------- targets


def _target(text: str, measured: str, met: bool | None) -> dict[str, Any]:
    return {"target": text, "measured": measured, "met": met}


def shape_rows(shapes: dict[str, Any] | None, mode: str = "cell") -> list[dict[str, Any]]:
    if not shapes:
        return []
    return [r for r in shapes["summary"] if r["mode"] == mode]


def engine_runs(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The engine-overhead runs, smallest row count first."""
    engine = (data["overhead"] or {}).get("engine") or {}
    return sorted(engine.get("runs", []), key=lambda e: int(e["rows"]))


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cells = shape_rows(data["shapes"])
    for records, limit in ((10, 1.10), (1000, 1.05)):
        rows = [r for r in cells if r["records"] == records]
        text = f"cell-level wall ≤ {limit:.2f} x ideal at {records:,} records"
        if not rows:
            sizes = sorted({r["records"] for r in cells})
            out.append(_target(text, f"not measured (this run: {sizes} records)", None))
        for r in rows:
            measured = (
                f"{r['shape']}: {r['ratio']:.3f} (realised bound {r['ratio_realised']:.3f},"
                f" replay {r['ratio_replay']:.3f})"
            )
            out.append(_target(f"{text}: {r['shape']}", measured, r["ratio"] <= limit))
    peer = data["peer"]
    for r in peer["summary"] if peer else []:
        where = f"{r['shape']}, {r['records']:,} records"
        wall, cpu = r.get("wall_ratio"), r.get("cpu_ratio")
        out.append(
            _target(
                f"faster than Data Designer 0.9.7: {where}",
                "error" if wall is None else f"gridloom / DD wall {wall:.2f}",
                None if wall is None else wall < 1,
            )
        )
        out.append(
            _target(
                f"lower CPU per cell than Data Designer 0.9.7: {where}",
                "error" if cpu is None else f"gridloom / DD CPU per cell {cpu:.2f}",
                None if cpu is None else cpu < 1,
            )
        )
    if not peer:
        out.append(_target("faster than Data Designer 0.9.7", "not run", None))
    engine = engine_runs(data)
    at10k = [e for e in engine if e.get("rows") == 10_000]
    if at10k:
        cpu = at10k[0]["cpu_ms_per_llm_cell"]
        out.append(
            _target(
                "engine overhead ≤ 0.3 ms CPU per LLM cell at 10,000 rows",
                f"{cpu:.3f} ms",
                cpu <= 0.3,
            )
        )
    else:
        out.append(_target("engine overhead ≤ 0.3 ms CPU per LLM cell at 10,000 rows", "-", None))
    ratio = ((data["overhead"] or {}).get("engine") or {}).get("trace_cpu_ratio")
    out.append(
        _target(
            "tracing on ≤ 1.2 x the CPU per LLM cell of tracing off",
            "not run" if ratio is None else f"{ratio:.2f} x",
            None if ratio is None else ratio <= 1.2,
        )
    )
    if len(engine) >= 2:
        small, large = engine[0], engine[-1]
        ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
        exact = small["rows"] == 10_000 and large["rows"] == 100_000
        note = "" if exact else f" (measured {large['rows']:,} vs {small['rows']:,} rows)"
        out.append(
            _target(
                "peak RSS at 100,000 rows ≤ 1.2 x peak at 10,000",
                f"{ratio:.2f}{note}",
                ratio <= 1.2,
            )
        )
    for key, parallel, least in (("selfhosted", 512, 0.97), ("selfhosted_large", 2048, 0.9)):
        hosted = (data["overhead"] or {}).get(key)
        full = None if not hosted else hosted.get("time_to_full_s")
        out.append(
            _target(
                f"self-hosted ({parallel:,} parallel, 1 s) ≥ {least:g} of {parallel:,} cells/s",
                f"{hosted['fraction_of_ideal']:.3f} ({hosted['cells_per_s']:.0f} cells/s;"
                f" gridloom {hosted['cpu_utilisation']:.2f} cores; {parallel:,} in flight"
                f" {'never' if full is None else f'{full:.2f} s'} after the first request)"
                if hosted
                else "not run",
                hosted["fraction_of_ideal"] >= least if hosted else None,
            )
        )
        if parallel == 512:
            # Issue 21's own wording for this case: "at >= 0.97 of the whole-round bound".
            # The row above holds it to the stricter 0.97 of 512 cells/s; both are shown.
            bound = None if not hosted else hosted["fraction_of_ideal"] / hosted["wave_over_wall"]
            out.append(
                _target(
                    "self-hosted (512 parallel, 1 s) ≥ 0.97 of the whole-round bound (issue 21)",
                    f"{hosted['wave_over_wall']:.3f} of the bound, itself {bound:.3f} of"
                    " 512 cells/s (whole rounds at the latency served)"
                    if hosted
                    else "not run",
                    hosted["wave_over_wall"] >= 0.97 if hosted else None,
                )
            )
    throttle = data["throttle"]
    out.append(
        _target(
            "throttle goodput ≥ 0.97 of the capacity bound, ≤ 20 x 429",
            f"{throttle['goodput_fraction']:.3f}, {throttle['responses_429']} x 429"
            f" ({throttle['rows']:,} rows)"
            if throttle
            else "not run",
            throttle["goodput_fraction"] >= 0.97 and throttle["responses_429"] <= 20
            if throttle
            else None,
        )
    )
    return out


# ----------------------------------------------------------------------------- markdown


def _verdict(met: bool | None) -> str:
    return "—" if met is None else "met" if met else "**missed**"


def _source(sources: dict[str, str | None], kind: str) -> str:
    return f"Source: `bench/results/{sources[kind]}`." if sources[kind] else ""


def markdown(data: dict[str, Any], sources: dict[str, str | None], goals: list[Any]) -> str:
    lines = ["### Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {_verdict(t['met'])} |" for t in goals]
    lines += [
        "",
        "*ideal* is the issue's bound, max(depth x L, cells x L / 16), with L each model's mean"
        " served latency in that run. *realised* uses the run's own latencies: the slowest row's"
        " critical path (or the served time / concurrency), a bound no scheduler beats on those"
        " draws. *replay* is gridloom's policy replayed on the same model times at zero engine"
        " cost, so wall / replay is the engine's own overhead.",
    ]
    shapes = data["shapes"]
    if shapes:
        lines += [
            "",
            "### DAG shapes, cell-level vs column mode",
            "",
            "| shape | records | cell wall s (min-max) | ideal s | wall/ideal | wall/realised"
            " | wall/replay | column wall s | column/cell | CPU ms/cell | peak RSS MiB | req/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        columns = {(r["shape"], r["records"]): r for r in shape_rows(shapes, "column")}
        for r in shape_rows(shapes):
            c = columns.get((r["shape"], r["records"]))
            column = f"{c['wall_median_s']:.2f}" if c else "-"
            speedup = f"{c['wall_median_s'] / r['wall_median_s']:.2f}" if c else "-"
            lines.append(
                f"| {r['shape']} | {r['records']:,} | {r['wall_median_s']:.2f}"
                f" ({r['wall_min_s']:.2f}-{r['wall_max_s']:.2f}) | {r['ideal_s']:.2f}"
                f" | {r['ratio']:.3f} | {r['ratio_realised']:.3f} | {r['ratio_replay']:.3f}"
                f" | {column} | {speedup} | {r['cpu_ms_per_cell']:.2f}"
                f" | {r['peak_rss_mib']:.0f} | {r['requests_per_s']:.1f} |"
            )
        a = shapes["args"]
        lines += [
            "",
            f"Latency lognormal, median {a['latency']} s, sigma 0.3; max_parallel_requests"
            f" {a['parallel']}; medians of up to {max(r['trials'] for r in shapes['summary'])}"
            " trials per mode, interleaved after a warm-up; each run a fresh process against a"
            " fresh simulator over real sockets. CPU per cell includes the run's fixed start-up"
            " and its trace (on in this benchmark). " + _source(sources, "shapes"),
        ]
        if shapes.get("note"):
            lines += ["", str(shapes["note"])]
    peer = data["peer"]
    if peer:
        lines += [
            "",
            "### gridloom vs Data Designer 0.9.7",
            "",
            "| shape | records | gridloom wall s | DD wall s | wall gl/DD | gridloom CPU ms/cell"
            " | DD CPU ms/cell | CPU gl/DD |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in peer["summary"]:
            gl, dd = r["gridloom"], r["data_designer"]

            def num(p: dict[str, Any], key: str) -> str:
                return f"{p[key]:.2f}" if p.get(key) is not None else "-"

            def ratio(value: float | None) -> str:
                return "error" if value is None else f"{value:.2f}"

            lines.append(
                f"| {r['shape']} | {r['records']:,} | {num(gl, 'wall_median_s')}"
                f" | {num(dd, 'wall_median_s')} | {ratio(r.get('wall_ratio'))}"
                f" | {num(gl, 'cpu_ms_per_cell')} | {num(dd, 'cpu_ms_per_cell')}"
                f" | {ratio(r.get('cpu_ratio'))} |"
            )
        lines += [
            "",
            "Same simulated endpoint, same latencies (a fresh simulator per run, both peers of a"
            " trial on the same seed), same max_parallel_requests; wall is the whole create call"
            " (DD: `create()` + `load_dataset()`), CPU the calling process's over the LLM cells."
            " " + _source(sources, "peer"),
        ]
    overhead = data["overhead"] or {}
    if engine_runs(data):
        lines += [
            "",
            "### Engine overhead (3 LLM columns, 1-5 ms latency, 64 parallel)",
            "",
            "| rows | LLM cells | wall s | cells/s | CPU ms/LLM cell | peak RSS MiB |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for e in engine_runs(data):
            lines.append(
                f"| {e['rows']:,} | {e['llm_cells']:,} | {e['wall_s']:.1f}"
                f" | {e['cells_per_s']:,.0f} | {e['cpu_ms_per_llm_cell']:.3f}"
                f" | {e['peak_rss_mib']:.0f} |"
            )
        lines += [
            "",
            "The endpoint is not the bottleneck here, so this is the engine's own cost: client,"
            " throttle, scheduler and storage. The simulator runs in its own process; both share"
            " the machine's cores. " + _source(sources, "overhead"),
        ]
    for key in ("selfhosted", "selfhosted_large"):
        hosted = overhead.get(key)
        if not hosted:
            continue
        n = hosted["max_parallel_requests"]
        full = hosted.get("time_to_full_s")
        lines += [
            "",
            f"### Self-hosted: {n:,} parallel, 1 s fixed latency, no rate limit",
            "",
            f"| cells | wall s | cells/s | of {n:,}/s | gridloom CPU (cores)"
            f" | simulator CPU ms/request | {n:,} in flight after s | non-200 |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {hosted['cells']:,} | {hosted['wall_s']:.1f} | {hosted['cells_per_s']:.0f}"
            f" | {hosted['fraction_of_ideal']:.3f} | {hosted['cpu_utilisation']:.2f}"
            f" | {hosted['sim_cpu_ms_per_request']:.2f}"
            f" | {'never' if full is None else f'{full:.2f}'} | {hosted['non_200']} |",
            "",
            f"Sent in whole rounds of {n:,} at the latency actually served,"
            f" {hosted['cells']:,} cells can reach at most"
            f" {hosted['fraction_of_ideal'] / hosted['wave_over_wall']:.3f} of {n:,} cells/s. "
            + _source(sources, "overhead"),
        ]
    throttle = data["throttle"]
    if throttle:
        lines += [
            "",
            "### Throttle: endpoint capacity 8 behind max_parallel_requests 32",
            "",
            "| rows | goodput / bound | 429s | 429s in the first 10 s | final limit | ceiling"
            " | wall s |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {throttle['rows']:,} | {throttle['goodput_fraction']:.3f}"
            f" | {throttle['responses_429']} | {throttle.get('responses_429_first_10s', '-')}"
            f" | {throttle['final_limit']} | {throttle['ceiling']} | {throttle['wall_s']:.1f} |",
            "",
            "Goodput is successful requests per second over the capacity bound (capacity / mean"
            " latency); the AIMD limiter has to discover the capacity of 8 on its own. "
            + _source(sources, "throttle"),
        ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots


def plots(data: dict[str, Any], stem: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots")
        return []
    written = []
    cells = shape_rows(data["shapes"])
    if cells:
        columns = {(r["shape"], r["records"]): r for r in shape_rows(data["shapes"], "column")}
        sizes = sorted({r["records"] for r in cells})
        fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.6), squeeze=False)
        for ax, records in zip(axes[0], sizes, strict=True):
            rows = [r for r in cells if r["records"] == records]
            xs = range(len(rows))
            ax.bar([x - 0.2 for x in xs], [r["ratio"] for r in rows], 0.4, label="cell")
            col = [columns.get((r["shape"], records), {}).get("ratio", 0) for r in rows]
            ax.bar([x + 0.2 for x in xs], col, 0.4, label="column")
            ax.plot(xs, [r["ratio_realised"] for r in rows], "kD", label="cell / realised")
            ax.axhline(1.10, ls="--", c="grey", lw=0.8)
            ax.axhline(1.05, ls=":", c="grey", lw=0.8)
            ax.set_xticks(list(xs), [r["shape"] for r in rows])
            ax.set_title(f"{records:,} records: wall / ideal")
            ax.set_ylim(0.9, max(2.5, *col) * 1.05 if records <= 10 else 2.0)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        path = RESULTS / f"{stem}-shapes.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    peer = data["peer"]
    if peer:
        rows = [r for r in peer["summary"] if r.get("wall_ratio") is not None]
        labels = [f"{r['shape']}\n{r['records']:,}" for r in rows]
        xs = range(len(rows))
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
        for ax, key, title in (
            (a1, "wall_median_s", "wall time, s"),
            (a2, "cpu_ms_per_cell", "CPU ms per LLM cell"),
        ):
            ax.bar([x - 0.2 for x in xs], [r["gridloom"][key] for r in rows], 0.4, label="gridloom")
            dd = [r["data_designer"][key] for r in rows]
            ax.bar([x + 0.2 for x in xs], dd, 0.4, label="Data Designer 0.9.7")
            ax.set_xticks(list(xs), labels, fontsize=8)
            ax.set_title(title)
            ax.set_yscale("log")
        a1.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        path = RESULTS / f"{stem}-peer.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    engine = engine_runs(data)
    if engine:
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        rows_ = [e["rows"] for e in engine]
        ax.plot(rows_, [e["peak_rss_mib"] for e in engine], "o-", label="peak RSS, MiB")
        ax.set_xscale("log")
        ax.set_xlabel("rows")
        ax.set_ylim(0, max(e["peak_rss_mib"] for e in engine) * 1.3)
        ax2 = ax.twinx()
        ax2.plot(rows_, [e["cpu_ms_per_llm_cell"] for e in engine], "s--", c="C1")
        ax2.set_ylabel("CPU ms per LLM cell", color="C1")
        ax2.set_ylim(0, 2)
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title("engine overhead vs rows")
        fig.tight_layout()
        path = RESULTS / f"{stem}-overhead.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    return written


# ----------------------------------------------------------------------------- docs


def update_docs(text: str) -> bool:
    doc = DOCS.read_text()
    if BEGIN not in doc or END not in doc:
        print(f"warning: {DOCS} has no {BEGIN} ... {END} section; left alone")
        return False
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOCS.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--date", default=dt.datetime.now(dt.UTC).date().isoformat())
    parser.add_argument("--host", default=platform.node())
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md alone")
    args = parser.parse_args()
    data, sources = load(args.date, args.host)
    goals = targets(data)
    stem = f"{args.date}-{args.host}"
    images = plots(data, stem)
    body = markdown(data, sources, goals)
    cpus = next((d["cpus"] for d in data.values() if d and "cpus" in d), "?")
    header = (
        f"Measured {args.date} on `{args.host}` ({cpus} cores); the latest result of each"
        " benchmark: "
        + ", ".join(f"`{name}`" if name else f"{kind}: not run" for kind, name in sources.items())
        + ".\n\n"
    )
    (RESULTS / f"{stem}.md").write_text(header + body)
    report = {"date": args.date, "host": args.host, "sources": sources, "targets": goals}
    report["figures"] = {k: v for k, v in data.items() if v is not None}
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_docs:
        pictures = "".join(f"![{name}](../bench/results/{name})\n" for name in images)
        reproduce = (
            "\n### Reproduce\n\n"
            "`python3 -m nox -s bench` runs the quick suite (under 10 minutes on 2 cores: first"
            " the benchmarks with absolute targets, the preview, engine overhead at 5,000 and"
            " 10,000 rows with traced reruns in balanced order and the self-hosted cases at 512"
            " and 2,048 in flight; then the shapes at 10 records x 3 trials and 100 x 1, the"
            " throttle at 300 rows, scale-out on Ray, the cache) and rewrites this section."
            " `python3 -m nox -s bench_full` runs every benchmark at full size (the shapes at"
            " 10 and 1,000 records, overhead at 10,000 and 100,000 rows; about 90 minutes)."
            " `python3 -m nox -s bench_peer` installs Data Designer 0.9.7 in its own"
            " environment and runs it against gridloom. `python bench/report.py` rebuilds"
            " this section from the latest results of each kind.\n"
        )
        update_docs(header + body + "\n" + pictures + reproduce)
    print(header + body)
    print("written:", f"{stem}.json", f"{stem}.md", *images)


if __name__ == "__main__":
    main()
