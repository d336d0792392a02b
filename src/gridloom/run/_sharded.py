"""A run sharded over a Ray cluster (``executor: ray``): the driver's side.

The driver owns the run's output: it creates (or resumes) it with a
:class:`~gridloom.storage.ManifestStore` in the ``run`` role, queues the row groups still to
generate on a board (a Ray actor, ``._cluster.Board``), and starts one Ray task per shard
(``._shard``), each with its share of every model's request cap, pulling row groups from the
board one at a time until none is left (so the shards end together). While they run it
shows the run's progress from the shards' reports (their board), and folds the row groups
they commit into ``metadata.json``. When every shard has ended it replaces dropped rows
(``fill_to_target``) with another round of shards, then records the run's end: one status,
one summary (merged, and per shard), one trace.

A shard whose worker dies is restarted by Ray (``run.ray.max_retries``) and skips the row
groups it had committed; a shard that raises, or keeps dying, ends the run with a
:class:`~gridloom.errors.ClusterError` naming it and its cause (the other shards are stopped;
what they committed stays, and ``resume`` generates the rest). A shard stopped by a failing
model or column stops the run the same way a local run stops.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import trio

from ..config import PipelineConfig, config_hash, dump_config
from ..config._seed_tables import is_memory_path, lookup
from ..engine import ExecutionGraph, RowGroupSpec, SchedulerStatistics
from ..progress import ModelProgress, ProgressReporter, resolve_mode
from ..storage import Location, ManifestStore, RunResult, location_of
from ._cluster import Cluster
from ._plan import announced_top_ups, iter_row_groups, shortfall
from ._report import is_interrupt, write_trace_at
from ._shard import ShardJob
from ._shards import (
    check_shards,
    merge_models,
    merge_statistics,
    merge_summaries,
    shard_config,
)
from ._source import fingerprints, output_schema, run_seed

__all__ = ["create_sharded"]

log = logging.getLogger("gridloom")

Mode = Literal["new", "overwrite", "resume"]

#: Seconds between two folds of the shards' commits into ``metadata.json``.
ABSORB_SECONDS = 5.0
#: Seconds the driver waits on the shards' tasks at a time.
WAIT_SECONDS = 0.5


class _BoardView:
    """The shards' latest counts, merged, as the progress display reads them."""

    def __init__(self) -> None:
        self.latest: dict[int, tuple[Any, Any]] = {}
        self._base: list[SchedulerStatistics] = []

    def next_round(self) -> None:
        """Keep the ended round's counts (a new round's shards count from zero)."""
        self._base.extend(stats for stats, _ in self.latest.values())
        self.latest = {}

    def statistics(self) -> SchedulerStatistics:
        return merge_statistics([*self._base, *(s for s, _ in self.latest.values())])

    def models(self) -> Sequence[ModelProgress]:
        return merge_models([models for _, models in self.latest.values()])


