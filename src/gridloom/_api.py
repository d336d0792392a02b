"""The public entry points: ``create``, ``acreate``, ``preview``, ``validate``."""

from __future__ import annotations

import functools
import logging
import math
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import trio

from .clients import ModelHandle
from .config import PipelineConfig, config_hash, dump_config, load_config_with_base
from .engine import (
    ExecutionGraph,
    GeneratorHealth,
    HealthMonitor,
    RowGroupSpec,
    Scheduler,
    ShutdownReason,
    compile_pipeline,
)
from .engine.models import check_models as _check_models
from .engine.models import open_models
from .errors import ConfigError
from .progress import ProgressReporter, reporting
from .storage import MemoryStore, ParquetStore, RowGroupStore, RunResult
from .trace import TaskTracer, throttle_counters, with_origin, write_trace

__all__ = [
    "acheck_models",
    "acreate",
    "apreview",
    "check_models",
    "create",
    "plan_row_groups",
    "preview",
    "validate",
]

log = logging.getLogger("gridloom")

ConfigSource = PipelineConfig | str | os.PathLike[str] | Mapping[str, Any]


def _load(
    config: ConfigSource, base_dir: str | os.PathLike[str] | None
) -> tuple[PipelineConfig, Path | None]:
    if isinstance(config, PipelineConfig):
        cfg, base = config, None
    else:
        cfg, base = load_config_with_base(config)
    if base_dir is not None:
        base = Path(base_dir)
    return cfg, base


def validate(
    config: ConfigSource, *, base_dir: str | os.PathLike[str] | None = None
) -> ExecutionGraph:
    """Check a pipeline without generating anything; returns its execution graph.

    Raises:
        ConfigError: naming the column and field at fault.
    """
    cfg, base = _load(config, base_dir)
    return compile_pipeline(cfg, base_dir=base)


def _check_num_records(num_records: int) -> None:
    if num_records < 1:
        raise ConfigError(f"num_records must be >= 1, got {num_records}")


def plan_row_groups(num_records: int, row_group_size: int) -> list[RowGroupSpec]:
    """Split ``num_records`` rows into row groups of ``row_group_size`` (the last may be short).

    A list, for looking at a plan; a run walks it lazily (:func:`_iter_row_groups`), so its
    size never depends on ``num_records``.
    """
    _check_num_records(num_records)
    return list(_iter_row_groups(num_records, row_group_size))


def _iter_row_groups(
    num_records: int, row_group_size: int, skip: frozenset[int] = frozenset()
) -> Iterator[RowGroupSpec]:
    """The row groups of ``num_records`` rows, one at a time, but those in ``skip``."""
    for index, start in enumerate(range(0, num_records, row_group_size)):
        if index not in skip:
            rows = min(row_group_size, num_records - start)
            yield RowGroupSpec(index=index, first_row_id=start, num_rows=rows)


def _check_seed_rows(graph: ExecutionGraph, cfg: PipelineConfig, num_records: int) -> None:
    seed_cfg = cfg.seed_dataset
    if seed_cfg is None or seed_cfg.cycle:
        return
    generator = graph.nodes[graph.producer[next(iter(graph.nodes[0].outputs))]].generator
    available = getattr(generator, "num_rows", None)
    if isinstance(available, int) and num_records > available:
        raise ConfigError(
            f"the seed dataset has {available} rows, fewer than num_records={num_records};"
            " set cycle: true to reuse rows",
            field="seed_dataset.cycle",
        )


