"""The ``gridloom`` command line.

Commands: ``validate``, ``preview``, ``create``, ``resume``, ``inspect``, ``export``,
``check-models``, ``simulate``, ``schema``, ``plugins``, ``plot``, ``skill`` and ``cache``
(``docs/cli.md`` is the reference, generated from this package by ``docs/gen_cli.py``).
Each command is one module of this package; adding one is a module defining a
``click.Command`` and its entry in :data:`_COMMANDS`.

Every command takes ``--json``: stdout then carries one JSON object (``simulate``: one per
line) with ``"ok"`` and ``"command"``, and nothing else: whatever custom functions, plugins or
libraries write to stdout meanwhile (Python or C code, child processes) goes to stderr
(:mod:`._stdout`); a failure is ``{"ok": false, "command": ...,
"error": {"type", "message", "path", "file"}}`` and the exit code says which kind it was. The
JSON Schema of each command's output is in ``cli_schemas.json`` next to this package
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
watchdog thread ends it with the signal's exit code: SIGINT and SIGTERM always end it. The run
layer does all of this (:func:`gridloom.run.run_with_signals`); a command only asks for it.
"""

from __future__ import annotations

import gc
import logging
import os
import sys

# httpx imports its own command line (``httpx._main``) whenever click, rich and pygments are
# installed, as they are beside gridloom; with rich's syntax highlighting and pygments' lexers
# that is a tenth of this command's start-up, before its first request. The gridloom command
# never runs httpx's command line, so its process marks that module absent before httpx is
# first imported (``None`` in ``sys.modules`` is the import system's "not available"); httpx
# then defines ``httpx.main`` as its fallback for a missing ``httpx[cli]``. Only this command
# does it: ``import gridloom`` in a program leaves httpx as it is.
if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # typeshed: modules only

import click

from ..run import stopping
from ._cache import cache
from ._check_models import check_models
from ._create import create, resume
from ._export import export
from ._group import cli
from ._inspect import inspect
from ._output import EXIT_CODES, EXIT_FAILED, output_schema
from ._plot import plot
from ._plugins import plugins
from ._preview import preview
from ._schema import schema
from ._simulate import simulate
from ._skill import skill
from ._validate import validate

__all__ = ["EXIT_CODES", "cli", "main", "output_schema"]

#: The commands, in the order ``gridloom --help`` (and docs/cli.md) lists them.
_COMMANDS: tuple[click.Command, ...] = (
    validate,
    preview,
    create,
    resume,
    inspect,
    export,
    check_models,
    simulate,
    schema,
    plugins,
    plot,
    skill,
    cache,
)
for _command in _COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point.

    After a stop signal the exit skips the interpreter's own shutdown (``os._exit``, once the
    output is flushed): a worker thread still running user code could hold it up, and every
    file of the run is complete already. Otherwise the objects left are frozen first
    (:func:`gc.freeze`): the interpreter's last collections then skip them, which after a run
    (pyarrow, pandas and every module loaded) saves a good part of its exit; every file the
    command wrote is closed by then.
    """
    try:
        cli()
    except SystemExit as exc:
        gc.freeze()
        if not stopping():
            raise
        code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
