"""Reading a whole CSV or JSON Lines file into an Arrow table (seed datasets, search sources).

pyarrow reads these files in blocks and refuses a record (a JSONL line; a CSV row, with the
line breaks of its quoted fields) that does not end in the block after the one it starts in:
"straddling object straddles two block boundaries". With its default block (1 MiB) a record
of 1 to 2 MiB may already be refused, and long documents (papers, code files, transcripts)
are ordinary seed values. So a file is read with that default block first, which keeps
pyarrow's memory profile for the usual file of short records, and on that refusal read again
with a larger block, up to :data:`MAX_RECORD_BYTES`: a record of up to that many bytes is
always read. The larger block is the smallest doubling that holds the file's longest line (or,
in CSV, quoted field), found by a scan of the file after the first refusal; should pyarrow
still refuse, the block doubles again. A file still refused then holds a longer record, and
:class:`RecordTooLong` says where (the line it starts on, when a line or quoted field that
long can be found) and what to do. pyarrow may read a record of up to twice its block, so a
file read with the largest block is scanned for such a line or quoted field too, and refused
the same way: the bound does not depend on where a record falls against the blocks.

A retry reads the file again from the start, so a file with long records costs about two
reads (the first stops at its first record too long for the default block).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

__all__ = [
    "FIRST_BLOCK_BYTES",
    "MAX_RECORD_BYTES",
    "RecordTooLong",
    "TextTableError",
    "read_text_table",
]

#: The longest record (a JSONL line, a CSV row) read, in bytes (64 MiB): about 16 million
#: tokens of text, past any model's context window, and a bound on the block pyarrow reads
#: (each of its reading threads holds a few blocks at a time).
MAX_RECORD_BYTES = 64 * 1024**2
#: The block a file is read with first: pyarrow's default (1 MiB).
FIRST_BLOCK_BYTES = 1024**2
#: What pyarrow's message says when a record outgrows its block.
_STRADDLING = "straddling object straddles"
#: Bytes that end an unquoted CSV field, so that a quote after one opens a quoted field.
_FIELD_ENDS = frozenset(b",\r\n")
_UTF8_BOM = b"\xef\xbb\xbf"


class TextTableError(ValueError):
    """A CSV or JSONL file that cannot be read as a table, for a reason found here (not by
    pyarrow); the message names the line where it can."""


class RecordTooLong(TextTableError):
    """A record of the file is longer than :data:`MAX_RECORD_BYTES`.

    Attributes:
        line: the line (from 1) the record starts on, when found; else ``None``.
    """

    def __init__(self, fmt: str, line: int | None) -> None:
        self.line = line
        bound = f"{MAX_RECORD_BYTES // 1024**2} MiB ({MAX_RECORD_BYTES:,} bytes)"
        if fmt == "csv":
            what = "a row" if line is None else f"the row starting on line {line}"
            most = "one CSV row (with the line breaks of its quoted fields) may hold"
            hint = ""
        else:
            what = "a line" if line is None else f"line {line}"
            most = "one JSONL line may hold"
            hint = " (a .json file is read as JSON Lines: one object per line, not one array)"
        super().__init__(
            f"{what} is longer than {bound}, the most {most}; split such long values over"
            f" several rows, or convert the file to parquet, which is read without this"
            f" limit{hint}"
        )


def _walk_quotes(data: bytes | mmap.mmap, longer_than: int | None) -> tuple[int | None, int]:
    """Walks the quoted CSV fields of ``data``: where the first opens that is never closed,
    or (with ``longer_than``) that closes more than that many bytes after it opens, if one
    does (a byte offset); and the most bytes from an opening quote to its closing one.

    A quote opens a quoted field at the start of a field (the start of the data, or after a
    comma or a line break); inside, ``""`` is a quote and a lone ``"`` closes it.
    """
    find = data.find
    longest = 0
    first = pos = len(_UTF8_BOM) if data[: len(_UTF8_BOM)] == _UTF8_BOM else 0
    while (opening := find(b'"', pos)) >= 0:
        if opening != first and data[opening - 1] not in _FIELD_ENDS:
            pos = opening + 1  # a quote inside an unquoted field is a plain character
            continue
        closing = opening + 1
        while True:
            closing = find(b'"', closing)
            if closing < 0:
                return opening, longest
            if data[closing + 1 : closing + 2] != b'"':
                break
            closing += 2
        if closing - opening > longest:
            longest = closing - opening
            if longer_than is not None and longest > longer_than:
                return opening, longest
        pos = closing + 1
    return None, longest


def unterminated_quote(data: bytes | mmap.mmap, longer_than: int | None = None) -> int | None:
    """Where a quoted CSV field opens that is never closed (a byte offset), if one does (pyarrow
    would read it to the end of the file as one value); with ``longer_than``, also one that
    closes more than that many bytes after it opens (the first such field either way)."""
    return _walk_quotes(data, longer_than)[0]


def line_of(data: bytes | mmap.mmap, offset: int) -> int:
    """The line (from 1) byte ``offset`` of ``data`` is on."""
    chunk = 1 << 24
    return 1 + sum(
        data[start : min(offset, start + chunk)].count(b"\n") for start in range(0, offset, chunk)
    )


def _long_line(data: bytes | mmap.mmap, longer_than: int) -> int | None:
    """Where the first line longer than ``longer_than`` bytes starts (a byte offset), if one
    does. Each step looks for the last line break within ``longer_than`` bytes of a line's
    start: none means that line is too long; else the next step starts after it, so the file
    is crossed in about two steps per ``longer_than`` bytes."""
    start, size = 0, len(data)
    while size - start > longer_than:
        brk = data.rfind(b"\n", start, start + longer_than + 1)
        if brk < 0:
            return start
        start = brk + 1
    return None


def _long_record_line(path: Path, fmt: str) -> int | None:
    """The line a record longer than :data:`MAX_RECORD_BYTES` starts on, when a line (or, in
    CSV, a quoted field) that long is found."""
    try:
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            offsets = [_long_line(data, MAX_RECORD_BYTES)]
            if fmt == "csv":
                offsets.append(unterminated_quote(data, longer_than=MAX_RECORD_BYTES))
            found = [offset for offset in offsets if offset is not None]
            return line_of(data, min(found)) if found else None
    except (OSError, ValueError):
        return None


def _fitting_block(path: Path, fmt: str, failed: int) -> int:
    """The block to try after pyarrow refused a record at block ``failed``: the smallest
    doubling of it that no line (and, in CSV, no quoted field) of the file is longer than,
    up to :data:`MAX_RECORD_BYTES`, so that a file of long records is read again once rather
    than once per doubling (each read parses the file up to its first record too long)."""
    size = 2 * failed
    try:
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            quoted = _walk_quotes(data, None)[1] if fmt == "csv" else 0
            while size < MAX_RECORD_BYTES and (quoted > size or _long_line(data, size) is not None):
                size *= 2
    except (OSError, ValueError):
        pass  # pyarrow says what is wrong with the file on the next read
    return min(size, MAX_RECORD_BYTES)


class _Blocks:
    """Reads a file with a block that grows while pyarrow finds a record longer than it (to
    the one :func:`_fitting_block` finds, then doubling), up to :data:`MAX_RECORD_BYTES`;
    :attr:`size` keeps the last block tried."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.size = FIRST_BLOCK_BYTES
        self._scanned = False

    def read(self, reader: Callable[[int], pa.Table]) -> pa.Table:
        while True:
            try:
                table = reader(self.size)
            except pa.ArrowInvalid as exc:
                if _STRADDLING not in str(exc):
                    raise
                if self.size >= MAX_RECORD_BYTES:
                    raise RecordTooLong(self.fmt, _long_record_line(self.path, self.fmt)) from None
                if self._scanned:
                    self.size = min(2 * self.size, MAX_RECORD_BYTES)
                else:
                    self.size, self._scanned = _fitting_block(self.path, self.fmt, self.size), True
                # Give the failed read's memory back before the next (pyarrow's pool keeps it).
                pa.default_memory_pool().release_unused()
                continue
            if self.size >= MAX_RECORD_BYTES:
                # pyarrow may read a record of up to twice its block: hold every file to the
                # same bound, wherever its long records fall against the blocks.
                line = _long_record_line(self.path, self.fmt)
                if line is not None:
                    raise RecordTooLong(self.fmt, line)
            return table


