"""What every command shares: exit codes, JSON and text output, and the ``--json`` schemas."""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import functools
import importlib.resources
import json
import math
import re
import shutil
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from .._attrs import define
from ..config import COLUMN_KINDS
from ..errors import ConfigError, ConfigIssue, GridloomError, OutputExistsError, StorageError
from ..run import MAX_NUM_RECORDS, signal_exit
from ..storage import RunResult, is_run_directory, read_run_metadata
from ..storage._metadata import is_run_document
from ._stdout import write_json
from ._target import shown

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_EXISTS",
    "EXIT_FAILED",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_TERMINATED",
    "NUM_RECORDS",
    "Out",
    "check_config_file",
    "config_path",
    "jsonable",
    "output_schema",
    "render_rows",
    "run_failure",
    "run_metadata",
    "schemas",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_EXISTS = 3
EXIT_STOPPED = 4
EXIT_INCOMPLETE = 5
EXIT_INTERRUPTED = signal_exit(signal.SIGINT)  # 130
EXIT_TERMINATED = signal_exit(signal.SIGTERM)  # 143

#: Every exit code of every command, and what it means.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (create/resume: the run is complete)",
    EXIT_FAILED: "the run or the command failed (a model check failed, a run directory is"
    " damaged, a file cannot be written); the error is printed",
    EXIT_CONFIG: "usage or configuration error: a bad option, an invalid config (the message"
    " names the column and field), a missing config file or run directory",
    EXIT_EXISTS: "the output directory already holds a run (pass --resume or --overwrite), or,"
    " holding none, a file a run writes (config.yaml, trace.json...; a run never overwrites a"
    " file it did not write); export: the file to write exists (pass --overwrite); skill"
    " --install: a different SKILL.md is there (pass --force)",
    EXIT_STOPPED: "the run stopped early on its own (a model, or a column, kept failing); the"
    " reason is printed",
    EXIT_INCOMPLETE: "the run (or preview) generated every row group but wrote fewer rows than"
    " asked: more rows were dropped than run.allow_drops allows; the drop reasons are printed,"
    " with an example each",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (SIGINT); a run is resumable",
    EXIT_TERMINATED: "interrupted by SIGTERM; a run is resumable",
}

#: The type of ``-n/--num-records``: from 1 to :data:`~gridloom.run.MAX_NUM_RECORDS` rows
#: (beyond, a usage error: exit 2).
NUM_RECORDS = click.IntRange(min=1, max=MAX_NUM_RECORDS)

#: Keys of a column mapping that are not its kind key (the common fields).
_COLUMN_KEYS = frozenset({"name", "depends_on", "drop", "skip_when"})
#: How many characters of a value a table cell shows.
_CELL_WIDTH = 32


