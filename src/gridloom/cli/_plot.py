"""``gridloom plot``: PNG pictures of a traced run."""

from __future__ import annotations

from pathlib import Path

import click

from ._group import json_option
from ._output import EXIT_FAILED, Out, run_metadata

__all__ = ["plot"]


@click.command(short_help="Draw PNG pictures of a traced run.")
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the PNGs (default: OUTPUT_DIR).",
)
@json_option
def plot(output_dir: Path, dest: Path | None, as_json: bool) -> None:
    """Draw the trace of the run in OUTPUT_DIR as PNG pictures.

    columns.png is a Gantt of column activity over time (cell-level scheduling
    shows as a diagonal fill); models.png shows each model's requests in flight
    against its AIMD limit, with its 429s; latency.png has per column histograms
    of model latency and of queue plus throttle wait. The run must have been
    traced (run.trace: true, or GRIDLOOM_TRACE=1), and matplotlib installed
    (pip install 'gridloom[plot]').

    \b
    Example:
      GRIDLOOM_TRACE=1 gridloom create examples/quickstart.yaml -n 200 -o out/qs
      gridloom plot out/qs
    """
    out = Out("plot", as_json)
    run_metadata(out, output_dir)
    from .. import plots  # matplotlib loads only for this command

    try:
        files = plots.render_plots(output_dir, dest=dest)
    except (FileNotFoundError, ImportError) as exc:
        out.fail(EXIT_FAILED, str(exc), kind=type(exc).__name__, file=output_dir)
    if as_json:
        out.emit({"output_dir": str(output_dir), "files": [str(f) for f in files]})
        return
    for path in files:
        click.echo(f"wrote {path}")
