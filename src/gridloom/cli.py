"""The ``gridloom`` command line.

Commands: ``validate``, ``preview``, ``create``, ``resume``, ``inspect``, ``check-models``,
``simulate`` and ``schema`` (``docs/cli.md`` is the reference, generated from this module by
``docs/gen_cli.py``).

Every command takes ``--json``: stdout then carries one JSON object (``simulate``: one per
line) with ``"ok"`` and ``"command"``; a failure is ``{"ok": false, "command": ...,
"error": {"type", "message", "path", "file"}}`` and the exit code says which kind it was. The
JSON Schema of each command's output is in ``cli_schemas.json`` next to this module
(:func:`output_schema`). Without ``--json`` an error is one line on stderr:
``error: <config file>: <message>``, the message naming the column and field at fault.

Exit codes (:data:`EXIT_CODES`): 0 success · 1 the run (or command) failed · 2 usage or
configuration error · 3 the output directory already holds a run · 4 the run stopped early (its
stop reason is printed) · 5 the run wrote fewer rows than asked (more were dropped than
``run.allow_drops`` allows; the drop reasons are printed) · 130 interrupted by Ctrl-C (SIGINT)
· 143 terminated by SIGTERM.

On SIGINT or SIGTERM ``create`` and ``resume`` stop admitting work, cancel the cells in
flight, keep every row group already written, record status ``"interrupted"`` in
``metadata.json`` and print how to resume; a second signal during that shutdown exits at once
(every file on disk is complete either way, and resuming cleans up what an abrupt exit leaves).
Should the process still be running 2 s after the first signal (user code holding the loop), a
watchdog thread ends it with the signal's exit code: SIGINT and SIGTERM always end it.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import datetime as dt
import decimal
import functools
import importlib.resources
import json
import logging
import math
import os
import platform
import re
import select
import shlex
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs
import click
import trio

from . import _api
from .config import COLUMN_KINDS
from .errors import ConfigError, ConfigIssue, GridloomError, OutputExistsError, StorageError
from .storage import RunResult

__all__ = ["EXIT_CODES", "cli", "main", "output_schema"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_EXISTS = 3
EXIT_STOPPED = 4
EXIT_INCOMPLETE = 5
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

#: Every exit code of every command, and what it means.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (create/resume: the run is complete)",
    EXIT_FAILED: "the run or the command failed (a model check failed, a run directory is"
    " damaged, a file cannot be written); the error is printed",
    EXIT_CONFIG: "usage or configuration error: a bad option, an invalid config (the message"
    " names the column and field), a missing config file or run directory",
    EXIT_EXISTS: "the output directory already holds a run (pass --resume or --overwrite)",
    EXIT_STOPPED: "the run stopped early on its own (a model, or a column, kept failing); the"
    " reason is printed",
    EXIT_INCOMPLETE: "the run (or preview) generated every row group but wrote fewer rows than"
    " asked: more rows were dropped than run.allow_drops allows; the drop reasons are printed,"
    " with an example each",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (SIGINT); a run is resumable",
    EXIT_TERMINATED: "interrupted by SIGTERM; a run is resumable",
}

#: The signals that stop a run, and the exit code of each.
_SIGNAL_EXITS = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}

#: Keys of a column mapping that are not its kind key (the common fields).
_COLUMN_KEYS = frozenset({"name", "depends_on", "drop"})
#: How many characters of a value a table cell shows.
_CELL_WIDTH = 32

log = logging.getLogger("gridloom")


# --------------------------------------------------------------------------- output


@functools.cache
def _schemas() -> dict[str, Any]:
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
    doc = copy.deepcopy(_schemas())
    if command is None:
        return doc
    if command not in doc["commands"]:
        raise KeyError(command)
    return {"$schema": doc["$schema"], "$ref": f"#/$defs/{command}", "$defs": doc["$defs"]}


def _jsonable(value: Any) -> Any:
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
        return _jsonable(float(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _config_path(exc: ConfigError | ConfigIssue, file: Path | None = None) -> str | None:
    """Where in the config the error (or one of its issues) is:
    ``columns.<name>.<kind>.<field>`` for a column's parameter, ``columns.<name>.<field>`` for
    a common field, else a top-level path such as ``models[0].provider``.

    Errors raised while compiling name a parameter without its kind key (``function`` for
    ``custom.function``); the kind is then looked up in ``file``.
    """
    if exc.column is None:
        return exc.field or None
    field = exc.field or ""
    head = re.split(r"[.\[]", field, maxsplit=1)[0]
    if field and head not in _COLUMN_KEYS and head not in COLUMN_KINDS and file is not None:
        kind = _column_kind(file, exc.column)
        if kind is not None:
            field = f"{kind}.{field}"
    return ".".join(["columns", exc.column, *([field] if field else [])])


def _column_kind(file: Path, column: str) -> str | None:
    """The kind key of column ``column`` in the config file, if it can be read."""
    from .config._io import read_config_document

    try:  # with the loader's limits: the file may be hostile (a run folder's config.yaml)
        doc = read_config_document(file)
    except ConfigError:
        return None
    columns = doc.get("columns")
    for entry in columns if isinstance(columns, list) else []:
        if isinstance(entry, dict) and entry.get("name") == column:
            return next((key for key in entry if key in COLUMN_KINDS), None)
    return None


@attrs.define
class _Out:
    """What one command invocation prints: human text, or JSON with ``--json``."""

    command: str
    as_json: bool

    def emit(self, doc: dict[str, Any], *, ok: bool = True) -> None:
        """Print a JSON document (``ok``/``command`` first)."""
        payload = {"ok": ok, "command": self.command, **doc}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))

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
            {"message": issue.message, "path": _config_path(issue, file), "column": issue.column}
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


def _check_config_file(out: _Out, config: Path) -> None:
    """Fail as a configuration error when ``config`` is not a readable file."""
    if not config.exists():
        out.config_error(ConfigError("no such file"), config)
    if not config.is_file():
        out.config_error(ConfigError("not a file"), config)


# --------------------------------------------------------------------------- the group


class _Group(click.Group):
    """Lists the commands in the order they are defined, and keeps ``--json`` usage errors
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