@functools.cache
def schemas() -> dict[str, Any]:
    """``cli_schemas.json``: every command's ``--json`` output schema."""
    text = importlib.resources.files("gridloom").joinpath("cli_schemas.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def output_schema(command: str | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``gridloom <command> --json`` output.

    Args:
        command: a command name (``"inspect"``, ``"check-models"``, ...); ``None`` gives the
            whole document, with every command's schema under ``$defs``.

    Raises:
        KeyError: no command of that name has a documented output.
    """
    doc = copy.deepcopy(schemas())
    if command is None:
        return doc
    if command not in doc["commands"]:
        raise KeyError(command)
    return {"$schema": doc["$schema"], "$ref": f"#/$defs/{command}", "$defs": doc["$defs"]}


def jsonable(value: Any) -> Any:
    """A dataset value as JSON: datetimes as ISO 8601 text, durations in seconds,
    non-finite floats as null."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return jsonable(float(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def config_path(issue: ConfigIssue) -> str | None:
    """Where in the config a problem is: ``columns.<name>.<kind>.<field>`` for a column's
    parameter, ``columns.<name>.<field>`` for a common field, else a top-level path such as
    ``models[0].provider``.

    Problems found while compiling name a parameter without its kind key (``function`` for
    ``custom.function``); the issue then knows the column's kind
    (:attr:`~gridloom.errors.ConfigIssue.kind`).
    """
    if issue.column is None:
        return issue.field or None
    field = issue.field or ""
    head = re.split(r"[.\[]", field, maxsplit=1)[0]
    if field and head not in _COLUMN_KEYS and head not in COLUMN_KINDS and issue.kind:
        field = f"{issue.kind}.{field}"
    return ".".join(["columns", issue.column, *([field] if field else [])])


@define
class Out:
    """What one command invocation prints: human text, or JSON with ``--json``."""

    command: str
    as_json: bool

    def emit(self, doc: dict[str, Any], *, ok: bool = True) -> None:
        """Print a JSON document (``ok``/``command`` first)."""
        write_json({"ok": ok, "command": self.command, **doc})

    def fail(
        self,
        code: int,
        message: str,
        *,
        kind: str,
        path: str | None = None,
        file: Path | str | None = None,
        extra: dict[str, Any] | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
    ) -> NoReturn:
        """Report a failure and exit with ``code``.

        Text: ``error: <file>: <message>`` on stderr. JSON: ``{"ok": false, ..., "error":
        {"type": kind, ...}}`` on stdout, with ``extra`` keys beside ``error``.

        ``errors`` (a configuration error's problems, each ``{"message", "path", "column"}``,
        the one ``message`` describes first) goes to JSON as ``error.errors``; the text
        prints each one after the first on an indented line of its own, after its path.
        """
        if self.as_json:
            error: dict[str, Any] = {
                "type": kind,
                "message": message,
                "path": path,
                "file": None if file is None else str(file),
            }
            if errors is not None:
                error["errors"] = list(errors)
            self.emit({**(extra or {}), "error": error}, ok=False)
        else:
            prefix = f"{file}: " if file is not None else ""
            click.echo(f"error: {prefix}{message}", err=True)
            for entry in list(errors or ())[1:]:
                where = f"{entry['path']}: " if entry.get("path") else ""
                click.echo(f"  {where}{entry['message']}", err=True)
        sys.exit(code)

    def config_error(self, exc: ConfigError, file: Path, *, hint: str = "") -> NoReturn:
        """A configuration error: exit 2, naming the file, the column and the field of the
        first problem, then every further problem with its config path."""
        errors = [
            {"message": issue.message, "path": config_path(issue), "column": issue.column}
            for issue in exc.issues
        ]
        self.fail(
            EXIT_CONFIG,
            str(exc.issues[0]) + hint,
            kind=type(exc).__name__,
            path=errors[0]["path"],
            file=file,
            errors=errors,
        )

    def error(self, exc: BaseException, *, file: Path | None = None) -> NoReturn:
        """An error raised by a run: the exit code follows its type.

        An unexpected exception (a bug) keeps its traceback: re-raised without ``--json``,
        printed on stderr with it.
        """
        if isinstance(exc, OutputExistsError):
            self.fail(EXIT_EXISTS, str(exc), kind=type(exc).__name__)
        if isinstance(exc, GridloomError):
            self.fail(EXIT_FAILED, str(exc), kind=type(exc).__name__, file=file)
        if not self.as_json:
            raise exc
        traceback.print_exception(exc)
        self.fail(EXIT_FAILED, f"{type(exc).__name__}: {exc}", kind=type(exc).__name__)


def check_config_file(out: Out, config: Path) -> None:
    """Fail as a configuration error when ``config`` is not a readable file."""
    if not config.exists():
        out.config_error(ConfigError("no such file"), config)
    if not config.is_file():
        out.config_error(ConfigError("not a file"), config)


def run_metadata(out: Out, output_dir: Path | str) -> dict[str, Any]:
    """``metadata.json`` of the run in ``output_dir`` (a folder or a URI); fails clearly when
    there is none."""
    if isinstance(output_dir, Path):
        if not output_dir.exists():
            out.fail(EXIT_CONFIG, "no such directory", kind="NotARunDirectory", file=output_dir)
        if not output_dir.is_dir():
            out.fail(EXIT_CONFIG, "not a directory", kind="NotARunDirectory", file=output_dir)
    name = output_dir if isinstance(output_dir, Path) else shown(output_dir)
    try:
        found = is_run_directory(output_dir)
        metadata = read_run_metadata(output_dir) if found else None
    except StorageError as exc:
        out.fail(EXIT_FAILED, str(exc), kind=type(exc).__name__, file=name)
    if metadata is None:
        out.fail(
            EXIT_CONFIG,
            "not a gridloom run directory (no metadata.json)",
            kind="NotARunDirectory",
            file=name,
        )
    if not is_run_document(metadata):
        out.fail(
            EXIT_CONFIG,
            "not a gridloom run directory: its metadata.json is not a gridloom run's (no"
            " format_version and config_hash); another tool's files are there",
            kind="NotARunDirectory",
            file=name,
        )
    return metadata


def run_failure(result: RunResult) -> tuple[int, str, str] | None:
    """(exit code, error type, message) of a run or preview that did not do what was asked:
    stopped early, or short of rows; ``None`` for a complete one."""
    if result.status == "stopped":
        return EXIT_STOPPED, "RunStopped", f"stopped early: {result.stop_reason or 'no reason'}"
    if result.status == "incomplete":
        missing = result.num_records - result.num_rows
        reasons = "; ".join(
            f"{e.column} {e.error_type} x{e.rows} (e.g. row {e.row_id})"
            for e in result.drop_examples
        )
        return (
            EXIT_INCOMPLETE,
            "RunIncomplete",
            f"incomplete: {result.num_rows:,} of {result.num_records:,} rows written, {missing:,}"
            f" dropped ({reasons}); run.allow_drops lets a share of rows go missing,"
            " run.fill_to_target replaces them",
        )
    return None


def _cell_text(value: Any, width: int) -> str:
    if value is None:
        text = "null"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\t", " ")
    if len(text) > width:
        text = text[: max(width - 3, 1)] + "..."
    return text


def render_rows(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    """Rows as a plain text table; one block per row when the table would not fit."""
    if not rows:
        return ["(no rows)"]
    width = shutil.get_terminal_size((100, 24)).columns
    cells = [[_cell_text(row.get(name), _CELL_WIDTH) for name in columns] for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]
    if sum(widths) + 2 * (len(widths) - 1) <= width:
        lines = ["  ".join(name.ljust(w) for name, w in zip(columns, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in cells
        ]
        return [line.rstrip() for line in lines]
    label = max(len(name) for name in columns)
    value_width = max(width - label - 4, 20)
    lines = []
    for index, row in enumerate(rows):
        lines.append(f"--- row {index} " + "-" * max(0, min(width, 60) - 12))
        lines += [
            f"  {name.ljust(label)}  {_cell_text(row.get(name), value_width)}" for name in columns
        ]
    return lines
