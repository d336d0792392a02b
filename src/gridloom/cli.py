"""The ``gridloom`` command line.

Exit codes: 0 success · 1 the run failed · 2 usage or configuration error ·
3 the output directory already holds a run · 4 the run stopped early (its stop reason is
printed) · 130 interrupted by Ctrl-C (SIGINT) · 143 terminated by SIGTERM.

On SIGINT or SIGTERM ``create`` stops admitting work, cancels the cells in flight, keeps every
row group already written, records status ``"interrupted"`` in ``metadata.json`` and prints
how to resume; a second signal during that shutdown exits at once (every file on disk is
complete either way, and ``--resume`` cleans up what an abrupt exit leaves).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import attrs
import click
import trio

from . import _api
from .errors import ConfigError, GridloomError, OutputExistsError
from .storage import RunResult

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_EXISTS = 3
EXIT_STOPPED = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

#: The signals ``create`` treats as a request to stop, and the exit code of each.
_SIGNAL_EXITS = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}

log = logging.getLogger("gridloom")


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gridloom")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """gridloom: generate synthetic datasets, cell by cell.

    \b
    Example:
      gridloom validate examples/people.yaml
      gridloom create examples/people.yaml -n 1000 -o out/people
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )


@cli.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def validate(config: Path, as_json: bool) -> None:
    """Check CONFIG without generating anything; print the execution graph.

    \b
    Example:
      gridloom validate examples/people.yaml --json
    """
    try:
        graph = _api.validate(config)
    except ConfigError as exc:
        _fail(f"{config}: {exc}", EXIT_CONFIG)
        return
    nodes = graph.describe()
    if as_json:
        click.echo(json.dumps({"valid": True, "nodes": nodes, "depth": graph.depth()}, indent=2))
        return
    click.echo(f"{config}: valid — {len(nodes)} nodes, dependency depth {graph.depth()}")
    for node in nodes:
        deps = ", ".join(node["depends_on"]) or "-"  # type: ignore[arg-type]
        click.echo(f"  {node['node']:<24} {node['granularity']:<5}  after: {deps}")


@cli.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-n", "--num-records", type=click.IntRange(min=1), required=True, help="Rows to generate."
)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for config.yaml, metadata.json and data/.",
)
@click.option("--overwrite", is_flag=True, help="Replace a previous run in OUTPUT_DIR.")
@click.option("--resume", is_flag=True, help="Continue a run started in OUTPUT_DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
def create(
    config: Path,
    num_records: int,
    output_dir: Path,
    overwrite: bool,
    resume: bool,
    as_json: bool,
) -> None:
    """Generate NUM_RECORDS rows from CONFIG into OUTPUT_DIR as parquet.

    Ctrl-C (SIGINT) or SIGTERM stops the run: completed row groups are kept,
    metadata.json says "interrupted", and --resume then generates only what is
    missing. A second Ctrl-C while stopping exits at once.

    \b
    Exit codes:
      0    the run is complete
      1    the run failed
      2    usage or configuration error
      3    OUTPUT_DIR already holds a run
      4    the run stopped early (the reason is printed)
      130  interrupted by Ctrl-C (SIGINT)
      143  interrupted by SIGTERM

    \b
    Example:
      gridloom create examples/people.yaml -n 1000 -o out/people
      gridloom create examples/people.yaml -n 1000 -o out/people --resume
    """
    if overwrite and resume:
        _fail("--overwrite and --resume exclude each other", EXIT_CONFIG)
    try:
        outcome = trio.run(_create_with_signals, config, num_records, output_dir, overwrite, resume)
    except BaseException as exc:
        # Ctrl-C before the signal receiver was open (or after it closed): trio raises it.
        if not _is_keyboard_interrupt(exc):
            raise
        outcome = _Outcome(signum=signal.SIGINT)
    if outcome.signum is not None:
        if outcome.error is not None:  # most likely a consequence of the cancellation
            log.warning("while stopping: %s", outcome.error)
        _interrupted(outcome.signum, config, num_records, output_dir)
    error = outcome.error
    if isinstance(error, ConfigError):
        _fail(f"{config}: {error}", EXIT_CONFIG)
    elif isinstance(error, OutputExistsError):
        _fail(str(error), EXIT_EXISTS)
    elif isinstance(error, GridloomError):
        _fail(str(error), EXIT_FAILED)
    elif error is not None:
        raise error
    result = outcome.result
    assert result is not None
    _report(result, output_dir, as_json)
    if result.status == "stopped":
        reason = getattr(result, "stop_reason", None) or "no reason given"
        click.echo(f"stopped early: {reason}", err=True)
        sys.exit(EXIT_STOPPED)


@attrs.define
class _Outcome:
    """How a ``create`` run ended: a result, an error, and the signal that stopped it."""

    result: RunResult | None = None
    error: Exception | None = None
    signum: int | None = None


async def _create_with_signals(
    config: Path, num_records: int, output_dir: Path, overwrite: bool, resume: bool
) -> _Outcome:
    """Run ``acreate``, cancelling it on the first SIGINT or SIGTERM.

    The receiver replaces trio's own Ctrl-C handling, so both signals stop the run the same
    way: a cancellation, which the run records as status ``"interrupted"`` after the row
    groups being written are committed.
    """
    outcome = _Outcome()
    with trio.open_signal_receiver(*_SIGNAL_EXITS) as signals:
        async with trio.open_nursery() as nursery:
            run_scope = trio.CancelScope()
            nursery.start_soon(_watch_signals, signals, run_scope, outcome)
            with run_scope:
                try:
                    outcome.result = await _api.acreate(
                        config,
                        num_records=num_records,
                        output_dir=output_dir,
                        overwrite=overwrite,
                        resume=resume,
                    )
                except Exception as exc:
                    outcome.error = exc
            nursery.cancel_scope.cancel()
    return outcome


async def _watch_signals(
    signals: AsyncIterator[int], run_scope: trio.CancelScope, outcome: _Outcome
) -> None:
    async for signum in signals:
        if outcome.signum is None:
            outcome.signum = signum
            run_scope.cancel()
            continue
        # A second signal while shutting down: leave now. Every file on disk is complete
        # (written atomically); --resume removes the temp files an abrupt exit leaves.
        click.echo(f"{_signal_name(signum)} again: exiting without waiting", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_SIGNAL_EXITS.get(signal.Signals(outcome.signum), EXIT_INTERRUPTED))


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # pragma: no cover - only SIGINT and SIGTERM are received
        return f"signal {signum}"


def _is_keyboard_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_keyboard_interrupt(inner) for inner in exc.exceptions)
    return False


