"""Writing a run's trace next to its data."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..storage._atomic import atomic_write

__all__ = ["TRACE_FILE", "write_trace"]

#: The trace's file in a run directory.
TRACE_FILE = "trace.parquet"


def write_trace(output_dir: Path, table: pa.Table) -> None:
    """Write ``table`` as ``output_dir/trace.parquet``, atomically (blocking IO)."""
    atomic_write(output_dir / TRACE_FILE, lambda f: pq.write_table(table, f))
