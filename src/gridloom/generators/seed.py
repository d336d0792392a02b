"""The seed dataset generator: rows of a parquet, CSV or JSONL file (or a glob or a folder of
them), of an in-memory table (``memory://``) or of a Hugging Face dataset (``hf://``, see
``_seed_hf``), sliced by ``index_range`` and ``partition``.

Parquet seeds over :data:`STREAM_THRESHOLD_BYTES` (64 MiB, all files together) are *streamed*:
only their metadata is read when the generator is built, and at generate time only the row
groups (and columns) holding the rows a run row group takes (see ``_seed_stream``); there is
no limit on their size. Any other seed is read whole, and checked, when the generator is
built (parquet files sliced by ``index_range`` or ``partition``: only the row groups holding
the slice's rows): at most :data:`MAX_SEED_BYTES` (2 GiB). Either way this happens when the
pipeline is compiled, so ``validate`` reports what a run would trip on: every problem is a
:class:`~gridloom.errors.ConfigError` on ``seed_dataset.path`` naming the file. Limits and
checks: at most :data:`MAX_SEED_FILES` files, each a regular file (not a pipe or device); a
CSV or JSONL file must parse cleanly (no unterminated quote, no row with more or fewer fields
than the header, UTF-8 text, no record over
:data:`~gridloom.storage._text_tables.MAX_RECORD_BYTES`, 64 MiB); binary values are decoded
as UTF-8 text, or refused; column names are unique; there is at least one row. A streamed
row group that fails these checks at generate time fails its run row group's rows with a
:class:`SeedReadError` naming the file, which stops the run.
"""

from __future__ import annotations

import glob
import os
import stat
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..config._models import SeedDatasetConfig
from ..config._seed_tables import is_memory_path, lookup
from ..errors import ConfigError, GenerationError
from ..storage._text_tables import TextTableError, read_text_table
from ._seed_checks import (
    as_text,
    check_names,
    check_text,
    checked,
    conformed,
    problem,
    selected,
)
from ._seed_fingerprint import files_fingerprint
from ._seed_hf import is_hf_path, read_hf
from ._seed_order import WindowedShuffle, replacement_draws
from ._seed_stream import SeedReadError, StreamedParquet, scan_parquet
from .base import BatchContext, ColumnGenerator, Granularity, derive_rng

__all__ = [
    "MAX_SEED_BYTES",
    "MAX_SEED_FILES",
    "SEED_DATASET_NODE",
    "STREAM_THRESHOLD_BYTES",
    "SeedDatasetGenerator",
    "SeedReadError",
]

#: The generator's name (the seed dataset fills several columns as one node).
SEED_DATASET_NODE = "seed_dataset"
#: The most seed data read whole, in bytes, over all its files (2 GiB).
MAX_SEED_BYTES = 2 * 1024**3
#: Parquet seeds larger than this (all files together, in bytes) are streamed by row group.
STREAM_THRESHOLD_BYTES = 64 * 1024**2
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
#: Shuffle permutations kept per generator (row groups in flight rarely span more cycles).
_PERMUTATION_CACHE = 4


def _regular_size(path: Path) -> int | None:
    """The size of ``path`` when it is a regular file (after symlinks), else ``None``."""
    try:
        info = path.stat()
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _folder_files(folder: Path, declared: str) -> list[tuple[Path, int]]:
    """The regular files directly in ``folder`` with a seed file's extension (of the
    ``declared`` format unless ``auto``), sorted, with their sizes."""
    found: list[tuple[Path, int]] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                fmt = _FORMATS_BY_SUFFIX.get(Path(entry.name).suffix.lower())
                if fmt is None or declared not in ("auto", fmt):
                    continue
                size = _regular_size(Path(entry.path))
                if size is not None:
                    found.append((Path(entry.path), size))
                if len(found) > MAX_SEED_FILES:
                    raise problem(
                        f"the folder {str(folder)!r} holds more than {MAX_SEED_FILES:,} seed"
                        " files; a seed dataset has at most that many"
                    )
    except OSError as exc:
        raise problem(f"cannot list the folder {str(folder)!r}: {exc}") from None
    if not found:
        kinds = "parquet, CSV or JSONL" if declared == "auto" else declared
        raise problem(
            f"the folder {str(folder)!r} holds no {kinds} file (known extensions:"
            f" {', '.join(_FORMATS_BY_SUFFIX)})"
        )
    return sorted(found)


def _resolve_files(pattern: str, base_dir: Path | None, declared: str) -> list[tuple[Path, int]]:
    """The seed files ``pattern`` names (a file, a glob or a folder), sorted, with sizes."""
    try:
        path = Path(pattern).expanduser()
    except RuntimeError as exc:  # ~user that does not exist
        raise problem(f"cannot resolve {pattern!r}: {exc}") from None
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if _GLOB_CHARS.intersection(pattern):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        files = [(p, size) for p in matches if (size := _regular_size(p)) is not None]
        if not files:
            others = " (only directories or special files)" if matches else ""
            raise problem(f"no file matches {str(path)!r}{others}")
    else:
        size = _regular_size(path)
        if size is None:
            if path.is_dir():
                files = _folder_files(path, declared)
            elif path.exists():
                raise problem(f"{str(path)!r} is not a regular file (a pipe, socket or device)")
            else:
                raise problem(f"no file matches {str(path)!r}")
        else:
            files = [(path, size)]
    if len(files) > MAX_SEED_FILES:
        raise problem(
            f"{str(path)!r} matches {len(files):,} files; a seed dataset has at most"
            f" {MAX_SEED_FILES:,}"
        )
    return files


