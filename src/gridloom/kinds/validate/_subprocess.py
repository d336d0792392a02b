"""Linters run as subprocesses (``ruff`` for ``python``, ``sqlfluff`` for ``sql``): bounded in
number, time and output, called from a validate column's worker thread (never the loop).

:func:`run_linter` runs one command with a wall-clock timeout (a trio timeout would fire at once
under a virtual test clock while the process runs for real) and reads at most ``limit`` bytes
of its report, through temporary files so a chatty process never blocks on a full pipe. At most
:data:`MAX_SUBPROCESSES` run at once across columns — one per CPU but one, which is left to the
event loop — and the columns that use them share one scheduler lane (:data:`LANE`).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import ConfigError, GenerationError
from ...generators.base import Context
from ._base import Checker, invalid, valid

__all__ = [
    "LANE",
    "MAX_LINT_OUTPUT",
    "MAX_SUBPROCESSES",
    "LintingChecker",
    "first_line",
    "run_linter",
    "snippet_index",
    "write_snippets",
]

#: Most bytes a linter may print for one value.
MAX_LINT_OUTPUT = 4 * 1024 * 1024
#: Linter subprocesses running at once, across columns (at least one).
MAX_SUBPROCESSES = max(1, (os.cpu_count() or 1) - 1)
#: The scheduler lane of the columns waiting on linter subprocesses.
LANE = ("validate:subprocess", MAX_SUBPROCESSES)
_RUNNING = threading.BoundedSemaphore(MAX_SUBPROCESSES)


def run_linter(
    command: list[str], *, stdin: bytes, timeout: float, limit: int, column: str, tool: str
) -> tuple[int, bytes, str]:
    """Run ``command`` with ``stdin``: its exit code, its stdout (at most ``limit`` bytes) and
    the first line of its stderr.

    Raises:
        GenerationError: it could not start, took longer than ``timeout`` seconds (it is
            killed), or wrote more than ``limit`` bytes.
    """
    with _RUNNING, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            done = subprocess.run(
                command, input=stdin, stdout=out, stderr=err, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise GenerationError(
                f"column {column!r}: {tool} took longer than {timeout:g} s"
            ) from None
        except OSError as exc:
            raise GenerationError(f"column {column!r}: cannot run {tool}: {exc}") from None
        out.seek(0)
        data = out.read(limit + 1)
        err.seek(0)
        errors = err.read(4096)
    if len(data) > limit:
        raise GenerationError(f"column {column!r}: {tool}'s report is larger than {limit} bytes")
    return done.returncode, data, first_line(errors)


def first_line(data: bytes) -> str:
    """The non-empty lines of ``data`` as one short line."""
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    return " ".join(line for line in lines if line)[:300] or "no message"


def write_snippets(folder: str, codes: Mapping[int, str], suffix: str) -> list[str]:
    """Write each of ``codes`` to ``folder/s<index><suffix>``; the paths, in order."""
    paths = []
    for index, code in codes.items():
        path = Path(folder) / f"s{index}{suffix}"
        path.write_text(code, encoding="utf-8")
        paths.append(str(path))
    return paths


def snippet_index(path: object) -> int | None:
    """The index a path written by :func:`write_snippets` stands for."""
    stem = Path(str(path)).stem
    return int(stem[1:]) if stem[:1] == "s" and stem[1:].isdigit() else None


class LintingChecker(Checker):
    """A checker in two stages: a quick parse of each value (:meth:`parsed`), then, for the
    values that parse and when linting is on, a linter process (:meth:`lint_many`, one
    process for a whole batch; :meth:`lint_one` for a single value)."""

    def parsed(self, value: Any) -> dict[str, Any] | str:
        """The verdict when no lint is needed, else the text to lint."""
        raise NotImplementedError

    def lint_many(self, codes: dict[int, str]) -> dict[int, list[str]]:
        """The linter's findings on each of ``codes`` (by index), from one process."""
        raise NotImplementedError

    #: The column checked, for messages.
    column: str
    #: The linter's name, for messages.
    tool: str = "linter"
    #: Seconds a linter process may take.
    timeout: float = 60.0

    def report(self, command: list[str], *, stdin: bytes, limit: int) -> list[Any]:
        """The JSON list a linter process prints (exit status 0: clean, 1: findings).

        Raises:
            GenerationError: the linter failed, or printed something else than JSON.
        """
        returncode, data, errors = run_linter(
            command,
            stdin=stdin,
            timeout=self.timeout,
            limit=limit,
            column=self.column,
            tool=self.tool,
        )
        if returncode not in (0, 1):
            raise GenerationError(f"column {self.column!r}: {self.tool} failed: {errors}")
        try:
            report = json.loads(data)
        except ValueError as exc:
            raise GenerationError(
                f"column {self.column!r}: {self.tool}'s report is not JSON: {exc}"
            ) from None
        return report if isinstance(report, list) else []

    def probe(self, *, seconds: float, run_field: str, refused: str, refused_field: str) -> None:
        """Run the linter once on empty input, before any request, so settings it does not
        accept (a rule, a dialect) fail the config.

        Raises:
            ConfigError: it cannot start (on ``run_field``), or refuses its settings
                (``{tool} refuses {refused}: ...`` on ``refused_field``).
        """
        try:
            done = subprocess.run(
                self.command(), input=b"", capture_output=True, timeout=seconds, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            message = f"cannot run {self.tool}: {exc}"
            raise ConfigError(message, column=self.column, field=run_field) from None
        if done.returncode not in (0, 1):
            message = f"{self.tool} refuses {refused}: {first_line(done.stderr)}"
            raise ConfigError(message, column=self.column, field=refused_field)

    def command(self, *paths: str) -> list[str]:
        """The linter's command line: the files at ``paths``, else one text on stdin."""
        raise NotImplementedError

    def report_on_files(self, codes: dict[int, str], suffix: str) -> list[Any]:
        """The linter's report on ``codes`` written as files (:func:`write_snippets`, named
        by index), from one process; its output bounded by the batch's size."""
        with tempfile.TemporaryDirectory(prefix=f"gridloom-{self.tool}-") as folder:
            paths = write_snippets(folder, codes, suffix)
            limit = min(MAX_LINT_OUTPUT * len(codes), 16 * MAX_LINT_OUTPUT)
            return self.report(self.command(*paths), stdin=b"", limit=limit)

    def lint_one(self, code: str) -> list[str]:
        """The linter's findings on one text."""
        return self.lint_many({0: code}).get(0, [])

    def check(self, value: Any, ctx: Context) -> Any:
        if self.granularity == "batch":
            return self.check_many(list(value))
        found = self.parsed(value)
        if not isinstance(found, str):
            return found
        findings = self.lint_one(found)
        return invalid(findings) if findings else valid()

    def check_many(self, values: list[Any]) -> list[Any]:
        """Verdicts of ``values``, the parsed ones linted by one process."""
        results: list[Any] = [self.parsed(value) for value in values]
        codes = {i: code for i, code in enumerate(results) if isinstance(code, str)}
        if codes:
            findings = self.lint_many(codes)
            for index in codes:
                found = findings.get(index, [])
                results[index] = invalid(found) if found else valid()
        return results
