"""The seed dataset generator: rows of a parquet, CSV or JSONL file (or a glob of them), of an
in-memory table (``memory://``) or of a Hugging Face dataset (``hf://``, see ``_seed_hf``),
sliced by ``index_range`` and ``partition``.

The files are read whole (parquet files sliced by ``index_range`` or ``partition``: only the
row groups holding the slice's rows), and checked, when the generator is built — when the
pipeline is compiled, so ``validate`` reports what a run would trip on: every problem is a
:class:`~gridloom.errors.ConfigError` on ``seed_dataset.path`` naming the file. Limits and
checks: at most :data:`MAX_SEED_BYTES` (2 GiB) in at most :data:`MAX_SEED_FILES` files, each
a regular file (not a directory, pipe or device); a CSV or JSONL file must parse cleanly (no
unterminated quote, no row with more or fewer fields than the header, UTF-8 text); binary
values are decoded as UTF-8 text, or refused; column names are unique; there is at least one
row.
"""

from __future__ import annotations

import glob
import mmap
import re
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ..config._models import SeedDatasetConfig
from ..config._seed_tables import is_memory_path, lookup
from ..errors import ConfigError, GenerationError
from ._seed_hf import is_hf_path, read_hf
from .base import BatchContext, ColumnGenerator, Granularity, derive_rng

__all__ = ["MAX_SEED_BYTES", "MAX_SEED_FILES", "SEED_DATASET_NODE", "SeedDatasetGenerator"]

#: The generator's name (the seed dataset fills several columns as one node).
SEED_DATASET_NODE = "seed_dataset"
#: The most seed data read, in bytes, over all its files (2 GiB).
MAX_SEED_BYTES = 2 * 1024**3
#: The most files a seed dataset's glob may match.
MAX_SEED_FILES = 10_000

_FORMATS_BY_SUFFIX = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_GLOB_CHARS = frozenset("*?[")
_PATH_FIELD = "seed_dataset.path"
#: Shuffle permutations kept per generator (row groups in flight rarely span more cycles).
_PERMUTATION_CACHE = 4
#: Bytes that end an unquoted CSV field, so that a quote after one opens a quoted field.
_FIELD_ENDS = frozenset(b",\r\n")
_UTF8_BOM = b"\xef\xbb\xbf"


def _problem(message: str, field: str = _PATH_FIELD) -> ConfigError:
    return ConfigError(message, field=field)


def _regular_size(path: Path) -> int | None:
    """The size of ``path`` when it is a regular file (after symlinks), else ``None``."""
    try:
        info = path.stat()
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _resolve_files(pattern: str, base_dir: Path | None) -> tuple[Path, ...]:
    try:
        path = Path(pattern).expanduser()
    except RuntimeError as exc:  # ~user that does not exist
        raise _problem(f"cannot resolve {pattern!r}: {exc}") from None
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if _GLOB_CHARS.intersection(pattern):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        files = [(p, size) for p in matches if (size := _regular_size(p)) is not None]
        if not files:
            others = " (only directories or special files)" if matches else ""
            raise _problem(f"no file matches {str(path)!r}{others}")
    else:
        size = _regular_size(path)
        if size is None:
            if path.is_dir():
                raise _problem(
                    f"{str(path)!r} is a directory; give a file, or a glob such as"
                    f" {str(path / '*.parquet')!r}"
                )
            if path.exists():
                raise _problem(f"{str(path)!r} is not a regular file (a pipe, socket or device)")
            raise _problem(f"no file matches {str(path)!r}")
        files = [(path, size)]
    if len(files) > MAX_SEED_FILES:
        raise _problem(
            f"{str(path)!r} matches {len(files):,} files; a seed dataset has at most"
            f" {MAX_SEED_FILES:,}"
        )
    total = sum(size for _path, size in files)
    if total > MAX_SEED_BYTES:
        raise _problem(
            f"the seed data {str(path)!r} has {total:,} bytes; at most {MAX_SEED_BYTES:,}"
            " (2 GiB) are read"
        )
    return tuple(p for p, _size in files)


