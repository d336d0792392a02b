"""Exports of a run's dataset to JSON Lines, CSV, a single parquet file, or a Hugging Face
``datasets`` folder (blocking; call from a worker thread in async code).

JSON Lines, CSV and parquet are streamed: the dataset is read one row group (one data file)
at a time and appended to the output, so memory holds one row group whatever the dataset's
size. Every export is atomic: it is written to a ``.tmp-*`` file (or folder) beside the
target, then renamed over it, so a failed export leaves no partial file behind. An existing
target is refused unless ``overwrite`` is given. Each data part of a run is checked against
the SHA-256 recorded when it was committed as it is read (:mod:`gridloom.storage._parts`): a
part damaged since fails the export with a :class:`~gridloom.errors.StorageError` naming it
(and how to repair the run), and nothing is left at the target.

Values: JSON Lines writes nested values (structs, lists) as JSON objects and arrays, and so
the JSON text of a column marked as holding it (a ``dtype: json`` column, or a structured one
whose schema is too open for a native type: :data:`~gridloom.storage._convert.JSON_TEXT_KEY`);
dates and times as ISO 8601 text, durations in seconds, non-finite floats as ``null`` (JSON has
no NaN); CSV writes scalars as pyarrow's CSV writer does and nested values as JSON text; parquet
and ``hf`` keep the Arrow types as they are (a structured column stored natively is a struct
there, with nested ``datasets`` features; the field metadata marking JSON text is kept).
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from gridloom.errors import OutputExistsError, StorageError

from .._attrs import frozen
from ._atomic import TEMP_PREFIX, atomic_write, fsync_dir
from ._convert import is_json_text

if TYPE_CHECKING:
    import pyarrow as pa

    from ._result import RunResult

# pyarrow.parquet is imported in the functions that use it: a preview, which reads and writes
# no parquet, does not pay for it (~7 ms) before its first model request.
__all__ = [
    "EXPORT_FORMATS",
    "ExportInfo",
    "export_result",
    "export_tables",
    "export_target_problem",
    "hf_dataset",
    "json_value",
]

ExportFormat = Literal["jsonl", "csv", "parquet", "hf"]

#: Export formats and the file extension of their default target (``hf``: a folder).
EXPORT_FORMATS: dict[str, str] = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "hf": "hf"}
#: The one folder of a run directory an export may write in (where it writes by default).
EXPORT_DIR = "export"


@frozen(kw_only=True)
class ExportInfo:
    """What an export wrote.

    Attributes:
        path: the file (``hf``: the folder) written.
        format: ``jsonl``, ``csv``, ``parquet`` or ``hf``.
        rows: rows written.
        columns: the columns, in order.
    """

    path: Path
    format: str
    rows: int
    columns: tuple[str, ...]


def json_value(value: Any) -> Any:
    """A dataset value as plain JSON data (see the module docstring)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):  # a map column reads back as a list of pairs
        return [json_value(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return json_value(float(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _nested(type_: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_nested(type_))


def export_target_problem(run_dir: Path, target: Path) -> str | None:
    """Why ``target`` may not take an export of the run in ``run_dir``, or ``None``.

    An export never writes over a run's own files: inside the run directory it writes only
    under ``export/`` (its default place), and never to a folder holding the run. Both paths
    are resolved first (the working directory, ``..`` and symbolic links), so no spelling of
    ``metadata.json`` or ``data/part-*.parquet`` gets past.
    """
    try:
        run = run_dir.resolve()
        where = target.resolve()
    except (OSError, RuntimeError) as exc:  # a symbolic link loop, an unreadable folder
        return f"cannot resolve the export target {target}: {exc}"
    if where == run or run in where.parents:
        parts = where.relative_to(run).parts
        if len(parts) >= 2 and parts[0] == EXPORT_DIR:
            return None
        return (
            f"{target} is inside the run directory {run_dir}, whose files an export never"
            f" replaces; write the export outside it, or under {run_dir / EXPORT_DIR}"
        )
    if where in run.parents:
        return f"{target} holds the run directory {run_dir}; an export never replaces it"
    return None


def _check_target(target: Path, overwrite: bool) -> None:
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise OutputExistsError(
            f"{target} already exists; pass --overwrite (overwrite=True) to replace it"
        )
    if target.is_dir() and not target.is_symlink() and overwrite and not _is_hf_folder(target):
        raise StorageError(f"{target} is a folder; it is not replaced by an export")
    target.parent.mkdir(parents=True, exist_ok=True)


def _is_hf_folder(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "state.json").is_file()


def _write_jsonl(schema: pa.Schema, tables: Iterable[pa.Table], f: BinaryIO) -> int:
    marked = [field.name for field in schema if is_json_text(field)]
    rows = 0
    for table in tables:
        records = table.to_pylist()
        for record in records:  # JSON text is written as the JSON value it holds
            for name in marked:
                if isinstance(text := record.get(name), str):
                    record[name] = json.loads(text)
        lines = [
            json.dumps(json_value(row), ensure_ascii=False, allow_nan=False) for row in records
        ]
        if lines:
            f.write(("\n".join(lines) + "\n").encode("utf-8"))
        rows += len(lines)
    return rows


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [pa.field(f.name, pa.string()) if _nested(f.type) else f for f in schema],
    )


def _csv_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    import pyarrow as pa

    arrays = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if _nested(field.type):
            texts = [
                None if v is None else json.dumps(json_value(v), ensure_ascii=False)
                for v in column.to_pylist()
            ]
            arrays.append(pa.array(texts, type=pa.string()))
        else:
            arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def _write_csv(schema: pa.Schema, tables: Iterable[pa.Table], f: BinaryIO) -> int:
    import pyarrow.csv as pa_csv  # only for this format: keeps `import gridloom` light

    out_schema = _csv_schema(schema)
    rows = 0
    with pa_csv.CSVWriter(f, out_schema) as writer:
        for table in tables:
            writer.write_table(_csv_table(table, out_schema))
            rows += table.num_rows
    return rows


def _write_parquet(schema: pa.Schema, tables: Iterable[pa.Table], f: BinaryIO) -> int:
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(f, schema, use_compliant_nested_type=False) as writer:
        for table in tables:
            writer.write_table(table)
            rows += table.num_rows
    return rows


def export_tables(
    schema: pa.Schema,
    tables: Iterable[pa.Table],
    target: Path,
    fmt: str,
    *,
    overwrite: bool = False,
) -> ExportInfo:
    """Write ``tables`` (each with ``schema``; consumed one at a time) to ``target``.

    Raises:
        OutputExistsError: ``target`` exists and ``overwrite`` is false.
        StorageError: an unknown format, or the export cannot be written.
        ImportError: ``hf`` without the ``datasets`` package (the ``hf`` extra).
    """
    import pyarrow as pa

    if fmt not in EXPORT_FORMATS:
        raise StorageError(f"unknown export format {fmt!r} (formats: {', '.join(EXPORT_FORMATS)})")
    _check_target(target, overwrite)
    if fmt == "hf":
        return _export_hf(schema, tables, target)
    count: list[int] = []
    writers: dict[str, Callable[[BinaryIO], int]] = {
        "jsonl": lambda f: _write_jsonl(schema, tables, f),
        "csv": lambda f: _write_csv(schema, tables, f),
        "parquet": lambda f: _write_parquet(schema, tables, f),
    }
    write = writers[fmt]
    try:
        atomic_write(target, lambda f: count.append(write(f)))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StorageError(f"cannot export to {target}: {exc}") from exc
    return ExportInfo(path=target, format=fmt, rows=count[0], columns=tuple(schema.names))


def _datasets() -> Any:
    try:
        return importlib.import_module("datasets")
    except ImportError as exc:
        raise ImportError(
            "exporting to a Hugging Face dataset needs the 'datasets' package; install it with:"
            " pip install 'gridloom[hf]'"
        ) from exc


def hf_dataset(schema: pa.Schema, tables: Iterable[pa.Table]) -> Any:
    """A ``datasets.Dataset`` holding ``tables`` (in memory; no network is used).

    Raises:
        ImportError: the ``datasets`` package (the ``hf`` extra) is not installed.
    """
    import pyarrow as pa

    datasets = _datasets()
    parts = list(tables)
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    return datasets.Dataset(table.replace_schema_metadata(None))


def _save_quietly(dataset: Any, path: Path) -> None:
    """``dataset.save_to_disk(path)`` without its progress bar (stdout may carry JSON)."""
    datasets = _datasets()
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        dataset.save_to_disk(str(path))
    finally:
        if shown:
            datasets.enable_progress_bars()


def _export_hf(schema: pa.Schema, tables: Iterable[pa.Table], target: Path) -> ExportInfo:
    dataset = hf_dataset(schema, tables)
    tmp = target.with_name(f"{TEMP_PREFIX}{target.name}-{secrets.token_hex(4)}")
    old = target.with_name(f"{TEMP_PREFIX}{target.name}-old-{secrets.token_hex(4)}")
    try:
        _save_quietly(dataset, tmp)
        replaced = target.exists() or target.is_symlink()
        if replaced:
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if replaced:
                os.replace(old, target)  # put the previous export back
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise StorageError(f"cannot export to {target}: {exc}") from exc
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists() or old.is_symlink():
        old.unlink()
    fsync_dir(target.parent)
    return ExportInfo(
        path=target, format="hf", rows=int(dataset.num_rows), columns=tuple(schema.names)
    )


def export_result(
    result: RunResult, target: Path, fmt: str, *, overwrite: bool = False
) -> ExportInfo:
    """Export a run's dataset (see :func:`export_tables`), read one row group at a time, each
    data part checked against its recorded digest (:meth:`RunResult.iter_tables`).

    Raises:
        StorageError: also when ``target`` is inside the run directory (outside its
            ``export/`` folder) or holds it (see :func:`export_target_problem`), or when a
            data part is damaged (nothing is then left at ``target``).
    """
    if result.output_dir is not None:
        problem = export_target_problem(result.output_dir, target)
        if problem is not None:
            raise StorageError(problem)
    return export_tables(result.schema, result.iter_tables(), target, fmt, overwrite=overwrite)
