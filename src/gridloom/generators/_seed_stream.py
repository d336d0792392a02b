"""Parquet seed files streamed by row group: only metadata is read when the generator is built,
and at generate time only the row groups (and the columns) that hold the rows asked for.

:func:`scan_parquet` reads each file's footer (schema, row counts per row group) and checks
what can be checked without the data: column names, schema agreement between files, the
selected ``columns``, the rows, and that no row group is larger than :data:`MAX_GROUP_BYTES`
uncompressed. :class:`StreamedParquet` then reads row groups on demand (in the caller's
thread: the seed generator runs in a worker thread, never on the event loop), checks and
converts each as a file read whole would be (binary values as UTF-8 text, or refused), and
keeps the decoded ones in a cache of at most :data:`CACHE_BYTES`. A file that changed since
it was scanned, or a row group that fails its checks, raises :class:`SeedReadError` naming
the file: the run row group's rows fail (recorded as dropped, never left out silently) and
the run stops.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .._attrs import frozen
from ..errors import ConfigError, GenerationError
from ._seed_checks import (
    as_text,
    check_names,
    check_text,
    checked,
    conformed,
    problem,
    selected,
    text_type,
)

__all__ = [
    "CACHE_BYTES",
    "MAX_GROUP_BYTES",
    "MAX_ROW_GROUPS",
    "ParquetScan",
    "SeedReadError",
    "StreamedParquet",
    "scan_parquet",
]

#: Decoded row groups a streamed seed keeps, in bytes (64 MiB); a row group larger than this
#: is read for each run row group that needs it and not kept.
CACHE_BYTES = 64 * 1024**2
#: The largest row group (uncompressed, selected columns only) a streamed seed reads (2 GiB).
MAX_GROUP_BYTES = 2 * 1024**3
#: The most parquet row groups a streamed seed may have, over all its files.
MAX_ROW_GROUPS = 1_000_000


class SeedReadError(GenerationError):
    """A streamed seed file could not be read, or failed its checks, at generate time.

    It fails the rows that needed the file and stops the run (the column health monitor
    trips on any error with a true ``stops_run``): rows already written are kept, and the
    run can be resumed once the file is fixed.
    """

    #: Stop the run at once rather than go on dropping rows.
    stops_run = True


@frozen
class _Group:
    """One parquet row group: file ``file``'s group ``group``, ``rows`` rows from ``start``
    (over all the files' rows, concatenated)."""

    file: int
    group: int
    start: int
    rows: int


@frozen
class ParquetScan:
    """What :func:`scan_parquet` learnt from the files' footers."""

    schema: pa.Schema
    groups: tuple[_Group, ...]
    #: Per file, the names of the selected columns it has (read from it).
    present: tuple[tuple[str, ...], ...]

    @property
    def num_rows(self) -> int:
        last = self.groups[-1] if self.groups else None
        return 0 if last is None else last.start + last.rows


def _file_schema(path: Path, metadata: pq.FileMetaData) -> pa.Schema:
    where = f"seed data {str(path)!r}"
    try:
        schema = checked(path, metadata.schema.to_arrow_schema)
    except UnicodeDecodeError:
        raise problem(f"{where}: a column name is not UTF-8 text") from None
    check_names(schema.empty_table(), where)
    fields = [field.with_type(text_type(field.type)) for field in schema]
    return pa.schema(fields)


def scan_parquet(files: Sequence[Path], columns: Sequence[str]) -> ParquetScan:
    """The seed's schema and row groups, from the files' metadata only.

    Raises:
        ConfigError: a file is not parquet, names a column twice or not as UTF-8, the files'
            schemas cannot be unified, ``columns`` names a column no file has, a row group
            is over :data:`MAX_GROUP_BYTES`, or there are too many row groups.
    """
    metadata = [checked(path, pq.read_metadata, path) for path in files]
    schemas = [_file_schema(path, meta) for path, meta in zip(files, metadata, strict=True)]
    wanted_in = [
        pa.schema([field for field in schema if not columns or field.name in columns])
        for schema in schemas
    ]
    unified = checked(files[0], pa.unify_schemas, wanted_in, promote_options="permissive")
    names = selected(unified, columns)
    schema = pa.schema([unified.field(name) for name in names])
    groups: list[_Group] = []
    start = 0
    wanted = frozenset(names)
    for index, (path, meta) in enumerate(zip(files, metadata, strict=True)):
        for group in range(meta.num_row_groups):
            info = meta.row_group(group)
            size = _group_bytes(info, wanted)
            if size > MAX_GROUP_BYTES:
                raise problem(
                    f"seed data {str(path)!r}: row group {group} holds {size:,} bytes"
                    f" uncompressed; a streamed seed reads at most {MAX_GROUP_BYTES:,}"
                    " (2 GiB) at once: write the file with smaller row groups"
                )
            if info.num_rows:
                groups.append(_Group(index, group, start, info.num_rows))
                start += info.num_rows
        if len(groups) > MAX_ROW_GROUPS:
            raise problem(
                f"the seed files (from {str(files[0])!r}) have more than {MAX_ROW_GROUPS:,}"
                " row groups in all; a streamed seed has at most that many"
            )
    present = tuple(tuple(n for n in s.names if n in names) for s in wanted_in)
    return ParquetScan(schema=schema, groups=tuple(groups), present=present)


def _group_bytes(info: pq.RowGroupMetaData, names: frozenset[str]) -> int:
    """Uncompressed bytes of the columns ``names`` (all their leaf columns) in a row group."""
    total = 0
    for leaf in range(info.num_columns):
        column = info.column(leaf)
        if column.path_in_schema.split(".", 1)[0] in names or column.path_in_schema in names:
            total += column.total_uncompressed_size
    return total


class StreamedParquet:
    """The rows of parquet seed files, read by row group on demand (see the module's docstring).

    Args:
        files: the files, in order.
        scan: their metadata, from :func:`scan_parquet`.
        cache_bytes: decoded row groups kept, in bytes.
    """

    def __init__(self, files: Sequence[Path], scan: ParquetScan, cache_bytes: int = CACHE_BYTES):
        self.files = tuple(files)
        self.scan = scan
        self.schema = scan.schema
        self._starts = [group.start for group in scan.groups]
        self._cache_bytes = cache_bytes
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()
        self._cached = 0
        #: Serialises reads: each row group is read once while cached, and at most one is
        #: being decoded at a time, which bounds memory.
        self._lock = threading.Lock()
        #: Row groups read from the files so far (for tests and diagnostics).
        self.reads = 0

    @property
    def num_rows(self) -> int:
        """Rows over all the files."""
        return self.scan.num_rows

    def blocks(self, start: int, stop: int) -> list[tuple[int, int]]:
        """The parts of the row groups that hold rows ``[start, stop)``, as ``(first, rows)``
        relative to ``start``."""
        out = []
        for group in self.scan.groups:
            low, high = max(group.start, start), min(group.start + group.rows, stop)
            if low < high:
                out.append((low - start, high - low))
        return out

    def _read(self, index: int) -> pa.Table:
        group = self.scan.groups[index]
        path = self.files[group.file]
        where = f"seed data {str(path)!r}"
        try:
            with pq.ParquetFile(path) as handle:
                meta = handle.metadata
                if (
                    group.group >= meta.num_row_groups
                    or meta.row_group(group.group).num_rows != group.rows
                ):
                    raise SeedReadError(
                        f"{where} changed after it was checked (row group {group.group} is not"
                        " the one the run was planned on); validate and run again"
                    )
                table = handle.read_row_group(
                    group.group, columns=list(self.scan.present[group.file])
                )
            table = as_text(table.replace_schema_metadata(None), where)
            check_text(table, where)
            return conformed(path, table, self.schema)
        except ConfigError as exc:
            raise SeedReadError(f"{exc.message} (parquet row group {group.group})") from None
        except (OSError, pa.ArrowException) as exc:
            raise SeedReadError(
                f"cannot read {where} (parquet row group {group.group}): {exc}"
            ) from exc

    def _group(self, index: int) -> pa.Table:
        """Row group ``index``'s checked rows, from the cache or the file (holding the lock)."""
        table = self._cache.get(index)
        if table is not None:
            self._cache.move_to_end(index)
            return table
        table = self._read(index)
        self.reads += 1
        size = table.nbytes
        if size <= self._cache_bytes:
            while self._cached + size > self._cache_bytes:
                _old, dropped = self._cache.popitem(last=False)
                self._cached -= dropped.nbytes
            self._cache[index] = table
            self._cached += size
        return table

    def take(self, rows: Sequence[int]) -> pa.Table:
        """Rows ``rows`` (over all the files' rows, from 0), in that order.

        Raises:
            SeedReadError: a row group holding some of them cannot be read or fails its checks.
        """
        wanted: dict[int, list[tuple[int, int]]] = {}
        for position, row in enumerate(rows):
            index = bisect.bisect_right(self._starts, row) - 1
            wanted.setdefault(index, []).append((position, row - self._starts[index]))
        parts: list[pa.Table] = []
        placed: list[int] = []
        with self._lock:
            for index in sorted(wanted):
                pairs = wanted[index]
                local = pa.array([row for _position, row in pairs], type=pa.int64())
                parts.append(self._group(index).take(local))
                placed.extend(position for position, _row in pairs)
        if not parts:
            return self.schema.empty_table()
        table = pa.concat_tables(parts)
        order = [0] * len(placed)
        for at, position in enumerate(placed):
            order[position] = at
        return table.take(pa.array(order, type=pa.int64()))
