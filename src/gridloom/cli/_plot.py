"""``gridloom plot``: PNG pictures of a traced run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ..errors import StorageError
from ..storage import location_of
from ._group import json_option
from ._output import EXIT_CONFIG, EXIT_FAILED, Out, run_metadata
from ._target import OUTPUT, Output, shown

__all__ = ["plot"]

#: The largest trace of a run at a URI that is fetched to draw it.
_TRACE_LIMIT = 1 << 31


@click.command(short_help="Draw PNG pictures of a traced run.")
@click.argument("output_dir", type=OUTPUT)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the PNGs (default: OUTPUT_DIR; needed for a run at a URI).",
)
@json_option
def plot(output_dir: Output, dest: Path | None, as_json: bool) -> None:
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
        if isinstance(output_dir, Path):
            files = plots.render_plots(output_dir, dest=dest)
        else:
            if dest is None:
                out.fail(
                    EXIT_CONFIG,
                    "the pictures of a run at a URI go to a local folder: pass --dest",
                    kind="UsageError",
                    file=shown(output_dir),
                )
            with tempfile.TemporaryDirectory(prefix="gridloom-plot-") as tmp:
                local = Path(tmp)
                location = location_of(output_dir)
                for name in ("metadata.json", "trace.parquet"):
                    content = location.read_bytes(name, limit=_TRACE_LIMIT)
                    if content is not None:
                        (local / name).write_bytes(content)
                files = plots.render_plots(local, dest=dest)
    except (FileNotFoundError, ImportError, StorageError) as exc:
        out.fail(EXIT_FAILED, str(exc), kind=type(exc).__name__, file=shown(output_dir))
    if as_json:
        out.emit({"output_dir": shown(output_dir), "files": [str(f) for f in files]})
        return
    for path in files:
        click.echo(f"wrote {path}")
