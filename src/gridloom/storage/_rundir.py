"""Housekeeping of a run directory before a run starts (blocking IO)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from gridloom.errors import OutputExistsError

from ._atomic import fsync_dir, remove_temp_files

__all__ = ["clear_run", "refuse_existing_run"]

logger = logging.getLogger("gridloom.storage")

_PART_RE = re.compile(r"part-(\d{5,})\.parquet")
#: Files and directories of a run that belong to gridloom.
_OWN_FILES = ("metadata.json", "config.yaml", "trace.parquet", "trace.json")
_OWN_DIRS = ("data", "dropped")


def refuse_existing_run(out: Path) -> None:
    """Raise :class:`OutputExistsError` if ``out`` already holds a run."""
    found = [n for n in ("metadata.json", *_OWN_DIRS) if (out / n).exists()]
    if found:
        raise OutputExistsError(
            f"output directory {out} already holds a gridloom run ({', '.join(found)}); "
            "pass overwrite to replace it or resume to continue it"
        )


def clear_run(out: Path) -> None:
    """Remove gridloom's files of a previous run from ``out``; leave anything else.

    Removes ``metadata.json``, ``config.yaml``, ``trace.parquet``, ``trace.json``, temp files,
    and the ``part-NNNNN.parquet`` files of ``data/`` and ``dropped/`` (and those directories
    when nothing else is in them).
    """
    if not out.is_dir():
        return
    for name in _OWN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in _OWN_DIRS:
        sub = out / name
        if not sub.is_dir():
            continue
        remove_temp_files(sub)
        for entry in sub.iterdir():
            if entry.is_file() and _PART_RE.fullmatch(entry.name):
                entry.unlink()
        try:
            sub.rmdir()
        except OSError:
            logger.warning("kept %s: it holds files that gridloom did not write", sub)
    remove_temp_files(out)
    fsync_dir(out)
