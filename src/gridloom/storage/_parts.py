"""A run's committed parts read back, each checked against the SHA-256 recorded when it was
committed (blocking IO; call from a worker thread in async code).

Every reader of a run's dataset goes through here: :class:`~gridloom.storage.ParquetStore` and
:class:`~gridloom.storage.ManifestStore` (the store a run returns its result from), a run
opened with :func:`~gridloom.storage.open_run`, and so :attr:`RunResult.table
<gridloom.storage.RunResult.table>`, :meth:`RunResult.iter_tables
<gridloom.storage.RunResult.iter_tables>` and every export. A part is one row group, decoded
whole anyway, so it is read once, whole, into memory; its digest is computed from those bytes
and compared with the one its entry recorded, and the table is decoded from the same buffer
(no second read). A part whose pages were damaged after it was written is then refused with a
:class:`~gridloom.errors.StorageError` naming the file and what to do, where it would
otherwise decode to other values (pyarrow writes no page checksums). An entry without a
digest (written before digests existed) is decoded as before.

:func:`verify_groups` (:meth:`RunResult.verify <gridloom.storage.RunResult.verify>`,
``gridloom inspect --verify``) checks every committed file, data and dropped-records parts,
as a resume does (:mod:`gridloom.storage._digest`): a file with a digest is hashed as it is
streamed (memory holds one chunk, nothing is decoded), one without is decoded in full.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gridloom.errors import StorageError

from .._attrs import frozen
from ._convert import dropped_schema
from ._digest import (
    PART_LIMIT,
    decode_errors,
    decode_problem,
    digest_of,
    mismatch,
    size_problem,
)
from ._metadata import RowGroupEntry, TallyView

if TYPE_CHECKING:
    import pyarrow as pa

    from ._location import Location
    from ._protocol import RowGroupStore

# pyarrow.parquet is imported in the functions that use it: a preview, which reads and writes
# no parquet, does not pay for it (~7 ms) before its first model request.
__all__ = [
    "DamagedFile",
    "PartReader",
    "PartSource",
    "Verification",
    "declared_table",
    "part_of",
    "read_parquet",
    "read_part",
    "repair_advice",
    "store_tables",
    "store_verification",
    "verify_groups",
]


@frozen(kw_only=True)
class DamagedFile:
    """A committed file of a run whose content is not what was committed.

    Attributes:
        row_group: the index of its row group.
        file: its path relative to the run directory, e.g. ``data/part-00004.parquet``.
        problem: what is wrong with it, one sentence naming it.
    """

    row_group: int
    file: str
    problem: str

    def as_dict(self) -> dict[str, Any]:
        """The file as plain JSON data."""
        return {"row_group": self.row_group, "file": self.file, "problem": self.problem}


@frozen(kw_only=True)
class Verification:
    """What a check of every committed file of a run found (:meth:`RunResult.verify
    <gridloom.storage.RunResult.verify>`).

    Attributes:
        files: committed files checked: each row group's data part, and its dropped-records
            part when it dropped rows.
        damaged: the files whose content is not what was committed (or that are missing), in
            row group order.
        repair: how to get the damaged row groups generated again (``None`` when nothing is
            damaged).
    """

    files: int
    damaged: tuple[DamagedFile, ...] = ()
    repair: str | None = None

    @property
    def intact(self) -> bool:
        """Whether every committed file is as it was committed."""
        return not self.damaged

    def as_dict(self) -> dict[str, Any]:
        """The verification as plain JSON data (``gridloom inspect --verify --json``)."""
        return {
            "files": self.files,
            "intact": self.intact,
            "damaged": [d.as_dict() for d in self.damaged],
            "repair": self.repair,
        }


def read_parquet(path: Path, schema: pa.Schema) -> pa.Table:
    """Read one parquet file and check it has exactly ``schema`` (metadata aside: the
    table read carries ``schema``'s, of the schema and of each field).

    Raises:
        StorageError: the file cannot be read or has another schema.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    return declared_table(table, schema, str(path))


def declared_table(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """``table`` (read from ``where``) with ``schema``'s metadata, after checking it has exactly
    ``schema`` otherwise.

    Raises:
        StorageError: the table has another schema.
    """
    import pyarrow as pa

    if not table.schema.equals(schema):
        raise StorageError(
            f"{where} does not have the declared schema:\n{table.schema}\nexpected:\n{schema}"
        )
    # The declared schema's metadata wins (a field's JSON-text mark included), so files
    # written before a mark existed read back like the ones written after.
    return pa.Table.from_arrays(table.columns, schema=schema)


def _replaced(where: str, held: int, recorded: int) -> StorageError:
    """The error for the part ``where``, which holds ``held`` rows where its row group is
    recorded with ``recorded``: another writer replaced it."""
    return StorageError(
        f"{where} holds {held:,} rows but its row group is recorded with {recorded:,}: the"
        " part was replaced after it was committed (were two runs writing this output at"
        " once?); start again with --overwrite (overwrite=True from Python)"
    )


def part_of(entry: RowGroupEntry, table: pa.Table) -> pa.Table:
    """``table``, the data part read for ``entry``, once it holds the rows ``entry`` counts.

    Raises:
        StorageError: it holds another number of rows (the part was replaced after its entry
            was written, e.g. by a second process writing the same run).
    """
    if table.num_rows != entry.rows:
        raise _replaced(RowGroupEntry.data_file(entry.index), table.num_rows, entry.rows)
    return table


def repair_advice(location: Location) -> str:
    """How the damaged row groups of the run at ``location`` are generated again: a resume sets
    a damaged part aside (in ``damaged/``) and generates its row group again, but checks the
    content of a local run's parts only (it would download a remote run's whole dataset; a
    remote part is checked by its size alone)."""
    if location.local is not None:
        command = shlex.join(["gridloom", "resume", location.display])
        return (
            f"run `{command}` (resume=True from Python): it sets the damaged files aside in"
            " damaged/ and generates their row groups again"
        )
    return (
        "a resume of a remote run checks each part's size, not its content: copy"
        f" {location.display} to a local folder and run `gridloom resume` on the copy, which"
        " sets the damaged files aside in damaged/ and generates their row groups again"
    )


def _held_rows(location: Location, rel: str) -> int | None:
    """The rows the footer of the part ``rel`` says it holds (only its tail is read, within
    pyarrow's limits on a footer), or ``None`` when it does not read: a part of another size
    holding other rows was replaced by another writer, which the error then says."""
    import pyarrow.parquet as pq

    path, filesystem = location.source(rel)
    try:
        return int(pq.read_metadata(path, filesystem=filesystem).num_rows)
    except decode_errors():
        return None


def _damaged(location: Location, problem: str) -> StorageError:
    """The error for a committed part that is not what was committed (``problem`` names it
    and says how: :func:`~gridloom.storage._digest.mismatch`)."""
    return StorageError(
        f"{problem}: it was damaged after it was written, and its rows are not read;"
        f" {repair_advice(location)}"
    )


def read_part(
    location: Location,
    rel: str,
    schema: pa.Schema,
    sha256: str | None,
    rows: int,
    size: int | None = None,
) -> pa.Table:
    """The part ``rel`` of the run at ``location``, with exactly ``schema``, once its bytes
    match ``sha256`` (the digest its entry recorded; ``None``: not checked).

    Args:
        rows: the rows its entry records (kept rows for a data part, dropped rows for a
            dropped-records part): a part whose bytes differ and whose footer holds other
            rows was replaced by another writer, which the error says.
        size: the size in bytes its entry records: a file of another size is refused before
            anything of it is read, and no more than that is ever read (``None``, an entry
            written before sizes: up to :data:`~gridloom.storage._digest.PART_LIMIT`).

    Raises:
        StorageError: the part cannot be read, is not what was committed (the message names
            it and says how to repair it), does not decode, or has another schema.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = location.where(rel)
    try:
        on_disk = location.size(rel)
        problem = size_problem(where, on_disk, size)
        if problem is not None:
            held = _held_rows(location, rel) if size is not None else None
            if held is not None and held != rows:
                raise _replaced(where, held, rows)
            raise _damaged(location, problem)
        # The size it has (checked against the recorded one, or PART_LIMIT): a read's buffer
        # is allocated at its limit up front, so the limit is never more than the file.
        limit = size if size is not None else on_disk if on_disk is not None else PART_LIMIT
        payload = location.read_file(rel, limit=limit)
    except OSError as exc:
        raise StorageError(f"cannot read {where}: {exc}") from exc
    if size is not None and payload.size != size:  # shrunk since its size was taken
        raise _damaged(location, mismatch(where, payload.size, size))
    if sha256 is not None and (actual := digest_of(payload)) != sha256:
        try:
            held = pq.read_metadata(pa.BufferReader(payload)).num_rows
        except decode_errors():
            held = rows
        if held != rows:
            raise _replaced(where, held, rows)
        raise _damaged(location, mismatch(where, actual, sha256))
    try:
        table = pq.read_table(pa.BufferReader(payload))
    except decode_errors() as exc:
        raise StorageError(f"cannot read {where}: {exc}") from exc
    return declared_table(table, schema, where)


def _file_problem(
    location: Location, rel: str, sha256: str | None, rows: int, size: int | None
) -> str | None:
    """Why the committed file ``rel`` is damaged, or ``None``: its size must be ``size``
    (checked first; ``None``: at most :data:`~gridloom.storage._digest.PART_LIMIT`), its
    digest ``sha256``; without one it must decode in full and hold ``rows`` rows."""
    try:
        actual_size = location.size(rel)
        if (problem := size_problem(rel, actual_size, size)) is not None:
            return problem
        if sha256 is not None:
            actual = location.digest(rel)
            return None if actual == sha256 else mismatch(rel, actual, sha256)
        payload = location.read_file(rel, limit=PART_LIMIT if actual_size is None else actual_size)
    except FileNotFoundError:
        return f"{rel} is missing"
    except OSError as exc:  # a local file only: a remote filesystem's failure is raised
        return f"{rel} is unreadable ({type(exc).__name__}: {exc})"
    return decode_problem(payload, rel, rows)


def verify_groups(location: Location, groups: Mapping[int, RowGroupEntry]) -> Verification:
    """Check every file of the committed row groups ``groups`` of the run at ``location`` (see
    the module docstring): a missing file, or one whose content is not what was committed, is
    damaged.

    Raises:
        StorageError: a remote filesystem cannot be read (the check could not be made).
    """
    checked = 0
    damaged: list[DamagedFile] = []
    for index, entry in sorted(groups.items()):
        files = [(RowGroupEntry.data_file(index), entry.sha256, entry.rows, entry.size)]
        if entry.has_drops:
            rel = RowGroupEntry.dropped_file(index)
            files.append((rel, entry.dropped_sha256, entry.dropped, entry.dropped_size))
        for rel, sha256, rows, size in files:
            checked += 1
            problem = _file_problem(location, rel, sha256, rows, size)
            if problem is not None:
                damaged.append(DamagedFile(row_group=index, file=rel, problem=problem))
    repair = repair_advice(location) if damaged else None
    return Verification(files=checked, damaged=tuple(damaged), repair=repair)


class PartReader(TallyView):
    """The reading half of a run's store: its committed row groups (``self._tally``), read
    back from :meth:`_parts_location` with every part checked (see the module docstring).
    A subclass sets ``self._tally`` and ``self._schema``."""

    _schema: pa.Schema

    def _parts_location(self) -> Location:
        """Where the run's parts are."""
        raise NotImplementedError

    def iter_tables(self) -> Iterator[pa.Table]:
        """The kept rows one row group at a time, in order, each part read (and checked) only
        when the previous table has been consumed.

        Raises:
            StorageError: a data part is missing, damaged, unreadable, or has another schema
                or row count than committed.
        """
        location = self._parts_location()
        for index, entry in sorted(self._tally.groups.items()):
            if entry.rows:
                rel = RowGroupEntry.data_file(index)
                table = read_part(location, rel, self._schema, entry.sha256, entry.rows, entry.size)
                yield part_of(entry, table)

    def read_table(self) -> pa.Table:
        """All kept rows, in row group order, with exactly the declared schema (see
        :meth:`iter_tables`)."""
        import pyarrow as pa

        tables = list(self.iter_tables())
        return pa.concat_tables(tables) if tables else self._schema.empty_table()

    def read_dropped(self) -> pa.Table:
        """All drop records, in row group order.

        Raises:
            StorageError: a dropped-records part is missing, damaged or unreadable.
        """
        import pyarrow as pa

        location = self._parts_location()
        tables = [
            read_part(
                location,
                RowGroupEntry.dropped_file(i),
                dropped_schema(),
                e.dropped_sha256,
                e.dropped,
                e.dropped_size,
            )
            for i, e in sorted(self._tally.groups.items())
            if e.has_drops
        ]
        return pa.concat_tables(tables) if tables else dropped_schema().empty_table()

    def verify(self) -> Verification:
        """Check every committed file (:func:`verify_groups`)."""
        return verify_groups(self._parts_location(), self._tally.groups)


@runtime_checkable
class PartSource(Protocol):
    """A store whose row groups can be read one at a time and verified (a
    :class:`PartReader`, or a store wrapping one)."""

    def iter_tables(self) -> Iterator[pa.Table]:
        """The kept rows, one row group at a time."""

    def verify(self) -> Verification:
        """Check every committed file."""


def store_tables(store: RowGroupStore) -> Iterator[pa.Table]:
    """``store``'s rows one row group at a time when it can (a :class:`PartSource`), else as
    one table (an in-memory store)."""
    if isinstance(store, PartSource):
        yield from store.iter_tables()
    else:
        yield store.read_table()


def store_verification(store: RowGroupStore) -> Verification:
    """:meth:`PartSource.verify` of ``store``; a store with no files (in memory) has nothing
    to check."""
    if isinstance(store, PartSource):
        return store.verify()
    return Verification(files=0)
