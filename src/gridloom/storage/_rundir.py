"""Housekeeping of a run directory before a run starts (blocking IO)."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from gridloom.errors import OutputExistsError, StorageError

from ._atomic import TEMP_PREFIX, fsync_dir, remove_temp_files
from ._metadata import is_run_document, load_json

if TYPE_CHECKING:
    from ._location import Location

__all__ = [
    "clear_run",
    "clear_run_at",
    "foreign_files",
    "is_input_config",
    "refuse_existing_run",
    "refuse_existing_run_at",
    "refuse_foreign_files",
    "refuse_foreign_files_at",
    "refuse_input_config",
]

_PART_RE = re.compile(r"part-([0-9]{5,})\.parquet")
#: Files a run writes beside its ``metadata.json`` (which is written first and removed last,
#: so a folder holding them without one is not a run: they are someone else's).
_BESIDE = ("config.yaml", "trace.parquet", "trace.json")
#: Directories of a run that belong to gridloom.
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


def is_input_config(path: Path, input_config: str | os.PathLike[str] | None) -> bool:
    """Whether ``path`` is the file ``input_config`` (the config being run): the same file,
    however either is spelled or linked (``os.path.samefile``), not a file of the same name."""
    if input_config is None:
        return False
    with contextlib.suppress(OSError, ValueError):
        return os.path.samefile(path, input_config)
    return False


def _not_written_by_a_run(
    names: list[str], where: str, *, input_config: str | os.PathLike[str] | None = None
) -> OutputExistsError:
    """The error for a folder that is no run but holds ``names``, files a run writes."""
    shown = ", ".join(names)
    note = ""
    if input_config is not None:
        note = " (config.yaml is the config being run: run a copy kept elsewhere)"
    return OutputExistsError(
        f"output directory {where} holds no gridloom run (no gridloom metadata.json) but holds"
        f" {shown},"
        f" which a run writes; a run never overwrites a file it did not write: choose another"
        f" output directory, or move {shown} away{note}"
    )


def refuse_input_config(out: Path, input_config: str | os.PathLike[str] | None) -> None:
    """Raise :class:`StorageError` if the config being run is one of the files a run writes
    in ``out`` (its ``config.yaml``): a run never overwrites or removes its input."""
    for name in _BESIDE:
        if is_input_config(out / name, input_config):
            raise StorageError(
                f"the config being run ({input_config}) is the output directory's {name},"
                f" which a run writes in {out}; a run never overwrites its own config file:"
                " copy it out of the output directory and run the copy, or choose another"
                " output directory"
            )


def _foreign_metadata(out: Path) -> bool:
    """Whether ``out/metadata.json`` exists but is not a gridloom run's (another tool's, or
    unreadable: then it is not known to be gridloom's, and a run never removes it)."""
    path = out / "metadata.json"
    if not (path.exists() or path.is_symlink()):
        return False
    try:
        return not is_run_document(load_json(path))
    except StorageError:
        return True


def _holds_run(out: Path) -> bool:
    """Whether ``out`` holds a run: a gridloom ``metadata.json``, or the part files of one
    (checked to be gridloom's by :func:`refuse_foreign_files` first)."""
    if (out / "metadata.json").is_file() and not _foreign_metadata(out):
        return True
    return any((out / name).is_dir() and any((out / name).iterdir()) for name in _OWN_DIRS)


def _beside_files(out: Path) -> list[str]:
    """The files of :data:`_BESIDE` in ``out``."""
    return [name for name in _BESIDE if (out / name).exists() or (out / name).is_symlink()]