async def _run(
    cfg: PipelineConfig,
    graph: ExecutionGraph,
    store: RowGroupStore,
    *,
    num_records: int,
    seed: int,
    output_dir: Path | None,
    models: Mapping[str, ModelHandle],
    preview: bool = False,
) -> RunResult:
    # On resume the store knows the run's full size (it may have grown).
    total = getattr(store, "num_records", num_records)
    size = cfg.run.row_group_size
    done = store.completed()
    specs = _iter_row_groups(total, size, done)  # lazy: -n 10**12 plans nothing up front
    planned = -(-total // size)
    remaining = total - sum(rows for i, rows in store.rows_covered().items() if i < planned)
    traced = cfg.run.trace or os.environ.get("GRIDLOOM_TRACE", "") not in ("", "0")
    tracer = TaskTracer(origin=trio.current_time()) if traced else None
    columns_health = GeneratorHealth.from_run_config(cfg.run)
    scheduler = Scheduler(
        graph,
        cfg.run,
        seed=seed,
        store=store,
        models=models,
        tracer=tracer,
        health=columns_health,
    )
    # A model, or a column, that keeps failing stops the run: its monitor cancels this scope.
    stop = trio.CancelScope()
    reasons: list[ShutdownReason] = []

    def on_trip(reason: ShutdownReason) -> None:
        reasons.append(reason)
        stop.cancel()

    for monitor in _monitors(models):
        monitor.on_trip(on_trip)
    columns_health.on_trip(on_trip)
    # Live progress (run.progress, GRIDLOOM_PROGRESS): a background task reading snapshots.
    reporter = ProgressReporter.for_run(
        cfg.run,
        statistics=scheduler.statistics,
        models=models,
        total=remaining,
        preview=preview,
    )
    started = trio.current_time()
    rows_before = store.rows_written
    try:
        with stop:
            async with reporting(reporter):
                await scheduler.run(specs)
                if cfg.run.fill_to_target:
                    while top_up := _top_up(store, total, size, cfg.run.fill_budget):
                        extra, groups = top_up
                        log.info(
                            "%d rows were dropped: generating %d more (fill_to_target)",
                            total - store.rows_written,
                            extra,
                        )
                        if reporter is not None:
                            reporter.add_rows(extra)
                        await scheduler.run(groups)
    except BaseException as exc:
        status = "interrupted" if _is_interrupt(exc) else "failed"
        summary = _summary(scheduler, models, status, trio.current_time() - started)
        with trio.CancelScope(shield=True):
            try:
                await _save_trace(tracer, output_dir, models)
                await store.finish(status=status, summary=summary)
            except Exception:  # keep the original error; this one is secondary
                log.exception("could not record the run's final status")
        raise _unwrap(exc) from None
    wall = trio.current_time() - started
    # Tripped after the last row group was written: nothing was cut short, the run is complete.
    reason = reasons[0] if stop.cancelled_caught and reasons else None
    status = "complete" if reason is None else "stopped"
    # Every row group was generated; were too many rows dropped (run.allow_drops)?
    shortfall = None
    if status == "complete":
        shortfall = _shortfall(store.rows_written, total, cfg.run.allow_drops)
        status = "complete" if shortfall is None else "incomplete"
    summary = _summary(scheduler, models, status, wall)
    damaged: tuple[str, ...] = getattr(store, "damaged", ())
    if damaged:  # found on resume, set aside, and generated again by this invocation
        summary["invocation"]["row_groups_damaged"] = list(damaged)
    if shortfall is not None:
        summary["shortfall"] = shortfall
    if reporter is not None:
        reporter.finish(status)
    extras: dict[str, Any] = {"models": summary["models"], "invocation": summary["invocation"]}
    if shortfall is not None:
        extras["shortfall"] = shortfall
    if reason is not None:
        log.info("run stopped early: %s", reason.message)
        summary["stop_reason"] = reason.message
        summary["stop"] = extras["stop"] = reason.as_dict()
    trace = await _save_trace(tracer, output_dir, models)
    await store.finish(status=status, summary=summary)
    return RunResult.from_store(
        store,
        num_records=total,
        wall_time=wall,
        status=status,
        stop_reason=None if reason is None else reason.message,
        output_dir=output_dir,
        seed=seed,
        extras=extras,
        trace=trace,
        rows_generated=store.rows_written - rows_before,
    )


async def _save_trace(
    tracer: TaskTracer | None, output_dir: Path | None, models: Mapping[str, ModelHandle]
) -> pa.Table | None:
    """The run's trace as a table, also written to ``output_dir`` (if any) as
    ``trace.parquet`` and ``trace.json`` (for Perfetto, with the counter tracks of ``models``'
    throttles); spans still open (the run was cut short) are marked ``cancelled``. The table's
    schema metadata records the run's start on the trio clock (``trace.ORIGIN_KEY``)."""
    if tracer is None:
        return None
    for span in tracer.spans:
        if not span.status:
            span.status = "cancelled"
    if tracer.overflow:
        log.warning(
            "the trace kept %d task spans; %d more were not kept",
            len(tracer.spans),
            tracer.overflow,
        )
    table = with_origin(tracer.table(), tracer.origin)
    if output_dir is not None:
        usage = {alias: handle.usage().as_dict() for alias, handle in models.items()}
        write = functools.partial(
            write_trace,
            output_dir,
            table,
            counters=throttle_counters(usage, origin=tracer.origin),
            metadata={"spans_not_kept": tracer.overflow},
        )
        await trio.to_thread.run_sync(write)
    return table


def _shortfall(written: int, total: int, allow_drops: float) -> dict[str, Any] | None:
    """How far a run that generated every row group falls short of ``total`` rows, when that
    is more than ``allow_drops`` (a share of ``total``) lets go missing; else ``None``."""
    missing = total - written
    allowed = math.floor(allow_drops * total + 1e-9)
    if missing <= allowed:
        return None
    return {"missing": missing, "allowed": allowed, "allow_drops": allow_drops}


def _top_up(
    store: RowGroupStore, total: int, row_group_size: int, budget: float
) -> tuple[int, Iterator[RowGroupSpec]] | None:
    """Row groups that replace dropped rows (``fill_to_target``), after the planned ones: as
    many rows as are missing, within the budget of ``budget * total`` extra rows overall.
    Their row count, and the groups one at a time; ``None`` when there are none."""
    planned = -(-total // row_group_size)
    covered = store.rows_covered()
    extra = sum(rows for index, rows in covered.items() if index >= planned)
    wanted = min(total - store.rows_written, math.ceil(budget * total) - extra)
    if wanted <= 0:
        return None
    start = max([planned, *(index + 1 for index in covered)])

    def groups() -> Iterator[RowGroupSpec]:
        for n, offset in enumerate(range(0, wanted, row_group_size)):
            index = start + n
            rows = min(row_group_size, wanted - offset)
            yield RowGroupSpec(index=index, first_row_id=index * row_group_size, num_rows=rows)

    return wanted, groups()


def _monitors(models: Mapping[str, ModelHandle]) -> list[HealthMonitor]:
    """The distinct health monitors of the run's handles (one per ``open_models``)."""
    found: dict[int, HealthMonitor] = {}
    for handle in models.values():
        if isinstance(handle.health, HealthMonitor):
            found.setdefault(id(handle.health), handle.health)
    return list(found.values())


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt | trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_interrupt(e) for e in exc.exceptions)
    return False


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _unwrap(exc: BaseException) -> BaseException:
    """The error a caller should see: nurseries wrap errors in exception groups, but a run
    stops for one reason. A Ctrl-C wins; else a lone error (with its traceback) is raised as
    itself; several different errors stay grouped."""
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt):
            return leaf
    real = [leaf for leaf in leaves if not isinstance(leaf, trio.Cancelled)]
    if len(real) == 1:
        return real[0]
    return exc


