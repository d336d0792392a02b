"""The commit entries of a run written by several processes (blocking IO).

A process that writes a row group writes its dropped-records part, its data part, then
``_commits/part-NNNNN.json``: the group's ``metadata.json`` entry plus ``"index"`` (the same
JSON a data part carries in its footer). The commit entry is written last and atomically, so
a part is part of the run exactly when its commit entry exists; a part without one is the
leftover of an interrupted write, never read, and overwritten when the group is generated
again. A run's row groups are those ``metadata.json`` lists plus those ``_commits/`` holds.

A commit entry that cannot be read (not JSON, not a valid entry, another index, larger than
:data:`COMMIT_LIMIT`) is never guessed at: it raises :class:`StorageError` naming the file,
and the message says to delete it (its row group is then generated again).
"""

from __future__ import annotations

import json
import re
from typing import Any

from gridloom.errors import StorageError

from ._location import Location
from ._metadata import JSON_LIMIT, RowGroupEntry, parse_json

__all__ = [
    "COMMITS_DIR",
    "COMMIT_LIMIT",
    "METADATA_LIMIT",
    "commit_bytes",
    "commit_file",
    "committed_indices",
    "listed_entries",
    "load_document",
    "read_commit",
    "read_commits",
]

#: Directory of the commit entries, relative to the run.
COMMITS_DIR = "_commits"
#: Largest commit entry read (one row group's counts: a few KiB for hundreds of columns).
COMMIT_LIMIT = 1 << 20
#: Largest ``metadata.json`` read through a :class:`Location`.
METADATA_LIMIT = JSON_LIMIT

_COMMIT_RE = re.compile(r"part-([0-9]{5,})\.json")
_BAD_ENTRY = (KeyError, TypeError, ValueError, OverflowError)


def commit_file(index: int) -> str:
    """Path of row group ``index``'s commit entry, relative to the run."""
    return f"{COMMITS_DIR}/part-{index:05d}.json"


def commit_bytes(entry: RowGroupEntry) -> bytes:
    """The commit entry of ``entry``."""
    return json.dumps({"index": entry.index, **entry.to_json()}).encode("utf-8")


def committed_indices(location: Location) -> list[int]:
    """Indices of the commit entries present, ascending."""
    found = []
    for name in location.list_names(COMMITS_DIR):
        match = _COMMIT_RE.fullmatch(name)
        if match and commit_file(int(match.group(1))).endswith(name):
            found.append(int(match.group(1)))
    return sorted(found)


def read_commit(location: Location, index: int) -> RowGroupEntry | None:
    """Row group ``index``'s commit entry, or ``None`` when there is none.

    Raises:
        StorageError: the entry is damaged or too large (see the module docstring).
    """
    rel = commit_file(index)
    raw = location.read_bytes(rel, limit=COMMIT_LIMIT)
    if raw is None:
        return None
    try:
        info = parse_json(raw)
        if not isinstance(info, dict) or type(info.get("index")) is not int:
            raise ValueError("no row group index")
        if info["index"] != index:
            raise ValueError(f"it holds row group {info['index']}, its name says {index}")
        return RowGroupEntry.from_json(index, info)
    except _BAD_ENTRY as exc:
        raise StorageError(
            f"commit entry {location.where(rel)} is damaged ({exc}); delete it and its row"
            " group is generated again"
        ) from None


def read_commits(
    location: Location, skip: frozenset[int] = frozenset()
) -> dict[int, RowGroupEntry]:
    """The commit entries present, by index, except those in ``skip``.

    Raises:
        StorageError: an entry is damaged or too large.
    """
    found: dict[int, RowGroupEntry] = {}
    for index in committed_indices(location):
        if index in skip:
            continue
        entry = read_commit(location, index)
        if entry is not None:  # removed since it was listed
            found[index] = entry
    return found


def listed_entries(where: str, raw_groups: Any) -> dict[int, RowGroupEntry]:
    """The ``row_groups`` of a ``metadata.json`` read from ``where``, by index.

    Raises:
        StorageError: ``row_groups`` or one of its entries is damaged.
    """
    if raw_groups is None:
        return {}
    if not isinstance(raw_groups, dict):
        raise StorageError(f"{where}: metadata.json row_groups is not an object")
    listed: dict[int, RowGroupEntry] = {}
    for key, raw in raw_groups.items():
        try:
            listed[int(key)] = RowGroupEntry.from_json(int(key), raw)
        except _BAD_ENTRY as exc:
            raise StorageError(
                f"{where}: metadata.json entry for row group {key!r} is damaged ({exc!r})"
            ) from None
    return listed


def load_document(location: Location) -> dict[str, Any] | None:
    """The run's ``metadata.json`` (``None`` when there is none), size-bounded.

    Raises:
        StorageError: it cannot be read, or is not a JSON object.
    """
    raw = location.read_bytes("metadata.json", limit=METADATA_LIMIT)
    if raw is None:
        return None
    try:
        doc = parse_json(raw)
    except ValueError as exc:
        raise StorageError(f"cannot read {location.where('metadata.json')}: {exc}") from None
    if not isinstance(doc, dict):
        raise StorageError(f"cannot read {location.where('metadata.json')}: expected a JSON object")
    return doc
