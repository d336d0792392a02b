"""What a run hands back to the user."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .._attrs import frozen
from ._convert import parse_json_text
from ._drops import DropExample, summarize_drops
from ._export import ExportInfo, export_result, hf_dataset
from ._parts import Verification, store_tables, store_verification
from ._protocol import RowGroupStore
from ._types import ColumnCounts, CorrectionCounts

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["RunResult"]


def _plain(value: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON round trip: a deep copy made of plain types, or ``TypeError``/``ValueError``."""
    plain = json.loads(json.dumps(dict(value), allow_nan=False))
    assert isinstance(plain, dict)
    return plain


@frozen(kw_only=True)
class RunResult:
    """The outcome of a run: counts at hand, data read on demand from the store.

    Build it with :meth:`from_store` once the store is finished. The data tables are
    read from the store (disk or memory) on first access and then cached.

    Attributes:
        output_dir: run directory, or ``None`` for an in-memory run (preview).
        num_records: rows requested (on resume: of the whole run).
        num_rows: rows written (kept).
        num_dropped: rows dropped.
        columns: per column counts of done, failed and dropped cells (and, for model
            columns with answer checks, their ``corrections``; see :attr:`corrections`).
        wall_time: seconds the run took (this invocation only, on resume).
        rows_generated: rows written by this invocation (on resume, without the earlier
            ones); ``None`` means :attr:`num_rows`. The summary's ``rows_per_second`` is
            these over :attr:`wall_time`.
        seed: seed of the run.
        status: ``"complete"`` (every row asked for was written, or as many as
            ``run.allow_drops`` lets go missing), ``"incomplete"`` (every row group was
            generated, but more rows were dropped than ``run.allow_drops`` allows: see
            :attr:`drop_examples`), ``"interrupted"``, ``"stopped"`` (a failing model or column
            stopped the run early; completed row groups are kept and it can be resumed) or
            ``"failed"``.
        stop_reason: why a ``"stopped"`` run stopped, in one line naming the model or column;
            else ``None``.
        extras: further JSON-serialisable summary sections provided by the engine
            (token usage per model, throttle history, ...), merged into :attr:`summary`.
        trace: one row per task attempt (``gridloom.trace.TRACE_SCHEMA``) when the run was
            traced (``run.trace`` or ``GRIDLOOM_TRACE=1``), else ``None``.
    """

    output_dir: Path | None
    num_records: int
    num_rows: int
    num_dropped: int = 0
    columns: dict[str, ColumnCounts] = attrs.field(factory=dict)
    wall_time: float
    rows_generated: int | None = None
    seed: int
    status: str
    stop_reason: str | None = None
    extras: Mapping[str, Any] = attrs.field(factory=dict, converter=_plain)
    _store: RowGroupStore = attrs.field(repr=False, eq=False)
    trace: pa.Table | None = attrs.field(default=None, repr=False, eq=False)
    _cache: dict[str, pa.Table] = attrs.field(init=False, factory=dict, repr=False, eq=False)
    _digest: dict[str, dict[str, dict[str, DropExample]]] = attrs.field(
        init=False, factory=dict, repr=False, eq=False
    )

    @classmethod
    def from_store(
        cls,
        store: RowGroupStore,
        *,
        num_records: int,
        seed: int,
        wall_time: float,
        status: str,
        output_dir: str | Path | None = None,
        extras: Mapping[str, Any] | None = None,
        stop_reason: str | None = None,
        trace: pa.Table | None = None,
        rows_generated: int | None = None,
    ) -> RunResult:
        """Build the result of a run from its (finished) store.

        Counts come from the store; the data stays in the store until asked for.

        Args:
            store: the store the run wrote to.
            num_records: rows requested.
            seed: seed of the run (for a resumed :class:`ParquetStore`, its ``seed``).
            wall_time: seconds the run took.
            status: final status, as given to the store's ``finish``.
            output_dir: run directory, ``None`` for an in-memory store.
            extras: further JSON-serialisable summary sections (see :attr:`extras`).
            stop_reason: why the run was stopped early (status ``"stopped"``).
            trace: the task trace, when the run was traced.
            rows_generated: rows written by this invocation (see :attr:`rows_generated`).

        Raises:
            TypeError: ``extras`` is not JSON-serialisable.
        """
        return cls(
            output_dir=None if output_dir is None else Path(output_dir),
            num_records=num_records,
            num_rows=store.rows_written,
            num_dropped=store.rows_dropped,
            columns=dict(store.counts),
            wall_time=wall_time,
            rows_generated=rows_generated,
            seed=seed,
            status=status,
            stop_reason=stop_reason,
            extras=extras or {},
            store=store,
            trace=trace,
        )

    @property
    def corrections(self) -> dict[str, CorrectionCounts]:
        """Per model column with answer checks (``validate_with``, or a structured column's
        parse and schema check): first-try-valid, corrected-after-k and rejected cells (the
        ``corrections`` of :attr:`columns`)."""
        return {
            name: c.corrections for name, c in self.columns.items() if c.corrections is not None
        }

    @property
    def table(self) -> pa.Table:
        """The dataset as a ``pyarrow.Table`` (read on first access, then cached; each part
        checked as :meth:`iter_tables` says, so a damaged one raises
        :class:`~gridloom.errors.StorageError` naming it instead of giving other values)."""
        if "table" not in self._cache:
            self._cache["table"] = self._store.read_table()
        return self._cache["table"]

    @property
    def schema(self) -> pa.Schema:
        """The dataset's declared schema (no data is read)."""
        return self._store.schema

    def iter_tables(self) -> Iterator[pa.Table]:
        """The dataset one row group at a time, in order: for a run directory each data part
        is read only when the previous table has been consumed (memory holds one row group);
        an in-memory result (a preview) or one whose :attr:`table` was read yields that.

        Each part is checked against the SHA-256 recorded when it was committed before it is
        decoded (:mod:`gridloom.storage._parts`), as :attr:`table` does.

        Raises:
            StorageError: a data part is missing, unreadable, not what was committed (its
                pages were damaged after it was written: the message names it and says how to
                repair the run), or has another schema.
        """
        if "table" in self._cache:
            yield self.table
            return
        yield from store_tables(self._store)

    def verify(self) -> Verification:
        """Check every committed file of the run, data and dropped-records parts, against the
        SHA-256 recorded when it was committed (a file from a run written before digests is
        decoded in full instead), without keeping any data; ``gridloom inspect --verify`` does
        this. A run at a URI is downloaded one file at a time to be checked. An in-memory
        result has no files (``files == 0``).

        Returns:
            What was checked and which files are damaged (:attr:`Verification.intact` when
            none), with :attr:`Verification.repair` saying how to regenerate their rows.

        Raises:
            StorageError: a remote filesystem cannot be read (the check could not be made).
        """
        return store_verification(self._store)

    def export(
        self, path: str | os.PathLike[str], format: str, *, overwrite: bool = False
    ) -> ExportInfo:
        """Write the dataset to ``path`` as ``jsonl``, ``csv``, ``parquet`` or ``hf`` (a
        Hugging Face ``datasets`` folder), streaming one row group at a time (``hf`` holds
        the dataset in memory), atomically (see :mod:`gridloom.storage._export`).

        Raises:
            OutputExistsError: ``path`` exists and ``overwrite`` is false.
            StorageError: an unknown format, the file cannot be written, or a data part is
                damaged (see :meth:`iter_tables`; nothing is then left at ``path``).
            ImportError: ``hf`` without the ``datasets`` package (the ``hf`` extra).
        """
        return export_result(self, Path(path), format, overwrite=overwrite)

    def to_jsonl(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> ExportInfo:
        """Write the dataset as JSON Lines, one object per row (nested values as JSON objects
        and arrays); see :meth:`export`."""
        return self.export(path, "jsonl", overwrite=overwrite)

    def to_hf_dataset(
        self, path: str | os.PathLike[str] | None = None, *, overwrite: bool = False
    ) -> Any:
        """The dataset as a Hugging Face ``datasets.Dataset`` (in memory; no network), also
        saved with ``save_to_disk`` to ``path`` when one is given (atomically; an existing
        ``path`` is refused unless ``overwrite``).

        Raises:
            ImportError: the ``datasets`` package is not installed (the ``hf`` extra).
        """
        if path is None:
            return hf_dataset(self.schema, self.iter_tables())
        self.export(path, "hf", overwrite=overwrite)
        datasets = importlib.import_module("datasets")
        return datasets.load_from_disk(str(path))

    @property
    def dropped(self) -> pa.Table:
        """Drop records: ``row_id``, ``column``, ``error_type``, ``message`` (cached)."""
        if "dropped" not in self._cache:
            self._cache["dropped"] = self._store.read_dropped()
        return self._cache["dropped"]

    @property
    def drop_reasons(self) -> dict[str, dict[str, int]]:
        """Dropped rows per column and error type, e.g. ``{"answer": {"InvalidOutput": 3}}``
        (from the drop records on disk, so a resumed run's earlier drops are included)."""
        return {
            column: {error: example.rows for error, example in errors.items()}
            for column, errors in self._drops().items()
        }

    @property
    def drop_examples(self) -> list[DropExample]:
        """One example per drop reason (column and error type): how many rows it dropped,
        and the first such row's id and message, in column then error type order."""
        return [example for errors in self._drops().values() for example in errors.values()]

    def _drops(self) -> dict[str, dict[str, DropExample]]:
        if self.num_dropped == 0:
            return {}
        if "drop_digest" not in self._digest:
            self._digest["drop_digest"] = summarize_drops(self.dropped)
        return self._digest["drop_digest"]

    def to_pandas(self, *, parse_json: bool = True) -> Any:
        """The dataset as a ``pandas.DataFrame``: a structured column stored natively gives
        dicts (and lists); one stored as JSON text (a ``dtype: json`` column, or a schema too
        open for a native type, marked in the field's metadata) is parsed into the same Python
        values unless ``parse_json`` is false.

        Raises:
            ImportError: pandas is not installed.
        """
        if importlib.util.find_spec("pandas") is None:
            raise ImportError(
                "RunResult.to_pandas() needs pandas, which is not installed; "
                "install it with: pip install 'gridloom[pandas]'"
            )
        table = self.table
        frame = table.to_pandas()
        return parse_json_text(table.schema, frame) if parse_json else frame

    @property
    def summary(self) -> dict[str, Any]:
        """Counts, timings and the engine's extras as a JSON-serialisable dict."""
        failed = sum(c.failed for c in self.columns.values())
        generated = self.num_rows if self.rows_generated is None else self.rows_generated
        summary: dict[str, Any] = {
            "status": self.status,
            "stop_reason": self.stop_reason,
            "output_dir": None if self.output_dir is None else str(self.output_dir),
            "num_records": self.num_records,
            "num_rows": self.num_rows,
            "num_dropped": self.num_dropped,
            "failed_cells": failed,
            "wall_time": self.wall_time,
            "rows_generated": generated,
            "rows_per_second": generated / self.wall_time if self.wall_time > 0 else None,
            "seed": self.seed,
            "columns": {name: c.as_dict() for name, c in self.columns.items()},
            "drop_reasons": self.drop_reasons,
            "drop_examples": [example.as_dict() for example in self.drop_examples],
        }
        for key, value in _plain(self.extras).items():
            summary.setdefault(key, value)
        return summary

    def __repr__(self) -> str:
        where = "memory" if self.output_dir is None else repr(str(self.output_dir))
        why = "" if self.stop_reason is None else f", stop_reason={self.stop_reason!r}"
        return (
            f"<RunResult {self.status}: {self.num_rows}/{self.num_records} rows, "
            f"{self.num_dropped} dropped, {len(self.columns)} columns, "
            f"{self.wall_time:.1f}s, seed={self.seed}, output={where}{why}>"
        )
