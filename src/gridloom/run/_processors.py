"""A pipeline's ``processors:``, compiled against its output columns and run on each finished
row group just before it is written.

:func:`compile_processors` checks the list against the columns each step sees (the
generated ones, then what the steps before it made of them) and derives the output schema,
raising a :class:`~gridloom.errors.ConfigError` naming the processor (``processors[1].rename``)
before anything is generated. :class:`ProcessingStore` wraps the run's store: the scheduler
hands it each finished row group, which it reshapes (``schema_transform`` renders in a worker
thread) and passes on — so only that group's rows are ever processed at once, and the wrapped
store (parquet or memory) writes exactly the processed schema. A row a step fails
(``schema_transform``: its template fails, or its record does not fit the output types) is
dropped like a row whose cell failed: it leaves the data, and a drop record names the step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._attrs import frozen
from ..config import PipelineConfig
from ..config._issues import suggest
from ..config._processors import (
    DropColumnsProcessor,
    ProcessorConfig,
    RenameProcessor,
    SchemaTransformProcessor,
)
from ..errors import ConfigError
from ..generators import TemplateLimits
from ..storage import ColumnCounts, DropRecord, RowGroupData, RowGroupStore, Verification
from ..storage._parts import store_tables, store_verification
from ._transform import CompiledTransform, RowFailures, compile_transform

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ProcessingStore", "ProcessorChain", "compile_processors"]

#: Worker threads processing row groups at once.
PROCESS_THREADS = 2


def _unknown(name: str, names: list[str], field: str) -> ConfigError:
    guess = suggest(name, names)
    hint = f"; did you mean {guess!r}?" if guess else f" (columns: {', '.join(names) or 'none'})"
    return ConfigError(f"unknown column {name!r}{hint}", field=field)


@frozen
class _Drop:
    columns: frozenset[str]

    def apply(self, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {k: v for k, v in columns.items() if k not in self.columns}


@frozen
class _Rename:
    mapping: Mapping[str, str]

    def apply(self, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {self.mapping.get(k, k): v for k, v in columns.items()}


_Step = _Drop | _Rename | CompiledTransform


def _compile_step(
    processor: ProcessorConfig, schema: pa.Schema, where: str, limits: TemplateLimits
) -> tuple[_Step, pa.Schema]:
    import pyarrow as pa

    names: list[str] = schema.names
    if isinstance(processor, DropColumnsProcessor):
        for name in processor.columns:
            if name not in names:
                raise _unknown(name, names, where)
        gone = frozenset(processor.columns)
        kept = pa.schema([f for f in schema if f.name not in gone], metadata=schema.metadata)
        if not kept.names:
            raise ConfigError("drops every column: the output would have none", field=where)
        return _Drop(gone), kept
    if isinstance(processor, RenameProcessor):
        for old, new in processor.mapping.items():
            if old not in names:
                raise _unknown(old, names, f"{where}.{old}")
            if new in names and new not in processor.mapping:
                raise ConfigError(
                    f"new name {new!r} is already a column's (drop or rename that one first)",
                    field=f"{where}.{old}",
                )
        mapping = dict(processor.mapping)
        renamed = pa.schema(
            [f.with_name(mapping.get(f.name, f.name)) for f in schema], metadata=schema.metadata
        )
        return _Rename(mapping), renamed
    assert isinstance(processor, SchemaTransformProcessor)
    compiled = compile_transform(processor.template, schema, where=where, limits=limits)
    return compiled, compiled.schema


@frozen
class ProcessorChain:
    """The compiled ``processors:`` of a pipeline.

    Attributes:
        schema: the schema of the data written (after every step).
        steps: the compiled steps, in order, with where each is named in drop records.
    """

    schema: pa.Schema
    steps: tuple[tuple[str, _Step], ...]

    @property
    def renders(self) -> bool:
        """Some step renders templates (worth a worker thread)."""
        return any(isinstance(step, CompiledTransform) for _, step in self.steps)

    def apply(self, data: RowGroupData) -> RowGroupData:
        """``data`` reshaped by every step; rows a step fails are dropped with its reason."""
        columns = dict(data.columns)
        row_ids = list(data.row_ids)
        drops = list(data.drops)
        for where, step in self.steps:
            if isinstance(step, CompiledTransform):
                columns, failures = step.apply(columns, len(row_ids))
                if failures:
                    row_ids, columns = _without(row_ids, columns, failures, drops, where)
            else:
                columns = step.apply(columns)
        return attrs.evolve(data, row_ids=row_ids, columns=columns, drops=drops)


def _without(
    row_ids: list[int],
    columns: dict[str, list[Any]],
    failures: RowFailures,
    drops: list[DropRecord],
    where: str,
) -> tuple[list[int], dict[str, list[Any]]]:
    for position in sorted(failures):
        error_type, message = failures[position]
        drops.append(
            DropRecord(
                row_id=row_ids[position], column=where, error_type=error_type, message=message
            )
        )
    keep = [i for i in range(len(row_ids)) if i not in failures]
    return [row_ids[i] for i in keep], {k: [v[i] for i in keep] for k, v in columns.items()}


def compile_processors(cfg: PipelineConfig, schema: pa.Schema) -> ProcessorChain | None:
    """Compile ``cfg.processors`` over the generated columns' ``schema``; ``None`` when the
    pipeline has none.

    Raises:
        ConfigError: naming the processor (``processors[i].<kind>``) and the problem.
    """
    if not cfg.processors:
        return None
    limits = TemplateLimits.from_run(cfg.run)
    steps: list[tuple[str, _Step]] = []
    problems: list[ConfigError] = []
    for i, processor in enumerate(cfg.processors):
        where = f"processors[{i}].{processor.kind}"
        try:
            step, schema = _compile_step(processor, schema, where, limits)
        except ConfigError as exc:
            problems.append(exc)
            break  # the steps after it would see columns that are not known
        steps.append((where, step))
    if problems:
        raise ConfigError.gather(problems)
    return ProcessorChain(schema=schema, steps=tuple(steps))


class ProcessingStore:
    """A :class:`~gridloom.storage.RowGroupStore` that runs a :class:`ProcessorChain` on each
    row group before the wrapped store writes it; everything else is the wrapped store's.

    Args:
        store: the run's store, opened with ``chain.schema``.
        chain: the compiled processors.
    """

    def __init__(self, store: RowGroupStore, chain: ProcessorChain) -> None:
        self._store = store
        self._chain = chain
        self._limiter = trio.CapacityLimiter(PROCESS_THREADS)

    @property
    def schema(self) -> pa.Schema:
        """Declared schema of the data tables (after the processors)."""
        return self._store.schema

    @property
    def counts(self) -> Mapping[str, ColumnCounts]:
        """Per column counts of the wrapped store."""
        return self._store.counts

    @property
    def rows_written(self) -> int:
        """Kept rows of the wrapped store."""
        return self._store.rows_written

    @property
    def rows_dropped(self) -> int:
        """Dropped rows of the wrapped store (processors' drops included)."""
        return self._store.rows_dropped

    def completed(self) -> frozenset[int]:
        """Row groups the wrapped store holds."""
        return self._store.completed()

    def rows_covered(self) -> dict[int, int]:
        """Rows each held row group covers."""
        return self._store.rows_covered()

    def rows_kept(self) -> dict[int, int]:
        """Rows each held row group of the wrapped store kept."""
        return self._store.rows_kept()

    async def write(self, data: RowGroupData) -> None:
        """Process ``data`` (in a worker thread when a step renders templates), then write it."""
        if self._chain.renders:
            processed = await trio.to_thread.run_sync(
                self._chain.apply, data, limiter=self._limiter
            )
        else:
            processed = self._chain.apply(data)
        del data
        await self._store.write(processed)

    async def finish(self, *, status: str, summary: Mapping[str, Any]) -> None:
        """Finish the wrapped store."""
        await self._store.finish(status=status, summary=summary)

    def read_table(self) -> pa.Table:
        """The wrapped store's rows (already processed)."""
        return self._store.read_table()

    def read_dropped(self) -> pa.Table:
        """The wrapped store's drop records."""
        return self._store.read_dropped()

    def iter_tables(self) -> Iterator[pa.Table]:
        """The wrapped store's rows, one row group at a time (each part checked)."""
        return store_tables(self._store)

    def verify(self) -> Verification:
        """Check the wrapped store's committed files."""
        return store_verification(self._store)
