"""``gridloom export``: a run's dataset as JSON Lines, CSV, one parquet file or a Hugging Face
dataset folder."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import OutputExistsError, StorageError
from ..storage import open_run
from ..storage._export import EXPORT_FORMATS, export_result, export_target_problem
from ._group import json_option
from ._output import EXIT_CONFIG, EXIT_EXISTS, EXIT_FAILED, Out, run_metadata
from ._target import OUTPUT, Output, shown

__all__ = ["export"]


@click.command(short_help="Export a run's dataset to jsonl, csv, parquet or hf.")
@click.argument("output_dir", type=OUTPUT)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(EXPORT_FORMATS)),
    required=True,
    help="jsonl, csv, parquet (one file), or hf (a Hugging Face datasets folder).",
)
@click.option(
    "-o",
    "--output",
    "target",
    type=click.Path(path_type=Path),
    default=None,
    help="The file (hf: folder) to write (default: OUTPUT_DIR/export/data.<format>).",
)
@click.option("--overwrite", is_flag=True, help="Replace PATH when it exists.")
@json_option
def export(
    output_dir: Output, fmt: str, target: Path | None, overwrite: bool, as_json: bool
) -> None:
    """Export the dataset of the run in OUTPUT_DIR (its rows as written, after the
    pipeline's processors) to one file.

    jsonl, csv and parquet are streamed one row group at a time; nested values
    (structs, lists) are JSON in jsonl and JSON text in csv. hf saves a Hugging
    Face datasets folder (save_to_disk; load it with datasets.load_from_disk),
    which needs pip install 'gridloom[hf]'. The file is written to a temporary
    name beside PATH and renamed, so a failed export leaves nothing behind; an
    existing PATH is refused (exit 3) unless --overwrite. PATH inside OUTPUT_DIR
    is refused (exit 2) unless under OUTPUT_DIR/export/: an export never
    replaces a run's own files. A run still going, or stopped, exports the row
    groups written so far. Each data file is checked against the SHA-256
    recorded when it was written: one damaged since fails the export (exit 1),
    naming it, and nothing is written (gridloom resume OUTPUT_DIR sets it aside
    and generates its rows again).

    \b
    Example:
      gridloom export out/quickstart --format jsonl
      gridloom export out/quickstart --format csv -o data.csv --overwrite --json
    """
    out = Out("export", as_json)
    run_metadata(out, output_dir)
    if target is None and not isinstance(output_dir, Path):
        out.fail(
            EXIT_CONFIG,
            "a run at a URI is exported to a local file: pass -o PATH",
            kind="UsageError",
            file=shown(output_dir),
        )
    path = target if target is not None else Path(output_dir) / "export" / f"data.{fmt}"
    if isinstance(output_dir, Path) and (problem := export_target_problem(output_dir, path)):
        out.fail(EXIT_CONFIG, problem, kind="UsageError", file=str(path))
    try:
        result = open_run(output_dir)
        info = export_result(result, path, fmt, overwrite=overwrite)
    except OutputExistsError as exc:
        out.fail(EXIT_EXISTS, str(exc), kind=type(exc).__name__)
    except (StorageError, ImportError) as exc:
        out.fail(EXIT_FAILED, str(exc), kind=type(exc).__name__, file=shown(output_dir))
    if as_json:
        out.emit(
            {
                "output_dir": shown(output_dir),
                "format": info.format,
                "path": str(info.path),
                "rows": info.rows,
                "columns": list(info.columns),
            }
        )
        return
    click.echo(f"wrote {info.rows} rows ({info.format}) to {info.path}")
