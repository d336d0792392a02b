"""``gridloom schema``: the JSON Schema of the config format, or of a command's output."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import config_json_schema
from ._output import EXIT_CONFIG, EXIT_FAILED, Out, output_schema, schemas

__all__ = ["schema"]


@click.command(short_help="Print the JSON Schema of the config format.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the schema to this file instead of stdout.",
)
@click.option(
    "--command",
    "for_command",
    default=None,
    metavar="NAME",
    help="The schema of command NAME's --json output instead of the config's.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Wrap the schema: {"ok": true, "command": "schema", "output": ..., "schema": ...}.',
)
def schema(output: Path | None, for_command: str | None, as_json: bool) -> None:
    """Print the JSON Schema (draft 2020-12) of the pipeline config format.

    Generated from the config models, with their descriptions: point an
    editor's YAML/JSON language server at it to get completion and checks.
    Some rules span fields (high >= low, model aliases that exist, templates
    that parse) and are checked only by `gridloom validate`.

    \b
    Example:
      gridloom schema --output gridloom.schema.json
      gridloom schema --command inspect
    """
    out = Out("schema", as_json)
    if for_command is None:
        doc = config_json_schema()
    else:
        try:
            doc = output_schema(for_command)
        except KeyError:
            known = ", ".join(schemas()["commands"])
            out.fail(
                EXIT_CONFIG,
                f"no command {for_command!r} has a documented output (known: {known})",
                kind="UsageError",
            )
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            out.fail(
                EXIT_FAILED,
                f"cannot write: {exc.strerror or exc}",
                kind=type(exc).__name__,
                file=output,
            )
    if as_json:
        out.emit({"output": None if output is None else str(output), "schema": doc})
    elif output is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {output}")