def _summary(
    scheduler: Scheduler, models: Mapping[str, ModelHandle], status: str, wall: float
) -> dict[str, Any]:
    """What this invocation did (a resumed run's earlier invocations are not included; the
    run-wide counts are kept by the store in metadata.json)."""
    stats = scheduler.statistics()
    return {
        "status": status,
        "invocation": {
            "wall_time": wall,
            "cells_done": stats.cells_done,
            "cells_failed": stats.cells_failed,
            "rows_dropped": stats.rows_dropped,
            "row_groups_written": stats.row_groups_written,
            "retries": stats.retries,
            "salvage_rounds": stats.salvage_rounds,
            "cells_salvaged": stats.cells_salvaged,
            # Rows of row groups in flight when the run stopped: not written, a resume redoes them.
            "rows_abandoned": stats.rows_abandoned,
        },
        "models": {alias: handle.usage().as_dict() for alias, handle in models.items()},
    }


async def _prepare(
    config: ConfigSource, base_dir: str | os.PathLike[str] | None, num_records: int
) -> tuple[PipelineConfig, ExecutionGraph, Path | None]:
    """Load, compile and check a pipeline for a run of ``num_records`` rows; also returns the
    folder its relative paths resolve against.

    Loading and compiling read files (the config, a seed dataset's schema), so they run in a
    worker thread, off the event loop.
    """
    _check_num_records(num_records)
    cfg, base = await trio.to_thread.run_sync(_load, config, base_dir)
    graph = await trio.to_thread.run_sync(functools.partial(compile_pipeline, cfg, base_dir=base))
    await trio.to_thread.run_sync(_check_seed_rows, graph, cfg, num_records)
    return cfg, graph, base


def _run_seed(cfg: PipelineConfig) -> int:
    return cfg.run.seed if cfg.run.seed is not None else secrets.randbits(63)


