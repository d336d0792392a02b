"""The ``gridloom`` command line.

Exit codes: 0 success · 1 the run failed · 2 usage or configuration error ·
3 the output directory already holds a run · 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from . import _api
from .errors import ConfigError, GridloomError, OutputExistsError

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_EXISTS = 3
EXIT_INTERRUPTED = 130


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

    \b
    Example:
      gridloom create examples/people.yaml -n 1000 -o out/people
    """
    if overwrite and resume:
        _fail("--overwrite and --resume exclude each other", EXIT_CONFIG)
    try:
        result = _api.create(
            config,
            num_records=num_records,
            output_dir=output_dir,
            overwrite=overwrite,
            resume=resume,
        )
    except ConfigError as exc:
        _fail(f"{config}: {exc}", EXIT_CONFIG)
        return
    except OutputExistsError as exc:
        _fail(str(exc), EXIT_EXISTS)
        return
    except KeyboardInterrupt:
        _fail(f"interrupted; completed row groups are kept in {output_dir}", EXIT_INTERRUPTED)
        return
    except GridloomError as exc:
        _fail(str(exc), EXIT_FAILED)
        return
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
