"""Housekeeping of a run directory before a run starts (blocking IO)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from gridloom.errors import OutputExistsError, StorageError

from ._atomic import TEMP_PREFIX, fsync_dir, remove_temp_files

if TYPE_CHECKING:
    from ._location import Location

__all__ = [
    "clear_run",
    "clear_run_at",
    "foreign_files",
    "refuse_existing_run",
    "refuse_existing_run_at",
    "refuse_foreign_files",
    "refuse_foreign_files_at",
]

_PART_RE = re.compile(r"part-([0-9]{5,})\.parquet")
#: Files and directories of a run that belong to gridloom.
_OWN_FILES = ("metadata.json", "config.yaml", "trace.parquet", "trace.json")
_OWN_DIRS = ("data", "dropped", "_commits", "batches")
#: The names gridloom gives the files of each of its directories.
_OWN_NAMES = {
    "data": _PART_RE,
    "dropped": _PART_RE,
    "_commits": re.compile(r"part-([0-9]{5,})\.json"),
    # The provider batch jobs of each model alias (clients/_batch_journal.py).
    "batches": re.compile(r"[A-Za-z0-9_.-]+\.json"),
}
#: How many foreign files a message names.
_NAMED = 5


def foreign_files(out: Path) -> list[Path]:
    """Entries of ``out/data``, ``out/dropped`` and ``out/_commits`` that gridloom did not
    write (neither a ``part-NNNNN.parquet`` file, or ``part-NNNNN.json`` in ``_commits``, nor
    a temp file of an interrupted write)."""
    found: list[Path] = []
    for name in _OWN_DIRS:
        sub = out / name
        if not sub.is_dir():
            continue
        with os.scandir(sub) as entries:  # no stat per file: a run may hold 100,000 parts
            for entry in sorted(entries, key=lambda e: e.name):
                own = _OWN_NAMES[name].fullmatch(entry.name) or entry.name.startswith(TEMP_PREFIX)
                if not (own and entry.is_file()):
                    found.append(sub / entry.name)
    return found


def refuse_foreign_files(out: Path) -> None:
    """Raise :class:`StorageError` if ``out/data`` or ``out/dropped`` hold files gridloom did
    not write: the dataset is read as every file of ``data/`` (``pyarrow.parquet.read_table``),
    so a run must not share that folder, and replacing a run never deletes them."""
    found = foreign_files(out)
    if not found:
        return
    named = ", ".join(str(p.relative_to(out)) for p in found[:_NAMED])
    more = f" and {len(found) - _NAMED} more" if len(found) > _NAMED else ""
    raise StorageError(
        f"output directory {out} holds files gridloom did not write ({named}{more}); gridloom"
        " keeps its dataset in data/ and dropped/, and reading data/ would fail with them"
        " there: choose another output directory, or move those files away"
    )


def refuse_existing_run(out: Path) -> None:
    """Raise :class:`OutputExistsError` if ``out`` already holds a run (its
    ``metadata.json``, or the part files of one), or :class:`StorageError` if it holds files
    in ``data/`` or ``dropped/`` that gridloom did not write."""
    refuse_foreign_files(out)
    if (out / "metadata.json").exists():
        raise OutputExistsError(
            f"output directory {out} already holds a gridloom run (metadata.json); replace it"
            " with --overwrite or continue it with --resume (overwrite=True / resume=True"
            " from Python)"
        )
    parts = [n for n in _OWN_DIRS if (out / n).is_dir() and any((out / n).iterdir())]
    if parts:
        raise OutputExistsError(
            f"output directory {out} holds the files of a gridloom run without its"
            f" metadata.json ({', '.join(p + '/' for p in parts)}); replace them with"
            " --overwrite (overwrite=True from Python)"
        )


def clear_run(out: Path) -> None:
    """Remove gridloom's files of a previous run from ``out``; leave anything else.

    Removes ``metadata.json``, ``config.yaml``, ``trace.parquet``, ``trace.json``, temp files,
    the ``part-NNNNN.parquet`` files of ``data/`` and ``dropped/`` and the commit entries of
    ``_commits/`` (and those directories when nothing else is in them).

    Raises:
        StorageError: ``data/`` or ``dropped/`` hold files gridloom did not write (nothing is
            removed then).
    """
    if not out.is_dir():
        return
    refuse_foreign_files(out)
    for name in _OWN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in _OWN_DIRS:
        sub = out / name
        if not sub.is_dir():
            continue
        remove_temp_files(sub)
        for entry in sub.iterdir():
            if entry.is_file() and _OWN_NAMES[name].fullmatch(entry.name):
                entry.unlink()
        if not sub.is_symlink():  # a link to a folder elsewhere stays, emptied of gridloom's
            sub.rmdir()
    remove_temp_files(out)
    fsync_dir(out)


# ------------------------------------------------- the same, through a Location (blocking)


def refuse_foreign_files_at(location: Location) -> None:
    """:func:`refuse_foreign_files` for a run at any :class:`Location`."""
    if location.local is not None:
        refuse_foreign_files(location.local)
        return
    found = [
        f"{name}/{entry}"
        for name in _OWN_DIRS
        for entry in location.list_names(name)
        if not (_OWN_NAMES[name].fullmatch(entry) or entry.startswith(TEMP_PREFIX))
    ]
    if not found:
        return
    named = ", ".join(found[:_NAMED])
    more = f" and {len(found) - _NAMED} more" if len(found) > _NAMED else ""
    raise StorageError(
        f"output {location.display} holds files gridloom did not write ({named}{more});"
        " gridloom keeps its dataset in data/ and dropped/, and reading data/ would fail with"
        " them there: choose another output, or move those files away"
    )


def refuse_existing_run_at(location: Location) -> None:
    """:func:`refuse_existing_run` for a run at any :class:`Location`."""
    if location.local is not None:
        refuse_existing_run(location.local)
        return
    refuse_foreign_files_at(location)
    if location.exists("metadata.json"):
        raise OutputExistsError(
            f"output {location.display} already holds a gridloom run (metadata.json); replace"
            " it with --overwrite or continue it with --resume (overwrite=True / resume=True"
            " from Python)"
        )
    parts = [n for n in _OWN_DIRS if location.list_names(n)]
    if parts:
        raise OutputExistsError(
            f"output {location.display} holds the files of a gridloom run without its"
            f" metadata.json ({', '.join(p + '/' for p in parts)}); replace them with"
            " --overwrite (overwrite=True from Python)"
        )


def clear_run_at(location: Location) -> None:
    """:func:`clear_run` for a run at any :class:`Location`."""
    if location.local is not None:
        clear_run(location.local)
        return
    refuse_foreign_files_at(location)
    for name in _OWN_FILES:
        location.delete(name)
    for name in _OWN_DIRS:
        for entry in location.list_names(name):
            location.delete(f"{name}/{entry}")
        location.delete_dir_if_empty(name)
    for entry in location.list_names(""):
        if entry.startswith(TEMP_PREFIX):
            location.delete(entry)
