"""Book-keeping shared by the stores, and the JSON shape of ``metadata.json``.

The layout of ``metadata.json`` is described in :mod:`gridloom.storage._checkpoint`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from gridloom._version import __version__
from gridloom.errors import StorageError

from .._attrs import define, frozen
from ._digest import check_digest_field
from ._types import ColumnCounts, CorrectionCounts, RowGroupData

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "FORMAT_VERSION",
    "JSON_LIMIT",
    "STATUSES",
    "RowGroupEntry",
    "Tally",
    "check_document",
    "counts_from_json",
    "counts_to_json",
    "document_bytes",
    "gridloom_version",
    "layout_problem",
    "load_json",
    "now_iso",
    "parse_json",
    "run_document",
    "schema_to_json",
    "whole",
]

FORMAT_VERSION = 1
#: Largest ``metadata.json`` read (256 MiB): a run of 100,000 row groups with a few dozen
#: columns writes well under that; a larger file was not written by gridloom, and is refused
#: by its size, unread, with an error naming it.
JSON_LIMIT = 256 << 20
STATUSES = frozenset({"running", "complete", "incomplete", "interrupted", "stopped", "failed"})


def layout_problem(
    index: int, first_row_id: int, num_rows: int, *, num_records: int, row_group_size: int
) -> str | None:
    """Why a row group does not fit the run's layout, or ``None`` if it does.

    Row group ``i`` starts at row ``i * row_group_size``. The *planned* groups (those below
    ``ceil(num_records / row_group_size)``) cover exactly their share of ``num_records``; the
    *top-up* groups after them (``run.fill_to_target`` replacing dropped rows) cover 1 to
    ``row_group_size`` rows.
    """
    first = index * row_group_size
    planned = -(-num_records // row_group_size)
    if index < planned:
        rows = min(row_group_size, num_records - first)
        if (first_row_id, num_rows) == (first, rows):
            return None
        return f"row group {index} should cover rows {first}..{first + rows - 1}"
    if first_row_id == first and 1 <= num_rows <= row_group_size:
        return None
    return (
        f"top-up row group {index} should start at row {first} and cover 1 to {row_group_size} rows"
    )


def now_iso() -> str:
    """Current UTC time in ISO 8601, e.g. ``2025-01-31T12:00:00.123+00:00``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def gridloom_version() -> str:
    """The gridloom version this process runs (:mod:`gridloom._version`, the one place it is
    written, so no distribution metadata is parsed at a run's start or end)."""
    return __version__


def schema_to_json(schema: pa.Schema) -> dict[str, str]:
    """Column name to Arrow type string, in schema order."""
    return {field.name: str(field.type) for field in schema}


def counts_to_json(counts: Mapping[str, ColumnCounts]) -> dict[str, dict[str, Any]]:
    """Per column counts as plain dicts."""
    return {name: c.as_dict() for name, c in counts.items()}


def counts_from_json(raw: Any) -> dict[str, ColumnCounts]:
    """Inverse of :func:`counts_to_json`; raises ``KeyError``/``TypeError`` on bad input."""
    if not isinstance(raw, dict):
        raise TypeError("counts must be an object")
    return {
        str(name): ColumnCounts(
            done=whole(c, "done"),
            failed=whole(c, "failed"),
            dropped=whole(c, "dropped"),
            skipped=whole(c, "skipped", 0),  # absent in runs written before skip_when
            corrections=(  # only for model columns with checks (and absent in older runs)
                CorrectionCounts.from_dict(c["corrections"]) if "corrections" in c else None
            ),
            truncated=whole(c, "truncated", 0),  # absent when 0, and in older runs
            truncated_dropped=whole(c, "truncated_dropped", 0),
            truncated_retries=whole(c, "truncated_retries", 0),
        )
        for name, c in raw.items()
    }


def whole(raw: Mapping[str, Any], key: str, default: int | None = None) -> int:
    """``raw[key]`` as a count: a JSON integer >= 0 (not a float, a bool or a string), or
    ``default`` when ``key`` is absent and a default is given.

    Raises:
        KeyError: ``key`` is missing and there is no default.
        ValueError: the value is not a whole number >= 0.
    """
    value = raw[key] if default is None or key in raw else default
    if type(value) is not int or value < 0:
        raise ValueError(f"{key} must be a whole number >= 0, got {value!r:.40}")
    return value


