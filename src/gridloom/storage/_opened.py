"""A run directory opened for reading (:func:`open_run`): the result of a finished run, or of
as much of one as was written before it stopped. The directory is a local path or a URI
(:func:`~gridloom.storage.location_of`); its row groups are those ``metadata.json`` lists plus
those committed by shards (``_commits/``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gridloom.errors import StorageError

from ._digest import size_problem
from ._inspect import committed_entries, read_file_schema, read_run_metadata
from ._location import Location, location_of
from ._metadata import RowGroupEntry, Tally
from ._parts import PartReader
from ._result import RunResult
from ._types import RowGroupData

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["open_run"]

#: The sections of a run's summary that :attr:`RunResult.extras` carries.
_EXTRAS = ("models", "invocation", "shortfall", "stop")


class _RunDirectory(PartReader):
    """The row groups of a run, read on demand (each part checked against its digest:
    :mod:`gridloom.storage._parts`); nothing is written."""

    def __init__(self, location: Location, schema: pa.Schema, tally: Tally) -> None:
        self._location = location
        self._schema = schema
        self._tally = tally

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    async def write(self, data: RowGroupData) -> None:
        raise StorageError(
            f"{self._location.display} was opened for reading: it takes no row groups"
        )

    async def finish(self, *, status: str, summary: Mapping[str, Any]) -> None:
        raise StorageError(
            f"{self._location.display} was opened for reading: it cannot be finished"
        )

    def _parts_location(self) -> Location:
        return self._location


def _schema(location: Location, tally: Tally, recorded: Any) -> pa.Schema:
    """The data files' schema; without one on disk, ``metadata.json``'s (types it cannot
    name read as null). A part whose size is not the one recorded is not read (its footer is
    not what was committed): it is refused, named, when the data is read."""
    import pyarrow as pa

    for index, entry in sorted(tally.groups.items()):
        if entry.rows:
            rel = RowGroupEntry.data_file(index)
            try:
                if size_problem(rel, location.size(rel), entry.size) is not None:
                    continue
                return read_file_schema(location, rel).remove_metadata()
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise StorageError(f"cannot read {location.where(rel)}: {exc}") from exc
    fields = []
    for name, text in (recorded if isinstance(recorded, dict) else {}).items():
        try:
            kind = pa.type_for_alias(str(text))
        except (ValueError, KeyError):
            kind = pa.null()
        fields.append(pa.field(str(name), kind))
    return pa.schema(fields)


def open_run(output_dir: str | os.PathLike[str]) -> RunResult:
    """The :class:`RunResult` of the run in ``output_dir`` (a path or a URI): a finished run's,
    or, for one that stopped or is still going, that of the row groups ``metadata.json`` lists
    and shards committed so far.

    Counts, status and summary come from ``metadata.json``; the data is read from the
    parquet files on first access (:attr:`RunResult.table`). ``wall_time`` is the last
    invocation's; ``trace`` is ``None`` (read ``trace.parquet`` for it); for a run at a URI,
    :attr:`RunResult.output_dir` is ``None``.

    Raises:
        StorageError: ``output_dir`` holds no run, or its ``metadata.json`` is damaged.
    """
    location = location_of(output_dir)
    out = location.display
    meta = read_run_metadata(output_dir)
    summary = meta.get("summary") if isinstance(meta.get("summary"), dict) else {}
    assert isinstance(summary, dict)
    tally = Tally()
    try:
        num_records = int(meta["num_records"])
        seed = int(meta["seed"])
        status = str(meta["status"])
        groups, commits = committed_entries(location, meta)
        entries = {int(k): RowGroupEntry.from_json(int(k), raw) for k, raw in groups.items()}
        for _, entry in sorted({**commits, **entries}.items()):
            tally.add(entry)
        invocation = summary.get("invocation")
        wall = float(invocation.get("wall_time", 0.0)) if isinstance(invocation, dict) else 0.0
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise StorageError(f"cannot open {out}: metadata.json is damaged ({exc!r})") from exc
    reason = summary.get("stop_reason")
    return RunResult.from_store(
        _RunDirectory(location, _schema(location, tally, meta.get("schema")), tally),
        num_records=num_records,
        seed=seed,
        wall_time=wall,
        status=status,
        output_dir=location.local,
        extras={key: summary[key] for key in _EXTRAS if key in summary},
        stop_reason=reason if isinstance(reason, str) else None,
    )
