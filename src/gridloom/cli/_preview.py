"""``gridloom preview``.

Its config is loaded before the event loop starts (errors are reported as before), and
pyarrow is imported, and its first conversion made, while the run waits on its models
(:mod:`._startup`), so the rows are printed soon after the last answer.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import trio

from ..config import load_config_with_base
from ..errors import ConfigError
from ..progress import render_drops
from ..run import Run, StopSignals, signal_exit, signal_name
from ..storage import RunResult
from ._cache import no_cache_option
from ._group import json_option
from ._output import NUM_RECORDS, Out, check_config_file, jsonable, render_rows, run_failure
from ._signals import run_stoppable
from ._startup import ArrowWarmup, PhaseMarks

__all__ = ["preview"]


@click.command(short_help="Generate a few rows in memory and print them.")
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "-n",
    "--num-records",
    type=NUM_RECORDS,
    default=5,
    show_default=True,
    help="Rows to generate (at most 10^12).",
)
@no_cache_option
@json_option
def preview(config: Path, num_records: int, no_cache: bool, as_json: bool) -> None:
    """Generate a few rows of CONFIG in memory and print them; nothing is written.

    Prints a table (long values cut short; one block per row when the table
    is wider than the terminal), or with --json the rows themselves: datetimes
    as ISO 8601 text, durations in seconds. Dropped rows are counted by
    reason, with an example each (row id and message). Exits 4 when a failing
    model or column stopped the preview early, 5 when more rows were dropped
    than run.allow_drops allows.

    \b
    Example:
      gridloom preview examples/quickstart.yaml -n 3
      gridloom preview examples/people.yaml --json
    """
    marks = PhaseMarks()
    marks.mark("command")
    warmup = ArrowWarmup()
    try:
        result = _generate(config, num_records, no_cache, as_json, marks, warmup)
        _print(config, result, as_json)
        marks.mark("printed")
    finally:
        marks.save(warmup_started=warmup.started, warmup_ended=warmup.ended)


def _generate(
    config: Path,
    num_records: int,
    no_cache: bool,
    as_json: bool,
    marks: PhaseMarks,
    warmup: ArrowWarmup,
) -> RunResult:
    """Load ``config`` and generate its rows; exits on an error or a stop signal."""
    out = Out("preview", as_json)
    check_config_file(out, config)
    try:
        cfg, base = load_config_with_base(config)
    except ConfigError as exc:
        out.config_error(exc, config)
    marks.mark("config_loaded")
    offset: list[float] = []

    async def work(signals: StopSignals) -> RunResult:
        marks.mark("loop_started")
        offset.append(time.perf_counter() - trio.current_time())
        run = Run(cfg, base_dir=base, signals=signals, cache=not no_cache)
        return await run.preview(num_records)

    with warmup:
        outcome = run_stoppable(out, work, instruments=[warmup])
    marks.mark("run_returned")
    if outcome.signum is not None:
        name = signal_name(outcome.signum)
        out.fail(
            signal_exit(outcome.signum),
            f"interrupted by {name}; a preview writes nothing",
            kind="Interrupted",
            extra={"status": "interrupted", "signal": name},
        )
    if isinstance(outcome.error, ConfigError):
        out.config_error(outcome.error, config)
    if outcome.error is not None:
        out.error(outcome.error, file=config)
    result = outcome.result
    assert result is not None
    marks.requests(result.trace, offset[0])
    return result


def _print(config: Path, result: RunResult, as_json: bool) -> None:
    """Print the rows of ``result`` (and the drops); exits 4 or 5 when the preview fell short."""
    out = Out("preview", as_json)
    rows = [jsonable(row) for row in result.table.to_pylist()]
    if as_json:
        doc = {
            "config": str(config),
            "status": result.status,
            "stop_reason": result.stop_reason,
            "num_records": result.num_records,
            "num_rows": result.num_rows,
            "num_dropped": result.num_dropped,
            "wall_time": result.wall_time,
            "seed": result.seed,
            "schema": {field.name: str(field.type) for field in result.table.schema},
            "columns": {name: c.as_dict() for name, c in result.columns.items()},
            "drop_reasons": result.drop_reasons,
            "drop_examples": [example.as_dict() for example in result.drop_examples],
            "rows": rows,
        }
        failure = run_failure(result)
        if failure is not None:
            code, kind, message = failure
            out.fail(code, message, kind=kind, extra=doc)
        out.emit(doc)
        return
    for line in render_rows(rows, result.table.schema.names):
        click.echo(line)
    click.echo(
        f"{result.num_rows:,} of {result.num_records:,} rows in {result.wall_time:.2f} s"
        f" (seed {result.seed}), {result.num_dropped:,} dropped"
    )
    for line in render_drops([example.as_dict() for example in result.drop_examples]):
        click.echo(line)
    failure = run_failure(result)
    if failure is not None:
        code, _kind, message = failure
        click.echo(message, err=True)
        sys.exit(code)
