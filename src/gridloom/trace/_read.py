"""Reading a run's ``trace.parquet`` back, checked: the file may be damaged, or not
gridloom's at all, and what draws it must get a clear error rather than a failure deep in
matplotlib."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..errors import StorageError
from ._spans import trace_schema

__all__ = ["MAX_TRACE_BYTES", "MAX_TRACE_ROWS", "MAX_TRACE_SECONDS", "read_trace"]

#: Task attempts a trace read back may hold (a run keeps at most 2,000,000 spans).
MAX_TRACE_ROWS = 2_000_000
#: Largest ``trace.parquet`` read back (1 GiB): :data:`MAX_TRACE_ROWS` attempts of a few dozen
#: numbers and short names each, compressed, are a small fraction of it; a larger file (one
#: grown or replaced since the run wrote it) is refused by its size, before it is opened,
#: whatever its footer claims.
MAX_TRACE_BYTES = 1 << 30
#: The largest time a trace may hold, in seconds from the run's start (about 31 years):
#: larger ones (or infinite ones; a time not reached is NaN) are damage, not a run.
MAX_TRACE_SECONDS = 1e9

_TIMES = ("ready", "dispatched", "slot", "sent", "response", "completed")


def read_trace(path: Path) -> pa.Table:
    """The trace in ``path``, with :data:`~gridloom.trace.TRACE_SCHEMA`'s columns.

    Raises:
        StorageError: ``path`` cannot be read as parquet, lacks a column of the trace or
            holds it with another type, is larger than :data:`MAX_TRACE_BYTES`, holds more
            than :data:`MAX_TRACE_ROWS` attempts, or
            a time that is infinite or beyond :data:`MAX_TRACE_SECONDS` (the message names
            the file and the column).
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    failing = f"cannot read {path}"
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise StorageError(f"{failing}: {exc}") from None
    if size > MAX_TRACE_BYTES:
        raise StorageError(
            f"{failing}: {size:,} bytes, larger than a trace is read up to ({MAX_TRACE_BYTES:,})"
        )
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        rows = parquet.metadata.num_rows
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StorageError(f"{failing}: {exc}") from None
    for field in trace_schema():
        index = schema.get_field_index(field.name)
        if index < 0:
            raise StorageError(f"{failing}: not a gridloom trace: it has no {field.name!r} column")
        found = schema.field(index).type
        if found != field.type:
            raise StorageError(
                f"{failing}: not a gridloom trace: its {field.name!r} column holds {found},"
                f" not {field.type}"
            )
    if rows > MAX_TRACE_ROWS:
        raise StorageError(
            f"{failing}: {rows:,} task attempts, more than a trace holds ({MAX_TRACE_ROWS:,})"
        )
    try:
        table = parquet.read(columns=trace_schema().names)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StorageError(f"{failing}: {exc}") from None
    table = pa.Table.from_arrays(
        [table.column(name) for name in trace_schema().names],
        schema=trace_schema().with_metadata(table.schema.metadata),
    )
    for name in _TIMES:
        column = table.column(name)
        known = pc.filter(column, pc.invert(pc.is_nan(column)))
        if len(known) == 0:
            continue
        bound = pc.max(pc.abs(known)).as_py()
        if bound is not None and not bound <= MAX_TRACE_SECONDS:
            raise StorageError(
                f"{failing}: trace.parquet is damaged: its {name!r} column holds {bound:g}"
                f" (times are seconds from the run's start, at most {MAX_TRACE_SECONDS:g})"
            )
    return table
