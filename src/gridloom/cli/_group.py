"""The ``gridloom`` command group: options common to every command, and ``--json`` usage
errors."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from ._output import EXIT_FAILED, EXIT_OK

__all__ = ["cli", "json_option"]


class _Group(click.Group):
    """Lists the commands in the order they are added, and keeps ``--json`` usage errors
    (a missing argument, an unknown option) on stdout as JSON."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or "--json" not in argv:
            return super().main(
                argv,
                prog_name,
                complete_var,
                standalone_mode,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        try:
            rv = super().main(
                argv,
                prog_name,
                complete_var,
                False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except click.ClickException as exc:
            command = next((a for a in argv if a in self.commands), None)
            kind = "UsageError" if isinstance(exc, click.UsageError) else type(exc).__name__
            error = {"type": kind, "message": exc.format_message(), "path": None, "file": None}
            doc = {"ok": False, "command": command, "error": error}
            click.echo(json.dumps(doc, indent=2))
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_FAILED)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


_JSON_HELP = "Print machine-readable JSON on stdout (errors too)."


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--json`` flag of a command (passed as ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)(fn)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gridloom")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """gridloom: generate synthetic datasets, cell by cell.

    Every command takes --json for machine-readable output on stdout (errors
    included) and exits with a documented code: 0 success, 1 failed, 2 usage
    or configuration error, 3 output exists, 4 stopped early, 5 rows missing
    (dropped beyond run.allow_drops), 130/143 interrupted by SIGINT/SIGTERM.

    \b
    Example:
      gridloom validate examples/people.yaml
      gridloom preview examples/quickstart.yaml -n 3
      gridloom create examples/people.yaml -n 1000 -o out/people
      gridloom inspect out/people --json
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )
