"""The run: one invocation of a pipeline, and the owner of everything with a lifetime in it.

Shape of a run (DESIGN.md §4)::

    Run                                  the one top-level nursery
    ├── stop signals (when asked)        SIGINT/SIGTERM cancel the run's work
    ├── models                           clients, throttles, simulated endpoints; health
    ├── ramp                             the throttles' start-up ramps (when configured)
    ├── progress                         the live display, fed by snapshots
    └── the work                         the scheduler, its top-up rounds, the store finished

Each service starts with ``await nursery.start(...)``, so it is ready before the next needs
it, and is stopped when the work is over (the models close normally, not cancelled, so their
connections and a simulated endpoint shut down cleanly). Errors leave the run in one place,
:meth:`Run._supervise`: unwrapped from the nursery's exception group (:func:`~._report.unwrap`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import attrs
import trio

from ..clients import ModelHandle
from ..config import PipelineConfig, config_hash, dump_config
from ..engine import (
    ExecutionGraph,
    GeneratorHealth,
    RowGroupSpec,
    Scheduler,
    ShutdownReason,
)
from ..errors import RunError
from ..kinds import installed
from ..progress import ProgressReporter
from ..storage import (
    Location,
    ManifestStore,
    MemoryStore,
    ParquetStore,
    RowGroupStore,
    RunResult,
    is_remote_uri,
    local_path,
    location_of,
)
from ..throttle import ThrottleRegistry
from ..tools import Toolbox
from ..trace import TaskTracer
from ._check import probe_models
from ._gc import collector_for_run
from ._health import HealthMonitor
from ._models import serve_models, with_llm_wait_room
from ._plan import announced_top_ups, iter_row_groups, shortfall
from ._processors import ProcessingStore, compile_processors
from ._report import is_interrupt, save_trace, summarize, unwrap
from ._signals import Interrupted, StopSignals
from ._source import (
    ConfigSource,
    compile_source,
    fingerprints,
    load_source,
    output_schema,
    prepare,
    run_seed,
    seed_fingerprint,
)
from ._tools import serve_tools, tool_users

if TYPE_CHECKING:
    from ._shard import ShardJob

__all__ = ["Run"]

log = logging.getLogger("gridloom")

T = TypeVar("T")
Mode = Literal["new", "overwrite", "resume"]


class Reporter(Protocol):
    """What the run asks of its progress service (:class:`ProgressReporter` is one; a shard's
    reports to its driver)."""

    async def serve(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...
    def stop(self) -> None: ...
    def finish(self, status: str) -> None: ...
    def add_rows(self, rows: int) -> None: ...


#: Makes a run's progress service from its scheduler and models (``None``: no service).
Reporting = Callable[[Scheduler, Mapping[str, ModelHandle]], Reporter | None]


class _Services:
    """The run's services: tasks of its nursery, each started with ``nursery.start`` (ready
    before the next), all stopped when the work is over."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._stops: list[tuple[Callable[[], None], trio.Event]] = []

    async def _start(
        self,
        fn: Callable[..., Awaitable[None]],
        stop: Callable[[], None] | None = None,
    ) -> Any:
        """Start ``fn(task_status=...)``; it ends by ``stop()`` (default: a cancellation)."""
        scope = trio.CancelScope()
        ended = trio.Event()

        async def service(task_status: trio.TaskStatus[Any]) -> None:
            try:
                with scope:
                    await fn(task_status=task_status)
            finally:
                ended.set()

        value = await self._nursery.start(service)
        self._stops.append((scope.cancel if stop is None else stop, ended))
        return value

    async def models(
        self,
        cfg: PipelineConfig,
        *,
        cache: bool = True,
        output: str | None = None,
        probe: bool = False,
    ) -> tuple[dict[str, ModelHandle], HealthMonitor]:
        """Open the models (and their health monitor; with the response cache unless
        ``cache`` is false; recording batch jobs in the run's ``output``, if given; giving up
        soon on refusals with ``probe``, see :func:`open_models`), and start their ramp or
        slow start if there is one."""
        registry = ThrottleRegistry(cfg.run.throttle)
        health = HealthMonitor.from_run_config(cfg.run, clock=trio.current_time)
        closing = trio.Event()
        serve = functools.partial(
            serve_models,
            cfg,
            registry=registry,
            health=health,
            stop=closing,
            cache=cache,
            output=output,
            probe=probe,
        )
        handles: dict[str, ModelHandle] = await self._start(serve, closing.set)
        if registry.drives:
            await self._start(registry.run)
        return handles, health

    async def tools(self, graph: ExecutionGraph) -> dict[str, Toolbox]:
        """Open the tool sources of the graph's agent columns (none: no service)."""
        if not tool_users(graph):
            return {}
        toolboxes: dict[str, Toolbox] = await self._start(functools.partial(serve_tools, graph))
        return toolboxes

    async def progress(self, reporter: Reporter) -> None:
        """Show ``reporter``; the run stops it (:meth:`ProgressReporter.stop`) itself."""
        await self._start(reporter.serve, reporter.stop)

    async def aclose(self) -> None:
        """Stop every service, the last started first, and wait until each has ended."""
        stops, self._stops = self._stops[::-1], []
        for stop, _ in stops:
            stop()
        for _, ended in stops:
            await ended.wait()


