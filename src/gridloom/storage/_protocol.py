"""The interface between the engine and a checkpoint store."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gridloom.errors import StorageError

from ._metadata import STATUSES
from ._types import ColumnCounts, RowGroupData

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["IO_THREADS", "RowGroupStore", "check_finish_args"]

#: Worker threads a store uses at most for its blocking IO and conversions.
IO_THREADS = 2


@runtime_checkable
class RowGroupStore(Protocol):
    """Where the engine puts finished row groups.

    ``write`` is called once per row group, possibly concurrently for different
    groups; ``finish`` once at the end of a run, whatever its outcome.
    """

    @property
    def schema(self) -> pa.Schema:
        """Declared schema of the data tables."""

    @property
    def counts(self) -> Mapping[str, ColumnCounts]:
        """Per column counts aggregated over every row group held."""

    @property
    def rows_written(self) -> int:
        """Kept rows over every row group held."""

    @property
    def rows_dropped(self) -> int:
        """Dropped rows over every row group held."""

    def completed(self) -> frozenset[int]:
        """Indices of the row groups already held (on resume: those found on disk)."""

    def rows_covered(self) -> dict[int, int]:
        """Rows each held row group covers (kept and dropped), by index."""

    def rows_kept(self) -> dict[int, int]:
        """Rows each held row group kept (written), by index."""

    async def write(self, data: RowGroupData) -> None:
        """Store one finished row group; afterwards the store keeps no reference to ``data``."""

    async def finish(self, *, status: str, summary: Mapping[str, Any]) -> None:
        """Record the final status and a JSON-serialisable summary of the run."""

    def read_table(self) -> pa.Table:
        """All kept rows, in row group order, with the declared schema."""

    def read_dropped(self) -> pa.Table:
        """All drop records, in row group order (``row_id, column, error_type, message``)."""


def check_finish_args(status: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Validate :meth:`RowGroupStore.finish` arguments; return the summary as plain JSON data."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {sorted(STATUSES)}, got {status!r}")
    try:
        plain = json.loads(json.dumps(dict(summary), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StorageError(f"run summary is not JSON-serialisable: {exc}") from exc
    assert isinstance(plain, dict)
    return plain
