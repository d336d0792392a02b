"""A run's summary as a plain-text table (what ``gridloom create`` prints at the end)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "render_corrections",
    "render_costs",
    "render_drops",
    "render_summary",
    "render_truncated",
]


def _number(value: Any, spec: str = ",") -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return format(value, spec)
    return str(value)


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:,.1f} s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Plain-text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def render_drops(examples: Sequence[Mapping[str, Any]], indent: str = "  ") -> list[str]:
    """Drop reasons, one per column and error type, each with its row count and an example
    (``RunResult.drop_examples`` as dicts, or the ``drop_examples`` of a summary)::

        dropped rows, by reason:
          grade · GenerationError · 30 rows
            row 9: template failed to render: UndefinedError: ...
    """
    if not examples:
        return []
    lines = ["dropped rows, by reason:"]
    for example in examples:
        column = example.get("column")
        rows = example.get("rows")
        lines.append(
            f"{indent}{column} · {example.get('error_type')} · {_number(rows)}"
            f" row{'' if rows == 1 else 's'}"
        )
        message = " ".join(str(example.get("message") or "").split())
        prefix = f"column {column!r}: "  # messages often start by naming the column again
        message = message.removeprefix(prefix)
        lines.append(f"{indent}  row {_number(example.get('row_id'), '')}: {message}")
    return lines


def render_truncated(columns: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per model column with answers cut at ``max_tokens`` (its counts'
    ``truncated``: kept; ``truncated_dropped``: rows dropped; ``truncated_retries``: cells
    asked again), saying what became of them (the column's ``on_truncated``)::

        summary: 20 truncated (finish_reason length: cut at max_tokens, kept); raise max_tokens
        ...
        summary: 3 truncated (finish_reason length: cut at max_tokens, asked again 9 times,
        3 rows dropped); raise max_tokens ...

    Empty when there are none."""
    lines = []
    for name, c in columns.items():
        kept, dropped = c.get("truncated") or 0, c.get("truncated_dropped") or 0
        retries = c.get("truncated_retries") or 0
        if not (kept or dropped or retries):
            continue
        fates = []
        if kept:
            fates.append(f"{_number(kept)} kept")
        if retries:
            fates.append(f"asked again {_number(retries)} time{'' if retries == 1 else 's'}")
        if dropped:
            fates.append(f"{_number(dropped)} row{'' if dropped == 1 else 's'} dropped")
        if kept and not (dropped or retries):
            fates = ["kept"]
        lines.append(
            f"{name}: {_number(kept + dropped)} truncated (finish_reason length: cut at"
            f" max_tokens, {', '.join(fates)}); raise max_tokens on the model or column if"
            " whole answers matter"
        )
    return lines


