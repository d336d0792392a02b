"""The ``gridloom`` command group: options common to every command, where the output goes
(:mod:`._stdout`), and ``--json`` usage errors."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from ._output import EXIT_FAILED, EXIT_OK
from ._stdout import json_stdout, text_stdout, write_json

__all__ = ["cli", "json_option"]


class _Group(click.Group):
    """Lists the commands in the order they are added; with ``--json`` keeps stdout for the
    command's JSON (:func:`~._stdout.json_stdout`: whatever else is written there goes to
    stderr), usage errors (a missing argument, an unknown option) included."""

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
        as_json = "--json" in argv
        with text_stdout(), json_stdout() if as_json else contextlib.nullcontext():
            if not standalone_mode or not as_json:
                return super().main(
                    argv,
                    prog_name,
                    complete_var,
                    standalone_mode,
                    windows_expand_args=windows_expand_args,
                    **extra,
                )
            rv = self._main_json(argv, prog_name, complete_var, windows_expand_args, extra)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)

    def _main_json(
        self,
        argv: list[str],
        prog_name: str | None,
        complete_var: str | None,
        windows_expand_args: bool,
        extra: dict[str, Any],
    ) -> Any:
        """The command with ``--json``: a usage error is reported as JSON."""
        try:
            return super().main(
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
            write_json({"ok": False, "command": command, "error": error})
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_FAILED)


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
