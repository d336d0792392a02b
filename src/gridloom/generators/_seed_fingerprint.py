"""A fingerprint of a seed dataset's files, recorded when a run starts and compared when it
is resumed: rows already written came from the files as they were, so a resume over files
that changed since would mix two datasets without saying so.

A parquet file is fingerprinted by its size, its footer (row groups, their sizes, offsets
and column statistics) and its first and last 64 KiB; any other file by its whole content
(such files are read whole anyway, within the seed size limit). Reading is bounded: a parquet
footer is at most its file's size, and is read only up to 64 MiB.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from pathlib import Path

__all__ = ["files_fingerprint"]

_SAMPLE = 64 * 1024
_MAX_FOOTER = 64 * 1024**2
_CHUNK = 1024**2


def _parquet_part(path: Path, digest: hashlib._Hash) -> None:
    with path.open("rb") as f:
        size = f.seek(0, 2)
        digest.update(struct.pack("<q", size))
        f.seek(0)
        digest.update(f.read(_SAMPLE))
        f.seek(max(0, size - _SAMPLE))
        digest.update(f.read(_SAMPLE))
        if size >= 12:
            f.seek(size - 8)
            (length,) = struct.unpack("<i", f.read(4))
            if 0 < length <= min(_MAX_FOOTER, size - 8):
                f.seek(size - 8 - length)
                digest.update(f.read(length))


def _whole(path: Path, digest: hashlib._Hash) -> None:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)


def files_fingerprint(files: Sequence[Path]) -> str:
    """A SHA-256 over the seed files' names and contents, as the module docstring says.

    Raises:
        OSError: a file cannot be read.
    """
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8", "surrogatepass") + b"\0")
        if path.suffix.lower() in (".parquet", ".pq"):
            _parquet_part(path, digest)
        else:
            _whole(path, digest)
    return digest.hexdigest()