def parse_json(raw: bytes) -> Any:
    """``raw`` (UTF-8 JSON) parsed; JSON nested too deeply to parse is refused like any other
    malformed JSON.

    Raises:
        ValueError: ``raw`` is not UTF-8 JSON (``UnicodeDecodeError`` and
            ``json.JSONDecodeError`` are ``ValueError``s).
    """
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


#: The fields of ``metadata.json`` and what each holds, as readers use them: a whole number
#: (``int``, not a bool), text, text or null, an object.
_WHOLE = ("format_version", "num_records", "row_group_size", "rows_written", "rows_dropped")
_TEXT = ("config_hash", "status", "gridloom_version", "created_at", "updated_at")
_TEXT_OR_NULL = ("base_dir", "seed_fingerprint")
_OBJECTS = ("row_groups", "counts", "schema", "summary")


def _shape_problem(doc: Mapping[str, Any]) -> str | None:
    """What is wrong with the shape of a ``metadata.json`` document, naming the field."""
    for key in _WHOLE:
        if key in doc:
            value = doc[key]
            if type(value) is not int or value < (1 if key == "row_group_size" else 0):
                return f"{key} must be a whole number, got {value!r:.40}"
    if "seed" in doc and type(doc["seed"]) is not int:
        return f"seed must be an integer, got {doc['seed']!r:.40}"
    for key in _TEXT:
        if key in doc and not isinstance(doc[key], str):
            return f"{key} must be text, got {doc[key]!r:.40}"
    for key in _TEXT_OR_NULL:
        if doc.get(key) is not None and not isinstance(doc[key], str):
            return f"{key} must be text or null, got {doc[key]!r:.40}"
    for key in _OBJECTS:
        if key in doc and not isinstance(doc[key], dict):
            return f"{key} must be an object, got {doc[key]!r:.40}"
    for name, text in doc.get("schema", {}).items():
        if not isinstance(text, str):
            return f"schema.{name} must be an Arrow type's name, got {text!r:.40}"
    for name, raw in doc.get("counts", {}).items():
        try:
            counts_from_json({name: raw})
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            return f"counts.{name} is not a column's counts ({exc!r:.80})"
    return _code_shape_problem(doc)


def _code_shape_problem(doc: Mapping[str, Any]) -> str | None:
    """What is wrong with ``code_fingerprint`` (an object of text, or null) and
    ``code_changes`` (a list of objects), both absent in runs written before them
    (:mod:`gridloom.storage._code`)."""
    recorded = doc.get("code_fingerprint")
    if recorded is not None:
        if not isinstance(recorded, dict):
            return f"code_fingerprint must be an object or null, got {recorded!r:.40}"
        for name, digest in recorded.items():
            if not isinstance(digest, str):
                return f"code_fingerprint.{name} must be text, got {digest!r:.40}"
    if "code_changes" in doc:
        changes = doc["code_changes"]
        if not isinstance(changes, list):
            return f"code_changes must be a list, got {changes!r:.40}"
        for i, change in enumerate(changes):
            if not isinstance(change, dict):
                return f"code_changes[{i}] must be an object, got {change!r:.40}"
    return None


def check_document(doc: dict[str, Any], failing: str) -> dict[str, Any]:
    """``doc``, a run's ``metadata.json``, after checking the shape of each field a reader
    uses (present fields only: a reader needing one says when it is missing). The entries
    of ``row_groups`` are checked where they are read (:meth:`RowGroupEntry.from_json`;
    ``gridloom inspect`` reports a damaged one).

    Args:
        failing: what the error begins with, naming the file or the run (``cannot read
            out/metadata.json``, ``cannot resume out``).

    Raises:
        StorageError: ``<failing>: metadata.json is damaged: <field> ...``.
    """
    problem = _shape_problem(doc)
    if problem is not None:
        raise StorageError(f"{failing}: metadata.json is damaged: {problem}")
    return doc


def is_run_document(doc: dict[str, Any]) -> bool:
    """Whether ``doc``, a ``metadata.json`` read, is a gridloom run's: every one gridloom
    writes has an integer ``format_version`` and a string ``config_hash`` (another tool's
    ``metadata.json`` is not taken for a run, nor replaced or removed with one)."""
    version = doc.get("format_version")
    return (
        isinstance(version, int)
        and not isinstance(version, bool)
        and isinstance(doc.get("config_hash"), str)
    )