def _json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
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


# --------------------------------------------------------------------------- validate


@cli.command()
@click.argument("config", type=click.Path(path_type=Path))
@_json_option
def validate(config: Path, as_json: bool) -> None:
    """Check CONFIG without generating anything; print the execution graph.

    Loads and compiles the pipeline (references, cycles, templates, custom
    functions, the seed dataset's columns) without sending a request.

    \b
    Example:
      gridloom validate examples/people.yaml
      gridloom validate examples/people.yaml --json
    """
    out = _Out("validate", as_json)
    _check_config_file(out, config)
    try:
        # Nothing to save: SIGINT/SIGTERM end the process at once, even in a C call.
        with _default_signals():
            graph = _api.validate(config)
    except ConfigError as exc:
        out.config_error(exc, config)
    nodes = graph.describe()
    if as_json:
        schema = {field.name: str(field.type) for field in graph.schema}
        out.emit(
            {
                "config": str(config),
                "valid": True,
                "depth": graph.depth(),
                "nodes": nodes,
                "schema": schema,
            }
        )
        return
    click.echo(f"{config}: valid — {len(nodes)} nodes, dependency depth {graph.depth()}")
    for node in nodes:
        deps = ", ".join(node["depends_on"]) or "-"  # type: ignore[arg-type]
        click.echo(f"  {node['node']:<24} {node['granularity']:<5}  after: {deps}")


# --------------------------------------------------------------------------- runs and signals


@attrs.define
class _Outcome:
    """How a run ended: a result, an error, and the signal that stopped it."""

    result: Any = None
    error: Exception | None = None
    signum: int | None = None


def _run_with_signals(
    fn: Callable[[], Awaitable[Any]], on_abrupt_exit: Callable[[int, str], None]
) -> _Outcome:
    """Run ``fn`` in its own trio loop, cancelling it on the first SIGINT or SIGTERM.

    The receiver replaces trio's own Ctrl-C handling, so both signals stop a run the same
    way: a cancellation, which a run records as status ``"interrupted"`` after the row groups
    being written are committed. A :class:`_Watchdog` thread makes sure the process ends
    even when the loop cannot honour that (a template or custom function holding it): if the
    process is still running :data:`_SIGNAL_GRACE_SECONDS` after the first signal, or at a
    second signal, it calls ``on_abrupt_exit(first_signal, why)`` and exits at once with the
    first signal's code (every file on disk is complete: writes are atomic).
    """
    watchdog = _Watchdog(on_abrupt_exit)
    try:
        outcome: _Outcome = trio.run(_with_signals, fn, on_abrupt_exit, watchdog)
    except BaseException as exc:
        # Ctrl-C before the signal receiver was open (or after it closed): trio raises it.
        if not _is_keyboard_interrupt(exc):
            raise
        outcome = _Outcome(signum=signal.SIGINT)
    finally:
        watchdog.close()
    if watchdog.signalled:
        global _STOPPING
        _STOPPING = True
    if watchdog.signalled and threading.current_thread() is threading.main_thread():
        # Stopping: until the process has exited (the report, the interpreter's own shutdown,
        # threads the shutdown waits for), a further signal still goes to the watchdog, which
        # exits at once with the first signal's code.
        for signum in _SIGNAL_EXITS:
            signal.signal(signum, lambda number, _frame: watchdog.notify(number))
    return outcome


async def _with_signals(
    fn: Callable[[], Awaitable[Any]],
    on_abrupt_exit: Callable[[int, str], None],
    watchdog: _Watchdog | None = None,
) -> _Outcome:
    outcome = _Outcome()
    with trio.open_signal_receiver(*_SIGNAL_EXITS) as signals, _chained_handlers(watchdog):
        async with trio.open_nursery() as nursery:
            run_scope = trio.CancelScope()
            nursery.start_soon(
                _watch_signals, signals, run_scope, outcome, on_abrupt_exit, watchdog
            )
            with run_scope:
                try:
                    outcome.result = await fn()
                except Exception as exc:
                    outcome.error = exc
            nursery.cancel_scope.cancel()
    return outcome