def render_corrections(columns: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The answer checks of the model columns that have them (``corrections`` in their
    counts): answers valid at the first try, corrected (in all, and after 1, 2, ... follow-up
    turns) and rejected::

          checked answers  first try  corrected  after 1 · 2  rejected
          summary                 52          6        5 · 1         2

    Empty when no column has them.
    """
    checked = {
        name: c["corrections"]
        for name, c in columns.items()
        if isinstance(c, Mapping) and isinstance(c.get("corrections"), Mapping)
    }
    if not checked:
        return []
    longest = max(len(c.get("corrected") or ()) for c in checked.values())
    rounds = " · ".join(str(k) for k in range(1, longest + 1)) or "-"
    header = ["checked answers", "first try", "corrected", f"after {rounds}", "rejected"]
    rows = []
    for name, c in checked.items():
        corrected = [int(n) for n in c.get("corrected") or ()]
        rows.append(
            [
                name,
                _number(c.get("first_try")),
                _number(sum(corrected)),
                " · ".join(_number(n) for n in corrected) or "-",
                _number(c.get("rejected")),
            ]
        )
    return ["", *_table(header, rows)]


def _ended(status: str, summary: Mapping[str, Any]) -> str:
    if status == "complete":
        dropped = summary.get("num_dropped") or 0
        rows, asked = summary.get("num_rows"), summary.get("num_records")
        if dropped and isinstance(rows, int) and isinstance(asked, int) and rows >= asked:
            return (
                "complete: every row asked for was written"
                f" ({dropped:,} dropped rows replaced, run.fill_to_target)"
            )
        if dropped:
            return f"complete ({dropped:,} rows dropped, within run.allow_drops)"
        return "complete: every row asked for was written"
    if status == "incomplete":
        short: Mapping[str, Any] = summary.get("shortfall") or {}
        return (
            f"incomplete: {_number(short.get('missing'))} rows missing (dropped), and"
            f" run.allow_drops lets {_number(short.get('allowed'))} go; see the drop reasons"
            " above (run.fill_to_target replaces dropped rows)"
        )
    if status == "stopped":
        return f"stopped early: {summary.get('stop_reason') or 'no reason given'}"
    if status == "interrupted":
        return "interrupted (resume to generate the rest)"
    if status == "failed":
        return "failed (see the error above)"
    return status or "unknown"


def render_shards(shards: Sequence[Mapping[str, Any]]) -> list[str]:
    """A sharded run's shards, one table row each (none for a local run): where each ran,
    its row groups, and the requests and capacity refusals of its share."""
    if not shards:
        return []
    rows = []
    for shard in sorted(shards, key=lambda s: int(s.get("shard", 0))):
        groups = shard.get("row_groups") or []
        span = f"{groups[0]}-{groups[-1]}" if len(groups) > 1 else str(groups[0] if groups else "")
        usage = (shard.get("models") or {}).values()
        rows.append(
            [
                str(shard.get("shard")),
                f"{shard.get('host', '?')}:{shard.get('pid', '?')}",
                span,
                _number(len(shard.get("row_groups_generated") or [])),
                _number(sum(int(m.get("requests") or 0) for m in usage)),
                _number(sum(int(m.get("rate_limited") or 0) for m in usage)),
                str(shard.get("status", "")),
            ]
        )
    header = ["shard", "worker", "row groups", "generated", "requests", "refused", "ended"]
    return ["", *_table(header, rows)]


def render_costs(models: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per model with a price: the estimated cost of its tokens (batch tokens
    discounted) and what its cached answers saved."""
    lines = []
    for alias, m in models.items():
        cost = m.get("estimated_cost")
        if not isinstance(cost, int | float):
            continue
        line = f"estimated cost {alias}: ${cost:,.4f}"
        savings = m.get("cache_savings")
        if isinstance(savings, int | float) and m.get("cached_requests"):
            line += f" (the cache saved ${savings:,.4f})"
        lines.append(line)
    return lines


def render_unwritten(invocation: Mapping[str, Any]) -> str:
    """The rows of row groups a stop left unwritten (which a resume generates again) and how
    many of them had failed, as a clause to append (``""`` when there are none): they are in
    no drop record, so "N dropped" alone would hide them."""
    abandoned = invocation.get("rows_abandoned")
    if not isinstance(abandoned, int) or abandoned <= 0:
        return ""
    text = f"; {abandoned:,} rows left unwritten when the run stopped"
    failed = invocation.get("rows_failed_unwritten")
    if isinstance(failed, int) and failed > 0:
        text += f", {failed:,} of them failed"
    return text + " (a resume generates them again)"


def render_summary(summary: Mapping[str, Any]) -> str:
    """A run's summary as a plain-text table, for a terminal or a log.

    Args:
        summary: ``RunResult.summary`` (or the ``summary`` of ``metadata.json``): rows written
            and dropped, per column counts, per model usage, wall time, and why the run ended.
            Missing sections are left out.

    Returns:
        Lines such as::

            60 of 60 rows written, 0 dropped, in 2.31 s (26.0 rows/s)

        (a run stopped with row groups in flight adds "; 50 rows left unwritten when the run
        stopped, 11 of them failed (a resume generates them again)": those rows are in no drop
        record)

              column   done  failed  dropped
              summary    60       0        0

              model   requests  tokens in  tokens out  refused  retries  errors  mean latency ...
              writer       120      4,800       9,600     0        0       0        0.16 s ...

            cell retries 0 · salvage rounds 0
            ended: complete: every planned row was generated
    """
    invocation: Mapping[str, Any] = summary.get("invocation") or {}
    wall = summary.get("wall_time", invocation.get("wall_time"))
    lines: list[str] = []
    if "num_rows" in summary:
        head = f"{summary['num_rows']:,} of {_number(summary.get('num_records'))} rows written"
        if summary.get("output_dir"):
            head += f" to {summary['output_dir']}"
        head += f", {_number(summary.get('num_dropped', 0))} dropped"
    else:
        groups = invocation.get("row_groups_written")
        head = f"{_number(groups)} row groups written"
        head += f", {_number(invocation.get('rows_dropped'))} rows dropped"
    if wall is not None:
        head += f", in {_seconds(wall)}"
    per_second = summary.get("rows_per_second")
    if isinstance(per_second, int | float):
        head += f" ({per_second:,.1f} rows/s)"
    lines.append(head + render_unwritten(invocation))
    columns: Mapping[str, Mapping[str, Any]] = summary.get("columns") or {}
    if columns:
        header = ["column", "done", "failed", "dropped"]
        rows = [
            [name, _number(c.get("done")), _number(c.get("failed")), _number(c.get("dropped"))]
            for name, c in columns.items()
        ]
        if any(c.get("skipped") for c in columns.values()):  # only pipelines with skip_when
            header.append("skipped")
            for row, c in zip(rows, columns.values(), strict=True):
                row.append(_number(c.get("skipped", 0)))
        if any(c.get("truncated") for c in columns.values()):  # answers kept cut short
            header.append("truncated")
            for row, c in zip(rows, columns.values(), strict=True):
                row.append(_number(c.get("truncated", 0)))
        lines += ["", *_table(header, rows)]
        lines += render_truncated(columns)
        lines += render_corrections(columns)
    drops = render_drops(summary.get("drop_examples") or [])
    if drops:
        lines += ["", *drops]
    models: Mapping[str, Mapping[str, Any]] = summary.get("models") or {}
    if models:
        header = ["model", "requests", "tokens in", "tokens out", "refused", "retries", "errors"]
        header += ["mean latency", "p95 latency"]
        rows = [
            [
                alias,
                _number(m.get("requests")),
                _number(m.get("input_tokens")),
                _number(m.get("output_tokens")),
                _number(m.get("rate_limited")),
                _number(sum((m.get("transport_retries") or {}).values())),
                _number(m.get("failed")),
                _seconds(m.get("mean_latency")),
                _seconds(m.get("p95_latency")),
            ]
            for alias, m in models.items()
        ]
        # Served from the response cache or by batch jobs: columns only when some were.
        for key, title in (("cached_requests", "cached"), ("batch_requests", "batch")):
            if any(m.get(key) for m in models.values()):
                header.insert(2, title)
                for row, m in zip(rows, models.values(), strict=True):
                    row.insert(2, _number(m.get(key, 0)))
        lines += ["", *_table(header, rows)]
        lines += render_costs(models)
    if invocation:
        lines += [
            "",
            f"cell retries {_number(invocation.get('retries'))} · "
            f"salvage rounds {_number(invocation.get('salvage_rounds'))}",
        ]
        lines += [
            f"damaged on disk, generated again: {line}"
            for line in invocation.get("row_groups_damaged") or []
        ]
    else:
        lines.append("")
    lines += render_shards(summary.get("shards") or [])
    lines.append(f"ended: {_ended(str(summary.get('status', '')), summary)}")
    return "\n".join(lines)
