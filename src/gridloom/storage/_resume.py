"""Work out which row groups of an interrupted run are usable (blocking IO).

Rules, applied to every row group listed in ``metadata.json`` or found as
``data/part-NNNNN.parquet``:

- **Listed and present**: adopted as complete once its files check out: the data file's footer
  reads, holds the listed row count and the run's schema, and its dropped-records file (if
  the group dropped rows) reads with one record per dropped row; and each file's content
  matches the SHA-256 recorded when it was committed (an entry written before digests has
  none: its files are decoded in full instead; see :mod:`gridloom.storage._digest`). A file
  that fails (truncated, emptied, overwritten, a damaged page) is *damaged*: it is moved to
  ``damaged/`` (kept, never deleted), a warning names it and why, and the row group is
  generated again. An entry without digests records those of its checked files from then on.
- **Listed but missing**: the run directory was tampered with; resuming would
  silently lose rows, so :class:`~gridloom.errors.StorageError` is raised.
- **Present but not listed**: the run stopped between the atomic rename of the
  data file and the rewrite of ``metadata.json``. The rename is the commit
  point, so the file is complete: it is adopted, with the exact counts stored in
  its footer (``gridloom.row_group``). A file without that footer entry, with
  another schema, or unreadable was not written by gridloom's atomic writer and
  raises :class:`~gridloom.errors.StorageError` naming it (it is never deleted). Its content
  (it has no recorded digest) is then decoded in full like an old listed entry's: damaged,
  it is set aside and generated again.
- **Covering other rows than the resumed run expects**: only possible for the
  last, short row group of a run resumed with a larger ``num_records``. Its
  files are deleted and the whole group is generated again, so that every
  adopted row group is complete.
- A dropped-records file whose row group is not adopted is a leftover of an
  interrupted write and is deleted; one that an adopted row group needs but is
  missing raises :class:`~gridloom.errors.StorageError`.

Before that, :func:`load_resume_state` checks that ``metadata.json`` exists and
matches the run being resumed (format version, config hash, seed files, row group size,
column schema, and the columns' Python code: :mod:`gridloom.storage._code`) and removes
temp files (``.tmp-*``) left by an interrupted write.
The resumed run keeps the recorded seed; it may ask for more records than the original run
(it grows), never fewer (refused with :class:`~gridloom.errors.StorageError`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from gridloom.errors import StorageError

from .._attrs import frozen
from ._atomic import remove_temp_files
from ._code import Change, CodeFingerprint, check_code
from ._convert import dropped_schema
from ._digest import content_problem, size_problem
from ._metadata import (
    FORMAT_VERSION,
    RowGroupEntry,
    Tally,
    check_document,
    layout_problem,
    load_json,
    now_iso,
    parse_json,
    schema_to_json,
    whole,
)

# pyarrow.parquet is imported in the functions that use it: a preview, which reads and writes
# no parquet, does not pay for it (~7 ms) before its first model request.
if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "RecordedRun",
    "ResumeState",
    "check_resume_document",
    "checked_entry",
    "load_resume_state",
    "resume_tally",
    "set_aside",
    "warn_damaged",
]

logger = logging.getLogger("gridloom.storage")

_BAD_ENTRY = (KeyError, TypeError, ValueError, OverflowError)


def _part_files(directory: Path, name_of: Callable[[int], str]) -> dict[int, Path]:
    """``part-NNNNN.parquet`` files of ``directory`` by index (other names are ignored)."""
    found: dict[int, Path] = {}
    if not directory.is_dir():
        return found
    for entry in directory.iterdir():
        stem = entry.name.removeprefix("part-").removesuffix(".parquet")
        if stem.isascii() and stem.isdigit() and entry.is_file():
            index = int(stem)
            if Path(name_of(index)).name == entry.name:
                found[index] = entry
    return found


def _listed(out: Path, raw_groups: Any) -> dict[int, RowGroupEntry]:
    if raw_groups is None:
        return {}
    if not isinstance(raw_groups, dict):
        raise StorageError(f"cannot resume {out}: metadata.json row_groups is not an object")
    listed: dict[int, RowGroupEntry] = {}
    for key, raw in raw_groups.items():
        try:
            index = int(key)
            listed[index] = RowGroupEntry.from_json(index, raw)
        except _BAD_ENTRY as exc:
            raise StorageError(
                f"cannot resume {out}: metadata.json entry for row group {key!r} is damaged "
                f"({exc!r})"
            ) from exc
    return listed


def _adopt(path: Path, index: int, schema: pa.Schema, key: str) -> RowGroupEntry:
    """Entry of a data file committed but not yet listed in ``metadata.json``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    advice = "; remove it if it is not needed, or start again with --overwrite"
    try:
        footer = pq.read_metadata(path)
        file_schema = pq.read_schema(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StorageError(f"cannot resume: {path} is unreadable ({exc}){advice}") from exc
    raw = (footer.metadata or {}).get(key.encode())
    if raw is None:
        raise StorageError(f"cannot resume: {path} was not written by gridloom{advice}")
    try:
        info = parse_json(raw)
        entry = RowGroupEntry.from_json(index, info)
        if info.get("index") != index:
            raise ValueError(f"footer says row group {info.get('index')!r}")
    except _BAD_ENTRY as exc:
        raise StorageError(f"cannot resume: {path} has a damaged footer ({exc}){advice}") from exc
    if not file_schema.equals(schema) or footer.num_rows != entry.rows:
        raise StorageError(
            f"cannot resume: {path} does not match the run's schema or row count{advice}"
        )
    logger.info("adopting %s, written just before the previous run stopped", path)
    return entry


def _sized(path: Path, name: str, recorded: int | None) -> int | str:
    """The size of the committed file ``path`` (``name`` in messages), or why it is refused
    before anything of it is read (:func:`~gridloom.storage._digest.size_problem`)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"{name} is unreadable ({type(exc).__name__}: {exc})"
    problem = size_problem(name, size, recorded)
    return size if problem is None else problem


def _held_rows(path: Path) -> int | None:
    """The rows the footer of the parquet file ``path`` says it holds (only its tail is read),
    or ``None`` when it does not read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.read_metadata(path).num_rows)
    except (OSError, ValueError, pa.ArrowException):
        return None