async def _watch_signals(
    signals: AsyncIterator[int],
    run_scope: trio.CancelScope,
    outcome: _Outcome,
    on_abrupt_exit: Callable[[int, str], None],
    watchdog: _Watchdog | None = None,
) -> None:
    async for signum in signals:
        if outcome.signum is None:
            outcome.signum = signum
            run_scope.cancel()
            continue
        if watchdog is not None:
            continue  # the watchdog saw it too, and is ending the process
        # A second signal while shutting down: leave now. Every file on disk is complete
        # (written atomically); resuming removes the temp files an abrupt exit leaves.
        click.echo(f"{_signal_name(signum)} again: exiting without waiting", err=True)
        on_abrupt_exit(outcome.signum, "a second signal")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_signal_exit(outcome.signum))


#: After the first SIGINT/SIGTERM a run has this long to stop; then the process exits anyway.
_SIGNAL_GRACE_SECONDS = 2.0
#: ``sa_flags`` bit asking the kernel to restore a signal's default action once it has been
#: delivered (Linux's SA_RESETHAND).
_SA_RESETHAND = -0x80000000


class _Watchdog:
    """Ends the process when a stop signal is not honoured in time.

    A thread, so that it acts even while the event loop is held (a template rendering on it,
    a custom function that never yields, a worker thread the shutdown waits for): the signal
    handler only writes the signal's number to a socket (:meth:`notify`), the thread wakes on
    it and, if the process is still running :data:`_SIGNAL_GRACE_SECONDS` later or a second
    signal comes, prints one line, calls ``on_abrupt_exit`` and exits with the first signal's
    code. The files of the run are complete at any moment (atomic writes); resuming cleans up
    the temp files an abrupt exit leaves.
    """

    def __init__(
        self, on_abrupt_exit: Callable[[int, str], None], grace: float = _SIGNAL_GRACE_SECONDS
    ):
        self._on_abrupt_exit = on_abrupt_exit
        self._grace = grace
        self._receive, self._send = socket.socketpair()
        self._send.setblocking(False)
        self.signalled = False
        self._thread = threading.Thread(
            target=self._watch, name="gridloom-signal-watchdog", daemon=True
        )
        self._thread.start()

    def notify(self, signum: int) -> None:
        """Called from the signal handler: one non-blocking send, safe there."""
        self.signalled = True
        with contextlib.suppress(OSError):
            self._send.send(bytes([signum & 0xFF]))

    def close(self) -> None:
        """The run is over. Without a signal the thread stops now; after one it stays armed
        until the process ends, so a shutdown that hangs later still ends in time."""
        if self.signalled:
            return
        self._send.close()
        self._thread.join()
        self._receive.close()

    def _next(self, timeout: float | None) -> int | None:
        """The next signal's number; ``None`` on timeout; ``-1`` once :meth:`close` ran."""
        ready, _, _ = select.select([self._receive], [], [], timeout)
        if not ready:
            return None
        data = self._receive.recv(1)
        return data[0] if data else -1

    def _watch(self) -> None:
        first = self._next(None)
        if first is None or first < 0:
            return
        deadline = time.monotonic() + self._grace
        second: int | None = None
        while second is None and (left := deadline - time.monotonic()) > 0:
            second = self._next(left)
        if second is not None and second < 0:  # pragma: no cover - close() keeps it armed
            return
        if second is None:
            line = (
                f"{_signal_name(first)}: still running {self._grace:g} s later;"
                " exiting without waiting"
            )
            why = f"still running {self._grace:g} s later"
        else:
            line = f"{_signal_name(second)} again: exiting without waiting"
            why = "a second signal"
        with contextlib.suppress(OSError):
            os.write(2, (line + "\n").encode())
        with contextlib.suppress(Exception):
            self._on_abrupt_exit(first, why)
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(_signal_exit(first))


@contextlib.contextmanager
def _chained_handlers(watchdog: _Watchdog | None) -> Iterator[None]:
    """While inside: SIGINT/SIGTERM first tell ``watchdog``, then run the handler already
    installed (trio's receiver). Where the kernel allows (Linux), each delivery also restores
    the signal's default action until the handler has run: if the interpreter cannot run it
    (a C call holding the GIL), a second signal ends the process right away."""
    if watchdog is None:
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in _SIGNAL_EXITS}

    def handler(signum: int, frame: Any) -> None:
        watchdog.notify(signum)
        signal.signal(signum, handler)  # re-arm the one-shot default action
        _reset_on_delivery(signum)
        prior = previous.get(signal.Signals(signum))
        if callable(prior):
            prior(signum, frame)

    for signum in previous:
        signal.signal(signum, handler)
        _reset_on_delivery(signum)
    try:
        yield
    finally:
        for signum, prior in previous.items():
            signal.signal(signum, prior)