def refuse_existing_run(out: Path, *, input_config: str | os.PathLike[str] | None = None) -> None:
    """Raise :class:`OutputExistsError` if ``out`` already holds a run (its
    ``metadata.json``, or the part files of one) or, holding none, a file a run writes
    (``config.yaml``, ``trace.json``...: a run never overwrites a file it did not write), or
    :class:`StorageError` if it holds files in ``data/`` or ``dropped/`` that gridloom did
    not write.

    Args:
        input_config: the config file being run, named in the message when it is
            ``out/config.yaml``.
    """
    refuse_foreign_files(out)
    if _foreign_metadata(out):
        raise _not_written_by_a_run(["metadata.json", *_beside_files(out)], str(out))
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
    found = _beside_files(out)
    if found:
        given = input_config if is_input_config(out / "config.yaml", input_config) else None
        raise _not_written_by_a_run(found, str(out), input_config=given)


def clear_run(out: Path, *, input_config: str | os.PathLike[str] | None = None) -> None:
    """Remove gridloom's files of a previous run from ``out``; leave anything else.

    Removes ``config.yaml``, ``trace.parquet``, ``trace.json``, temp files, the
    ``part-NNNNN.parquet`` files of ``data/`` and ``dropped/``, the commit entries of
    ``_commits/`` (and those directories when nothing else is in them), and ``metadata.json``
    last (a folder interrupted meanwhile is still a run).

    Raises:
        OutputExistsError: ``out`` holds no run (no ``metadata.json``, no part files) but
            holds a file a run writes (``config.yaml``, ``trace.json``...): a run never
            removes or overwrites a file it did not write (nothing is removed then).
        StorageError: ``data/`` or ``dropped/`` hold files gridloom did not write, or
            ``input_config`` (the config being run) is ``out/config.yaml`` (nothing is
            removed then).
    """
    if not out.is_dir():
        return
    refuse_foreign_files(out)
    refuse_input_config(out, input_config)
    if _foreign_metadata(out):
        raise _not_written_by_a_run(["metadata.json", *_beside_files(out)], str(out))
    if not _holds_run(out) and (found := _beside_files(out)):
        raise _not_written_by_a_run(found, str(out))
    for name in _BESIDE:
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
    (out / "metadata.json").unlink(missing_ok=True)
    fsync_dir(out)


# ------------------------------------------------- the same, through a Location (blocking)


def _foreign_metadata_at(location: Location) -> bool:
    """:func:`_foreign_metadata` for a run at any :class:`Location`."""
    from ._commits import load_document  # _commits reaches _location, which reaches here

    try:
        doc = load_document(location)
    except StorageError:
        return True
    return doc is not None and not is_run_document(doc)


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


def refuse_existing_run_at(
    location: Location, *, input_config: str | os.PathLike[str] | None = None
) -> None:
    """:func:`refuse_existing_run` for a run at any :class:`Location`."""
    if location.local is not None:
        refuse_existing_run(location.local, input_config=input_config)
        return
    refuse_foreign_files_at(location)
    if _foreign_metadata_at(location):
        raise _not_written_by_a_run(
            ["metadata.json", *(n for n in _BESIDE if location.exists(n))], location.display
        )
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
    found = [name for name in _BESIDE if location.exists(name)]
    if found:
        raise _not_written_by_a_run(found, location.display)


def clear_run_at(location: Location, *, input_config: str | os.PathLike[str] | None = None) -> None:
    """:func:`clear_run` for a run at any :class:`Location`."""
    if location.local is not None:
        clear_run(location.local, input_config=input_config)
        return
    refuse_foreign_files_at(location)
    if _foreign_metadata_at(location):
        raise _not_written_by_a_run(
            ["metadata.json", *(n for n in _BESIDE if location.exists(n))], location.display
        )
    if not location.exists("metadata.json") and not any(
        location.list_names(name) for name in _OWN_DIRS
    ):
        found = [name for name in _BESIDE if location.exists(name)]
        if found:
            raise _not_written_by_a_run(found, location.display)
    for name in _BESIDE:
        location.delete(name)
    for name in _OWN_DIRS:
        for entry in location.list_names(name):
            location.delete(f"{name}/{entry}")
        location.delete_dir_if_empty(name)
    for entry in location.list_names(""):
        if entry.startswith(TEMP_PREFIX):
            location.delete(entry)
    location.delete("metadata.json")
