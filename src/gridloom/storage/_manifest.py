"""A checkpoint store on any filesystem, whose row groups are committed by a manifest, so that
several processes can write one run (:class:`ManifestStore`).

The layout is a run directory's (see :mod:`gridloom.storage._checkpoint`): ``config.yaml``,
``metadata.json`` in exactly :class:`~gridloom.storage.ParquetStore`'s format, and
``data/part-NNNNN.parquet`` with the same footer entry, ``dropped/part-NNNNN.parquet``; plus
``_commits/part-NNNNN.json``, one commit entry per row group (:mod:`gridloom.storage._commits`).
A row group is written as its dropped part, its data part, then its commit entry; a part
without a commit entry is never listed or read, and is overwritten when the group is
generated again. The run's row groups are those ``metadata.json`` lists plus those
``_commits/`` holds, so a run directory written by :class:`~gridloom.storage.ParquetStore`
can be continued by shards, and the other way round.

Two roles:

- ``"run"``: the one process that owns ``metadata.json`` and ``config.yaml`` (a one-machine
  run, or the driver of a sharded one). Modes ``new``, ``overwrite`` and ``resume`` refuse and
  check what :class:`~gridloom.storage.ParquetStore` does; ``metadata.json`` is rewritten after
  every row group, by :meth:`ManifestStore.absorb` (which takes in the row groups shards
  committed) and by ``finish``.
- ``"shard"``: a process writing some of the row groups of a run the driver already opened
  (mode ``resume`` only). It checks the same things, writes parts and commit entries, and
  never writes ``metadata.json`` or ``config.yaml``; its ``finish`` records nothing.

Each commit entry records the SHA-256 of its parts, like ``metadata.json``'s entries
(:mod:`gridloom.storage._digest`). On resume a committed row group's files are checked to
exist and to have the size recorded at commit (from the listing; nothing is downloaded); the
driver of a local run also checks their footers and digests as
:class:`~gridloom.storage.ParquetStore` does. A damaged group is set aside in ``damaged/``
(moved there, on an object store too), its commit entry deleted, and generated again; a shard
finding one refuses to start (its driver sets it aside). A remote run's parts are not read on
resume (that would download the dataset; the object store keeps its own checksums): a part
replaced by one of the same size is found by a read, or ``gridloom inspect --verify``. A
commit entry whose data part is missing and that ``metadata.json`` does not list is stale
(left by a rerun that removed the part) and is deleted, so its group is generated again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import trio

from gridloom.errors import StorageError

from ._atomic import remove_temp_files
from ._checkpoint import _write_data_file, _write_dropped_file
from ._code import CodeFingerprint, code_after_resume
from ._commits import (
    COMMITS_DIR,
    commit_bytes,
    commit_file,
    listed_entries,
    load_document,
    read_commits,
)
from ._convert import data_table, dropped_table
from ._digest import digest_of, rendered, size_problem
from ._location import Location
from ._metadata import (
    RowGroupEntry,
    Tally,
    check_document,
    document_bytes,
    now_iso,
)
from ._parts import repair_advice
from ._protocol import check_finish_args
from ._resume import RecordedRun, check_resume_document, checked_entry, misplaced, warn_damaged
from ._rundir import clear_run_at, refuse_existing_run_at, refuse_foreign_files_at
from ._runstore import RunStore
from ._types import RowGroupData

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ManifestStore", "Role"]

logger = logging.getLogger("gridloom.storage")

Mode = Literal["new", "overwrite", "resume"]
Role = Literal["run", "shard"]


class ManifestStore(RunStore):
    """Checkpoint store on a :class:`~gridloom.storage.Location` (see the module docstring).

    Create it with :meth:`open` (blocking: call it from a worker thread in a running event
    loop). ``write``, ``absorb`` and ``finish`` do their IO in worker threads (at most
    :data:`~gridloom.storage._protocol.IO_THREADS` at a time).
    """

    def __init__(
        self,
        *,
        location: Location,
        role: Role,
        schema: pa.Schema,
        config_hash: str,
        num_records: int,
        row_group_size: int,
        seed: int,
        created_at: str,
        tally: Tally,
    ) -> None:
        """Private: use :meth:`open`."""
        super().__init__(
            schema=schema,
            config_hash=config_hash,
            num_records=num_records,
            row_group_size=row_group_size,
            seed=seed,
            created_at=created_at,
            tally=tally,
        )
        self._location = location
        self._role: Role = role
        self._damaged: tuple[str, ...] = ()

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        location: Location,
        *,
        schema: pa.Schema,
        config_text: str,
        config_hash: str,
        num_records: int,
        row_group_size: int,
        seed: int,
        mode: Mode,
        base_dir: str | Path | None = None,
        seed_fingerprint: str | None = None,
        role: Role = "run",
        input_config: str | Path | None = None,
        code: CodeFingerprint | None = None,
    ) -> ManifestStore:
        """Open the run at ``location`` for writing (blocking).

        Args:
            location: where the run lives (:func:`~gridloom.storage.location_of`).
            schema, config_text, config_hash, num_records, row_group_size, seed, mode,
                base_dir, seed_fingerprint, input_config, code: as for
                :meth:`ParquetStore.open`.
            role: ``"run"`` (owns ``metadata.json``) or ``"shard"`` (mode ``"resume"`` only;
                writes row groups and their commit entries, nothing else). A shard is given
                no ``code``: its driver checked the columns' code before starting it.

        Raises:
            OutputExistsError: mode ``"new"`` and the location holds a run; or another
                process writes the (local) run: role ``"run"`` holds its writer lock
                (:mod:`gridloom.storage._lock`) until :meth:`close`.
            StorageError: the location cannot be used, or the run cannot be resumed.
            ValueError: invalid arguments.
        """
        if mode not in ("new", "overwrite", "resume"):
            raise ValueError(f"mode must be 'new', 'overwrite' or 'resume', got {mode!r}")
        if role not in ("run", "shard"):
            raise ValueError(f"role must be 'run' or 'shard', got {role!r}")
        if role == "shard" and mode != "resume":
            raise ValueError(
                f"a shard continues a run its driver opened: mode 'resume', not {mode!r}"
            )
        if num_records < 0:
            raise ValueError(f"num_records must be >= 0, got {num_records}")
        if row_group_size < 1:
            raise ValueError(f"row_group_size must be >= 1, got {row_group_size}")
        if location.local is not None and location.local.is_file():
            raise StorageError(f"output path {location.local} exists and is not a directory")
        # The driver of a local run holds its writer lock for the whole run (until close); a
        # remote output has no lock (see gridloom.storage._lock), a shard writes beside its
        # driver by design.
        return cls._under_lock(
            location.local if role == "run" else None,
            create=mode != "resume",
            open_store=lambda: cls._open(
                location,
                schema=schema,
                config_text=config_text,
                config_hash=config_hash,
                num_records=num_records,
                row_group_size=row_group_size,
                seed=seed,
                mode=mode,
                base_dir=base_dir,
                seed_fingerprint=seed_fingerprint,
                role=role,
                input_config=input_config,
                code=code,
            ),
        )

    @classmethod
    def _open(
        cls,
        location: Location,
        *,
        schema: pa.Schema,
        config_text: str,
        config_hash: str,
        num_records: int,
        row_group_size: int,
        seed: int,
        mode: Mode,
        base_dir: str | Path | None,
        seed_fingerprint: str | None,
        role: Role,
        input_config: str | Path | None,
        code: CodeFingerprint | None,
    ) -> ManifestStore:
        args: dict[str, Any] = {
            "location": location,
            "role": role,
            "schema": schema,
            "config_hash": config_hash,
            "row_group_size": row_group_size,
        }
        resolved = None if base_dir is None else str(Path(base_dir).resolve())
        if mode == "resume":
            refuse_foreign_files_at(location)
            if location.local is not None and role == "run":
                for folder in ("", "data", "dropped", COMMITS_DIR):
                    remove_temp_files(location.local / folder)
            doc = load_document(location)
            if doc is None:
                raise StorageError(
                    f"cannot resume {location.display}: no metadata.json there, so there is no"
                    " run to continue; start a new run instead"
                )
            check_document(doc, f"cannot resume {location.display}")
            recorded = check_resume_document(
                doc,
                location.display,
                schema=schema,
                config_hash=config_hash,
                num_records=num_records,
                row_group_size=row_group_size,
                seed_fingerprint=seed_fingerprint,
                code=code,
            )
            if role == "shard" and num_records != recorded.num_records:
                raise StorageError(
                    f"cannot write a shard of {location.display}: the run records"
                    f" {recorded.num_records:,} rows, the shard was given {num_records:,};"
                    " a shard uses the num_records its driver recorded"
                )
            store = cls._resumed(args, doc, recorded, num_records)
            fingerprint = doc.get("seed_fingerprint")
            store._seed_fingerprint = (
                fingerprint if isinstance(fingerprint, str) else seed_fingerprint
            )
            store._code_fingerprint, store._code_changes = code_after_resume(
                doc,
                code,
                recorded.code_change,
                row_groups=store.completed(),
                rows_written=store.rows_written,
            )
            old_base = doc.get("base_dir")
            store._base_dir = resolved or (old_base if isinstance(old_base, str) else None)
            if role == "run":
                if not location.exists("config.yaml"):
                    location.write_bytes("config.yaml", config_text.encode("utf-8"))
                store._write_metadata_sync(store._document())
            return store
        store = cls(**args, num_records=num_records, seed=seed, created_at=now_iso(), tally=Tally())
        store._base_dir = resolved
        store._seed_fingerprint = seed_fingerprint
        store._code_fingerprint = None if code is None else dict(code.columns)
        try:  # a Location wraps its own errors; a local folder's housekeeping raises OSError
            if mode == "new":
                refuse_existing_run_at(location, input_config=input_config)
            else:
                clear_run_at(location, input_config=input_config)
            store._write_metadata_sync(store._document())
            location.write_bytes("config.yaml", config_text.encode("utf-8"))
        except OSError as exc:
            raise StorageError(f"cannot prepare output {location.display}: {exc}") from None
        return store

    @classmethod
    def _resumed(
        cls, args: dict[str, Any], doc: dict[str, Any], recorded: RecordedRun, num_records: int
    ) -> ManifestStore:
        location: Location = args["location"]
        row_group_size: int = args["row_group_size"]
        listed = listed_entries(f"cannot resume {location.display}", doc.get("row_groups"))
        commits = read_commits(location, frozenset(listed))  # a listed group's entry is known
        data_sizes = location.list_sizes("data")
        dropped_sizes = location.list_sizes("dropped")
        data, dropped = set(data_sizes), set(dropped_sizes)
        tally = Tally()
        damaged: list[str] = []
        for index in sorted(set(listed) | set(commits)):
            entry = listed.get(index) or commits[index]
            data_name = RowGroupEntry.data_file(index).split("/")[1]
            if misplaced(index, entry, num_records=num_records, row_group_size=row_group_size):
                if args["role"] == "run":
                    _remove_group(location, index)
                continue
            if data_name not in data:
                if index in listed:
                    raise StorageError(
                        f"cannot resume {location.display}: metadata.json lists"
                        f" {RowGroupEntry.data_file(index)} but the file is missing; start"
                        " again with --overwrite (overwrite=True from Python)"
                    )
                logger.warning(
                    "%s has no data part: it will be generated again",
                    location.where(commit_file(index)),
                )
                location.delete(commit_file(index))
                continue
            if entry.has_drops and RowGroupEntry.dropped_file(index).split("/")[1] not in dropped:
                raise StorageError(
                    f"cannot resume {location.display}: row group {index} dropped rows but"
                    f" {RowGroupEntry.dropped_file(index)} is missing; start again with"
                    " --overwrite (overwrite=True from Python)"
                )
            if location.local is not None and args["role"] == "run":
                checked = checked_entry(entry, location.local, args["schema"])
                if isinstance(checked, str):
                    location.delete(commit_file(index))
                    damaged.append(warn_damaged(location.local, index, checked))
                    continue
                entry = checked
            elif (problem := _size_problem(entry, data_sizes, dropped_sizes)) is not None:
                if args["role"] != "run":
                    raise StorageError(
                        f"cannot write a shard of {location.display}: {problem}: it was damaged"
                        f" after it was written; {repair_advice(location)}"
                    )
                damaged.append(_set_aside_at(location, index, problem))
                continue
            tally.add(entry)
        store = cls(
            **args,
            num_records=num_records,
            seed=recorded.seed,
            created_at=recorded.created_at,
            tally=tally,
        )
        store._summary = recorded.summary
        store._damaged = tuple(damaged)
        return store

    # -------------------------------------------------------------- properties

    @property
    def location(self) -> Location:
        """Where the run lives."""
        return self._location

    @property
    def role(self) -> Role:
        """``"run"`` (owns ``metadata.json``) or ``"shard"``."""
        return self._role

    @property
    def damaged(self) -> tuple[str, ...]:
        """Row groups a resume found damaged (set aside in ``damaged/``, generated again): one
        line each, which and why. A run's driver checks its files' sizes; only a local run's
        driver checks their content too."""
        return self._damaged

    def __repr__(self) -> str:
        return (
            f"<ManifestStore {self._location.display!r} {self._role} {len(self._tally.groups)}/"
            f"{self.num_row_groups} row groups, {self.rows_written} rows, {self._status}>"
        )

    # ----------------------------------------------------------------- writing

    async def write(self, data: RowGroupData) -> None:
        """Write one row group (dropped part, data part, commit entry); the run role then
        rewrites ``metadata.json``.

        Raises:
            ValueTypeError: a value does not fit its column's type.
            StorageError: the row group is inconsistent, already committed, or IO failed.
        """
        index = data.index
        self._check_layout(data)
        if index in self._tally.groups or index in self._writing:
            raise StorageError(f"row group {index} is already written to {self._location.display}")
        self._writing.add(index)
        try:
            entry = await trio.to_thread.run_sync(self._write_files, data, limiter=self._limiter)
            del data
            with trio.CancelScope(shield=True):  # committed: record it even when cancelled
                async with self._lock:
                    self._tally.add(entry)
                    if self._role == "run":
                        await self._write_metadata()
        finally:
            self._writing.discard(index)

    def _write_files(self, data: RowGroupData) -> RowGroupEntry:
        """Worker thread: convert, write the parts, then the commit entry."""
        table = data_table(data, self._schema)
        entry = RowGroupEntry.of(data)
        info = json.dumps({"index": entry.index, **entry.to_json()})
        loc = self._location
        payload = rendered(lambda f: _write_data_file(table, info, f))
        dropped_sha256 = dropped_size = None
        if data.drops:
            drops = rendered(lambda f: _write_dropped_file(dropped_table(data.drops), f))
            dropped_sha256, dropped_size = digest_of(drops), len(drops)
            loc.write_bytes(entry.dropped_file(entry.index), drops)
        loc.write_bytes(entry.data_file(entry.index), payload)
        entry = attrs.evolve(
            entry,
            sha256=digest_of(payload),
            dropped_sha256=dropped_sha256,
            size=len(payload),
            dropped_size=dropped_size,
        )
        loc.write_bytes(commit_file(entry.index), commit_bytes(entry))
        return entry

    async def absorb(self) -> int:
        """Take in the row groups shards committed since the last look, and (role ``"run"``)
        rewrite ``metadata.json``; return how many were new.

        Raises:
            StorageError: a commit entry is damaged, or IO failed.
        """
        async with self._lock:
            known = frozenset(self._tally.groups) | frozenset(self._writing)
            found = await trio.to_thread.run_sync(
                read_commits, self._location, known, limiter=self._limiter
            )
            for _, entry in sorted(found.items()):
                self._tally.add(entry)
            if found and self._role == "run":
                with trio.CancelScope(shield=True):
                    await self._write_metadata()
        return len(found)

    async def finish(self, *, status: str, summary: Mapping[str, Any]) -> None:
        """Record the final status and summary in ``metadata.json`` (a shard records nothing).

        Raises:
            ValueError: unknown status.
            StorageError: the summary is not JSON-serialisable, or IO failed.
        """
        plain = check_finish_args(status, summary)
        if self._role == "shard":
            return
        with trio.CancelScope(shield=True):
            async with self._lock:
                self._status = status
                self._summary = plain
                await self._write_metadata()

    def _write_metadata_sync(self, doc: dict[str, Any]) -> None:
        self._location.write_bytes("metadata.json", document_bytes(doc))

    async def _write_metadata(self) -> None:
        doc = self._document()
        await trio.to_thread.run_sync(self._write_metadata_sync, doc, limiter=self._limiter)

    # ----------------------------------------------------------------- reading

    def _parts_location(self) -> Location:
        return self._location


def _size_problem(
    entry: RowGroupEntry,
    data_sizes: Mapping[str, int | None],
    dropped_sizes: Mapping[str, int | None],
) -> str | None:
    """Why a committed row group whose files are listed with these sizes (name to bytes, from
    the listing: nothing is downloaded) is damaged: a file's size is not the one recorded (or,
    with none recorded, is larger than :data:`~gridloom.storage._digest.PART_LIMIT`)."""
    files = [(RowGroupEntry.data_file(entry.index), entry.size, data_sizes)]
    if entry.has_drops:
        files.append((RowGroupEntry.dropped_file(entry.index), entry.dropped_size, dropped_sizes))
    for rel, recorded, sizes in files:
        problem = size_problem(rel, sizes[rel.split("/")[1]], recorded)
        if problem is not None:
            return problem
    return None


def _set_aside_at(location: Location, index: int, problem: str) -> str:
    """Move row group ``index``'s files to ``damaged/`` at ``location`` (kept, out of the
    dataset; an object store copies then deletes), delete its commit entry, log a warning
    naming them and ``problem``, and return the line :attr:`ManifestStore.damaged` holds."""
    moved: list[str] = []
    for rel in (RowGroupEntry.data_file(index), RowGroupEntry.dropped_file(index)):
        if location.exists(rel):
            target = f"damaged/{rel.replace('/', '-')}"
            location.move(rel, target)
            moved.append(target)
    location.delete(commit_file(index))
    logger.warning(
        "row group %d of %s is damaged: %s; it will be generated again (its files were moved"
        " to %s)",
        index,
        location.display,
        problem,
        ", ".join(moved) or "nowhere",
    )
    return f"row group {index}: {problem}"


def _remove_group(location: Location, index: int) -> None:
    """Delete a row group's commit entry, then its parts."""
    location.delete(commit_file(index))
    location.delete(RowGroupEntry.data_file(index))
    location.delete(RowGroupEntry.dropped_file(index))