def _reset_on_delivery(signum: int) -> None:
    """Add SA_RESETHAND to the installed action of ``signum`` (Linux on x86-64 or arm64,
    where ``struct sigaction`` is handler, 128-byte mask, flags, restorer); elsewhere, or if
    anything fails, nothing changes."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        return

    class _SigAction(ctypes.Structure):
        _fields_ = [
            ("handler", ctypes.c_void_p),
            ("mask", ctypes.c_ulong * 16),
            ("flags", ctypes.c_int),
            ("restorer", ctypes.c_void_p),
        ]

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        action = _SigAction()
        if libc.sigaction(signum, None, ctypes.byref(action)) != 0:
            return
        if action.handler in (None, 0, 1):  # SIG_DFL, SIG_IGN
            return
        action.flags |= _SA_RESETHAND
        libc.sigaction(signum, ctypes.byref(action), None)


@contextlib.contextmanager
def _default_signals() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM take their default action, ending the process at once
    whatever it is doing (even a C call holding the GIL). For commands with nothing to save."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_DFL) for signum in _SIGNAL_EXITS}
    try:
        yield
    finally:
        for signum, prior in previous.items():
            signal.signal(signum, prior)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # pragma: no cover - only SIGINT and SIGTERM are received
        return f"signal {signum}"


def _signal_exit(signum: int) -> int:
    try:
        return _SIGNAL_EXITS.get(signal.Signals(signum), EXIT_INTERRUPTED)
    except ValueError:  # pragma: no cover
        return EXIT_INTERRUPTED


def _is_keyboard_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_keyboard_interrupt(inner) for inner in exc.exceptions)
    return False


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _abrupt_json(out: _Out) -> Callable[[int, str], None]:
    def report(signum: int, why: str = "a second signal") -> None:
        if out.as_json:
            message = f"{_signal_name(signum)}, then {why}: exited without waiting"
            error = {"type": "Interrupted", "message": message, "path": None, "file": None}
            click.echo(json.dumps({"ok": False, "command": out.command, "error": error}))

    return report


# --------------------------------------------------------------------------- preview


@cli.command(short_help="Generate a few rows in memory and print them.")
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "-n",
    "--num-records",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Rows to generate.",
)
@_json_option
def preview(config: Path, num_records: int, as_json: bool) -> None:
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
    out = _Out("preview", as_json)
    _check_config_file(out, config)
    outcome = _run_with_signals(
        functools.partial(_api.apreview, config, num_records), _abrupt_json(out)
    )
    if outcome.signum is not None:
        name = _signal_name(outcome.signum)
        out.fail(
            _signal_exit(outcome.signum),
            f"interrupted by {name}; a preview writes nothing",
            kind="Interrupted",
            extra={"status": "interrupted", "signal": name},
        )
    if isinstance(outcome.error, ConfigError):
        out.config_error(outcome.error, config)
    if outcome.error is not None:
        out.error(outcome.error, file=config)
    result: RunResult = outcome.result
    rows = [_jsonable(row) for row in result.table.to_pylist()]
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
        failure = _run_failure(result)
        if failure is not None:
            code, kind, message = failure
            out.fail(code, message, kind=kind, extra=doc)
        out.emit(doc)
        return
    from .progress import render_drops

    for line in _render_rows(rows, result.table.schema.names):
        click.echo(line)
    click.echo(
        f"{result.num_rows:,} of {result.num_records:,} rows in {result.wall_time:.2f} s"
        f" (seed {result.seed}), {result.num_dropped:,} dropped"
    )
    for line in render_drops([example.as_dict() for example in result.drop_examples]):
        click.echo(line)
    failure = _run_failure(result)
    if failure is not None:
        code, _kind, message = failure
        click.echo(message, err=True)
        sys.exit(code)


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


def _render_rows(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
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


# --------------------------------------------------------------------------- create, resume


@cli.command()
@click.argument("config", type=click.Path(path_type=Path))
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
@click.option("--json", "as_json", is_flag=True, help="Print the run summary (or error) as JSON.")
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
    metadata.json says "interrupted", and --resume (or `gridloom resume
    OUTPUT_DIR`) then generates only what is missing. A second Ctrl-C while
    stopping exits at once.

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
      gridloom create examples/quickstart.yaml -n 200 -o out/q --overwrite --json
    """
    out = _Out("create", as_json)
    if overwrite and resume:
        out.fail(EXIT_CONFIG, "--overwrite and --resume exclude each other", kind="UsageError")
    _check_config_file(out, config)
    hint = ["gridloom", "create", str(config), "-n", str(num_records), "-o", str(output_dir)]
    _generate(
        out,
        config=config,
        num_records=num_records,
        output_dir=output_dir,
        overwrite=overwrite,
        resume=resume,
        base_dir=None,
        resume_command=[*hint, "--resume"],
    )


