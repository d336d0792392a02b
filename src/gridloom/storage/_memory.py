"""A store that keeps row groups in memory (for previews)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gridloom.errors import StorageError

from ._convert import data_table, dropped_schema, dropped_table
from ._metadata import RowGroupEntry, Tally, TallyView
from ._protocol import check_finish_args
from ._types import RowGroupData

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MemoryStore"]


class MemoryStore(TallyView):
    """Checkpoint store keeping Arrow tables in memory; used by ``gridloom.preview``.

    Values are converted exactly as :class:`~gridloom.storage.ParquetStore` does, so a
    value of the wrong type fails the same way in a preview as in a full run. There is
    no IO, and the conversion of a preview-sized row group is cheap, so it runs inline
    (no worker thread): ``write`` is deterministic under virtual clocks.

    Args:
        schema: declared schema of the data tables, or a function returning it (called when
            it is first needed: a preview builds it, and imports pyarrow, only once its first
            model request is out).
    """

    def __init__(self, schema: pa.Schema | Callable[[], pa.Schema]) -> None:
        self._schema_of = schema
        self._tally = Tally()
        self._tables: dict[int, pa.Table] = {}
        self._dropped: dict[int, pa.Table] = {}
        self._status = "running"
        self._summary: dict[str, Any] = {}

    @property
    def schema(self) -> pa.Schema:
        """Declared schema of the data tables."""
        if callable(self._schema_of):
            self._schema_of = self._schema_of()
        return self._schema_of

    @property
    def status(self) -> str:
        """``"running"`` until :meth:`finish` sets the final status."""
        return self._status

    @property
    def summary(self) -> dict[str, Any]:
        """The summary given to :meth:`finish` (``{}`` before)."""
        return dict(self._summary)

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._tables)} row groups, {self.rows_written} rows>"

    async def write(self, data: RowGroupData) -> None:
        """Convert a row group to Arrow tables and keep them.

        Raises:
            ValueTypeError: a value does not fit its column's type.
            StorageError: the row group is inconsistent or already held.
        """
        index = data.index
        if index in self._tables:
            raise StorageError(f"row group {index} is already written")
        table = data_table(data, self.schema)
        if data.drops:
            self._dropped[index] = dropped_table(data.drops)
        self._tables[index] = table
        self._tally.add(RowGroupEntry.of(data))

    async def finish(self, *, status: str, summary: Mapping[str, Any]) -> None:
        """Record the final status and summary.

        Raises:
            ValueError: unknown status.
            StorageError: the summary is not JSON-serialisable.
        """
        self._summary = check_finish_args(status, summary)
        self._status = status

    def read_table(self) -> pa.Table:
        """All kept rows, in row group order, with the declared schema."""
        import pyarrow as pa

        if not self._tables:
            return self.schema.empty_table()
        return pa.concat_tables([self._tables[i] for i in sorted(self._tables)])

    def read_dropped(self) -> pa.Table:
        """All drop records, in row group order."""
        import pyarrow as pa

        if not self._dropped:
            return dropped_schema().empty_table()
        return pa.concat_tables([self._dropped[i] for i in sorted(self._dropped)])