def _interrupted(signum: int, config: Path, num_records: int, output_dir: Path) -> NoReturn:
    """Print what was kept and how to resume, then exit with the signal's code."""
    code = _SIGNAL_EXITS.get(signal.Signals(signum), EXIT_INTERRUPTED)
    if not (output_dir / "metadata.json").is_file():  # stopped before the run directory
        click.echo(
            f"interrupted by {_signal_name(signum)} before the run started; "
            f"nothing was written to {output_dir}",
            err=True,
        )
        sys.exit(code)
    kept = len(list((output_dir / "data").glob("part-*.parquet")))
    command = shlex.join(
        ["gridloom", "create", str(config), "-n", str(num_records), "-o", str(output_dir)]
    )
    click.echo(
        f"interrupted by {_signal_name(signum)}; {kept} row groups kept in {output_dir}"
        f" — resume with: {command} --resume",
        err=True,
    )
    sys.exit(code)


def _report(result: RunResult, output_dir: Path, as_json: bool) -> None:
    summary: dict[str, Any] = result.summary
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    click.echo(
        f"wrote {result.num_rows} of {result.num_records} rows to {output_dir} "
        f"in {result.wall_time:.2f} s"
    )
    for name, counts in result.columns.items():
        click.echo(
            f"  {name:<24} done {counts.done:>8}  failed {counts.failed:>6}"
            f"  dropped {counts.dropped:>6}"
        )


@cli.command("check-models")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check_models(config: Path, as_json: bool) -> None:
    """Send one tiny request to each model CONFIG uses; report latency or the error.

    Exits 1 when any model fails.

    \b
    Example:
      gridloom check-models examples/quickstart.yaml
    """
    try:
        results = _api.check_models(config)
    except ConfigError as exc:
        _fail(f"{config}: {exc}", EXIT_CONFIG)
        return
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        if not results:
            click.echo(f"{config}: no column uses a model")
        for row in results:
            where = f"{row['alias']} ({row['provider']}/{row['model']})"
            if row["ok"]:
                click.echo(f"  ok    {where:<40} {row['latency_s'] * 1000:8.1f} ms")
            else:
                click.echo(f"  FAIL  {where:<40} {row['error']}")
    if any(not row["ok"] for row in results):
        sys.exit(EXIT_FAILED)


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port on 127.0.0.1 (0 picks a free one).",
)
@click.option(
    "--latency",
    type=float,
    default=0.5,
    show_default=True,
    help="Median latency in seconds (lognormal, sigma 0.3).",
)
@click.option(
    "--capacity",
    type=click.IntRange(min=1),
    default=None,
    help="Concurrent requests served per model; beyond it, 429.",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of requests answered 503.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def simulate(port: int, latency: float, capacity: int | None, error_rate: float, seed: int) -> None:
    """Serve the simulated OpenAI-compatible endpoint on 127.0.0.1 until Ctrl-C.

    It speaks /v1/chat/completions, /v1/embeddings and /v1/messages; point any
    OpenAI-compatible client (or a gridloom provider of type openai) at it.

    \b
    Example:
      gridloom simulate --port 8000 --latency 0.2 --capacity 8
    """
    from .config import LatencyConfig, SimulatedModel, SimulationConfig
    from .simulated import run_simulator

    model = SimulatedModel(
        latency=LatencyConfig(median=latency, sigma=0.3 if latency else 0.0),
        capacity=capacity,
        error_503_rate=error_rate,
    )
    try:
        run_simulator(SimulationConfig(seed=seed, default=model), port=port)
    except KeyboardInterrupt:
        sys.exit(0)


def main() -> None:
    """Console-script entry point."""
    cli()
