"""Atomic, durable file replacement (blocking; call from a worker thread).

A file is written to ``.tmp-<name>-<random>`` in the target's own directory,
flushed and fsynced, renamed over the target with :func:`os.replace`, and the
directory is fsynced so that the rename itself survives a power cut. A reader
therefore sees either the old file or the complete new one, never a prefix.
If anything fails before the rename the temp file is removed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_PREFIX", "atomic_write", "atomic_write_bytes", "fsync_dir", "remove_temp_files"]

TEMP_PREFIX = ".tmp-"


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry table to disk (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``target`` atomically and durably.

    Args:
        target: final path of the file.
        write: called with a binary file object opened on the temp file; it
            writes the content and must not close the file.
    """
    tmp = target.with_name(f"{TEMP_PREFIX}{target.name}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(target: Path, content: bytes) -> None:
    """Write ``content`` to ``target`` atomically and durably."""

    def _write(f: BinaryIO) -> None:
        f.write(content)

    atomic_write(target, _write)


def remove_temp_files(directory: Path) -> list[Path]:
    """Remove temp files left in ``directory`` by an interrupted write; return them."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        if entry.name.startswith(TEMP_PREFIX) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