def load_json(path: Path) -> dict[str, Any]:
    """Read a JSON object from ``path``.

    Raises:
        StorageError: the file cannot be read or is not a JSON object.
    """
    try:
        with open(path, "rb") as f:  # refused by its size first: nothing of it is read
            too_large = os.fstat(f.fileno()).st_size > JSON_LIMIT
            raw = b"" if too_large else f.read(JSON_LIMIT + 1)
        if too_large or len(raw) > JSON_LIMIT:
            raise ValueError(f"larger than {JSON_LIMIT:,} bytes")
        doc = parse_json(raw)
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise StorageError(f"cannot read {path}: expected a JSON object")
    return doc


@frozen(kw_only=True)
class RowGroupEntry:
    """What the stores remember about a written row group (no data).

    Attributes:
        index: row group index.
        first_row_id: global id of the group's first row.
        num_rows: rows the group covers (kept + dropped).
        rows: rows kept and written.
        dropped: rows dropped.
        has_drops: whether a dropped-records file was written.
        counts: per column counts of the group.
        sha256: hex SHA-256 of the data file as committed (:mod:`gridloom.storage._digest`);
            ``None`` for entries written before digests, or not yet known.
        dropped_sha256: the same for the dropped-records file (``None`` without one).
        size: the data file's size in bytes as committed: a read refuses a file of another
            size before reading it (:func:`gridloom.storage._digest.size_problem`); ``None``
            for entries written before sizes (read up to
            :data:`~gridloom.storage._digest.PART_LIMIT` bytes).
        dropped_size: the same for the dropped-records file (``None`` without one).
    """

    index: int
    first_row_id: int
    num_rows: int
    rows: int
    dropped: int
    has_drops: bool
    counts: dict[str, ColumnCounts]
    sha256: str | None = None
    dropped_sha256: str | None = None
    size: int | None = None
    dropped_size: int | None = None

    @classmethod
    def of(cls, data: RowGroupData) -> RowGroupEntry:
        """Summarise a row group."""
        return cls(
            index=data.index,
            first_row_id=data.first_row_id,
            num_rows=data.num_rows,
            rows=len(data.row_ids),
            dropped=data.num_rows - len(data.row_ids),
            has_drops=bool(data.drops),
            counts=dict(data.counts),
        )

    @staticmethod
    def data_file(index: int) -> str:
        """Path of the group's data file, relative to the output directory."""
        return f"data/part-{index:05d}.parquet"

    @staticmethod
    def dropped_file(index: int) -> str:
        """Path of the group's dropped-records file, relative to the output directory."""
        return f"dropped/part-{index:05d}.parquet"

    def to_json(self) -> dict[str, Any]:
        """The ``row_groups`` entry of ``metadata.json``."""
        return {
            "rows": self.rows,
            "dropped": self.dropped,
            "file": self.data_file(self.index),
            "dropped_file": self.dropped_file(self.index) if self.has_drops else None,
            "first_row_id": self.first_row_id,
            "num_rows": self.num_rows,
            "counts": counts_to_json(self.counts),
            **({"sha256": self.sha256} if self.sha256 is not None else {}),
            **({"dropped_sha256": self.dropped_sha256} if self.dropped_sha256 is not None else {}),
            **({"size": self.size} if self.size is not None else {}),
            **({"dropped_size": self.dropped_size} if self.dropped_size is not None else {}),
        }

    @classmethod
    def from_json(cls, index: int, raw: Any) -> RowGroupEntry:
        """Inverse of :meth:`to_json`; raises ``KeyError``/``TypeError``/``ValueError``."""
        if not isinstance(raw, dict):
            raise TypeError("row group entry must be an object")
        rows, dropped, num_rows = (whole(raw, key) for key in ("rows", "dropped", "num_rows"))
        if rows + dropped != num_rows:
            raise ValueError(f"rows ({rows}) + dropped ({dropped}) != num_rows ({num_rows})")
        return cls(
            index=index,
            first_row_id=whole(raw, "first_row_id"),
            num_rows=num_rows,
            rows=rows,
            dropped=dropped,
            has_drops=raw.get("dropped_file") is not None,
            counts=counts_from_json(raw["counts"]),
            sha256=check_digest_field(raw, "sha256"),  # absent in runs written before digests
            dropped_sha256=check_digest_field(raw, "dropped_sha256"),
            # absent in runs written before sizes were recorded
            size=None if raw.get("size") is None else whole(raw, "size"),
            dropped_size=None if raw.get("dropped_size") is None else whole(raw, "dropped_size"),
        )


