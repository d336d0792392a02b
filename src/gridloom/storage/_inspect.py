"""A look at a run directory without loading its dataset (``gridloom inspect``).

Everything comes from ``metadata.json`` (plus the commit entries of ``_commits/``, written
by the shards of a sharded run) and the parquet footers; the only data read is the first rows
of the first non-empty data file's first row group (the sample) and the dropped-records files
(the drop reasons, with an example each). With ``verify``, every committed file is also read
and checked against the SHA-256 recorded when it was committed
(:func:`~gridloom.storage._parts.verify_groups`). A run directory is a local path or a URI
(:func:`~gridloom.storage.location_of`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridloom.errors import StorageError

from .._attrs import frozen
from ._commits import committed_indices, load_document, read_commit
from ._digest import size_problem
from ._drops import DropExample, DropTally
from ._location import Location, is_remote_uri, local_path, location_of
from ._metadata import RowGroupEntry, check_document, load_json
from ._parts import Verification, verify_groups

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

# pyarrow.parquet is imported in the functions that use it: a preview, which reads and writes
# no parquet, does not pay for it (~7 ms) before its first model request.
__all__ = [
    "RunDirectoryInfo",
    "data_files",
    "inspect_run",
    "is_run_directory",
    "read_run_metadata",
]


def is_run_directory(out: str | os.PathLike[str]) -> bool:
    """Whether ``out`` (a path or a URI) holds a gridloom run (it has a ``metadata.json``).

    Raises:
        StorageError: a URI that cannot be opened or read.
    """
    if is_remote_uri(out):
        return location_of(out).exists("metadata.json")
    return (local_path(out) / "metadata.json").is_file()


def read_run_metadata(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata.json`` of the run in ``out`` (a path or a URI), as read.

    Raises:
        StorageError: ``out`` holds no run, or its ``metadata.json`` cannot be read or a field
            has the wrong shape (:func:`~gridloom.storage._metadata.check_document`).
    """
    if is_remote_uri(out):
        location = location_of(out)
        doc = load_document(location)
        if doc is None:
            raise StorageError(f"{location.display} holds no gridloom run (no metadata.json)")
        return check_document(doc, f"cannot read {location.where('metadata.json')}")
    if not is_run_directory(out):
        raise StorageError(f"{out} holds no gridloom run (no metadata.json)")
    path = local_path(out) / "metadata.json"
    return check_document(load_json(path), f"cannot read {path}")


def committed_entries(
    location: Location, metadata: dict[str, Any], problems: list[str] | None = None
) -> tuple[dict[str, Any], dict[int, RowGroupEntry]]:
    """The ``row_groups`` object of ``metadata`` as read, plus the commit entries of the row
    groups it does not list (committed by shards since it was written), by index.

    Args:
        problems: when given, a damaged commit entry is reported there instead of raised.

    Raises:
        StorageError: ``row_groups`` is not an object, or a commit entry is damaged.
    """
    raw_groups = metadata.get("row_groups") or {}
    if not isinstance(raw_groups, dict):
        raise StorageError(
            f"cannot read {location.where('metadata.json')}: row_groups is not an object"
        )
    listed = {int(key) for key in raw_groups if str(key).isascii() and str(key).isdigit()}
    commits: dict[int, RowGroupEntry] = {}
    for index in committed_indices(location):
        if index in listed:
            continue
        try:
            entry = read_commit(location, index)
        except StorageError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            continue
        if entry is not None:
            commits[index] = entry
    return raw_groups, commits


def data_files(out: Path) -> dict[int, Path]:
    """The data files on disk in the run directory ``out``, by row group index (the row
    groups kept, whether ``metadata.json`` lists them yet or not)."""
    return _part_files(out / "data")


def _data_names(location: Location) -> dict[int, Path | str]:
    """:func:`data_files` at any location (a remote one's files named by URI)."""
    if location.local is not None:
        return dict(data_files(location.local))
    found: dict[int, Path | str] = {}
    for name in location.list_names("data"):
        stem = name.removeprefix("part-").removesuffix(".parquet")
        if (
            name.startswith("part-")
            and name.endswith(".parquet")
            and stem.isascii()
            and stem.isdigit()
        ):
            found[int(stem)] = location.where(f"data/{name}")
    return dict(sorted(found.items()))


@frozen(kw_only=True)
class RunDirectoryInfo:
    """What ``gridloom inspect`` reports about a run directory.

    Attributes:
        metadata: ``metadata.json`` as read.
        rows_on_disk: kept rows over the data files on disk, from their parquet footers.
        data_files: row group index to its data file, for the files on disk (a path, or for a
            run at a URI the file's URI).
        unlisted: indices of data files on disk that neither ``metadata.json`` nor a commit
            entry lists (written just before a crash).
        problems: what is wrong with the directory, one sentence each (empty when nothing).
        schema: the columns of the data files: ``name``, Arrow ``type`` (as text) and
            ``nullable`` (from ``metadata.json`` when no data file exists).
        drop_reasons: dropped rows per column and error type.
        drop_examples: one example per drop reason (row id and message).
        sample: the first rows of the dataset, as an Arrow table.
        verification: with ``verify``, what the check of every committed file found (the
            row groups ``metadata.json`` and the commit entries list); else ``None``.
    """

    metadata: dict[str, Any]
    rows_on_disk: int
    data_files: dict[int, Path | str]
    unlisted: tuple[int, ...]
    problems: tuple[str, ...]
    schema: list[dict[str, Any]]
    drop_reasons: dict[str, dict[str, int]]
    drop_examples: tuple[DropExample, ...]
    sample: pa.Table
    verification: Verification | None = None