@cli.command()
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option(
    "-n",
    "--num-records",
    type=click.IntRange(min=1),
    default=None,
    help="Rows of the whole run. Default: as recorded in metadata.json; more extends the run,"
    " fewer is refused.",
)
@click.option(
    "--base-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder the saved config's relative paths (seed dataset, custom function modules)"
    " are resolved against; default: the original config's folder, as recorded in"
    " metadata.json (else OUTPUT_DIR). Needed only when those files have moved.",
)
@_json_option
def resume(output_dir: Path, num_records: int | None, base_dir: Path | None, as_json: bool) -> None:
    """Continue the run in OUTPUT_DIR with the config.yaml saved there.

    The same as `gridloom create OUTPUT_DIR/config.yaml -n <num_records> -o
    OUTPUT_DIR --resume`, with num_records read from metadata.json: only the
    missing row groups are generated, with the recorded seed. Signals, output
    and exit codes are those of create. -n may grow the run, never shrink it.
    The saved config's relative paths (a seed file, custom function modules)
    resolve against the original config's folder, which metadata.json
    records; --base-dir is needed only when those files have moved. Provider
    header values are saved redacted, so a provider that needs headers must
    be resumed with `gridloom create ORIGINAL_CONFIG ... --resume` instead.

    \b
    Example:
      gridloom resume out/quickstart
      gridloom resume out/people --base-dir examples --json
    """
    out = _Out("resume", as_json)
    meta = _run_metadata(out, output_dir)
    config = output_dir / "config.yaml"
    if not config.is_file():
        out.fail(
            EXIT_FAILED,
            "the run directory has no config.yaml; resume with"
            " `gridloom create CONFIG -n N -o OUTPUT_DIR --resume`",
            kind="StorageError",
            file=output_dir,
        )
    recorded = meta.get("num_records")
    if not isinstance(recorded, int) or isinstance(recorded, bool) or recorded < 1:
        out.fail(
            EXIT_FAILED,
            f"metadata.json has no valid num_records ({recorded!r})",
            kind="StorageError",
            file=output_dir / "metadata.json",
        )
    if num_records is not None and num_records < recorded:
        out.fail(
            EXIT_CONFIG,
            f"the run has {recorded:,} rows and -n {num_records:,} would shrink it; a resumed"
            f" run keeps its rows and can only grow: pass -n {recorded:,} or more, or leave -n"
            " out",
            kind="UsageError",
            file=output_dir,
        )
    if meta.get("status") == "running":
        log.warning(
            "metadata.json says the run in %s is running: if another gridloom process is"
            " still writing it, stop that one first",
            output_dir,
        )
    _warn_redacted_headers(config)
    explicit = base_dir is not None
    recorded_base = meta.get("base_dir")
    if base_dir is None and isinstance(recorded_base, str) and Path(recorded_base).is_dir():
        base_dir = Path(recorded_base)  # where the original config's relative paths pointed
    command = ["gridloom", "resume", str(output_dir)]
    if explicit:
        command += ["--base-dir", str(base_dir)]
    _generate(
        out,
        config=config,
        num_records=num_records or recorded,
        output_dir=output_dir,
        overwrite=False,
        resume=True,
        base_dir=base_dir if base_dir is not None else output_dir,
        resume_command=command,
        config_hint=""
        if explicit
        else f" (the saved config's relative paths and custom function modules resolve"
        f" against {base_dir or output_dir}, the original config's folder when recorded;"
        " if they have moved, pass --base-dir with their folder)",
    )


def _run_metadata(out: _Out, output_dir: Path) -> dict[str, Any]:
    """``metadata.json`` of the run in ``output_dir``; fails clearly when there is none."""
    from .storage._metadata import load_json

    if not output_dir.exists():
        out.fail(EXIT_CONFIG, "no such directory", kind="NotARunDirectory", file=output_dir)
    if not output_dir.is_dir():
        out.fail(EXIT_CONFIG, "not a directory", kind="NotARunDirectory", file=output_dir)
    if not (output_dir / "metadata.json").is_file():
        out.fail(
            EXIT_CONFIG,
            "not a gridloom run directory (no metadata.json)",
            kind="NotARunDirectory",
            file=output_dir,
        )
    try:
        return load_json(output_dir / "metadata.json")
    except StorageError as exc:
        out.fail(EXIT_FAILED, str(exc), kind=type(exc).__name__, file=output_dir)


def _warn_redacted_headers(config: Path) -> None:
    """Warn when the saved config's providers carry redacted header values."""
    from .config._io import REDACTED, read_config_document

    try:  # with the loader's limits: the file may be hostile
        doc = read_config_document(config)
    except ConfigError:
        return  # loading it reports the problem
    providers = doc.get("providers")
    for provider in providers if isinstance(providers, list) else []:
        headers = provider.get("headers") if isinstance(provider, dict) else None
        redacted = [k for k, v in (headers or {}).items() if v == REDACTED]
        if redacted:
            click.echo(
                f"warning: {config}: provider {provider.get('name')!r} sends headers"
                f" {', '.join(map(str, redacted))} with the value {REDACTED!r} (saved"
                " redacted); resume with the original config to send the real ones",
                err=True,
            )