def _default_shards(cluster: Cluster, cfg: PipelineConfig, groups: int) -> int:
    """One shard per ``cpus_per_shard`` of the cluster, no more than the row groups or the
    smallest request cap allow."""
    by_cpu = max(1, int(cluster.cpus() // cfg.run.ray.cpus_per_shard))
    caps = [m.max_parallel_requests for m in cfg.models]
    return max(1, min(by_cpu, groups, *caps))


async def _save_trace(location: Location, tables: Sequence[pa.Table]) -> pa.Table | None:
    """The shards' traces as the run's one trace (``trace.parquet`` and ``trace.json``)."""
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="default")
    await trio.to_thread.run_sync(write_trace_at, location, table)
    return table


class _Driver:
    """One sharded invocation: the cluster, the store, the board, and the rounds of shards."""

    def __init__(
        self,
        cfg: PipelineConfig,
        base: Path | None,
        cluster: Cluster,
        store: ManifestStore,
        output: str,
        seed: int,
        cache: bool,
    ) -> None:
        self.cfg = cfg
        self.cache = cache
        self.base = base
        self.cluster = cluster
        self.store = store
        self.output = output
        self.seed = seed
        self.hash = config_hash(cfg)
        self.view = _BoardView()
        self.reports: list[dict[str, Any]] = []
        self.seed_tables: dict[str, Any] | None = None  # put in the object store on first need

    def _put_seed_tables(self) -> dict[str, Any]:
        """The config's in-memory seed table, put in the object store (the shards' workers
        are other processes, whose registry of tables is empty): ``memory://`` path → its
        reference; empty without one."""
        seed = self.cfg.seed_dataset
        if seed is None or not is_memory_path(seed.path):
            return {}
        return {seed.path: self.cluster.put(lookup(seed.path))}

    async def round(self, specs: Sequence[RowGroupSpec], shards: int) -> dict[str, Any] | None:
        """Run ``specs`` as up to ``shards`` shards until all end; the report of a shard that
        stopped early (the others are then stopped), else ``None``.

        Raises:
            ClusterError: a shard failed.
        """
        count = min(shards, len(specs))
        board = await trio.to_thread.run_sync(self.cluster.board, specs)
        if self.seed_tables is None:
            self.seed_tables = await trio.to_thread.run_sync(self._put_seed_tables)
        jobs = [
            ShardJob(
                index=i,
                count=count,
                config=shard_config(self.cfg, count, i),
                base_dir=None if self.base is None else str(self.base),
                output=self.output,
                num_records=self.store.num_records,
                config_hash=self.hash,
                seed=self.seed,
                board=board,
                cache=self.cache,
                seed_tables=self.seed_tables,
            )
            for i in range(count)
        ]
        ray_cfg = self.cfg.run.ray
        submit = functools.partial(
            self.cluster.submit, cpus=ray_cfg.cpus_per_shard, max_retries=ray_cfg.max_retries
        )
        pending = {submit(job): job for job in jobs}  # Ray's object refs are hashable
        absorbed = trio.current_time()
        try:
            while pending:
                waiting = list(pending)
                ready = await trio.to_thread.run_sync(self.cluster.wait, waiting, WAIT_SECONDS)
                for ref in ready:
                    job = pending.pop(ref)
                    report = await trio.to_thread.run_sync(self.cluster.result, ref, job)
                    self.reports.append(report)
                    if report["status"] == "stopped":
                        return report
                self.view.latest = await trio.to_thread.run_sync(self.cluster.read_board, board)
                if trio.current_time() - absorbed >= ABSORB_SECONDS:
                    await self.store.absorb()
                    absorbed = trio.current_time()
            return None
        finally:
            with trio.CancelScope(shield=True):
                if pending:
                    await trio.to_thread.run_sync(self.cluster.cancel, list(pending))
                self.view.latest = await trio.to_thread.run_sync(self.cluster.read_board, board)
                self.view.next_round()
                await self.store.absorb()

    def summary(self, status: str, wall: float) -> dict[str, Any]:
        """The run's summary: the shards' merged, and each shard's."""
        merged = merge_summaries(self.reports)
        merged["invocation"]["wall_time"] = wall
        merged["invocation"]["shards"] = len(self.reports)
        shards = [
            {k: v for k, v in report.items() if k not in ("trace", "stop")}
            for report in self.reports
        ]
        return {"status": status, **merged, "shards": shards}


async def create_sharded(
    cfg: PipelineConfig,
    graph: ExecutionGraph,
    base: Path | None,
    *,
    num_records: int,
    output: str,
    mode: Mode,
    record_base: Path | None,
    cache: bool = True,
    input_config: Path | None = None,
    accept_code_change: bool = False,
) -> RunResult:
    """Generate ``num_records`` rows into ``output`` with shards on a Ray cluster (see the
    module docstring); the arguments are :meth:`~gridloom.run.Run.create`'s, the pipeline
    already prepared. The driver checks the columns' Python code against the run's record (a
    resume over changed code is refused before any shard starts, unless
    ``accept_code_change``); the shards do not, so one never fails on it.

    Raises:
        ClusterError: the cluster cannot be used, or a shard failed.
        StorageError: the output cannot be used.
        ConfigError: more shards than row groups or request slots.
    """
    location = await trio.to_thread.run_sync(location_of, output)
    cluster = await trio.to_thread.run_sync(Cluster.connect, cfg.run.ray.address)
    try:
        return await _drive(
            cfg,
            graph,
            base,
            cluster,
            location,
            num_records,
            output,
            mode,
            record_base,
            cache,
            input_config=input_config,
            accept_code_change=accept_code_change,
        )
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(cluster.close)


async def _drive(
    cfg: PipelineConfig,
    graph: ExecutionGraph,
    base: Path | None,
    cluster: Cluster,
    location: Location,
    num_records: int,
    output: str,
    mode: Mode,
    record_base: Path | None,
    cache: bool,
    *,
    input_config: Path | None = None,
    accept_code_change: bool = False,
) -> RunResult:
    size = cfg.run.row_group_size
    asked = cfg.run.ray.shards
    if asked is not None and mode != "resume":
        check_shards(cfg, asked, -(-num_records // size))
    await trio.to_thread.run_sync(cluster.check_shared, location)
    fingerprint, code = await fingerprints(cfg, graph, base, accept_code_change=accept_code_change)
    store: ManifestStore = await trio.to_thread.run_sync(
        functools.partial(
            ManifestStore.open,
            location,
            schema=output_schema(cfg, graph),
            config_text=dump_config(cfg, None, strict=False, redact=True),
            config_hash=config_hash(cfg),
            num_records=num_records,
            row_group_size=size,
            seed=run_seed(cfg),
            mode=mode,
            base_dir=record_base,
            seed_fingerprint=fingerprint,
            role="run",
            input_config=input_config,
            code=code,
        )
    )
    try:
        total = store.num_records
        specs = list(iter_row_groups(total, size, store.completed()))
        shards = asked if asked is not None else _default_shards(cluster, cfg, max(1, len(specs)))
        if mode == "resume" and 0 < len(specs) < shards:
            # The count saved with the run fitted its start; near its end fewer groups are left.
            log.info(
                "%d row groups left to generate: %d shards instead of %d",
                len(specs),
                len(specs),
                shards,
            )
            shards = len(specs)
        check_shards(cfg, shards, len(specs))
        driver = _Driver(
            cfg,
            base,
            cluster,
            store,
            output,
            store.seed,
            cache,
        )
        remaining = sum(spec.num_rows for spec in specs)
        mode_shown = resolve_mode(cfg.run.progress)
        reporter = (
            None
            if mode_shown == "off"
            else ProgressReporter(
                "bar" if mode_shown == "bar" else "log",
                statistics=driver.view.statistics,
                model_lines=driver.view.models,
                total=remaining,
                interval=cfg.run.progress_interval_seconds,
            )
        )
        rows_before = store.rows_written
        started = trio.current_time()
        stopped: dict[str, Any] | None = None
        try:
            async with trio.open_nursery() as nursery:
                if reporter is not None:
                    await nursery.start(reporter.serve)
                try:
                    stopped = await driver.round(specs, shards) if specs else None
                    add_rows = None if reporter is None else reporter.add_rows
                    rounds = announced_top_ups(store, total, cfg.run, add_rows)
                    while stopped is None and (groups := next(rounds, None)) is not None:
                        more = list(groups)
                        stopped = await driver.round(more, min(shards, len(more)))
                finally:
                    if reporter is not None:
                        reporter.stop()
        except BaseException as exc:
            status = "interrupted" if is_interrupt(exc) else "failed"
            with trio.CancelScope(shield=True):
                try:
                    summary = driver.summary(status, trio.current_time() - started)
                    await store.finish(status=status, summary=summary)
                except Exception:
                    log.exception("could not record the run's final status")
            raise
        wall = trio.current_time() - started
        short = None
        if stopped is not None:
            status = "stopped"
        else:
            short = shortfall(store.rows_written, total, cfg.run.allow_drops)
            status = "complete" if short is None else "incomplete"
        summary = driver.summary(status, wall)
        extras: dict[str, Any] = {
            "models": summary["models"],
            "invocation": summary["invocation"],
            "shards": summary["shards"],
        }
        reason = None
        if stopped is not None:
            reason = f"shard {stopped['shard']}: {stopped.get('stop_reason')}"
            summary["stop_reason"] = reason
            if stopped.get("stop"):
                summary["stop"] = extras["stop"] = stopped["stop"]
        if short is not None:
            summary["shortfall"] = extras["shortfall"] = short
        if reporter is not None:
            reporter.finish(status)
        traces = [r["trace"] for r in driver.reports if r.get("trace") is not None]
        trace = await _save_trace(location, traces)
        await store.finish(status=status, summary=summary)
        return RunResult.from_store(
            store,
            num_records=total,
            wall_time=wall,
            status=status,
            stop_reason=reason,
            output_dir=location.local,
            seed=store.seed,
            extras=extras,
            trace=trace,
            rows_generated=store.rows_written - rows_before,
        )
    finally:
        store.close()  # the final status is written: another writer may take the folder