def checked_entry(entry: RowGroupEntry, out: Path, schema: pa.Schema) -> RowGroupEntry | str:
    """``entry`` (with the digests and sizes of its files, see
    :mod:`gridloom.storage._digest`) when the files of the row group check out, else why
    they cannot be adopted: each file's size must be the one recorded (checked first, before
    anything is read), the footers must match the entry, and each file's content its
    recorded digest (or, without one, decode). A data part of another size whose footer
    holds other rows is said to hold them (another writer replaced it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = out / RowGroupEntry.data_file(entry.index)
    drops = out / RowGroupEntry.dropped_file(entry.index)
    drops_name = f"dropped/{drops.name}"
    size = _sized(path, path.name, entry.size)
    dropped_size = _sized(drops, drops_name, entry.dropped_size) if entry.has_drops else None
    if isinstance(size, str):  # a part holding other rows was replaced: the footer says so
        held = _held_rows(path)
        if held is not None and held != entry.rows:
            return f"{path.name} holds {held} rows, metadata.json lists {entry.rows}"
        return size
    if isinstance(dropped_size, str):
        return dropped_size
    try:
        footer = pq.read_metadata(path)
        file_schema = footer.schema.to_arrow_schema().remove_metadata()
    except (OSError, ValueError, pa.ArrowException) as exc:
        return f"{path.name} is unreadable ({type(exc).__name__}: {exc})"
    if footer.num_rows != entry.rows:
        return f"{path.name} holds {footer.num_rows} rows, metadata.json lists {entry.rows}"
    if not file_schema.equals(schema):
        return f"{path.name} does not have the run's column schema"
    problem, sha256 = content_problem(path, path.name, entry.sha256, size)
    if problem is not None:
        return problem
    dropped_sha256 = None
    if entry.has_drops:
        name = drops_name
        try:
            meta = pq.read_metadata(drops)
            found = meta.schema.to_arrow_schema().remove_metadata()
        except (OSError, ValueError, pa.ArrowException) as exc:
            return f"{name} is unreadable ({type(exc).__name__}: {exc})"
        if not found.equals(dropped_schema()):
            return f"{name} is not a dropped-records file"
        dropped = meta.num_rows
        if dropped != entry.dropped:
            return f"{name} holds {dropped} records, the row group dropped {entry.dropped}"
        problem, dropped_sha256 = content_problem(drops, name, entry.dropped_sha256, dropped_size)
        if problem is not None:
            return problem
    return attrs.evolve(
        entry, sha256=sha256, dropped_sha256=dropped_sha256, size=size, dropped_size=dropped_size
    )


def set_aside(out: Path, index: int) -> list[Path]:
    """Move a damaged row group's files to ``out/damaged/`` (out of the dataset, kept)."""
    moved: list[Path] = []
    for name in (RowGroupEntry.data_file(index), RowGroupEntry.dropped_file(index)):
        source = out / name
        if not source.is_file():
            continue
        target = out / "damaged" / name.replace("/", "-")
        target.parent.mkdir(exist_ok=True)
        source.replace(target)
        moved.append(target)
    return moved