def _generate(
    out: _Out,
    *,
    config: Path,
    num_records: int,
    output_dir: Path,
    overwrite: bool,
    resume: bool,
    base_dir: Path | None,
    resume_command: list[str],
    config_hint: str = "",
) -> None:
    """The run of ``create`` and ``resume``: ``acreate`` under the signal handling, then the
    report or the error, and the exit code."""
    run = functools.partial(
        _api.acreate,
        config,
        num_records=num_records,
        output_dir=output_dir,
        overwrite=overwrite,
        resume=resume,
        base_dir=base_dir,
    )
    outcome = _run_with_signals(run, _abrupt_json(out))
    if outcome.signum is not None:
        if outcome.error is not None:  # most likely a consequence of the cancellation
            log.warning("while stopping: %s", outcome.error)
        _interrupted(out, outcome.signum, output_dir, resume_command)
    if isinstance(outcome.error, ConfigError):
        out.config_error(outcome.error, config, hint=config_hint)
    if outcome.error is not None:
        out.error(outcome.error)
    result: RunResult = outcome.result
    _report(out, result)


def _interrupted(out: _Out, signum: int, output_dir: Path, resume_command: list[str]) -> NoReturn:
    """Print what was kept and how to resume, then exit with the signal's code."""
    name = _signal_name(signum)
    code = _signal_exit(signum)
    extra: dict[str, Any] = {
        "status": "interrupted",
        "signal": name,
        "output_dir": str(output_dir),
        "row_groups_kept": 0,
        "resume_command": None,
    }
    if not (output_dir / "metadata.json").is_file():  # stopped before the run directory
        message = (
            f"interrupted by {name} before the run started; nothing was written to {output_dir}"
        )
    else:
        kept = len(list((output_dir / "data").glob("part-*.parquet")))
        command = shlex.join(resume_command)
        extra.update(row_groups_kept=kept, resume_command=command)
        message = (
            f"interrupted by {name}; {kept} row groups kept in {output_dir}"
            f" — resume with: {command}"
        )
    if out.as_json:
        out.fail(code, message, kind="Interrupted", extra=extra)
    click.echo(message, err=True)
    sys.exit(code)


def _run_failure(result: RunResult) -> tuple[int, str, str] | None:
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


def _report(out: _Out, result: RunResult) -> None:
    summary: dict[str, Any] = result.summary
    failure = _run_failure(result)
    if out.as_json:
        if failure is not None:
            code, kind, message = failure
            out.fail(code, message, kind=kind, extra=summary)
        out.emit(summary)
        return
    from .progress import render_summary

    # The run summary (also in metadata.json): rows, columns, drop reasons, models, retries,
    # and why the run ended, said once (its last line).
    click.echo(render_summary(summary))
    if failure is not None:
        sys.exit(failure[0])


# --------------------------------------------------------------------------- inspect


