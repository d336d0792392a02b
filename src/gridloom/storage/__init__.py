"""Checkpoint storage: parquet run directories, in-memory previews, and run results.

The engine hands each finished row group (:class:`RowGroupData`) to a
:class:`RowGroupStore`: :class:`ParquetStore` writes it atomically to a run
directory that can be resumed, :class:`MemoryStore` keeps it in memory.
:class:`RunResult` is what a run returns. Drop records read back with the columns
``row_id`` (int64), ``column``, ``error_type`` and ``message`` (strings).
"""

from __future__ import annotations

from ._checkpoint import ParquetStore
from ._drops import DropExample
from ._memory import MemoryStore
from ._protocol import RowGroupStore
from ._result import RunResult
from ._types import ColumnCounts, DropRecord, RowGroupData

__all__ = [
    "ColumnCounts",
    "DropExample",
    "DropRecord",
    "MemoryStore",
    "ParquetStore",
    "RowGroupData",
    "RowGroupStore",
    "RunResult",
]