def _part_files(directory: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    if not directory.is_dir():
        return found
    for entry in directory.glob("part-*.parquet"):
        stem = entry.name.removeprefix("part-").removesuffix(".parquet")
        if stem.isascii() and stem.isdigit() and entry.is_file():
            found[int(stem)] = entry
    return dict(sorted(found.items()))


def _footer(location: Location, rel: str) -> pq.FileMetaData:
    """The parquet footer of ``rel`` (pyarrow's errors as raised, for the caller to report)."""
    import pyarrow.parquet as pq

    where, filesystem = location.source(rel)
    return pq.read_metadata(where, filesystem=filesystem)


def read_file_schema(location: Location, rel: str) -> pa.Schema:
    """The Arrow schema of the parquet file ``rel`` (pyarrow's errors as raised)."""
    import pyarrow.parquet as pq

    where, filesystem = location.source(rel)
    return pq.read_schema(where, filesystem=filesystem)


def _schema_fields(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def _schema_from_metadata(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema recorded in ``metadata.json`` (column name to type text)."""
    recorded = metadata.get("schema")
    if not isinstance(recorded, dict):
        return []
    return [{"name": str(n), "type": str(t), "nullable": True} for n, t in recorded.items()]


def inspect_run(
    out: str | os.PathLike[str], *, sample_rows: int = 5, verify: bool = False
) -> RunDirectoryInfo:
    """Read what a run directory holds, without loading the dataset.

    Args:
        out: the run directory: a path, or a URI (``s3://...``).
        sample_rows: how many rows to sample (0 for none).
        verify: also check every committed file against the SHA-256 recorded when it was
            committed (:attr:`RunDirectoryInfo.verification`): this reads the whole dataset
            (a run at a URI is downloaded one file at a time).

    Raises:
        StorageError: ``out`` holds no run, or its ``metadata.json`` cannot be read; with
            ``verify``, a remote filesystem cannot be read.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    location = location_of(out)
    metadata = read_run_metadata(out)
    problems: list[str] = []
    raw_groups, commits = committed_entries(location, metadata, problems)
    listed: dict[int, RowGroupEntry] = dict(commits)
    for key, raw in raw_groups.items():
        try:
            listed[int(key)] = RowGroupEntry.from_json(int(key), raw)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            problems.append(f"metadata.json entry for row group {key!r} is damaged ({exc!r})")
    on_disk = _data_names(location)
    for index in sorted(set(listed) - set(on_disk)):
        problems.append(f"metadata.json lists {RowGroupEntry.data_file(index)}, which is missing")
    unlisted = tuple(sorted(set(on_disk) - set(listed)))
    for index in unlisted:
        problems.append(
            f"{RowGroupEntry.data_file(index)} is not listed in metadata.json (written just"
            " before the run stopped; resuming adopts it)"
        )

    rows_on_disk = 0
    first_with_rows: str | None = None
    for index in on_disk:
        rel = RowGroupEntry.data_file(index)
        try:
            footer = _footer(location, rel)
        except (OSError, ValueError, pa.ArrowException) as exc:
            problems.append(f"{rel} is unreadable ({exc})")
            continue
        rows_on_disk += footer.num_rows
        if first_with_rows is None and footer.num_rows and footer.num_row_groups:
            first_with_rows = rel
        entry = listed.get(index)
        if entry is not None and entry.rows != footer.num_rows:
            problems.append(f"{rel} holds {footer.num_rows} rows, metadata.json says {entry.rows}")
    first = next(iter(on_disk), None)
    try:
        schema = (
            None
            if first is None
            else read_file_schema(location, RowGroupEntry.data_file(first)).remove_metadata()
        )
    except (OSError, ValueError, pa.ArrowException):  # reported above
        schema = None
    fields = _schema_from_metadata(metadata) if schema is None else _schema_fields(schema)

    sample = pa.table({}) if schema is None else schema.empty_table()
    if sample_rows > 0 and first_with_rows is not None:
        where, filesystem = location.source(first_with_rows)
        try:
            batches = pq.ParquetFile(where, filesystem=filesystem).iter_batches(
                batch_size=sample_rows, row_groups=[0]
            )
            sample = pa.Table.from_batches([next(batches)]).replace_schema_metadata(None)
        except (OSError, StopIteration, pa.ArrowException) as exc:
            problems.append(f"cannot read a sample from {first_with_rows}: {exc}")

    tally = DropTally()
    for index, entry in sorted(listed.items()):
        if not entry.has_drops:
            continue
        rel = RowGroupEntry.dropped_file(index)
        where, filesystem = location.source(rel)
        try:
            # Its size first: a file grown or shrunk since it was committed is not read.
            if (problem := size_problem(rel, location.size(rel), entry.dropped_size)) is not None:
                problems.append(problem)
                continue
            drops = pq.read_table(
                where, columns=["row_id", "column", "error_type", "message"], filesystem=filesystem
            )
            drops.validate(full=True)  # damaged text (not UTF-8) is found here, not in the tally
        except (OSError, ValueError, pa.ArrowException) as exc:
            problems.append(f"{rel} is unreadable ({exc})")
            continue
        tally.add_table(drops)
    reasons = tally.by_column()
    drop_reasons = {
        column: {error: example.rows for error, example in errors.items()}
        for column, errors in reasons.items()
    }
    drop_examples = tuple(example for errors in reasons.values() for example in errors.values())

    verification = verify_groups(location, listed) if verify else None
    return RunDirectoryInfo(
        metadata=metadata,
        rows_on_disk=rows_on_disk,
        data_files=on_disk,
        unlisted=unlisted,
        problems=tuple(problems),
        schema=fields,
        drop_reasons=drop_reasons,
        drop_examples=drop_examples,
        sample=sample,
        verification=verification,
    )