@cli.command(short_help="Show a run's status, counts, schema and first rows.")
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option(
    "-n",
    "--sample-rows",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Sample rows to show (0: none).",
)
@_json_option
def inspect(output_dir: Path, sample_rows: int, as_json: bool) -> None:
    """Show the status, counts, schema and first rows of the run in OUTPUT_DIR.

    Reads metadata.json and the parquet footers, never the whole dataset: the
    sample comes from the first rows of the first data file. Counts are per
    column (done, failed, dropped), with the drop reasons per column and error
    type, each with an example (row id and message). A run whose status is
    "running" may still be going, or was killed (resume continues it).
    Problems found (a listed file missing, a file not yet listed, an
    unreadable file) are reported, not fatal.

    \b
    Example:
      gridloom inspect out/people
      gridloom inspect out/quickstart --json -n 2
    """
    from .storage._inspect import inspect_run

    out = _Out("inspect", as_json)
    _run_metadata(out, output_dir)
    try:
        info = inspect_run(output_dir, sample_rows=sample_rows)
    except StorageError as exc:
        out.fail(EXIT_FAILED, str(exc), kind=type(exc).__name__, file=output_dir)
    meta = info.metadata
    summary: dict[str, Any] = meta["summary"] if isinstance(meta.get("summary"), dict) else {}
    status = str(meta.get("status", "unknown"))
    num_records = _int_or_none(meta.get("num_records"))
    row_group_size = _int_or_none(meta.get("row_group_size"))
    planned = -(-num_records // row_group_size) if num_records and row_group_size else None
    groups: dict[str, Any] = meta["row_groups"] if isinstance(meta.get("row_groups"), dict) else {}
    rows = [_jsonable(row) for row in info.sample.to_pylist()]
    resumable = status not in ("complete", "incomplete")
    doc: dict[str, Any] = {
        "output_dir": str(output_dir),
        "status": status,
        "stop_reason": summary.get("stop_reason"),
        "num_records": num_records,
        "row_group_size": row_group_size,
        "seed": _int_or_none(meta.get("seed")),
        "config_hash": meta.get("config_hash"),
        "gridloom_version": meta.get("gridloom_version"),
        "created_at": meta.get("created_at"),
        "updated_at": meta.get("updated_at"),
        "rows_written": _int_or_none(meta.get("rows_written")) or 0,
        "rows_dropped": _int_or_none(meta.get("rows_dropped")) or 0,
        "rows_on_disk": info.rows_on_disk,
        "row_groups": {
            "planned": planned,
            "written": len(groups),
            "on_disk": len(info.data_files),
            "unlisted": list(info.unlisted),
        },
        "columns": meta.get("counts") if isinstance(meta.get("counts"), dict) else {},
        "drop_reasons": info.drop_reasons,
        "drop_examples": [example.as_dict() for example in info.drop_examples],
        "schema": info.schema,
        "sample": rows,
        "problems": list(info.problems),
        "resume_command": shlex.join(["gridloom", "resume", str(output_dir)])
        if resumable
        else None,
        "summary": summary,
    }
    if as_json:
        out.emit(doc)
        return
    for line in _inspect_text(doc, [f["name"] for f in info.schema]):
        click.echo(line)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _inspect_text(doc: dict[str, Any], names: list[str]) -> list[str]:
    from .progress import render_drops

    groups = doc["row_groups"]
    status = doc["status"]
    if status == "running":
        status += " (still going, or killed: resume continues it)"
    lines = [
        f"{doc['output_dir']}: {status}",
        f"  rows: {doc['rows_written']} written of {doc['num_records']} requested,"
        f" {doc['rows_dropped']} dropped; row groups: {groups['written']} of"
        f" {groups['planned']} written",
        f"  seed {doc['seed']} · row_group_size {doc['row_group_size']} · created"
        f" {doc['created_at']} · updated {doc['updated_at']} · gridloom"
        f" {doc['gridloom_version']}",
    ]
    if doc["stop_reason"]:
        lines.append(f"  stopped early: {doc['stop_reason']}")
    for problem in doc["problems"]:
        lines.append(f"  problem: {problem}")
    if doc["resume_command"]:
        lines.append(f"  continue with: {doc['resume_command']}")
    lines.append("columns:")
    for name, c in doc["columns"].items():
        lines.append(
            f"  {name:<24} done {c.get('done', 0):>8}  failed {c.get('failed', 0):>6}"
            f"  dropped {c.get('dropped', 0):>6}"
        )
    lines += render_drops(doc["drop_examples"])
    lines.append("schema:")
    lines += [
        f"  {f['name']:<24} {f['type']}{'' if f['nullable'] else ' not null'}"
        for f in doc["schema"]
    ]
    if doc["sample"]:
        lines.append(f"sample (first {len(doc['sample'])} rows):")
        lines += ["  " + line for line in _render_rows(doc["sample"], names)]
    return lines


# --------------------------------------------------------------------------- check-models


@cli.command("check-models", short_help="Send one tiny request to each model CONFIG uses.")
@click.argument("config", type=click.Path(path_type=Path))
@_json_option
def check_models(config: Path, as_json: bool) -> None:
    """Send one tiny request to each model CONFIG uses; report latency or the error.

    Under each model a line says which transport its provider uses and why: fast
    (gridloom's HTTP/1.1 transport), httpx (httpx's own: for a proxy, from the provider's
    proxy setting or from HTTPS_PROXY, HTTP_PROXY or ALL_PROXY, or for http2) or asgi (the
    simulated endpoint in-process). Exits 1 when any model fails.

    \b
    Example:
      gridloom check-models examples/quickstart.yaml
      gridloom check-models examples/quickstart.yaml --json
    """
    out = _Out("check-models", as_json)
    _check_config_file(out, config)
    outcome = _run_with_signals(functools.partial(_api.acheck_models, config), _abrupt_json(out))
    if outcome.signum is not None:
        name = _signal_name(outcome.signum)
        out.fail(_signal_exit(outcome.signum), f"interrupted by {name}", kind="Interrupted")
    if isinstance(outcome.error, ConfigError):
        out.config_error(outcome.error, config)
    if outcome.error is not None:
        out.error(outcome.error, file=config)
    results: list[dict[str, Any]] = outcome.result
    failed = [row for row in results if not row["ok"]]
    if as_json:
        doc = {"config": str(config), "models": results}
        if failed:
            message = f"{len(failed)} of {len(results)} models failed: " + "; ".join(
                f"{row['alias']}: {row['error']}" for row in failed
            )
            out.fail(EXIT_FAILED, message, kind="ModelCheckFailed", file=config, extra=doc)
        out.emit(doc)
        return
    if not results:
        click.echo(f"{config}: no column uses a model")
    for row in results:
        where = f"{row['alias']} ({row['provider']}/{row['model']})"
        if row["ok"]:
            click.echo(f"  ok    {where:<40} {row['latency_s'] * 1000:8.1f} ms")
        else:
            click.echo(f"  FAIL  {where:<40} {row['error']}")
        click.echo(f"        transport: {row['transport']} ({row['transport_reason']})")
    if failed:
        sys.exit(EXIT_FAILED)


# --------------------------------------------------------------------------- simulate


@cli.command(short_help="Serve the simulated OpenAI-compatible endpoint.")
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
    help="Median latency in seconds (lognormal, see --sigma).",
)
@click.option(
    "--sigma",
    type=click.FloatRange(min=0),
    default=0.3,
    show_default=True,
    help="Spread of the lognormal latency; 0 makes every latency exactly --latency.",
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
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds latencies and faults.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON lines on stdout: one when ready (with the URL), one when stopped.",
)
def simulate(
    port: int,
    latency: float,
    sigma: float,
    capacity: int | None,
    error_rate: float,
    seed: int,
    as_json: bool,
) -> None:
    """Serve the simulated OpenAI-compatible endpoint on 127.0.0.1 until Ctrl-C.

    It speaks /v1/chat/completions (streaming, n, tools, JSON schema),
    /v1/embeddings, /v1/models and Anthropic's /v1/messages (streaming, tools);
    point any OpenAI or Anthropic client (or a gridloom provider of type openai or
    anthropic) at it. Unsupported endpoints and parameters get a 400 that says so.
    SIGINT or SIGTERM stops it at once (exit 0): idle connections are closed,
    requests in progress get 0.1 s to finish.

    \b
    Example:
      gridloom simulate --port 8000 --latency 0.2 --capacity 8
      gridloom simulate --port 0 --json --latency 1 --sigma 0
    """
    from .config import LatencyConfig, SimulatedModel, SimulationConfig

    out = _Out("simulate", as_json)
    model = SimulatedModel(
        latency=LatencyConfig(median=latency, sigma=sigma if latency else 0.0),
        capacity=capacity,
        error_503_rate=error_rate,
    )
    config = SimulationConfig(seed=seed, default=model)
    try:
        signum = trio.run(_simulate, config, port, out)
    except KeyboardInterrupt:  # before the signal receiver was open
        signum = signal.SIGINT
    except Exception as exc:
        leaves = _leaves(exc)
        error = leaves[0] if len(leaves) == 1 else exc
        out.fail(EXIT_FAILED, f"cannot serve on port {port}: {error}", kind=type(error).__name__)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "command": "simulate",
                    "event": "stopped",
                    "signal": _signal_name(signum),
                }
            )
        )


