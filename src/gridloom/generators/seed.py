"""The seed dataset generator: rows of a parquet, CSV or JSONL file (or a glob of them)."""

from __future__ import annotations

import glob
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ..config._models import SeedDatasetConfig
from ..errors import ConfigError, GenerationError
from .base import BatchContext, ColumnGenerator, Granularity, derive_rng

__all__ = ["SEED_DATASET_NODE", "SeedDatasetGenerator"]

#: The generator's name (the seed dataset fills several columns as one node).
SEED_DATASET_NODE = "seed_dataset"

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


def _resolve_files(pattern: str, base_dir: Path | None) -> tuple[Path, ...]:
    path = Path(pattern).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if _GLOB_CHARS.intersection(pattern):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    else:
        files = [path] if path.is_file() else []
    if not files:
        raise ConfigError(f"no file matches {str(path)!r}", field="seed_dataset.path")
    return tuple(files)


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


def _read_schema(path: Path, fmt: str) -> pa.Schema:
    if fmt == "parquet":
        return pq.read_schema(path).remove_metadata()
    if fmt == "csv":
        with pa_csv.open_csv(path) as reader:
            return reader.schema
    if fmt == "jsonl":
        with pa_json.open_json(path) as reader:
            return reader.schema
    raise ConfigError(f"unknown format {fmt!r}", field="seed_dataset.format")


def _read_table(path: Path, fmt: str, schema: pa.Schema) -> pa.Table:
    """``path``'s columns that are in ``schema``, read with ``schema``'s types."""
    if fmt == "parquet":
        return pq.read_table(path, columns=schema.names)
    if fmt == "csv":
        options = pa_csv.ConvertOptions(
            column_types={field.name: field.type for field in schema},
            include_columns=schema.names,
        )
        return pa_csv.read_csv(path, convert_options=options)
    parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    return pa_json.read_json(path, parse_options=parse)


def _checked(path: Path, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``read(*args, **kwargs)``, with read and schema errors raised as ``ConfigError``."""
    try:
        return read(*args, **kwargs)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(
            f"cannot read seed data {str(path)!r}: {exc}", field="seed_dataset.path"
        ) from exc


class SeedDatasetGenerator(ColumnGenerator):
    """Fills the seed columns of each row from a file of rows.

    Construction resolves the file(s) (relative to ``base_dir``; a glob matches files in sorted
    order, concatenated) and reads only their schemas; the rows are loaded on first use, once.
    Dataset row ``r`` takes file row ``r mod N`` (``ordered``), or position ``r mod N`` of a
    permutation of the ``N`` rows drawn from ``(seed, "seed_dataset", r // N)`` (``shuffled``):
    the mapping depends on neither row groups nor threads.

    Args:
        config: the seed dataset section of the pipeline.
        base_dir: folder relative paths are resolved against (the config file's folder).

    Raises:
        ConfigError: no file matches, a format cannot be told or read, files' schemas
            conflict, or ``config.columns`` names a column the files do not have.
    """

    granularity: Granularity = "batch"
    inline = False

    def __init__(self, config: SeedDatasetConfig, base_dir: Path | None = None):
        self.config = config
        self.files = _resolve_files(config.path, base_dir)
        self._formats = tuple(_format_of(path, config.format) for path in self.files)
        self._file_schemas: tuple[pa.Schema, ...] = tuple(
            _checked(path, _read_schema, path, fmt)
            for path, fmt in zip(self.files, self._formats, strict=True)
        )
        schema = _checked(
            self.files[0],
            pa.unify_schemas,
            list(self._file_schemas),
            promote_options="permissive",
        )
        names = config.columns or tuple(schema.names)
        unknown = [name for name in names if name not in schema.names]
        if unknown:
            raise ConfigError(
                f"columns {unknown} are not in the seed data (it has {schema.names})",
                field="seed_dataset.columns",
            )
        self.schema = pa.schema([schema.field(name) for name in names])
        super().__init__(name=SEED_DATASET_NODE, outputs={f.name: f.type for f in self.schema})
        self._lock = threading.Lock()
        self._table: pa.Table | None = None
        self._permutations: dict[tuple[int, int], list[int]] = {}

    @property
    def num_rows(self) -> int:
        """Rows in the seed data (loads it if not loaded yet)."""
        return int(self.table().num_rows)

    def table(self) -> pa.Table:
        """The seed rows as one Arrow table with :attr:`schema`; loaded once, thread-safe."""
        with self._lock:
            if self._table is None:
                self._table = self._load()
            return self._table

    def _load(self) -> pa.Table:
        parts = []
        for path, fmt, file_schema in zip(
            self.files, self._formats, self._file_schemas, strict=True
        ):
            present = pa.schema([f for f in self.schema if f.name in file_schema.names])
            try:
                part = _read_table(path, fmt, present)
            except (OSError, pa.ArrowException) as exc:
                raise GenerationError(f"cannot read seed data {str(path)!r}: {exc}") from exc
            columns = [
                part.column(f.name).cast(f.type)
                if f.name in present.names
                else pa.nulls(part.num_rows, f.type)
                for f in self.schema
            ]
            parts.append(pa.Table.from_arrays(columns, schema=self.schema))
        return pa.concat_tables(parts)

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