def _check_whole_size(pattern: str, total: int) -> None:
    if total > MAX_SEED_BYTES:
        raise problem(
            f"the seed data {pattern!r} has {total:,} bytes; at most {MAX_SEED_BYTES:,}"
            " (2 GiB) are read whole (parquet seeds of any size are streamed by row group)"
        )


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


def _read_file(
    path: Path, fmt: str, wanted: Sequence[str], rows: tuple[int, int] | None = None
) -> pa.Table:
    """The rows of one seed file (of ``rows``, ``[start, stop)``, only for a parquet file
    when given), checked, with text for binary values."""
    where = f"seed data {str(path)!r}"
    try:
        if fmt == "parquet":
            table = _read_parquet(path, wanted, rows)
        elif fmt in ("csv", "jsonl"):
            table = read_text_table(path, fmt)
        else:
            raise ConfigError(f"unknown format {fmt!r}", field="seed_dataset.format")
    except UnicodeDecodeError:  # pyarrow quoted the undecodable bytes in its message
        raise problem(f"cannot read {where}: it is not UTF-8 text") from None
    except (OSError, pa.ArrowException, TextTableError) as exc:
        raise problem(f"cannot read {where}: {exc}") from exc
    check_names(table, where)
    table = as_text(table.replace_schema_metadata(None), where)
    check_text(table, where)
    return table


