"""Linters run as subprocesses (``ruff`` for ``python``, ``sqlfluff`` for ``sql``): bounded in
number, time and output, called from a validate column's worker thread (never the loop).

:func:`run_linter` runs one command with a wall-clock timeout (a trio timeout would fire at once
under a virtual test clock while the process runs for real) and reads at most ``limit`` bytes
of its report, through temporary files so a chatty process never blocks on a full pipe. At most
:data:`MAX_SUBPROCESSES` run at once across columns — one per CPU but one, which is left to the
event loop — and the columns that use them share one scheduler lane (:data:`LANE`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from ...errors import GenerationError

__all__ = [
    "LANE",
    "MAX_SUBPROCESSES",
    "first_line",
    "run_linter",
    "snippet_index",
    "write_snippets",
]

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