def _check_quotes(path: Path) -> None:
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return  # pyarrow says it is empty
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            opening = unterminated_quote(data)
            if opening is not None:
                raise TextTableError(
                    f"the quoted field opened on line {line_of(data, opening)} is never closed"
                )


def _read_csv(path: Path) -> pa.Table:
    _check_quotes(path)
    parse = pa_csv.ParseOptions(newlines_in_values=True)
    blocks = _Blocks(path, "csv")

    def reader(threads: bool) -> Callable[[int], pa.Table]:
        def read(size: int) -> pa.Table:
            options = pa_csv.ReadOptions(block_size=size, use_threads=threads)
            return pa_csv.read_csv(path, read_options=options, parse_options=parse)

        return read

    try:
        return blocks.read(reader(threads=True))
    except pa.ArrowInvalid:
        # Once more on one thread, where pyarrow's message says which row is wrong.
        return blocks.read(reader(threads=False))


def _read_jsonl(path: Path) -> pa.Table:
    def read(size: int) -> pa.Table:
        return pa_json.read_json(path, read_options=pa_json.ReadOptions(block_size=size))

    return _Blocks(path, "jsonl").read(read)


def read_text_table(path: Path, fmt: str) -> pa.Table:
    """The whole of the CSV (``fmt`` ``"csv"``) or JSON Lines (``"jsonl"``) file at ``path``.

    A CSV file's first line names the columns; a quoted field may hold line breaks. Records
    may be up to :data:`MAX_RECORD_BYTES` long (see the module's docstring).

    Raises:
        TextTableError: a quoted CSV field is never closed, or (:class:`RecordTooLong`) a
            record is longer than :data:`MAX_RECORD_BYTES`.
        pyarrow.ArrowException: pyarrow cannot parse the file (its message says where).
        UnicodeDecodeError: the file is not UTF-8 text.
        OSError: the file cannot be read.
        ValueError: ``fmt`` is neither ``"csv"`` nor ``"jsonl"``.
    """
    if fmt == "csv":
        return _read_csv(path)
    if fmt == "jsonl":
        return _read_jsonl(path)
    raise ValueError(f"unknown text table format {fmt!r}")