def _given_table(table: pa.Table, config: SeedDatasetConfig, where: str) -> pa.Table:
    """An in-memory or Hugging Face table, checked like a file's rows."""
    check_names(table, where)
    table = table.select(list(selected(table.schema, config.columns)))
    table = as_text(table, where)
    check_text(table, where)
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
    counts = [checked(path, lambda p: pq.read_metadata(p).num_rows, path) for path in files]
    if sum(counts) == 0:
        raise problem(f"the seed dataset has no rows: {str(config.path)!r} holds no data rows")
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
    order, concatenated; a folder means the seed files directly in it, sorted) and reads them
    whole and checks them, or — parquet seeds over :data:`STREAM_THRESHOLD_BYTES` — reads and
    checks their metadata only (see the module's docstring for the limits).

    Of the ``N`` rows kept (after ``index_range`` and ``partition``), dataset row ``r`` takes:

    - ``ordered``: row ``r mod N``, read whole or streamed alike;
    - ``shuffled``, read whole: position ``r mod N`` of a uniform permutation of the ``N``
      rows drawn from ``(seed, "seed_dataset", r // N)``; streamed: position ``r mod N`` of
      cycle ``r // N`` of a :class:`~gridloom.generators._seed_order.WindowedShuffle` (the
      parquet row groups permuted, the rows permuted within windows of four of them);
    - ``replacement``: a row drawn uniformly at random from ``(seed, "seed_dataset",
      "replacement", row group)``, one draw per row of the run row group (dropped rows
      included), so the draws do not depend on which rows are live; streamed, from four
      row groups drawn per run row group, each with probability proportional to its rows.

    The mapping depends on neither threads nor the order tasks run in.

    Args:
        config: the seed dataset section of the pipeline.
        base_dir: folder relative paths are resolved against (the config file's folder).

    Raises:
        ConfigError: no file matches (or a path is a pipe or device, or a folder without seed
            files), the data is too large, a format cannot be told, a file does not parse
            cleanly or holds binary values that are not UTF-8 text, files' schemas conflict,
            ``config.columns`` names a column the files do not have, or there are no rows.
    """

    granularity: Granularity = "batch"
    inline = False

    def __init__(self, config: SeedDatasetConfig, base_dir: Path | None = None):
        self.config = config
        self._presliced = False
        self._stream: StreamedParquet | None = None
        self._windowed: WindowedShuffle | None = None
        self._blocks: list[tuple[int, int]] = []
        self._start = self._size = 0
        table: pa.Table | None = None
        if is_memory_path(config.path):
            self.files: tuple[Path, ...] = ()
            table = _given_table(lookup(config.path), config, "the in-memory seed table")
        elif is_hf_path(config.path):
            self.files = ()
            where = f"the Hugging Face dataset {config.path!r}"
            table = _given_table(read_hf(config, base_dir), config, where)
        else:
            found = _resolve_files(config.path, base_dir, config.format)
            self.files = tuple(path for path, _size in found)
            formats = tuple(_format_of(path, config.format) for path in self.files)
            total = sum(size for _path, size in found)
            if set(formats) == {"parquet"} and total > STREAM_THRESHOLD_BYTES:
                self._stream = StreamedParquet(self.files, scan_parquet(self.files, config.columns))
            else:
                _check_whole_size(config.path, total)
                table = self._read_files(config, formats)
        if table is None:
            assert self._stream is not None
            self.schema = self._stream.schema
            self._open_stream(config, self._stream)
        else:
            self.schema = table.schema
        super().__init__(name=SEED_DATASET_NODE, outputs={f.name: f.type for f in self.schema})
        if table is not None and not self._presliced:
            if table.num_rows == 0:
                raise _no_rows(config)
            table = _sliced(table, config)
        self._table: pa.Table | None = table
        if table is not None:
            self._size = table.num_rows
        self._lock = threading.Lock()
        self._permutations: dict[tuple[int, int], list[int]] = {}

    def _open_stream(self, config: SeedDatasetConfig, stream: StreamedParquet) -> None:
        if stream.num_rows == 0:
            raise _no_rows(config)
        start, stop = _window(stream.num_rows, config)
        self._start, self._size = start, stop - start
        self._blocks = stream.blocks(start, stop)
        if config.order == "shuffled":
            self._windowed = WindowedShuffle(self._blocks, SEED_DATASET_NODE)

    def _read_files(self, config: SeedDatasetConfig, formats: Sequence[str]) -> pa.Table:
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
        schema = checked(
            self.files[0],
            pa.unify_schemas,
            [table.schema for table in tables],
            promote_options="permissive",
        )
        names = selected(schema, config.columns)
        wanted = pa.schema([schema.field(name) for name in names])
        return pa.concat_tables(
            conformed(path, part, wanted) for path, part in zip(self.files, tables, strict=True)
        )

    @property
    def streamed(self) -> bool:
        """Whether the seed rows are streamed by parquet row group (never held whole)."""
        return self._stream is not None

    def fingerprint(self) -> str | None:
        """A fingerprint of the seed files (:mod:`._seed_fingerprint`), for a resume to check
        that they did not change; ``None`` for an in-memory table (the config's hash covers
        its content) or a Hugging Face dataset (its revision does).

        Raises:
            OSError: a file cannot be read.
        """
        return files_fingerprint(self.files) if self.files else None

    @property
    def num_rows(self) -> int:
        """Rows in the seed data (those ``index_range`` and ``partition`` keep)."""
        return self._size

    def table(self) -> pa.Table:
        """The seed rows as one Arrow table with :attr:`schema` (read when built).

        Raises:
            RuntimeError: the seed is streamed (:attr:`streamed`), never held whole.
        """
        if self._table is None:
            raise RuntimeError("a streamed seed dataset is never held whole")
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

    def _draws(self, group_row_ids: Sequence[int], seed: int, row_group: int) -> list[int]:
        """One seed row drawn with replacement per row of a run row group."""
        if self._stream is not None:
            return replacement_draws(
                self._blocks, seed, SEED_DATASET_NODE, row_group, len(group_row_ids)
            )
        rng = derive_rng(seed, SEED_DATASET_NODE, "replacement", row_group)
        return [rng.randrange(self._size) for _ in group_row_ids]

    def indices(
        self,
        row_ids: Iterable[int],
        seed: int,
        *,
        row_group: int = 0,
        group_row_ids: Sequence[int] | None = None,
    ) -> list[int]:
        """The seed data rows (from 0, of those kept) that dataset rows ``row_ids`` take under
        run seed ``seed``; with ``replacement``, ``row_ids`` are rows of run row group
        ``row_group``, whose rows are ``group_row_ids`` (``row_ids`` when not given).

        Raises:
            GenerationError: the seed data is empty, or a row id is past its end and ``cycle``
                is off (and ``replacement`` too).
        """
        size = self.num_rows
        if size == 0:
            raise GenerationError("the seed dataset has no rows")
        if self.config.replacement:
            row_ids = list(row_ids)
            group = list(row_ids if group_row_ids is None else group_row_ids)
            where = {row_id: at for at, row_id in enumerate(group)}
            draws = self._draws(group, seed, row_group)
            return [draws[where[row_id]] for row_id in row_ids]
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
            if shuffled and self._windowed is not None:
                position = self._windowed.row(seed, cycle, position)
            elif shuffled:
                order = orders.get(cycle)
                if order is None:
                    order = orders[cycle] = self._permutation(seed, cycle, size)
                position = order[position]
            out.append(position)
        return out

    def generate(self, ctx: BatchContext) -> dict[str, list[Any]]:
        """Each seed column's values for the batch's rows (a streamed seed reads the row
        groups holding them here, in the worker thread this runs in)."""
        indices = self.indices(
            ctx.row_ids, ctx.seed, row_group=ctx.row_group, group_row_ids=ctx.group_row_ids
        )
        if self._stream is not None:
            taken = self._stream.take([self._start + index for index in indices])
        else:
            taken = self.table().take(pa.array(indices, type=pa.int64()))
        return {name: taken.column(name).to_pylist() for name in self.outputs}


def _no_rows(config: SeedDatasetConfig) -> ConfigError:
    return problem(f"the seed dataset has no rows: {str(config.path)!r} holds no data rows")