def _format_of(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    try:
        return _FORMATS_BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise ConfigError(
            f"cannot tell the format of {str(path)!r} from its extension"
            f" (known: {', '.join(_FORMATS_BY_SUFFIX)}); set seed_dataset.format",
            field="seed_dataset.format",
        ) from None


def _unterminated_quote(data: bytes | mmap.mmap) -> int | None:
    """Where a quoted CSV field opens that is never closed (a byte offset), if one does.

    A quote opens a quoted field at the start of a field (the start of the data, or after a
    comma or a line break); inside, ``""`` is a quote and a lone ``"`` closes it. pyarrow
    reads an unclosed field to the end of the file as one value; this finds it.
    """
    find = data.find
    first = pos = len(_UTF8_BOM) if data[: len(_UTF8_BOM)] == _UTF8_BOM else 0
    while (opening := find(b'"', pos)) >= 0:
        if opening != first and data[opening - 1] not in _FIELD_ENDS:
            pos = opening + 1  # a quote inside an unquoted field is a plain character
            continue
        closing = opening + 1
        while True:
            closing = find(b'"', closing)
            if closing < 0:
                return opening
            if data[closing + 1 : closing + 2] != b'"':
                break
            closing += 2
        pos = closing + 1
    return None


def _line_of(data: bytes | mmap.mmap, offset: int) -> int:
    chunk = 1 << 24
    return 1 + sum(
        data[start : min(offset, start + chunk)].count(b"\n") for start in range(0, offset, chunk)
    )


def _check_quotes(path: Path) -> None:
    with path.open("rb") as handle:
        if _regular_size(path) == 0:
            return  # pyarrow says it is empty
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            opening = _unterminated_quote(data)
            if opening is not None:
                raise _problem(
                    f"cannot read seed data {str(path)!r}: the quoted field opened on line"
                    f" {_line_of(data, opening)} is never closed"
                )


def _read_csv(path: Path) -> pa.Table:
    _check_quotes(path)
    parse = pa_csv.ParseOptions(newlines_in_values=True)
    try:
        return pa_csv.read_csv(path, parse_options=parse)
    except pa.ArrowInvalid:
        # Once more on one thread, where pyarrow's message says which row is wrong.
        one_thread = pa_csv.ReadOptions(use_threads=False)
        return pa_csv.read_csv(path, read_options=one_thread, parse_options=parse)


def _read_parquet(path: Path, wanted: Sequence[str], rows: tuple[int, int] | None) -> pa.Table:
    """The file's ``wanted`` columns (all when empty); of ``rows`` (``[start, stop)``) only,
    when given, reading just the row groups that hold them."""
    names = pq.read_schema(path).names
    columns = [name for name in names if name in wanted] if wanted else None
    if rows is None:
        return pq.read_table(path, columns=columns)
    start, stop = rows
    with pq.ParquetFile(path) as handle:
        groups: list[int] = []
        first = offset = 0
        for group in range(handle.metadata.num_row_groups):
            size = handle.metadata.row_group(group).num_rows
            if offset < stop and offset + size > start:
                if not groups:
                    first = offset
                groups.append(group)
            offset += size
        if not groups:
            return handle.schema_arrow.empty_table().select(columns or names)
        table = handle.read_row_groups(groups, columns=columns)
    return table.slice(start - first, stop - start)


def _text_type(kind: pa.DataType) -> pa.DataType:
    """``kind`` with every binary type in it replaced by the matching text type."""
    if pa.types.is_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return pa.string()
    if pa.types.is_large_binary(kind):
        return pa.large_string()
    if pa.types.is_binary_view(kind):
        return pa.string_view()
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_text_type(kind.value_type)))
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_text_type(kind.value_type)))
    if pa.types.is_fixed_size_list(kind):
        value_field = kind.value_field.with_type(_text_type(kind.value_type))
        return pa.list_(value_field, kind.list_size)
    if pa.types.is_struct(kind):
        return pa.struct([field.with_type(_text_type(field.type)) for field in kind])
    if pa.types.is_map(kind):
        return pa.map_(
            kind.key_field.with_type(_text_type(kind.key_type)),
            kind.item_field.with_type(_text_type(kind.item_type)),
        )
    if pa.types.is_dictionary(kind):
        return pa.dictionary(kind.index_type, _text_type(kind.value_type), kind.ordered)
    return kind


