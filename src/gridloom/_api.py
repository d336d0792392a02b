"""The public entry points: ``create``, ``acreate``, ``preview``, ``validate``, ...

Only their signatures live here: each hands over to a :class:`~gridloom.run.Run` (or, for
``validate``, compiles the pipeline), which owns everything a run does.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Literal

import trio

from .engine import ExecutionGraph, RowGroupSpec
from .run import ConfigSource, Run
from .run import plan_row_groups as _plan_row_groups
from .storage import RunResult

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


def validate(
    config: ConfigSource, *, base_dir: str | os.PathLike[str] | None = None
) -> ExecutionGraph:
    """Check a pipeline without generating anything; returns its execution graph.

    Raises:
        ConfigError: naming the column and field at fault.
    """
    return Run(config, base_dir=base_dir).validate()


def plan_row_groups(num_records: int, row_group_size: int) -> list[RowGroupSpec]:
    """Split ``num_records`` rows into row groups of ``row_group_size`` (the last may be short).

    A list, for looking at a plan; a run walks it lazily, so its size never depends on
    ``num_records``.
    """
    return _plan_row_groups(num_records, row_group_size)


async def acreate(
    config: ConfigSource,
    *,
    num_records: int,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    overwrite: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
    executor: Literal["local", "ray"] | None = None,
    ray_address: str | None = None,
    shards: int | None = None,
    cache: bool = True,
    accept_code_change: bool = False,
) -> RunResult:
    """Generate ``num_records`` rows into ``output_dir``; for callers already inside trio.

    Args:
        config: a :class:`PipelineConfig`, a path to a YAML/JSON file, or a parsed mapping.
        num_records: rows to generate: from 1 to 10**12
            (:data:`gridloom.run.MAX_NUM_RECORDS`).
        output_dir: where ``config.yaml``, ``metadata.json`` and ``data/*.parquet`` go: a
            local folder, or a filesystem URI (``s3://bucket/run``, ``gs://...``,
            ``hdfs://...``; credentials and endpoints come from the environment).
        resume: continue a run previously started in ``output_dir`` with the same config (and
            the same seed files, and the same Python code in the columns' functions: a
            fingerprint of each is recorded when the run starts and checked).
        overwrite: replace a previous run in ``output_dir``.
        base_dir: folder for relative paths in the config (default: the config file's folder).
        executor: ``"ray"`` shards the run over a Ray cluster (``pip install
            'gridloom[ray]'``) and writes the same dataset as ``"local"``; default: the
            config's ``run.executor``.
        ray_address: the Ray cluster to join (default: ``run.ray.address``, else
            ``RAY_ADDRESS``, else a new one on this machine); implies ``executor="ray"``
            unless ``executor`` says otherwise.
        shards: how many shards (default: ``run.ray.shards``, else one per cluster CPU);
            implies ``executor="ray"`` too.
        cache: use the response cache as the models' and columns' ``cache`` settings say
            (docs/cache.md); ``False`` never reads or writes it (``--no-cache``).
        accept_code_change: with ``resume``, go on even though the Python code a column calls
            (a custom function, a callable validator, a Python tool; the whole file of its
            module counts) changed since the run started, and record the change in
            ``metadata.json`` (``code_changes``: when, which columns, the row groups written
            before), so the mixed dataset says so; without it such a resume is refused
            (``--accept-code-change``).

    Returns:
        The :class:`RunResult`; the data stays on disk and is read on first access. When a
        model kept failing (``run.shutdown_error_rate``) or refused the API key, the run stops
        early: ``status`` is ``"stopped"``, ``stop_reason`` names the model, the completed row
        groups are kept, and ``resume=True`` generates the rest.

    Raises:
        ConfigError: the pipeline is invalid, or ``num_records`` is not from 1 to 10**12
            (raised before anything is generated).
        OutputExistsError: ``output_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        StorageError: ``resume`` and the run cannot be continued with this config, its seed
            files or its code (the message says which, and what to do).
    """
    overrides: dict[str, Any] = {}
    if executor is not None:
        overrides["executor"] = executor
    ray = {"address": ray_address, "shards": shards}
    if any(v is not None for v in ray.values()):
        overrides["ray"] = {k: v for k, v in ray.items() if v is not None}
        overrides.setdefault("executor", "ray")  # a cluster or a shard count asks for Ray
    run = Run(config, base_dir=base_dir, executor=overrides, cache=cache)
    return await run.create(
        num_records=num_records,
        output_dir=output_dir,
        resume=resume,
        overwrite=overwrite,
        accept_code_change=accept_code_change,
    )


def create(
    config: ConfigSource,
    *,
    num_records: int,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    overwrite: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
    executor: Literal["local", "ray"] | None = None,
    ray_address: str | None = None,
    shards: int | None = None,
    cache: bool = True,
    accept_code_change: bool = False,
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
            executor=executor,
            ray_address=ray_address,
            shards=shards,
            cache=cache,
            accept_code_change=accept_code_change,
        )
    )


async def apreview(
    config: ConfigSource,
    num_records: int = 10,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    cache: bool = True,
) -> RunResult:
    """Generate a few rows in memory (nothing is written); for callers inside trio.

    A failing model stops the preview early, as it does a run (see :func:`acreate`, also for
    ``cache``, and ``num_records``: from 1 to 10**12).
    """
    return await Run(config, base_dir=base_dir, cache=cache).preview(num_records)


def preview(
    config: ConfigSource,
    num_records: int = 10,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    cache: bool = True,
) -> RunResult:
    """Generate a few rows in memory to look at before a real run.

    Example:
        >>> gl.preview("pipeline.yaml", num_records=5).table.to_pylist()  # doctest: +SKIP
    """
    return trio.run(
        functools.partial(apreview, config, num_records, base_dir=base_dir, cache=cache)
    )


async def acheck_models(
    config: ConfigSource, *, base_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """Send one tiny request to every model alias the pipeline uses; for callers in trio.

    The requests go out at once, each bounded by its model's ``timeout``: a check of models
    that never answer takes one timeout, not one per model.

    Returns:
        One dict per alias, in the aliases' sorted order: ``alias``, ``provider``,
        ``model``, ``ok``, ``latency_s`` or ``error``, ``transport`` and
        ``transport_reason``, and a ``note`` for a model that answered but ran out of tokens
        first (a reasoning model; its columns need a larger ``max_tokens``).
    """
    return await Run(config, base_dir=base_dir).check_models()


def check_models(
    config: ConfigSource, *, base_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """Send one tiny request to every model alias the pipeline uses; report latency or error.

    Example:
        >>> for row in gl.check_models("pipeline.yaml"):  # doctest: +SKIP
        ...     print(row["alias"], row["ok"], row.get("latency_s"), row.get("error"))
    """
    return trio.run(functools.partial(acheck_models, config, base_dir=base_dir))