@define
class Tally:
    """Running totals over the row groups a store holds."""

    groups: dict[int, RowGroupEntry] = attrs.field(factory=dict)
    counts: dict[str, ColumnCounts] = attrs.field(factory=dict)
    rows_written: int = 0
    rows_dropped: int = 0

    def add(self, entry: RowGroupEntry) -> None:
        """Count a row group in."""
        self.groups[entry.index] = entry
        for name, c in entry.counts.items():
            self.counts[name] = self.counts.get(name, ColumnCounts()) + c
        self.rows_written += entry.rows
        self.rows_dropped += entry.dropped

    def completed(self) -> frozenset[int]:
        """Indices of the row groups counted in."""
        return frozenset(self.groups)


class TallyView:
    """What every store reports from its :class:`Tally` (a store sets ``self._tally``)."""

    _tally: Tally

    @property
    def counts(self) -> Mapping[str, ColumnCounts]:
        """Per column counts over every row group held."""
        return dict(self._tally.counts)

    @property
    def rows_written(self) -> int:
        """Kept rows over every row group held."""
        return self._tally.rows_written

    @property
    def rows_dropped(self) -> int:
        """Dropped rows over every row group held."""
        return self._tally.rows_dropped

    def completed(self) -> frozenset[int]:
        """Indices of the row groups held (for a resumed run, those adopted from disk too)."""
        return self._tally.completed()

    def rows_covered(self) -> dict[int, int]:
        """Rows each held row group covers (kept and dropped), by index."""
        return {index: entry.num_rows for index, entry in self._tally.groups.items()}

    def rows_kept(self) -> dict[int, int]:
        """Rows each held row group kept (written), by index."""
        return {index: entry.rows for index, entry in self._tally.groups.items()}


def run_document(
    *,
    config_hash: str,
    num_records: int,
    row_group_size: int,
    seed: int,
    status: str,
    created_at: str,
    base_dir: str | None,
    seed_fingerprint: str | None,
    schema: pa.Schema,
    tally: Tally,
    summary: dict[str, Any],
    code_fingerprint: Mapping[str, str] | None = None,
    code_changes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``metadata.json`` document of a run (layout in :mod:`gridloom.storage._checkpoint`),
    stamped with the current time as ``updated_at``."""
    groups = tally.groups
    return {
        "format_version": FORMAT_VERSION,
        "gridloom_version": gridloom_version(),
        "config_hash": config_hash,
        "num_records": num_records,
        "row_group_size": row_group_size,
        "seed": seed,
        "status": status,
        "created_at": created_at,
        "base_dir": base_dir,
        "seed_fingerprint": seed_fingerprint,
        "code_fingerprint": None if code_fingerprint is None else dict(code_fingerprint),
        "code_changes": list(code_changes or ()),
        "updated_at": now_iso(),
        "schema": schema_to_json(schema),
        "rows_written": tally.rows_written,
        "rows_dropped": tally.rows_dropped,
        "counts": counts_to_json(tally.counts),
        "row_groups": {str(i): groups[i].to_json() for i in sorted(groups)},
        "summary": summary,
    }


def document_bytes(doc: Mapping[str, Any]) -> bytes:
    """``metadata.json``'s content for ``doc`` (no NaN, a final newline): one key per line,
    and one line per entry of an object value (a row group, a column's counts, a section of
    the summary). Every line is encoded by json's C encoder (``indent`` would use the pure
    Python one: a second per rewrite for a run of 20,000 row groups, rewritten after each)."""

    def dump(value: Any) -> str:
        return json.dumps(value, allow_nan=False)

    def member(key: str, value: Any) -> str:
        if not isinstance(value, dict) or not value:
            return f"  {dump(key)}: {dump(value)}"
        inner = ",\n".join(f"    {dump(str(k))}: {dump(v)}" for k, v in value.items())
        return f"  {dump(key)}: {{\n{inner}\n  }}"

    body = ",\n".join(member(str(k), v) for k, v in doc.items())
    return f"{{\n{body}\n}}\n".encode()
