"""``gridloom inspect``: a run directory's status, counts, schema and first rows."""

from __future__ import annotations

import shlex
from typing import Any

import click

from ..errors import StorageError
from ..progress import render_corrections, render_drops, render_unwritten
from ..storage import Verification, inspect_run
from ._group import json_option
from ._output import EXIT_FAILED, Out, jsonable, render_rows, run_metadata
from ._target import OUTPUT, Output, shown

__all__ = ["inspect"]

#: Damaged files the one-line error of ``--verify`` names (the report lists them all).
_NAMED = 5


@click.command(short_help="Show a run's status, counts, schema and first rows.")
@click.argument("output_dir", type=OUTPUT)
@click.option(
    "-n",
    "--sample-rows",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Sample rows to show (0: none).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Also read every committed file and check it against the SHA-256 recorded when it"
    " was written; exit 1 if any is damaged.",
)
@json_option
def inspect(output_dir: Output, sample_rows: int, verify: bool, as_json: bool) -> None:
    """Show the status, counts, schema and first rows of the run in OUTPUT_DIR.

    Reads metadata.json and the parquet footers, never the whole dataset: the
    sample comes from the first rows of the first data file. Counts are per
    column (done, failed, dropped, skipped), with the drop reasons per column and error
    type, each with an example (row id and message). A run whose status is
    "running" may still be going, or was killed (resume continues it).
    A run resumed with --accept-code-change lists each change of its
    columns' Python code (when, which columns, the row groups written
    before). Problems found (a listed file missing, a file not yet listed, an
    unreadable file) are reported, not fatal.

    --verify reads the whole dataset (a run at a URI is downloaded one file at
    a time): each committed data and dropped-records file must hold the bytes
    whose SHA-256 was recorded when it was written (a file from a run written
    before digests must decode in full). It prints the damaged files, or "all N
    files intact", and exits 1 when any is damaged; resume sets damaged files
    aside and generates their rows again. export checks the files it reads in
    the same way.

    \b
    Example:
      gridloom inspect out/people
      gridloom inspect out/quickstart --json -n 2
      gridloom inspect out/quickstart --verify
    """
    out = Out("inspect", as_json)
    run_metadata(out, output_dir)
    try:
        info = inspect_run(output_dir, sample_rows=sample_rows, verify=verify)
    except StorageError as exc:
        out.fail(EXIT_FAILED, str(exc), kind=type(exc).__name__, file=shown(output_dir))
    meta = info.metadata
    summary: dict[str, Any] = meta["summary"] if isinstance(meta.get("summary"), dict) else {}
    status = str(meta.get("status", "unknown"))
    num_records = _int_or_none(meta.get("num_records"))
    row_group_size = _int_or_none(meta.get("row_group_size"))
    groups: dict[str, Any] = meta["row_groups"] if isinstance(meta.get("row_groups"), dict) else {}
    base = -(-num_records // row_group_size) if num_records and row_group_size else None
    # fill_to_target's row groups come after the planned ones (top_up): those listed count.
    fill = _fill_groups(groups, base)
    planned = None if base is None else base + fill
    rows = [jsonable(row) for row in info.sample.to_pylist()]
    resumable = status not in ("complete", "incomplete")
    doc: dict[str, Any] = {
        "output_dir": shown(output_dir),
        "status": status,
        "stop_reason": summary.get("stop_reason"),
        "num_records": num_records,
        "row_group_size": row_group_size,
        "seed": _int_or_none(meta.get("seed")),
        "config_hash": meta.get("config_hash"),
        "code_fingerprint": meta.get("code_fingerprint"),
        "code_changes": _code_changes(meta.get("code_changes")),
        "gridloom_version": meta.get("gridloom_version"),
        "created_at": meta.get("created_at"),
        "updated_at": meta.get("updated_at"),
        "rows_written": _int_or_none(meta.get("rows_written")) or 0,
        "rows_dropped": _int_or_none(meta.get("rows_dropped")) or 0,
        "rows_on_disk": info.rows_on_disk,
        "row_groups": {
            "planned": planned,
            "fill": fill,
            "written": len(groups),
            "on_disk": len(info.data_files),
            "unlisted": list(info.unlisted),
        },
        "columns": _counts(meta.get("counts")),
        "drop_reasons": info.drop_reasons,
        "drop_examples": [example.as_dict() for example in info.drop_examples],
        "schema": info.schema,
        "sample": rows,
        "problems": list(info.problems),
        "resume_command": shlex.join(["gridloom", "resume", shown(output_dir)])
        if resumable
        else None,
        "summary": summary,
        "verify": None if info.verification is None else info.verification.as_dict(),
    }
    damage = None if info.verification is None else _damage(info.verification)
    if as_json:
        if damage is not None:
            out.fail(EXIT_FAILED, damage, kind="RunDamaged", file=shown(output_dir), extra=doc)
        out.emit(doc)
        return
    for line in _inspect_text(doc, [f["name"] for f in info.schema]):
        click.echo(line)
    if damage is not None:
        out.fail(EXIT_FAILED, damage, kind="RunDamaged", file=shown(output_dir))


def _damage(verification: Verification) -> str | None:
    """The one-line error of ``inspect --verify`` when files are damaged, else ``None``."""
    if verification.intact:
        return None
    files = [d.file for d in verification.damaged]
    named = ", ".join(files[:_NAMED]) + (
        f" and {len(files) - _NAMED} more" if len(files) > _NAMED else ""
    )
    return (
        f"{len(files)} of {verification.files} committed files are damaged ({named});"
        f" {verification.repair}"
    )


def _counts(raw: Any) -> dict[str, Any]:
    """``metadata.json``'s per column counts, each with ``skipped`` (0 in runs written before
    ``skip_when`` existed)."""
    if not isinstance(raw, dict):
        return {}
    return {
        name: {**c, "skipped": c.get("skipped", 0)} if isinstance(c, dict) else c
        for name, c in raw.items()
    }


def _code_changes(raw: Any) -> list[dict[str, Any]]:
    """``metadata.json``'s accepted code changes (none in runs written before them)."""
    return [change for change in raw if isinstance(change, dict)] if isinstance(raw, list) else []


def _code_change_text(change: dict[str, Any]) -> str:
    """One accepted code change as a line: when, which columns, what was written before."""
    columns = change.get("columns")
    names = ", ".join(map(str, columns)) if isinstance(columns, dict) else "?"
    ranges = change.get("row_groups_before")
    groups = (
        ", ".join(
            f"{r[0]}" if r[0] == r[1] else f"{r[0]}-{r[1]}"
            for r in ranges
            if isinstance(r, list) and len(r) == 2
        )
        if isinstance(ranges, list)
        else ""
    )
    return (
        f"  code changed (accepted on resume at {change.get('at', '?')}): column(s) {names};"
        f" row groups written before: {groups or 'none'} ({change.get('rows_before', '?')}"
        " rows), by the old code"
    )


def _fill_groups(groups: dict[str, Any], base: int | None) -> int:
    """How many of the listed row groups are ``fill_to_target``'s: those after the ``base``
    row groups that ``num_records`` needs."""
    if base is None:
        return 0
    return sum(1 for key in groups if key.isdigit() and int(key) >= base)


def _verify_text(verified: dict[str, Any] | None) -> list[str]:
    if verified is None:
        return []
    if verified["intact"]:
        return [f"  verified: all {verified['files']} files intact"]
    lines = [f"  damaged: {d['problem']}" for d in verified["damaged"]]
    return [*lines, f"  repair: {verified['repair']}"]


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _invocation(summary: dict[str, Any]) -> dict[str, Any]:
    invocation = summary.get("invocation")
    return invocation if isinstance(invocation, dict) else {}


def _fill_text(fill: int) -> str:
    if not fill:
        return ""
    them = "it" if fill == 1 else "them"
    return f" ({fill} of {them} added by fill_to_target to replace dropped rows)"


def _inspect_text(doc: dict[str, Any], names: list[str]) -> list[str]:
    groups = doc["row_groups"]
    status = doc["status"]
    if status == "running":
        status += " (still going, or killed: resume continues it)"
    lines = [
        f"{doc['output_dir']}: {status}",
        f"  rows: {doc['rows_written']} written of {doc['num_records']} requested,"
        f" {doc['rows_dropped']} dropped; row groups: {groups['written']} of"
        f" {groups['planned']} written{_fill_text(groups['fill'])}"
        f"{render_unwritten(_invocation(doc['summary']))}",
        f"  seed {doc['seed']} · row_group_size {doc['row_group_size']} · created"
        f" {doc['created_at']} · updated {doc['updated_at']} · gridloom"
        f" {doc['gridloom_version']}",
    ]
    if doc["stop_reason"]:
        lines.append(f"  stopped early: {doc['stop_reason']}")
    lines += [_code_change_text(change) for change in doc["code_changes"]]
    for problem in doc["problems"]:
        lines.append(f"  problem: {problem}")
    lines += _verify_text(doc["verify"])
    if doc["resume_command"]:
        lines.append(f"  continue with: {doc['resume_command']}")
    lines.append("columns:")
    for name, c in doc["columns"].items():
        line = (
            f"  {name:<24} done {c.get('done', 0):>8}  failed {c.get('failed', 0):>6}"
            f"  dropped {c.get('dropped', 0):>6}"
        )
        if c.get("skipped"):
            line += f"  skipped {c['skipped']:>6}"
        lines.append(line)
    lines += render_corrections(doc["columns"])
    lines += render_drops(doc["drop_examples"])
    lines.append("schema:")
    lines += [
        f"  {f['name']:<24} {f['type']}{'' if f['nullable'] else ' not null'}"
        for f in doc["schema"]
    ]
    if doc["sample"]:
        lines.append(f"sample (first {len(doc['sample'])} rows):")
        lines += ["  " + line for line in render_rows(doc["sample"], names)]
    return lines
