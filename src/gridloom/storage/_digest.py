"""Content digests of a run's committed files, and the checks that use them (blocking IO).

When a row group is committed, the SHA-256 of each of its files (the data part and, when
the group dropped rows, its dropped-records part) is recorded in its ``row_groups`` entry of
``metadata.json`` (and in its commit entry, for :class:`~gridloom.storage.ManifestStore`), as
``"sha256"`` and ``"dropped_sha256"``: the digest of the bytes written, computed before the
file is renamed into place. It is recomputed wherever the run's data is read back: a resume
(:mod:`gridloom.storage._resume`), every read of the dataset (:attr:`RunResult.table
<gridloom.storage.RunResult.table>`, an export) and :meth:`RunResult.verify
<gridloom.storage.RunResult.verify>` (``gridloom inspect --verify``); see
:mod:`gridloom.storage._parts`. So a part damaged after it was written (a flipped sector, an
overwritten range, a bad copy) is found even when its parquet footer still reads: pyarrow
writes no page checksums, and such a part may decode, to other values. Entries written
before digests existed have none: their parts are decoded in full instead (every page read
and decompressed), which finds most, not all, damage.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

# pyarrow.parquet is imported in the functions that use it: a preview, which reads and writes
# no parquet, does not pay for it (~7 ms) before its first model request.
if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DIGEST_KEYS",
    "PART_LIMIT",
    "check_digest_field",
    "content_problem",
    "decode_errors",
    "decode_problem",
    "digest_of",
    "file_digest",
    "mismatch",
    "read_bounded",
    "rendered",
    "size_problem",
    "stream_digest",
]

#: The entry fields holding the digests of the data part and of the dropped-records part.
DIGEST_KEYS = ("sha256", "dropped_sha256")


@functools.cache
def decode_errors() -> tuple[type[BaseException], ...]:
    """What pyarrow raises on a parquet file it cannot decode: damaged pages raise more than
    ``OSError`` and ``ArrowException`` (a footer damaged into undecodable names raises
    ``UnicodeDecodeError``, a ``ValueError``; some damaged encodings ``IndexError``). A
    function, called in ``except`` clauses (so only once something was raised): naming
    ``ArrowException`` at import would import pyarrow with this module."""
    import pyarrow as pa

    return (OSError, pa.ArrowException, ValueError, IndexError, EOFError)


#: Largest part read from an entry that records no size (written before sizes were recorded,
#: or adopted from its footer): 2 GiB. A part is one row group, rendered whole in memory when
#: it was written and decoded whole when it is read, so a file past this is not one gridloom
#: wrote for a row group of any sensible size; it is refused, named, before it is read.
PART_LIMIT = 2 << 30

_HEX = frozenset("0123456789abcdef")
#: Bytes read at a time when a digest is computed from a stream (memory stays bounded).
_CHUNK = 1 << 20


def rendered(write: Callable[[BinaryIO], None]) -> bytes:
    """The bytes ``write`` writes to a file object (in memory: a part is one row group)."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def digest_of(payload: bytes | pa.Buffer) -> str:
    """The hex SHA-256 of ``payload``."""
    return hashlib.sha256(payload).hexdigest()


def file_digest(path: Path) -> str:
    """The hex SHA-256 of the file at ``path`` (read in chunks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stream_digest(stream: Any) -> str:
    """The hex SHA-256 of what is left to read in ``stream`` (any object with ``read(n)``:
    a file, or a pyarrow input stream of a remote file), read :data:`_CHUNK` bytes at a time."""
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def mismatch(name: str, actual: str | int, expected: str | int) -> str:
    """Why the file ``name`` is damaged: its SHA-256 (hex text) or its size (bytes, an
    ``int``) is ``actual``, it was committed with ``expected``."""
    if isinstance(actual, int) or isinstance(expected, int):
        now, then = f"it holds {actual:,} bytes", f"{expected:,}"
    else:
        now, then = f"its SHA-256 is {actual[:12]}...", f"{expected[:12]}..."
    return f"{name} does not hold the bytes written at commit ({now}, the run recorded {then})"


def size_problem(name: str, actual: int | None, recorded: int | None) -> str | None:
    """Why the committed file ``name``, of ``actual`` bytes, is refused before it is read: it
    was committed with ``recorded`` bytes (grown or shrunk since: :func:`mismatch`), or, with
    no size recorded, it is larger than :data:`PART_LIMIT`; ``None`` when it may be read, or
    when its size is not known (a filesystem that does not tell it: the digest, or the
    decode, still checks its content)."""
    if actual is None:
        return None
    if recorded is not None:
        return None if actual == recorded else mismatch(name, actual, recorded)
    if actual > PART_LIMIT:
        return (
            f"{name} holds {actual:,} bytes, more than the {PART_LIMIT:,} a part whose size"
            " was not recorded is read up to"
        )
    return None


def read_bounded(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes of the file at ``path`` (never more is allocated)."""
    with open(path, "rb") as f:
        return f.read(limit)


def decode_problem(payload: bytes | pa.Buffer, name: str, rows: int | None = None) -> str | None:
    """Why ``payload``, the content of the parquet file ``name``, is damaged (it does not
    decode in full, every page read and decompressed, or holds other than ``rows`` rows when
    given), or ``None``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(payload))
    except decode_errors() as exc:
        return f"{name} does not decode ({type(exc).__name__}: {exc})"
    if rows is not None and table.num_rows != rows:
        return f"{name} holds {table.num_rows:,} rows, its row group is recorded with {rows:,}"
    return None


def check_digest_field(raw: dict[str, Any], key: str) -> str | None:
    """``raw[key]``, a hex SHA-256, or ``None`` when absent or null (entries written before
    digests).

    Raises:
        ValueError: the value is not 64 lower-case hex digits.
    """
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
        raise ValueError(f"{key} must be a SHA-256 in hex, got {value!r:.80}")
    return value


def content_problem(
    path: Path, name: str, expected: str | None, size: int | None = None
) -> tuple[str | None, str | None]:
    """Whether the content of the committed file ``path`` (``name`` in messages) is intact.

    Its size must be ``size`` (the one recorded at commit; ``None``: at most
    :data:`PART_LIMIT`), checked before anything is read. With a recorded digest the file's
    digest must match it; without one (an entry written before digests, or a part adopted
    from its footer) the file is decoded in full.

    Returns:
        ``(problem, digest)``: why the file is damaged (or ``None``), and its digest when
        it is intact (so an entry without one can record it from now on).
    """
    try:
        on_disk = path.stat().st_size
        problem = size_problem(name, on_disk, size)
        if problem is not None:
            return problem, None
        if expected is not None:
            actual = file_digest(path)
        else:  # a read allocates its limit up front: never more than the file
            payload = read_bounded(path, on_disk if size is None else size)
    except OSError as exc:
        return f"{name} is unreadable ({type(exc).__name__}: {exc})", None
    if expected is not None:
        if actual != expected:
            return mismatch(name, actual, expected), None
        return None, actual
    if (problem := decode_problem(payload, name)) is not None:
        return problem, None
    return None, digest_of(payload)