async def _simulate(config: Any, port: int, out: _Out) -> int:
    from .simulated import serve_simulated

    with trio.open_signal_receiver(*_SIGNAL_EXITS) as signals:
        async with serve_simulated(config, port=port, grace=0.1) as server:
            if out.as_json:
                ready = {
                    "ok": True,
                    "command": "simulate",
                    "event": "ready",
                    "url": server.url,
                    "host": server.host,
                    "port": server.port,
                }
                click.echo(json.dumps(ready))
            else:
                click.echo(f"gridloom simulated endpoint: {server.url}  (Ctrl-C to stop)")
            sys.stdout.flush()
            async for signum in signals:
                return signum
    return signal.SIGINT  # pragma: no cover - the receiver never ends by itself


# --------------------------------------------------------------------------- schema


@cli.command(short_help="Print the JSON Schema of the config format.")
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
    from .config import config_json_schema

    out = _Out("schema", as_json)
    if for_command is None:
        doc = config_json_schema()
    else:
        try:
            doc = output_schema(for_command)
        except KeyError:
            known = ", ".join(_schemas()["commands"])
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


# --------------------------------------------------------------------------- plot


@cli.command(short_help="Draw PNG pictures of a traced run.")
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the PNGs (default: OUTPUT_DIR).",
)
@_json_option
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
    out = _Out("plot", as_json)
    _run_metadata(out, output_dir)
    from . import plots

    try:
        files = plots.render_plots(output_dir, dest=dest)
    except (FileNotFoundError, ImportError) as exc:
        out.fail(EXIT_FAILED, str(exc), kind=type(exc).__name__, file=output_dir)
    if as_json:
        out.emit({"output_dir": str(output_dir), "files": [str(f) for f in files]})
        return
    for path in files:
        click.echo(f"wrote {path}")


#: A stop signal came: the process exits as soon as the command has reported.
_STOPPING = False


def main() -> None:
    """Console-script entry point.

    After a stop signal the exit skips the interpreter's own shutdown (``os._exit``, once the
    output is flushed): a worker thread still running user code could hold it up, and every
    file of the run is complete already.
    """
    try:
        cli()
    except SystemExit as exc:
        if not _STOPPING:
            raise
        code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
