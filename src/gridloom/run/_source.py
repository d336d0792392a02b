"""Where a run's pipeline comes from: a config object, a file or a mapping, loaded, compiled
and checked before anything is generated."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..config import PipelineConfig, load_config_with_base
from ..config._io import redacted_headers  # TODO(lead): export it from gridloom.config
from ..engine import ExecutionGraph, compile_pipeline
from ..errors import ConfigError, StorageError
from ..generators._code_fingerprint import code_fingerprint
from ..storage import CodeFingerprint
from ._plan import check_num_records
from ._processors import compile_processors

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "ConfigSource",
    "compile_source",
    "fingerprints",
    "load_source",
    "output_schema",
    "prepare",
    "run_seed",
    "seed_fingerprint",
]

log = logging.getLogger("gridloom")

#: A pipeline: a :class:`PipelineConfig`, a path to a YAML/JSON file, or a parsed mapping.
ConfigSource = PipelineConfig | str | os.PathLike[str] | Mapping[str, Any]


def load_source(
    config: ConfigSource, base_dir: str | os.PathLike[str] | None
) -> tuple[PipelineConfig, Path | None]:
    """The pipeline, and the folder its relative paths resolve against (``base_dir`` when
    given, else the config file's folder; ``None`` for an object or a mapping)."""
    if isinstance(config, PipelineConfig):
        cfg, base = config, None
    else:
        cfg, base = load_config_with_base(config)
    if base_dir is not None:
        base = Path(base_dir)
    return cfg, base


def compile_source(cfg: PipelineConfig, base: Path | None) -> ExecutionGraph:
    """Compile ``cfg`` (its processors too); a :class:`ConfigError`'s problems about a column
    also name its kind (:attr:`~gridloom.errors.ConfigIssue.kind`), so a caller can point into
    the file.

    Raises:
        ConfigError: the pipeline does not compile.
    """
    try:
        graph = compile_pipeline(cfg, base_dir=base)
        if cfg.processors:  # checked here; the run compiles them again
            compile_processors(cfg, graph.schema)
        return graph
    except ConfigError as exc:
        kinds = {column.name: column.kind for column in cfg.columns}
        exc.issues = tuple(
            attrs.evolve(issue, kind=kinds[issue.column])
            if issue.kind is None and issue.column in kinds
            else issue
            for issue in exc.issues
        )
        raise


def _warn_redacted(cfg: PipelineConfig) -> None:
    """Warn about provider headers a run would send as the redaction marker (a run's saved
    ``config.yaml`` keeps header names only)."""
    for provider, headers in redacted_headers(cfg).items():
        log.warning(
            "provider %r sends headers %s with the value '<redacted>' (saved redacted); run with"
            " the original config to send the real ones",
            provider,
            ", ".join(headers),
        )


def _check_seed_rows(graph: ExecutionGraph, cfg: PipelineConfig, num_records: int) -> None:
    seed_cfg = cfg.seed_dataset
    if seed_cfg is None or seed_cfg.cycle or seed_cfg.replacement:
        return
    generator = graph.nodes[graph.producer[next(iter(graph.nodes[0].outputs))]].generator
    available = getattr(generator, "num_rows", None)
    if isinstance(available, int) and num_records > available:
        raise ConfigError(
            f"the seed dataset has {available} rows, fewer than num_records={num_records};"
            " set cycle: true to reuse rows",
            field="seed_dataset.cycle",
        )


async def prepare(
    config: ConfigSource, base_dir: str | os.PathLike[str] | None, num_records: int
) -> tuple[PipelineConfig, ExecutionGraph, Path | None]:
    """Load, compile and check a pipeline for a run of ``num_records`` rows; also returns the
    folder its relative paths resolve against.

    Loading and compiling read files (the config, a seed dataset's schema), so they run in a
    worker thread, off the event loop.

    Raises:
        ConfigError: the pipeline is invalid, or cannot give ``num_records`` rows.
    """
    check_num_records(num_records)
    cfg, base = await trio.to_thread.run_sync(load_source, config, base_dir)
    graph = await trio.to_thread.run_sync(compile_source, cfg, base)
    await trio.to_thread.run_sync(_check_seed_rows, graph, cfg, num_records)
    _warn_redacted(cfg)
    return cfg, graph, base


def run_seed(cfg: PipelineConfig) -> int:
    """The run's seed: the configured one, else a fresh random one."""
    return cfg.run.seed if cfg.run.seed is not None else secrets.randbits(63)


def output_schema(cfg: PipelineConfig, graph: ExecutionGraph) -> pa.Schema:
    """The schema of the data written: the generated columns', reshaped by the processors."""
    chain = compile_processors(cfg, graph.schema)
    return graph.schema if chain is None else chain.schema


def seed_fingerprint(graph: ExecutionGraph) -> str | None:
    """The seed dataset's files' fingerprint (``None`` without seed files), recorded so a
    resume over changed files is refused."""
    for node in graph.nodes:
        fingerprint = getattr(node.generator, "fingerprint", None)
        if node.name == "seed_dataset" and callable(fingerprint):
            try:
                found: str | None = fingerprint()
            except OSError as exc:
                raise StorageError(f"cannot read the seed dataset's files: {exc}") from None
            return found
    return None


async def fingerprints(
    cfg: PipelineConfig, graph: ExecutionGraph, base: Path | None, *, accept_code_change: bool
) -> tuple[str | None, CodeFingerprint]:
    """What a run records of its inputs beyond the config, for a resume to check, computed
    once per run in a worker thread (both read files): the seed files' fingerprint
    (:func:`seed_fingerprint`) and that of the Python code the columns call
    (:mod:`gridloom.generators._code_fingerprint`; a resume over changed code is refused unless
    ``accept_code_change``, ``--accept-code-change``, which records the change)."""
    seed = await trio.to_thread.run_sync(seed_fingerprint, graph)
    code = await trio.to_thread.run_sync(code_fingerprint, cfg, base)
    return seed, CodeFingerprint(columns=code, accept_change=accept_code_change)