def warn_damaged(out: Path, index: int, problem: str) -> str:
    """Set row group ``index``'s files aside (:func:`set_aside`), log a warning naming them
    and ``problem``, and return the line :attr:`ResumeState.damaged` holds for it."""
    moved = set_aside(out, index)
    logger.warning(
        "row group %d is damaged: %s; it will be generated again (its files were moved to %s)",
        index,
        problem,
        ", ".join(str(p.relative_to(out)) for p in moved) or "nowhere",
    )
    return f"row group {index}: {problem}"


def misplaced(index: int, entry: RowGroupEntry, *, num_records: int, row_group_size: int) -> bool:
    """Whether a row group on disk no longer fits the resumed run's layout (it is then
    generated again, which the log says)."""
    problem = layout_problem(
        index,
        entry.first_row_id,
        entry.num_rows,
        num_records=num_records,
        row_group_size=row_group_size,
    )
    if problem is None:
        return False
    logger.warning(
        "row group %d covered rows %d..%d, but for the resumed run %s: it will be generated again",
        index,
        entry.first_row_id,
        entry.first_row_id + entry.num_rows - 1,
        problem,
    )
    return True


def resume_tally(
    out: Path,
    raw_groups: Any,
    *,
    schema: pa.Schema,
    num_records: int,
    row_group_size: int,
    row_group_key: str,
) -> tuple[Tally, tuple[str, ...]]:
    """Tally of the usable row groups of the run in ``out`` (see the module docstring), and
    what was found damaged (one line per row group set aside to be generated again).

    Args:
        out: the run directory.
        raw_groups: the ``row_groups`` object of ``metadata.json``.
        schema: declared schema of the data files.
        num_records: rows of the resumed run.
        row_group_size: rows per row group.
        row_group_key: footer metadata key holding a data file's own entry.

    Raises:
        StorageError: a listed file is missing, or an unlisted file is not gridloom's.
    """
    listed = _listed(out, raw_groups)
    data_files = _part_files(out / "data", RowGroupEntry.data_file)
    tally = Tally()
    damaged: list[str] = []
    for index in sorted(set(listed) | set(data_files)):
        path = out / RowGroupEntry.data_file(index)
        dropped_path = out / RowGroupEntry.dropped_file(index)
        entry = listed.get(index)
        if entry is None:
            entry = _adopt(path, index, schema, row_group_key)
        if misplaced(index, entry, num_records=num_records, row_group_size=row_group_size):
            path.unlink(missing_ok=True)
            dropped_path.unlink(missing_ok=True)
            continue
        if index not in data_files:
            raise StorageError(
                f"cannot resume {out}: metadata.json lists {path} but the file is missing; "
                "start again with --overwrite (overwrite=True from Python)"
            )
        if entry.has_drops and not dropped_path.is_file():
            raise StorageError(
                f"cannot resume {out}: row group {index} dropped rows but {dropped_path} "
                "is missing; start again with --overwrite (overwrite=True from Python)"
            )
        checked = checked_entry(entry, out, schema)
        if isinstance(checked, str):
            damaged.append(warn_damaged(out, index, checked))
            continue
        entry = checked
        tally.add(entry)
    for index, path in _part_files(out / "dropped", RowGroupEntry.dropped_file).items():
        if index not in tally.groups:
            logger.info("removing %s, left by an interrupted write", path)
            path.unlink(missing_ok=True)
    return tally, tuple(damaged)