class Run:
    """One invocation of a pipeline: the owner of its one top-level nursery.

    Args:
        config: a :class:`PipelineConfig`, a path to a YAML/JSON file, or a parsed mapping.
        base_dir: folder for relative paths in the config (default: the config file's folder).
        signals: stop on SIGINT/SIGTERM (the command line): the run records status
            ``"interrupted"`` and raises :class:`~gridloom.run.Interrupted`.
        executor: overrides of the config's ``run.executor`` (key ``executor``) and
            ``run.ray`` settings (key ``ray``: a mapping of :class:`RayConfig` fields).
        cache: use the response cache (docs/cache.md) as the models' and columns' ``cache``
            settings say; ``False`` (``--no-cache``): never.
    """

    def __init__(
        self,
        config: ConfigSource,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        signals: StopSignals | None = None,
        executor: Mapping[str, Any] | None = None,
        cache: bool = True,
    ) -> None:
        self._source = config
        # The config file being run: a run never removes or overwrites it (it may be the
        # output directory's config.yaml).
        self._input = Path(os.fspath(config)) if isinstance(config, str | os.PathLike) else None
        self._base_dir = base_dir
        self._signals = signals
        self._executor = dict(executor or {})
        self._cache = cache

    # ------------------------------------------------------------------ what a run does

    def validate(self) -> ExecutionGraph:
        """Load and compile the pipeline, generating nothing (see :func:`gridloom.validate`).

        A check reads every installed plugin's kinds, so that a broken plugin is warned about
        (one line each) even when the pipeline uses only built-in kinds, which a run resolves
        without reading the plugins.

        Raises:
            ConfigError: naming the column and field at fault (and the column's kind).
        """
        installed()
        cfg, base = load_source(self._source, self._base_dir)
        return compile_source(cfg, base)

    async def create(
        self,
        *,
        num_records: int,
        output_dir: str | os.PathLike[str],
        resume: bool = False,
        overwrite: bool = False,
        accept_code_change: bool = False,
    ) -> RunResult:
        """Generate ``num_records`` rows into ``output_dir`` (see :func:`gridloom.acreate`)."""
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other")
        if accept_code_change and not resume:
            raise ValueError("accept_code_change is for a resumed run (resume=True)")
        mode: Mode = "resume" if resume else "overwrite" if overwrite else "new"
        work = functools.partial(
            self._create, num_records, os.fspath(output_dir), mode, accept_code_change
        )
        return await self._supervise(work)

    async def preview(self, num_records: int = 10) -> RunResult:
        """Generate a few rows in memory (see :func:`gridloom.apreview`)."""
        return await self._supervise(functools.partial(self._preview, num_records))

    async def shard(self, job: ShardJob) -> dict[str, Any]:
        """Run one shard of a sharded run (the body of its Ray task; see ``._shard``)."""
        return await self._supervise(functools.partial(self._shard, job))

    async def check_models(self) -> list[dict[str, Any]]:
        """One tiny request to every model the pipeline uses (see
        :func:`gridloom.acheck_models`)."""
        return await self._supervise(self._check_models)

    # ------------------------------------------------------------------ the nursery

    async def _supervise(self, work: Callable[[_Services], Awaitable[T]]) -> T:
        """Run ``work`` in the run's nursery, with its services; the one place errors leave
        the run, unwrapped."""
        stop = trio.CancelScope()
        results: list[T] = []
        try:
            with collector_for_run():
                await self._in_nursery(work, stop, results)
        except BaseExceptionGroup as group:
            error = unwrap(group)
            if not isinstance(error, Exception) and not is_interrupt(error):
                # sys.exit() (or the like) in code the run called, past every cell's guard:
                # an error of the run, never a silent exit of the process.
                raise RunError(f"the run was ended by user code: {error!r}") from error
            raise error from None
        if results:
            # The work finished (a run's data and final status are written) before a signal
            # could stop it: a signal after that point loses nothing, and the run is what it
            # recorded (the caller sees the signal in StopSignals.signum).
            return results[0]
        assert stop.cancelled_caught
        assert self._signals is not None
        assert self._signals.signum is not None
        raise Interrupted(self._signals.signum)

    async def _in_nursery(
        self,
        work: Callable[[_Services], Awaitable[T]],
        stop: trio.CancelScope,
        results: list[T],
    ) -> None:
        """``work``'s result goes to ``results`` (nothing when ``stop`` cancelled it)."""
        async with trio.open_nursery() as nursery:
            if self._signals is not None:
                await nursery.start(self._signals.watch, stop)
            with stop:
                services = _Services(nursery)
                try:
                    results.append(await work(services))
                finally:
                    await services.aclose()
            nursery.cancel_scope.cancel()

    async def _create(
        self, num_records: int, output: str, mode: Mode, accept_code: bool, services: _Services
    ) -> RunResult:
        cfg, graph, base = await prepare(self._source, self._base_dir, num_records)
        cfg = self._overridden(cfg)
        # Recorded in metadata.json for a resume from the saved config.yaml; a resume keeps the
        # recorded folder unless one is given.
        given = self._base_dir
        record = Path(given) if given is not None else None if mode == "resume" else base
        if cfg.run.executor == "ray":
            from ._sharded import create_sharded  # a sharded run's driver only

            return await create_sharded(
                cfg,
                graph,
                base,
                num_records=num_records,
                output=output,
                mode=mode,
                record_base=record,
                cache=self._cache,
                input_config=self._input,
                accept_code_change=accept_code,
            )
        remote = is_remote_uri(output)
        location = await trio.to_thread.run_sync(location_of, output) if remote else None
        models, health = await services.models(cfg, cache=self._cache, output=output)
        fingerprint, code = await fingerprints(cfg, graph, base, accept_code_change=accept_code)
        opener: Any = (
            functools.partial(ParquetStore.open, local_path(output))
            if location is None
            else functools.partial(ManifestStore.open, location, role="run")
        )
        store = await trio.to_thread.run_sync(
            functools.partial(
                opener,
                schema=output_schema(cfg, graph),
                config_text=dump_config(cfg, None, strict=False, redact=True),
                config_hash=config_hash(cfg),
                num_records=num_records,
                row_group_size=cfg.run.row_group_size,
                seed=run_seed(cfg),
                mode=mode,
                base_dir=record,
                seed_fingerprint=fingerprint,
                input_config=self._input,
                code=code,
            )
        )
        out = local_path(output) if location is None else location.local
        try:
            return await self._generate(
                services,
                cfg,
                graph,
                store,
                models,
                health,
                num_records,
                store.seed,
                out,
                trace_to=location,
            )
        finally:
            store.close()  # the final status is written: another writer may take the folder

    def _overridden(self, cfg: PipelineConfig) -> PipelineConfig:
        """``cfg`` with the executor settings the caller gave (``--ray``, ``--shards``)."""
        if not self._executor:
            return cfg
        ray = attrs.evolve(cfg.run.ray, **self._executor.get("ray", {}))
        executor = self._executor.get("executor", cfg.run.executor)
        return attrs.evolve(cfg, run=attrs.evolve(cfg.run, executor=executor, ray=ray))

    async def _shard(self, job: ShardJob, services: _Services) -> dict[str, Any]:
        from ._shard import ShardReporter, ray_get_taken, shard_report  # a shard's worker only

        cfg, graph, _base = await prepare(self._source, self._base_dir, job.num_records)
        models, health = await services.models(cfg, cache=self._cache)
        fingerprint = await trio.to_thread.run_sync(seed_fingerprint, graph)
        store = await trio.to_thread.run_sync(
            functools.partial(
                ManifestStore.open,
                location_of(job.output),
                schema=output_schema(cfg, graph),
                config_text=dump_config(cfg, None, strict=False, redact=True),
                config_hash=job.config_hash,
                num_records=job.num_records,
                row_group_size=cfg.run.row_group_size,
                seed=job.seed,
                mode="resume",
                role="shard",
                seed_fingerprint=fingerprint,
            )
        )
        # A shard restarted after its worker died skips what it had committed.
        generated: list[RowGroupSpec] = []
        plan = job.pull(store.completed(), generated)

        def reporting(scheduler: Scheduler, handles: Mapping[str, ModelHandle]) -> Reporter | None:
            if job.board is None:
                return None
            interval = cfg.run.ray.progress_seconds
            return ShardReporter(
                job.board,
                job.index,
                scheduler.statistics,
                handles,
                interval,
                coordinate=job.count > 1,
            )

        result = await self._generate(
            services,
            cfg,
            graph,
            store,
            models,
            health,
            job.num_records,
            job.seed,
            None,
            plan=plan,
            reporting=reporting,
        )
        taken = await trio.to_thread.run_sync(ray_get_taken, job)
        return shard_report(job, taken, generated, result)

    async def _preview(self, num_records: int, services: _Services) -> RunResult:
        cfg, graph, _base = await prepare(self._source, self._base_dir, num_records)
        store = MemoryStore(lambda: output_schema(cfg, graph))
        models, health = await services.models(cfg, cache=self._cache)
        return await self._generate(
            services, cfg, graph, store, models, health, num_records, run_seed(cfg), None
        )

    async def _check_models(self, services: _Services) -> list[dict[str, Any]]:
        cfg, _base = await trio.to_thread.run_sync(load_source, self._source, self._base_dir)
        # A check must reach each model: never answered from the response cache.
        # A probe: a few tries on refusals, never the long wait a run would make.
        models, _health = await services.models(cfg, cache=False, probe=True)
        return await probe_models(cfg, models)

    # ------------------------------------------------------------------ the work

    async def _generate(
        self,
        services: _Services,
        cfg: PipelineConfig,
        graph: ExecutionGraph,
        store: RowGroupStore,
        models: Mapping[str, ModelHandle],
        health: HealthMonitor,
        num_records: int,
        seed: int,
        output_dir: Path | None,
        *,
        trace_to: Location | None = None,
        plan: AsyncIterable[RowGroupSpec] | None = None,
        reporting: Reporting | None = None,
    ) -> RunResult:
        """The scheduler over the plan, then its top-up rounds, then the store finished.

        ``trace_to`` is where the trace goes when ``output_dir`` is not a local run
        directory (a run at a URI); ``plan`` (a shard's row groups) replaces the run's own
        plan (every row group not in the store); ``reporting`` makes the progress service
        (default: the display ``run.progress`` asks for).
        """
        # On resume the store knows the run's full size (it may have grown).
        total = getattr(store, "num_records", num_records)
        size = cfg.run.row_group_size
        specs: Iterable[RowGroupSpec] | AsyncIterable[RowGroupSpec]
        if plan is not None:
            specs, remaining = plan, 0  # a shard shows no display of its own
        else:
            specs = iter_row_groups(total, size, store.completed())  # lazy: -n 10**12 plans nothing
            planned = -(-total // size)
            covered = store.rows_covered().items()
            remaining = total - sum(rows for i, rows in covered if i < planned)
        traced = cfg.run.trace or os.environ.get("GRIDLOOM_TRACE", "") not in ("", "0")
        tracer = TaskTracer(origin=trio.current_time()) if traced else None
        columns_health = GeneratorHealth.from_run_config(cfg.run)
        # Processors reshape each row group on the way to the store (no schema read without).
        chain = compile_processors(cfg, graph.schema) if cfg.processors else None
        tools = await services.tools(graph)
        scheduler = Scheduler(
            graph,
            with_llm_wait_room(cfg),
            seed=seed,
            store=store if chain is None else ProcessingStore(store, chain),
            models=models,
            tools=tools,
            tracer=tracer,
            health=columns_health,
        )
        # A model, or a column, that keeps failing stops the run: its monitor cancels this scope.
        stop = trio.CancelScope()
        reasons: list[ShutdownReason] = []

        def on_trip(reason: ShutdownReason) -> None:
            reasons.append(reason)
            stop.cancel()

        health.on_trip(on_trip)
        columns_health.on_trip(on_trip)
        # Live progress (run.progress, GRIDLOOM_PROGRESS): a service reading snapshots.
        reporter: Reporter | None = (
            ProgressReporter.for_run(
                cfg.run,
                statistics=scheduler.statistics,
                models=models,
                total=remaining,
                preview=output_dir is None,
            )
            if reporting is None
            else reporting(scheduler, models)
        )
        started = trio.current_time()
        rows_before = store.rows_written
        try:
            with stop:
                if reporter is not None:
                    await services.progress(reporter)
                try:
                    await self._schedule(scheduler, store, specs, cfg, total, reporter)
                finally:
                    if reporter is not None:
                        reporter.stop()
        except BaseException as exc:
            status = "interrupted" if is_interrupt(exc) else "failed"
            summary = summarize(scheduler, models, status, trio.current_time() - started)
            with trio.CancelScope(shield=True):
                try:
                    await save_trace(tracer, output_dir or trace_to, models)
                    await store.finish(status=status, summary=summary)
                except Exception:  # keep the original error; this one is secondary
                    log.exception("could not record the run's final status")
            raise
        wall = trio.current_time() - started
        # Tripped after the last row group was written: nothing was cut short, the run is complete.
        reason = reasons[0] if stop.cancelled_caught and reasons else None
        status = "complete" if reason is None else "stopped"
        # Every row group was generated; were too many rows dropped (run.allow_drops)?
        short = None
        if status == "complete":
            short = shortfall(store.rows_written, total, cfg.run.allow_drops)
            status = "complete" if short is None else "incomplete"
        summary = summarize(scheduler, models, status, wall)
        damaged: tuple[str, ...] = getattr(store, "damaged", ())
        if damaged:  # found on resume, set aside, and generated again by this invocation
            summary["invocation"]["row_groups_damaged"] = list(damaged)
        if short is not None:
            summary["shortfall"] = short
        if reporter is not None:
            reporter.finish(status)
        extras: dict[str, Any] = {"models": summary["models"], "invocation": summary["invocation"]}
        if short is not None:
            extras["shortfall"] = short
        if reason is not None:
            log.info("run stopped early: %s", reason.message)
            summary["stop_reason"] = reason.message
            summary["stop"] = extras["stop"] = reason.as_dict()
        # Every row group is written: a signal from here on must not leave the status unwritten
        # (it would stay "running") nor cut the trace short; both are bounded.
        with trio.CancelScope(shield=True):
            trace = await save_trace(tracer, output_dir or trace_to, models)
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

    @staticmethod
    async def _schedule(
        scheduler: Scheduler,
        store: RowGroupStore,
        specs: Iterable[RowGroupSpec] | AsyncIterable[RowGroupSpec],
        cfg: PipelineConfig,
        total: int,
        reporter: Reporter | None,
    ) -> None:
        """The planned row groups, then (``fill_to_target``) top-up rounds until the rows
        dropped are replaced or the budget is spent (on resume: the round the run stopped
        in, its missing groups only, then the rounds after it)."""
        await scheduler.run(specs)
        add_rows = None if reporter is None else reporter.add_rows
        for groups in announced_top_ups(store, total, cfg.run, add_rows):
            await scheduler.run(groups)
