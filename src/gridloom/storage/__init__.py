"""Checkpoint storage: parquet run directories, in-memory previews, and run results.

The engine hands each finished row group (:class:`RowGroupData`) to a
:class:`RowGroupStore`: :class:`ParquetStore` writes it atomically to a run
directory that can be resumed, :class:`MemoryStore` keeps it in memory.
:class:`RunResult` is what a run returns, and :func:`open_run` gives that of a run
directory on disk; :func:`inspect_run` looks at one without loading its dataset. Every read of
a run's parts checks them against the SHA-256 recorded when they were committed, and
:meth:`RunResult.verify` checks every file (a :class:`Verification`, listing each
:class:`DamagedFile`).
:class:`ManifestStore` writes a run to any filesystem pyarrow knows (a :class:`Location`, from
:func:`location_of`), committing each row group with a manifest entry so that several
processes (the shards of a sharded run) can write one run. :class:`CodeFingerprint` is what a
store records of the Python code the columns call, and checks on resume. Drop records
read back with the columns ``row_id`` (int64), ``column``, ``error_type`` and ``message``
(strings).
"""

from __future__ import annotations

from ._checkpoint import ParquetStore
from ._code import CodeFingerprint
from ._drops import DropExample
from ._inspect import (
    RunDirectoryInfo,
    data_files,
    inspect_run,
    is_run_directory,
    read_run_metadata,
)
from ._location import Location, is_remote_uri, local_path, location_of
from ._manifest import ManifestStore
from ._memory import MemoryStore
from ._opened import open_run
from ._parts import DamagedFile, Verification
from ._protocol import RowGroupStore
from ._result import RunResult
from ._types import ColumnCounts, CorrectionCounts, DropRecord, RowGroupData

__all__ = [
    "CodeFingerprint",
    "ColumnCounts",
    "CorrectionCounts",
    "DamagedFile",
    "DropExample",
    "DropRecord",
    "Location",
    "ManifestStore",
    "MemoryStore",
    "ParquetStore",
    "RowGroupData",
    "RowGroupStore",
    "RunDirectoryInfo",
    "RunResult",
    "Verification",
    "data_files",
    "inspect_run",
    "is_remote_uri",
    "is_run_directory",
    "local_path",
    "location_of",
    "open_run",
    "read_run_metadata",
]