@frozen(kw_only=True)
class ResumeState:
    """What a resumed store starts from.

    Attributes:
        num_records: rows of the resumed run (never fewer than recorded: refused).
        seed: the seed recorded by the original run.
        created_at: creation time of the original run.
        summary: the summary recorded by the last ``finish``.
        tally: the usable row groups.
        damaged: the row groups found damaged, set aside and to be generated again (one
            line each: which and why).
        code_change: the columns whose Python code changed, accepted (see
            :func:`~gridloom.storage._code.check_code`; empty: none).
    """

    num_records: int
    seed: int
    created_at: str
    summary: dict[str, Any]
    tally: Tally
    damaged: tuple[str, ...] = ()
    code_change: Change = attrs.field(factory=dict)


def _schema_change(old: Any, schema: pa.Schema) -> str:
    """One line saying how the recorded schema ``old`` differs from ``schema``, naming the
    columns (the data files already written keep their types, so they cannot be mixed)."""
    new = schema_to_json(schema)
    if not isinstance(old, dict) or list(old) != list(new):
        return f"the column schema changed (was {old}, now {new})"
    changed = [name for name in new if old[name] != new[name]]
    lines = [f"column {name!r} was stored as {old[name]}, now as {new[name]}" for name in changed]
    advice = ""
    if any(old[name] == "string" for name in changed):
        advice = (
            " (a structured column whose schema now derives a native type was stored as JSON"
            " text by an earlier gridloom: finish the run with that version)"
        )
    return (
        "; ".join(lines) + f"{advice}; the row groups written cannot be mixed with new ones, so"
        " start again with --overwrite (overwrite=True from Python)"
    )


@frozen(kw_only=True)
class RecordedRun:
    """What a run's ``metadata.json`` records that a resumed run keeps.

    Attributes:
        seed: the seed of the original run.
        created_at: creation time of the original run.
        summary: the summary recorded by the last ``finish``.
        num_records: rows the run records.
        code_change: the columns whose Python code changed, accepted (empty: none).
    """

    seed: int
    created_at: str
    summary: dict[str, Any]
    num_records: int
    code_change: Change = attrs.field(factory=dict)


