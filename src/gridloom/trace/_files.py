"""Writing a run's trace next to its data."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..storage._atomic import atomic_write
from ._chrome import chrome_trace_chunks

# pyarrow.parquet is imported in the functions that use it: a preview, which reads and writes
# no parquet, does not pay for it (~7 ms) before its first model request.
if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CHROME_MAX_ATTEMPTS",
    "CHROME_TRACE_FILE",
    "ORIGIN_KEY",
    "TRACE_FILE",
    "trace_origin",
    "with_origin",
    "write_trace",
]

log = logging.getLogger("gridloom")

#: The trace's file in a run directory.
TRACE_FILE = "trace.parquet"
#: The trace as Chrome trace-event JSON (for https://ui.perfetto.dev), next to it.
CHROME_TRACE_FILE = "trace.json"
#: Key of the trace table's schema metadata that holds the clock time of the run's start
#: (what the throttle histories in ``metadata.json`` are measured against).
ORIGIN_KEY = "gridloom.trace.origin"
#: Task attempts shown in ``trace.json`` at most (the first ones); a bigger JSON trace would
#: be too big for a browser to open. ``trace.parquet`` keeps them all.
CHROME_MAX_ATTEMPTS = 250_000


def with_origin(table: pa.Table, origin: float) -> pa.Table:
    """``table`` with the clock time of the run's start recorded in its schema metadata."""
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), ORIGIN_KEY.encode(): repr(origin).encode()}
    )


def trace_origin(table: pa.Table) -> float | None:
    """The clock time of the run's start recorded in ``table`` (``None`` if not recorded)."""
    raw = (table.schema.metadata or {}).get(ORIGIN_KEY.encode())
    return None if raw is None else float(raw)


def write_trace(
    output_dir: Path,
    table: pa.Table,
    *,
    counters: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write ``table`` as ``output_dir/trace.parquet`` and as Chrome trace-event JSON,
    ``output_dir/trace.json``, each atomically (blocking IO and CPU: call from a thread).

    Args:
        output_dir: the run directory.
        table: the trace (:data:`~gridloom.trace.TRACE_SCHEMA`).
        counters: counter tracks for ``trace.json`` (see :func:`~gridloom.trace.chrome_trace`).
        metadata: added to ``trace.json``'s ``otherData``.
    """
    import pyarrow.parquet as pq

    atomic_write(output_dir / TRACE_FILE, lambda f: pq.write_table(table, f))
    extra = dict(metadata or {})
    shown = table
    if table.num_rows > CHROME_MAX_ATTEMPTS:
        log.warning(
            "%s shows the first %d of %d task attempts (%s has them all)",
            CHROME_TRACE_FILE,
            CHROME_MAX_ATTEMPTS,
            table.num_rows,
            TRACE_FILE,
        )
        shown = table.slice(0, CHROME_MAX_ATTEMPTS)
        extra["attempts_not_shown"] = table.num_rows - CHROME_MAX_ATTEMPTS
    chunks = chrome_trace_chunks(shown, counters=counters, metadata=extra)

    def write(f: BinaryIO) -> None:
        for chunk in chunks:
            f.write(chunk.encode())

    atomic_write(output_dir / CHROME_TRACE_FILE, write)