def _first_bad_row(column: pa.ChunkedArray) -> str:
    for row, value in enumerate(column.to_pylist(), start=1):
        if isinstance(value, bytes):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return f" (data row {row})"
    return ""


def _as_text(table: pa.Table, where: str) -> pa.Table:
    """``table`` with binary values decoded as UTF-8 text: never stored as bytes."""
    for index, field in enumerate(table.schema):
        text_type = _text_type(field.type)
        if text_type == field.type:
            continue
        column = table.column(index)
        try:
            decoded = column.cast(text_type)
        except pa.ArrowInvalid:
            raise _problem(
                f"{where}: column {field.name!r} holds bytes that are not UTF-8 text"
                f"{_first_bad_row(column)}; gridloom columns hold text"
            ) from None
        except pa.ArrowException:
            raise _problem(
                f"{where}: column {field.name!r} holds binary data ({field.type}), which"
                " gridloom cannot store as text"
            ) from None
        table = table.set_column(index, field.with_type(text_type), decoded)
    return table


def _check_names(table: pa.Table, where: str) -> None:
    try:
        names = table.column_names
    except UnicodeDecodeError:
        raise _problem(f"{where}: a column name is not UTF-8 text") from None
    if not names:
        raise _problem(f"{where} has no columns")
    seen: set[str] = set()
    for name in names:
        if "\ufffd" in name:
            raise _problem(f"{where}: the column name {name!r} is not UTF-8 text")
        if name in seen:
            raise _problem(f"{where} has more than one column named {name!r}")
        seen.add(name)


def _check_text(table: pa.Table, where: str) -> None:
    """Refuse text values that are not UTF-8 (pyarrow's JSON reader, and some parquet
    writers, let such bytes through into text columns)."""
    for name, column in zip(table.column_names, table.columns, strict=True):
        offset = 0
        for chunk in column.chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid as exc:
                found = re.search(r"string index (\d+)", str(exc))
                row = f" (data row {offset + int(found[1]) + 1})" if found else ""
                raise _problem(
                    f"{where}: column {name!r} holds text that is not UTF-8{row}"
                ) from None
            offset += len(chunk)


def _read_file(
    path: Path, fmt: str, wanted: Sequence[str], rows: tuple[int, int] | None = None
) -> pa.Table:
    """The rows of one seed file (of ``rows``, ``[start, stop)``, only for a parquet file
    when given), checked, with text for binary values."""
    where = f"seed data {str(path)!r}"
    try:
        if fmt == "parquet":
            table = _read_parquet(path, wanted, rows)
        elif fmt == "csv":
            table = _read_csv(path)
        elif fmt == "jsonl":
            table = pa_json.read_json(path)
        else:
            raise ConfigError(f"unknown format {fmt!r}", field="seed_dataset.format")
    except UnicodeDecodeError:  # pyarrow quoted the undecodable bytes in its message
        raise _problem(f"cannot read {where}: it is not UTF-8 text") from None
    except (OSError, pa.ArrowException) as exc:
        raise _problem(f"cannot read {where}: {exc}") from exc
    _check_names(table, where)
    table = _as_text(table.replace_schema_metadata(None), where)
    _check_text(table, where)
    return table


