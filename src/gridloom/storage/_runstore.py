"""What the two stores that write a run share (:class:`ParquetStore` on a local folder,
:class:`ManifestStore` on any location): the run's recorded settings, its tally and status,
the ``metadata.json`` document, the layout check, and reading the row groups back (each part
checked against its recorded digest: :class:`~gridloom.storage._parts.PartReader`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from gridloom.errors import StorageError

from ._lock import RunDirLock
from ._metadata import Tally, layout_problem, run_document
from ._parts import PartReader
from ._protocol import IO_THREADS
from ._types import RowGroupData

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["RunStore"]

S = TypeVar("S", bound="RunStore")


class RunStore(PartReader):
    """The state of a run being written (private base: use a subclass's ``open``).

    Subclasses say where their parts are (:meth:`_parts_location`) and write
    ``metadata.json``; the rest — properties, the document, reading every row group back
    (:class:`~gridloom.storage._parts.PartReader`) — is here.
    """

    def __init__(
        self,
        *,
        schema: pa.Schema,
        config_hash: str,
        num_records: int,
        row_group_size: int,
        seed: int,
        created_at: str,
        tally: Tally,
    ) -> None:
        self._schema = schema
        self._config_hash = config_hash
        self._num_records = num_records
        self._row_group_size = row_group_size
        self._seed = seed
        self._created_at = created_at
        self._tally = tally
        self._status = "running"
        self._summary: dict[str, Any] = {}
        self._base_dir: str | None = None
        self._seed_fingerprint: str | None = None
        #: The user code's fingerprint and the code changes a resume accepted
        #: (:mod:`gridloom.storage._code`).
        self._code_fingerprint: dict[str, str] | None = None
        self._code_changes: list[dict[str, Any]] = []
        self._writing: set[int] = set()
        self._limiter = trio.CapacityLimiter(IO_THREADS)
        self._lock = trio.Lock()
        #: The writer's lock on the run directory (``None``: a shard, or a remote output).
        self._run_lock: RunDirLock | None = None

    @property
    def schema(self) -> pa.Schema:
        """Declared schema of the data files."""
        return self._schema

    @property
    def seed(self) -> int:
        """Run seed; on resume, the seed recorded by the original run."""
        return self._seed

    @property
    def num_records(self) -> int:
        """Rows requested; on resume, the larger of the old and the new request."""
        return self._num_records

    @property
    def row_group_size(self) -> int:
        """Rows per row group."""
        return self._row_group_size

    @property
    def num_row_groups(self) -> int:
        """Row groups of the whole run."""
        return -(-self._num_records // self._row_group_size)

    @property
    def config_hash(self) -> str:
        """Configuration hash recorded in ``metadata.json``."""
        return self._config_hash

    @property
    def code_changes(self) -> list[dict[str, Any]]:
        """The changes of the columns' Python code accepted when the run was resumed, as
        ``metadata.json`` records them (``code_changes``, :mod:`gridloom.storage._code`)."""
        return list(self._code_changes)

    @property
    def status(self) -> str:
        """Status recorded in ``metadata.json``."""
        return self._status

    @staticmethod
    def _under_lock(directory: Path | None, *, create: bool, open_store: Callable[[], S]) -> S:
        """``open_store()`` holding the writer lock of the local run ``directory`` (none for
        ``None``: a remote output, or a shard writing beside its driver), taken before
        anything in it is touched and kept by the store until :meth:`close`; let go of at
        once if the store cannot be opened. ``create``: make the directory if missing."""
        lock = None if directory is None else RunDirLock.acquire(directory, create=create)
        try:
            store = open_store()
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        store._run_lock = lock
        return store

    def close(self) -> None:
        """Let go of the run directory's writer lock (:mod:`gridloom.storage._lock`), once the
        run is over: ``metadata.json`` holds its final status. Idempotent; the store can still
        be read. A process that ends lets go of it too, however it ends."""
        if self._run_lock is not None:
            self._run_lock.release()

    def _check_layout(self, data: RowGroupData) -> None:
        """Refuse a row group that does not fit the run's layout.

        Raises:
            StorageError: naming the rows it should cover.
        """
        problem = layout_problem(
            data.index,
            data.first_row_id,
            data.num_rows,
            num_records=self._num_records,
            row_group_size=self._row_group_size,
        )
        if problem is not None:
            raise StorageError(
                f"{problem}, got first_row_id={data.first_row_id}, num_rows={data.num_rows}"
            )

    def _document(self) -> dict[str, Any]:
        """``metadata.json`` as it stands now."""
        return run_document(
            config_hash=self._config_hash,
            num_records=self._num_records,
            row_group_size=self._row_group_size,
            seed=self._seed,
            status=self._status,
            created_at=self._created_at,
            base_dir=self._base_dir,
            seed_fingerprint=self._seed_fingerprint,
            schema=self._schema,
            tally=self._tally,
            summary=self._summary,
            code_fingerprint=self._code_fingerprint,
            code_changes=self._code_changes,
        )
