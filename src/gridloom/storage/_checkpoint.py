"""Checkpoint stores: where finished row groups go.

A store receives each finished row group once (:meth:`RowGroupStore.write`),
keeps per-column counts, and gives the data back as Arrow tables.
:class:`MemoryStore` keeps everything in memory (previews); :class:`ParquetStore`
writes a run directory::

    <out>/config.yaml                   the pipeline as run (the caller removes secrets)
    <out>/metadata.json                 progress and counts, rewritten after every row group
    <out>/data/part-00000.parquet       one file per row group, all with the declared schema
    <out>/dropped/part-00000.parquet    drop records, only for row groups that dropped rows
    <out>/.gridloom.lock                the writer's lock, while a process writes the run
                                        (gridloom.storage._lock: one writer at a time)

Every file is written atomically: to ``.tmp-*`` in the same directory, fsynced,
renamed over the final name with :func:`os.replace`, then the directory is
fsynced. A row group is committed by the rename of its data file (its dropped
file, if any, is renamed just before); ``metadata.json`` is then rewritten.

``metadata.json`` (``format_version`` 1) holds:

- ``format_version``: 1.
- ``gridloom_version``: version of gridloom that last wrote the file.
- ``config_hash``: hash of the configuration, checked on resume.
- ``seed_fingerprint``: a fingerprint of the seed dataset's files (``null`` without any),
  checked on resume.
- ``code_fingerprint``: column name to a fingerprint of the Python code the column calls
  (custom functions, callable validators, Python tools; ``{}`` when none do, ``null`` when
  not computed), checked on resume; ``code_changes``: the changes of that code a resume
  accepted (``--accept-code-change``), each with when, the columns' digests before and
  after, and the row groups and rows written before it (:mod:`gridloom.storage._code`).
- ``num_records``: rows requested; ``row_group_size``; ``seed``.
- ``status``: ``"running"`` while a run is going, then what :meth:`~ParquetStore.finish`
  set: ``"complete"``, ``"incomplete"`` (every row group was generated, but more rows were
  dropped than ``run.allow_drops`` allows), ``"interrupted"``, ``"stopped"`` (a failing model
  or column stopped it early; resumable like an interrupted run) or ``"failed"``.
- ``created_at`` / ``updated_at``: ISO 8601 UTC timestamps.
- ``schema``: column name to Arrow type string, in column order.
- ``rows_written`` / ``rows_dropped``: totals over the row groups on disk.
- ``counts``: per column ``{"done", "failed", "dropped"}`` totals.
- ``row_groups``: ``{"<index>": {"rows", "dropped", "file", "dropped_file",
  "first_row_id", "num_rows", "counts", "sha256", "dropped_sha256", "size",
  "dropped_size"}}`` where ``rows`` are
  kept rows, ``dropped`` dropped rows, ``file``/``dropped_file`` paths relative to the run
  directory (``dropped_file`` is ``null`` when nothing was dropped), ``counts`` the per
  column counts of that row group, and ``sha256``/``dropped_sha256`` the hex SHA-256 of
  each file as committed (absent in entries written before digests, and for a group
  without dropped rows; checked on resume, see :mod:`gridloom.storage._digest`), and
  ``size``/``dropped_size`` each file's size in bytes as committed (absent likewise: a file
  of another size is refused before it is read).
- ``summary``: the JSON object given to :meth:`~ParquetStore.finish` (``{}`` before).

Each data file also carries its own ``row_groups`` entry (plus ``index``) in the
parquet footer's key-value metadata under ``gridloom.row_group``, so that a
file committed just before a crash, while ``metadata.json`` was not yet
rewritten, can be adopted on resume with exact counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import attrs
import trio

from gridloom.errors import StorageError

from ._atomic import atomic_write_bytes, fsync_dir, remove_temp_files
from ._code import CodeFingerprint, code_after_resume
from ._convert import data_table, dropped_table
from ._digest import digest_of, rendered
from ._location import Location, location_of
from ._metadata import (
    RowGroupEntry,
    Tally,
    document_bytes,
    load_json,
    now_iso,
)
from ._protocol import check_finish_args
from ._resume import load_resume_state
from ._rundir import clear_run, refuse_existing_run, refuse_foreign_files
from ._runstore import RunStore
from ._types import RowGroupData

# pyarrow.parquet is imported in the functions that use it: a preview, which reads and writes
# no parquet, does not pay for it (~7 ms) before its first model request.
if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "ROW_GROUP_KEY",
    "ParquetStore",
]

#: Key of the row group entry in each data file's footer metadata.
ROW_GROUP_KEY = "gridloom.row_group"


Mode = Literal["new", "overwrite", "resume"]


def _write_data_file(table: pa.Table, info: str, f: BinaryIO) -> None:
    # Non-compliant nested types keep Arrow's list item names ("item"), so that
    # the files read back with exactly the declared schema.
    import pyarrow.parquet as pq

    with pq.ParquetWriter(f, table.schema, use_compliant_nested_type=False) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({ROW_GROUP_KEY: info})


def _write_dropped_file(table: pa.Table, f: BinaryIO) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, f, use_compliant_nested_type=False)


class ParquetStore(RunStore):
    """Checkpoint store writing a run directory (see the module docstring).

    Create it with :meth:`open`. ``write`` and ``finish`` do their blocking IO in
    worker threads (at most :data:`IO_THREADS` at a time); ``open``,
    ``read_table`` and ``read_dropped`` block, so call them outside the event
    loop's hot path (or through ``trio.to_thread.run_sync``).
    """

    def __init__(
        self,
        *,
        output_dir: Path,
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
        self._dir = output_dir
        self._location: Location | None = None  # made when first read
        self._damaged: tuple[str, ...] = ()

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        output_dir: str | Path,
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
        input_config: str | Path | None = None,
        code: CodeFingerprint | None = None,
    ) -> ParquetStore:
        """Open a run directory for writing.

        Args:
            output_dir: the run directory; created if missing.
            schema: declared schema of the data files.
            config_text: pipeline configuration written to ``config.yaml`` as is; it
                must hold no secrets.
            config_hash: hash of the configuration; a resumed run must match it.
            num_records: rows requested.
            row_group_size: rows per row group; a resumed run must match it.
            seed: run seed (on resume the seed recorded on disk is kept, see :attr:`seed`).
            mode: ``"new"`` refuses a directory that already holds a run;
                ``"overwrite"`` removes gridloom's files of a previous run first (other
                files are left alone); ``"resume"`` continues the run on disk, see
                the module ``gridloom.storage._resume`` for the rules.
            base_dir: the folder the config's relative paths (seed files, custom function
                modules) resolve against, recorded in ``metadata.json`` so a resume from the
                saved ``config.yaml`` finds them; on resume, ``None`` keeps the recorded one.
            seed_fingerprint: a fingerprint of the seed dataset's files, recorded in
                ``metadata.json``; a resume with another is refused (the files changed).
            input_config: the config file being run, if any: modes ``"new"`` and
                ``"overwrite"`` refuse it as ``output_dir/config.yaml`` (the same file, not
                the same name), which they would replace. Those modes also refuse a folder
                holding no run but a file a run writes (``config.yaml``, ``trace.json``...):
                a run never overwrites a file it did not write.
            code: the fingerprint of the Python code the columns call, recorded in
                ``metadata.json``; a resume with another is refused unless ``code`` accepts
                the change, which is then recorded (:mod:`gridloom.storage._code`).
                ``None``: not computed (nothing recorded, nothing checked).

        Returns:
            The store, with ``metadata.json`` showing status ``"running"``.

        Raises:
            OutputExistsError: mode ``"new"`` and the directory holds a run; or it holds no
                run but a file a run writes; or another process (or another store of this
                one) is writing it: the store holds the directory's writer lock
                (:mod:`gridloom.storage._lock`) until :meth:`close`.
            StorageError: the directory cannot be used, or cannot be resumed.
            ValueError: invalid arguments.
        """
        if mode not in ("new", "overwrite", "resume"):
            raise ValueError(f"mode must be 'new', 'overwrite' or 'resume', got {mode!r}")
        if num_records < 0:
            raise ValueError(f"num_records must be >= 0, got {num_records}")
        if row_group_size < 1:
            raise ValueError(f"row_group_size must be >= 1, got {row_group_size}")
        out = Path(output_dir)
        if out.exists() and not out.is_dir():
            raise StorageError(f"output path {out} exists and is not a directory")
        return cls._under_lock(
            out,
            create=mode != "resume",
            open_store=lambda: cls._open(
                out,
                schema=schema,
                config_text=config_text,
                config_hash=config_hash,
                num_records=num_records,
                row_group_size=row_group_size,
                seed=seed,
                mode=mode,
                base_dir=base_dir,
                seed_fingerprint=seed_fingerprint,
                input_config=input_config,
                code=code,
            ),
        )

    @classmethod
    def _open(
        cls,
        out: Path,
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
        input_config: str | Path | None,
        code: CodeFingerprint | None,
    ) -> ParquetStore:
        try:
            if mode == "resume":
                refuse_foreign_files(out)
                return cls._resume(
                    out,
                    schema=schema,
                    config_text=config_text,
                    config_hash=config_hash,
                    num_records=num_records,
                    row_group_size=row_group_size,
                    base_dir=base_dir,
                    seed_fingerprint=seed_fingerprint,
                    code=code,
                )
            if mode == "new":
                refuse_existing_run(out, input_config=input_config)
            else:
                clear_run(out, input_config=input_config)
            out.mkdir(parents=True, exist_ok=True)
            (out / "data").mkdir(exist_ok=True)
            fsync_dir(out)
            remove_temp_files(out)
            store = cls(
                output_dir=out,
                schema=schema,
                config_hash=config_hash,
                num_records=num_records,
                row_group_size=row_group_size,
                seed=seed,
                created_at=now_iso(),
                tally=Tally(),
            )
            store._base_dir = None if base_dir is None else str(Path(base_dir).resolve())
            store._seed_fingerprint = seed_fingerprint
            store._code_fingerprint = None if code is None else dict(code.columns)
            store._write_metadata_sync(store._document())
            atomic_write_bytes(out / "config.yaml", config_text.encode("utf-8"))
        except OSError as exc:
            raise StorageError(f"cannot prepare output directory {out}: {exc}") from exc
        return store

    @classmethod
    def _resume(
        cls,
        out: Path,
        *,
        schema: pa.Schema,
        config_text: str,
        config_hash: str,
        num_records: int,
        row_group_size: int,
        base_dir: str | Path | None,
        seed_fingerprint: str | None,
        code: CodeFingerprint | None,
    ) -> ParquetStore:
        try:
            state = load_resume_state(
                out,
                schema=schema,
                config_hash=config_hash,
                num_records=num_records,
                row_group_size=row_group_size,
                row_group_key=ROW_GROUP_KEY,
                seed_fingerprint=seed_fingerprint,
                code=code,
            )
            store = cls(
                output_dir=out,
                schema=schema,
                config_hash=config_hash,
                num_records=state.num_records,
                row_group_size=row_group_size,
                seed=state.seed,
                created_at=state.created_at,
                tally=state.tally,
            )
            store._summary = state.summary
            store._damaged = state.damaged
            doc = load_json(out / "metadata.json")
            recorded = doc.get("seed_fingerprint")
            store._seed_fingerprint = recorded if isinstance(recorded, str) else seed_fingerprint
            store._code_fingerprint, store._code_changes = code_after_resume(
                doc,
                code,
                state.code_change,
                row_groups=state.tally.completed(),
                rows_written=state.tally.rows_written,
            )
            if base_dir is not None:
                store._base_dir = str(Path(base_dir).resolve())
            elif isinstance(recorded := doc.get("base_dir"), str):
                store._base_dir = recorded
            (out / "data").mkdir(exist_ok=True)
            if not (out / "config.yaml").exists():
                atomic_write_bytes(out / "config.yaml", config_text.encode("utf-8"))
            store._write_metadata_sync(store._document())
        except OSError as exc:
            raise StorageError(f"cannot resume {out}: {exc}") from exc
        return store

    # -------------------------------------------------------------- properties

    @property
    def output_dir(self) -> Path:
        """The run directory."""
        return self._dir

    @property
    def damaged(self) -> tuple[str, ...]:
        """Row groups a resume found damaged (set aside in ``damaged/``, generated again): one
        line each, which and why."""
        return self._damaged

    def __repr__(self) -> str:
        return (
            f"<ParquetStore {str(self._dir)!r} {len(self._tally.groups)}/"
            f"{self.num_row_groups} row groups, {self.rows_written} rows, {self._status}>"
        )

    # ----------------------------------------------------------------- writing

    async def write(self, data: RowGroupData) -> None:
        """Write one row group durably, then record it in ``metadata.json``.

        The row group must follow the run's layout: group ``i`` covers rows
        ``i * row_group_size`` up to ``min((i + 1) * row_group_size, num_records)``.
        If this raises, nothing of the row group is left on disk, except when the
        final ``metadata.json`` update fails: the data file is then complete and a
        resume adopts it.

        Raises:
            ValueTypeError: a value does not fit its column's type.
            StorageError: the row group is inconsistent, already written, or IO failed.
        """
        index = data.index
        self._check_layout(data)
        if index in self._tally.groups or index in self._writing:
            raise StorageError(f"row group {index} is already written to {self._dir}")
        self._writing.add(index)
        try:
            entry = await trio.to_thread.run_sync(self._write_files, data, limiter=self._limiter)
            del data
            # The data file is committed: record it even if we are being cancelled.
            with trio.CancelScope(shield=True):
                async with self._lock:
                    self._tally.add(entry)
                    await self._write_metadata()
        finally:
            self._writing.discard(index)

    async def finish(self, *, status: str, summary: Mapping[str, Any]) -> None:
        """Record the final status and summary in ``metadata.json``.

        Args:
            status: ``"complete"``, ``"incomplete"``, ``"interrupted"``, ``"stopped"``,
                ``"failed"`` (or ``"running"``).
            summary: JSON-serialisable mapping stored under ``summary``.

        Raises:
            ValueError: unknown status.
            StorageError: the summary is not JSON-serialisable, or IO failed.
        """
        plain = check_finish_args(status, summary)
        with trio.CancelScope(shield=True):
            async with self._lock:
                self._status = status
                self._summary = plain
                await self._write_metadata()

    def _write_files(self, data: RowGroupData) -> RowGroupEntry:
        """Worker thread: convert and write the data (and dropped) files atomically."""
        table = data_table(data, self._schema)
        entry = RowGroupEntry.of(data)
        info = json.dumps({"index": entry.index, **entry.to_json()})
        data_path = self._dir / entry.data_file(entry.index)
        drop_path = self._dir / entry.dropped_file(entry.index)
        # Each file is rendered in memory first, so its digest is that of the bytes written.
        payload = rendered(lambda f: _write_data_file(table, info, f))
        dropped_sha256 = dropped_size = None
        try:
            if data.drops:
                drops = rendered(lambda f: _write_dropped_file(dropped_table(data.drops), f))
                dropped_sha256, dropped_size = digest_of(drops), len(drops)
                if not drop_path.parent.is_dir():
                    drop_path.parent.mkdir(exist_ok=True)
                    fsync_dir(self._dir)
                atomic_write_bytes(drop_path, drops)
            try:
                atomic_write_bytes(data_path, payload)
            except BaseException:
                if data.drops:
                    drop_path.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(
                f"cannot write row group {entry.index} to {self._dir}: {exc}"
            ) from exc
        return attrs.evolve(
            entry,
            sha256=digest_of(payload),
            dropped_sha256=dropped_sha256,
            size=len(payload),
            dropped_size=dropped_size,
        )

    def _write_metadata_sync(self, doc: dict[str, Any]) -> None:
        atomic_write_bytes(self._dir / "metadata.json", document_bytes(doc))

    async def _write_metadata(self) -> None:
        doc = self._document()
        try:
            await trio.to_thread.run_sync(self._write_metadata_sync, doc, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot write {self._dir / 'metadata.json'}: {exc}") from exc

    # ----------------------------------------------------------------- reading

    def _parts_location(self) -> Location:
        if self._location is None:
            self._location = location_of(self._dir)
        return self._location