def _checked(path: Path, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``read(*args, **kwargs)``, with read and schema errors raised as ``ConfigError``."""
    try:
        return read(*args, **kwargs)
    except (OSError, pa.ArrowException) as exc:
        raise _problem(f"cannot read seed data {str(path)!r}: {exc}") from exc


def _conformed(path: Path, table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``: columns cast to its types, nulls for those it lacks."""
    columns = [
        _checked(path, table.column(field.name).cast, field.type)
        if field.name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _selected(schema: pa.Schema, columns: Sequence[str]) -> tuple[str, ...]:
    """The seed columns used: ``columns``, checked against ``schema``, else all."""
    names = tuple(columns) or tuple(schema.names)
    unknown = [name for name in names if name not in schema.names]
    if unknown:
        raise ConfigError(
            f"columns {unknown} are not in the seed data (it has {schema.names})",
            field="seed_dataset.columns",
        )
    return names


def _given_table(table: pa.Table, config: SeedDatasetConfig, where: str) -> pa.Table:
    """An in-memory or Hugging Face table, checked like a file's rows."""
    _check_names(table, where)
    table = table.select(list(_selected(table.schema, config.columns)))
    table = _as_text(table, where)
    _check_text(table, where)
    return table


def _window(rows: int, config: SeedDatasetConfig) -> tuple[int, int]:
    """The rows ``[start, stop)`` of ``rows`` that ``index_range`` and then ``partition`` keep."""
    start, stop = 0, rows
    if config.index_range is not None:
        start, stop = config.index_range
        if stop > rows:
            raise ConfigError(
                f"index_range [{start}, {stop}] passes the end of the seed data ({rows:,} rows)",
                field="seed_dataset.index_range",
            )
    part = config.partition
    if part is not None:
        size = stop - start
        if part.of > size:
            raise ConfigError(
                f"partition of {part.of} parts leaves some empty: the seed data has {size:,} rows",
                field="seed_dataset.partition",
            )
        start, stop = (
            start + part.index * size // part.of,
            start + (part.index + 1) * size // part.of,
        )
    return start, stop


def _sliced(table: pa.Table, config: SeedDatasetConfig) -> pa.Table:
    """The rows of ``table`` that ``index_range`` and then ``partition`` keep."""
    start, stop = _window(table.num_rows, config)
    return table.slice(start, stop - start)


def _file_windows(files: Sequence[Path], config: SeedDatasetConfig) -> list[tuple[int, int]] | None:
    """Each parquet file's share (``[start, stop)`` of its rows) of the rows a sliced seed
    keeps, from the files' metadata; ``None`` when nothing is sliced."""
    if config.index_range is None and config.partition is None:
        return None
    counts = [_checked(path, lambda p: pq.read_metadata(p).num_rows, path) for path in files]
    if sum(counts) == 0:
        raise _problem(f"the seed dataset has no rows: {str(config.path)!r} holds no data rows")
    start, stop = _window(sum(counts), config)
    windows, offset = [], 0
    for count in counts:
        low, high = max(start - offset, 0), min(stop - offset, count)
        windows.append((low, max(low, high)))
        offset += count
    return windows


class SeedDatasetGenerator(ColumnGenerator[BatchContext]):
    """Fills the seed columns of each row from a file of rows.

    Construction resolves the file(s) (relative to ``base_dir``; a glob matches files in sorted
    order, concatenated), reads them whole and checks them (see the module's docstring for
    the limits). Dataset row ``r`` takes file row ``r mod N`` (``ordered``), or position
    ``r mod N`` of a permutation of the ``N`` rows drawn from ``(seed, "seed_dataset", r // N)``
    (``shuffled``): the mapping depends on neither row groups nor threads.

    Args:
        config: the seed dataset section of the pipeline.
        base_dir: folder relative paths are resolved against (the config file's folder).

    Raises:
        ConfigError: no file matches (or a path is a directory, pipe or device), the data is
            too large, a format cannot be told, a file does not parse cleanly or holds binary
            values that are not UTF-8 text, files' schemas conflict, ``config.columns``
            names a column the files do not have, or there are no rows.
    """

    granularity: Granularity = "batch"
    inline = False

    def __init__(self, config: SeedDatasetConfig, base_dir: Path | None = None):
        self.config = config
        self._presliced = False
        if is_memory_path(config.path):
            self.files: tuple[Path, ...] = ()
            table = _given_table(lookup(config.path), config, "the in-memory seed table")
        elif is_hf_path(config.path):
            self.files = ()
            where = f"the Hugging Face dataset {config.path!r}"
            table = _given_table(read_hf(config, base_dir), config, where)
        else:
            self.files = _resolve_files(config.path, base_dir)
            table = self._read_files(config)
        self.schema = table.schema
        super().__init__(name=SEED_DATASET_NODE, outputs={f.name: f.type for f in self.schema})
        if not self._presliced:
            if table.num_rows == 0:
                raise _problem(
                    f"the seed dataset has no rows: {str(config.path)!r} holds no data rows"
                )
            table = _sliced(table, config)
        self._table: pa.Table = table
        self._lock = threading.Lock()
        self._permutations: dict[tuple[int, int], list[int]] = {}

    def _read_files(self, config: SeedDatasetConfig) -> pa.Table:
        formats = tuple(_format_of(path, config.format) for path in self.files)
        windows: Sequence[tuple[int, int] | None] = [None] * len(self.files)
        if set(formats) == {"parquet"}:
            # Read only the row groups that hold the rows a slice keeps.
            found = _file_windows(self.files, config)
            if found is not None:
                windows, self._presliced = found, True
        tables = [
            _read_file(path, fmt, config.columns, window)
            for path, fmt, window in zip(self.files, formats, windows, strict=True)
        ]
        schema = _checked(
            self.files[0],
            pa.unify_schemas,
            [table.schema for table in tables],
            promote_options="permissive",
        )
        names = _selected(schema, config.columns)
        wanted = pa.schema([schema.field(name) for name in names])
        return pa.concat_tables(
            _conformed(path, part, wanted) for path, part in zip(self.files, tables, strict=True)
        )

    @property
    def num_rows(self) -> int:
        """Rows in the seed data."""
        return int(self._table.num_rows)

    def table(self) -> pa.Table:
        """The seed rows as one Arrow table with :attr:`schema` (read when built)."""
        return self._table

    def _permutation(self, seed: int, cycle: int, size: int) -> list[int]:
        key = (seed, cycle)
        with self._lock:
            order = self._permutations.get(key)
            if order is None:
                order = list(range(size))
                derive_rng(seed, SEED_DATASET_NODE, cycle).shuffle(order)
                if len(self._permutations) >= _PERMUTATION_CACHE:
                    del self._permutations[next(iter(self._permutations))]
                self._permutations[key] = order
            return order

    def indices(self, row_ids: Iterable[int], seed: int) -> list[int]:
        """The seed data rows that dataset rows ``row_ids`` take under run seed ``seed``.

        Raises:
            GenerationError: the seed data is empty, or a row id is past its end and ``cycle``
                is off.
        """
        size = self.num_rows
        if size == 0:
            raise GenerationError("the seed dataset has no rows")
        shuffled = self.config.order == "shuffled"
        orders: dict[int, list[int]] = {}
        out = []
        for row_id in row_ids:
            cycle, position = divmod(row_id, size)
            if cycle and not self.config.cycle:
                raise GenerationError(
                    f"row {row_id} is past the end of the seed dataset ({size} rows)"
                    " and cycle is off"
                )
            if shuffled:
                order = orders.get(cycle)
                if order is None:
                    order = orders[cycle] = self._permutation(seed, cycle, size)
                position = order[position]
            out.append(position)
        return out

    def generate(self, ctx: BatchContext) -> dict[str, list[Any]]:
        """Each seed column's values for the batch's rows."""
        indices = self.indices(ctx.row_ids, ctx.seed)
        taken = self.table().take(pa.array(indices, type=pa.int64()))
        return {name: taken.column(name).to_pylist() for name in self.outputs}