async def acreate(
    config: ConfigSource,
    *,
    num_records: int,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    overwrite: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Generate ``num_records`` rows into ``output_dir``; for callers already inside trio.

    Args:
        config: a :class:`PipelineConfig`, a path to a YAML/JSON file, or a parsed mapping.
        num_records: rows to generate.
        output_dir: where ``config.yaml``, ``metadata.json`` and ``data/*.parquet`` go.
        resume: continue a run previously started in ``output_dir`` with the same config.
        overwrite: replace a previous run in ``output_dir``.
        base_dir: folder for relative paths in the config (default: the config file's folder).

    Returns:
        The :class:`RunResult`; the data stays on disk and is read on first access. When a
        model kept failing (``run.shutdown_error_rate``) or refused the API key, the run stops
        early: ``status`` is ``"stopped"``, ``stop_reason`` names the model, the completed row
        groups are kept, and ``resume=True`` generates the rest.

    Raises:
        ConfigError: the pipeline is invalid (raised before anything is generated).
        OutputExistsError: ``output_dir`` holds a run and neither ``resume`` nor ``overwrite``.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    cfg, graph, base = await _prepare(config, base_dir, num_records)
    out = Path(output_dir)
    # Recorded in metadata.json for a resume from the saved config.yaml; a resume keeps the
    # recorded folder unless one is given.
    record = Path(base_dir) if base_dir is not None else None if resume else base
    mode: Literal["new", "overwrite", "resume"] = (
        "resume" if resume else "overwrite" if overwrite else "new"
    )
    try:
        async with open_models(cfg) as models:
            return await _create(cfg, graph, out, mode, num_records, models, record)
    except BaseExceptionGroup as exc:  # the models' service nursery wraps what passes it
        raise _unwrap(exc) from None


async def _create(
    cfg: PipelineConfig,
    graph: ExecutionGraph,
    out: Path,
    mode: Literal["new", "overwrite", "resume"],
    num_records: int,
    models: Mapping[str, ModelHandle],
    base_dir: Path | None,
) -> RunResult:
    store = await trio.to_thread.run_sync(
        functools.partial(
            ParquetStore.open,
            out,
            schema=graph.schema,
            config_text=dump_config(cfg, None, strict=False, redact=True),
            config_hash=config_hash(cfg),
            num_records=num_records,
            row_group_size=cfg.run.row_group_size,
            seed=_run_seed(cfg),
            mode=mode,
            base_dir=base_dir,
        )
    )
    return await _run(
        cfg, graph, store, num_records=num_records, seed=store.seed, output_dir=out, models=models
    )


def create(
    config: ConfigSource,
    *,
    num_records: int,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    overwrite: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Generate ``num_records`` rows into ``output_dir`` (runs its own trio event loop).

    Example:
        >>> import gridloom as gl
        >>> result = gl.create("pipeline.yaml", num_records=10_000, output_dir="out/")
        >>> result.table.num_rows  # doctest: +SKIP
        10000

    See :func:`acreate` for the arguments.
    """
    return trio.run(
        functools.partial(
            acreate,
            config,
            num_records=num_records,
            output_dir=output_dir,
            resume=resume,
            overwrite=overwrite,
            base_dir=base_dir,
        )
    )


async def apreview(
    config: ConfigSource,
    num_records: int = 10,
    *,
    base_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Generate a few rows in memory (nothing is written); for callers inside trio.

    A failing model stops the preview early, as it does a run (see :func:`acreate`).
    """
    cfg, graph, _base = await _prepare(config, base_dir, num_records)
    store = MemoryStore(graph.schema)
    try:
        async with open_models(cfg) as models:
            return await _run(
                cfg,
                graph,
                store,
                num_records=num_records,
                seed=_run_seed(cfg),
                output_dir=None,
                models=models,
                preview=True,
            )
    except BaseExceptionGroup as exc:
        raise _unwrap(exc) from None


def preview(
    config: ConfigSource,
    num_records: int = 10,
    *,
    base_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Generate a few rows in memory to look at before a real run.

    Example:
        >>> gl.preview("pipeline.yaml", num_records=5).table.to_pylist()  # doctest: +SKIP
    """
    return trio.run(functools.partial(apreview, config, num_records, base_dir=base_dir))


async def acheck_models(
    config: ConfigSource, *, base_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """Send one tiny request to every model alias the pipeline uses; for callers in trio.

    Returns:
        One dict per alias: ``alias``, ``provider``, ``model``, ``ok``, and ``latency_s`` or
        ``error``.
    """
    cfg, _base = await trio.to_thread.run_sync(_load, config, base_dir)
    return await _check_models(cfg)


def check_models(
    config: ConfigSource, *, base_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """Send one tiny request to every model alias the pipeline uses; report latency or error.

    Example:
        >>> for row in gl.check_models("pipeline.yaml"):  # doctest: +SKIP
        ...     print(row["alias"], row["ok"], row.get("latency_s"), row.get("error"))
    """
    return trio.run(functools.partial(acheck_models, config, base_dir=base_dir))