def check_resume_document(
    doc: dict[str, Any],
    out: object,
    *,
    schema: pa.Schema,
    config_hash: str,
    num_records: int,
    row_group_size: int,
    seed_fingerprint: str | None = None,
    code: CodeFingerprint | None = None,
) -> RecordedRun:
    """Check that the run whose ``metadata.json`` is ``doc`` (in ``out``, named in messages)
    can be resumed with these settings (see :func:`load_resume_state`; ``code``: the columns'
    Python code now, ``None``: not checked, see :func:`~gridloom.storage._code.check_code`).

    Raises:
        StorageError: the document is damaged, or the run does not match; the message says
            which.
    """
    try:
        version = doc["format_version"]
        old_hash = str(doc["config_hash"])
        old_size = whole(doc, "row_group_size")
        old_records = whole(doc, "num_records")
        seed = int(doc["seed"])
        old_schema = doc["schema"]
        created_at = str(doc.get("created_at") or now_iso())
        summary = doc.get("summary") or {}
    except _BAD_ENTRY as exc:
        raise StorageError(f"cannot resume {out}: metadata.json is damaged ({exc!r})") from exc
    if version != FORMAT_VERSION:
        raise StorageError(
            f"cannot resume {out}: metadata format_version {version!r} is not supported "
            f"(expected {FORMAT_VERSION})"
        )
    if old_hash != config_hash:
        raise StorageError(
            f"cannot resume {out}: the configuration changed (config hash "
            f"{old_hash[:12]} on disk, {config_hash[:12]} now); restore the original "
            "configuration, or start again with --overwrite (overwrite=True from Python)"
        )
    recorded = doc.get("seed_fingerprint")
    if isinstance(recorded, str) and seed_fingerprint is not None and recorded != seed_fingerprint:
        raise StorageError(
            f"cannot resume {out}: the seed dataset's files changed since the run started"
            " (the rows already written came from the files as they were); restore them, or"
            " start again with --overwrite (overwrite=True from Python)"
        )
    if old_size != row_group_size:
        raise StorageError(
            f"cannot resume {out}: row_group_size was {old_size}, now {row_group_size}; "
            "use the original row_group_size"
        )
    if old_schema != schema_to_json(schema):
        raise StorageError(f"cannot resume {out}: {_schema_change(old_schema, schema)}")
    if num_records < old_records:
        raise StorageError(
            f"cannot resume {out}: the run has {old_records:,} rows (metadata.json) and"
            f" {num_records:,} were asked for; a resumed run keeps its rows and can only grow:"
            f" ask for {old_records:,} or more (or leave -n out with `gridloom resume`)"
        )
    return RecordedRun(
        seed=seed,
        created_at=created_at,
        summary=summary if isinstance(summary, dict) else {},
        num_records=old_records,
        code_change=check_code(doc, out, code),  # last: its warning says the resume goes on
    )


def load_resume_state(
    out: Path,
    *,
    schema: pa.Schema,
    config_hash: str,
    num_records: int,
    row_group_size: int,
    row_group_key: str,
    seed_fingerprint: str | None = None,
    code: CodeFingerprint | None = None,
) -> ResumeState:
    """Check that the run in ``out`` can be resumed and work out what is already done.

    Removes temp files and unusable leftovers (see the module docstring).

    Args:
        seed_fingerprint: the seed files' fingerprint now; a run that recorded another
            (its seed files changed since) is refused. Runs that recorded none (written
            before fingerprints, or seeded from memory) are not checked.
        code: the fingerprint of the columns' Python code now; a run that recorded another
            is refused unless ``code`` accepts the change (:mod:`gridloom.storage._code`).
            ``None``, or a run that recorded none, is not checked.

    Raises:
        StorageError: no run there, a damaged ``metadata.json``, or a run that does not
            match (config hash, row group size, schema, seed files, code); the message says
            which.
    """
    meta_path = out / "metadata.json"
    if not meta_path.is_file():
        raise StorageError(
            f"cannot resume {out}: no metadata.json there, so there is no run to "
            "continue; start a new run instead"
        )
    doc = check_document(load_json(meta_path), f"cannot resume {out}")
    head = check_resume_document(
        doc,
        out,
        schema=schema,
        config_hash=config_hash,
        num_records=num_records,
        row_group_size=row_group_size,
        seed_fingerprint=seed_fingerprint,
        code=code,
    )
    for d in (out, out / "data", out / "dropped", out / "_commits"):
        remove_temp_files(d)
    total = num_records
    tally, damaged = resume_tally(
        out,
        doc.get("row_groups"),
        schema=schema,
        num_records=total,
        row_group_size=row_group_size,
        row_group_key=row_group_key,
    )
    return ResumeState(
        num_records=total,
        seed=head.seed,
        created_at=head.created_at,
        summary=head.summary,
        tally=tally,
        damaged=damaged,
        code_change=head.code_change,
    )
