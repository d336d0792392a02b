"""gridloom: generate synthetic datasets cell by cell, on trio structured concurrency.

The public face. Everything a user needs is importable from here::

    import gridloom as gl
    result = gl.create("pipeline.yaml", num_records=10_000, output_dir="out/")
"""

import typing as _typing

from ._lazy import lazy_exports as _lazy_exports
from ._version import __version__

if _typing.TYPE_CHECKING:
    from ._api import (
        acheck_models,
        acreate,
        apreview,
        check_models,
        create,
        plan_row_groups,
        preview,
        validate,
    )
    from .config import (
        ColumnConfig,
        Constraint,
        ModelConfig,
        PipelineBuilder,
        PipelineConfig,
        ProviderConfig,
        RunConfig,
        SeedDatasetConfig,
        SeedPartition,
        config_hash,
        dump_config,
        load_config,
    )
    from .engine import ExecutionGraph
    from .errors import (
        ClusterError,
        ConfigError,
        CycleError,
        GenerationError,
        GridloomError,
        OutputExistsError,
        RunError,
        StorageError,
        TemplateError,
        TemplateLimitExceeded,
        UnknownReferenceError,
        ValueTypeError,
    )
    from .generators import BatchContext, CellContext, ColumnGenerator, RowFailure
    from .kinds import (
        BernoulliColumn,
        BinomialColumn,
        CategoryColumn,
        CustomColumn,
        DatetimeColumn,
        ExpressionColumn,
        GaussianColumn,
        PoissonColumn,
        SubcategoryColumn,
        TimedeltaColumn,
        UniformColumn,
        UUIDColumn,
    )
    from .storage import ColumnCounts, RunResult, open_run

#: Each public name and the module it comes from: imported on first use (PEP 562), so that
#: ``import gridloom`` is cheap and a program (the ``gridloom`` command) can prepare the
#: process before the engine and its dependencies load.
_PUBLIC: dict[str, str] = {
    "BatchContext": ".generators",
    "BernoulliColumn": ".kinds",
    "BinomialColumn": ".kinds",
    "CategoryColumn": ".kinds",
    "CellContext": ".generators",
    "ClusterError": ".errors",
    "ColumnConfig": ".config",
    "ColumnCounts": ".storage",
    "ColumnGenerator": ".generators",
    "ConfigError": ".errors",
    "Constraint": ".config",
    "CustomColumn": ".kinds",
    "CycleError": ".errors",
    "DatetimeColumn": ".kinds",
    "ExecutionGraph": ".engine",
    "ExpressionColumn": ".kinds",
    "GaussianColumn": ".kinds",
    "GenerationError": ".errors",
    "GridloomError": ".errors",
    "ModelConfig": ".config",
    "OutputExistsError": ".errors",
    "PipelineBuilder": ".config",
    "PipelineConfig": ".config",
    "PoissonColumn": ".kinds",
    "ProviderConfig": ".config",
    "RowFailure": ".generators",
    "RunConfig": ".config",
    "RunError": ".errors",
    "RunResult": ".storage",
    "SeedDatasetConfig": ".config",
    "SeedPartition": ".config",
    "StorageError": ".errors",
    "SubcategoryColumn": ".kinds",
    "TemplateError": ".errors",
    "TemplateLimitExceeded": ".errors",
    "TimedeltaColumn": ".kinds",
    "UUIDColumn": ".kinds",
    "UniformColumn": ".kinds",
    "UnknownReferenceError": ".errors",
    "ValueTypeError": ".errors",
    "acheck_models": "._api",
    "acreate": "._api",
    "apreview": "._api",
    "check_models": "._api",
    "config_hash": ".config",
    "create": "._api",
    "dump_config": ".config",
    "load_config": ".config",
    "open_run": ".storage",
    "plan_row_groups": "._api",
    "preview": "._api",
    "validate": "._api",
}
#: gridloom's subpackages and modules, reachable as attributes like any package's.
_SUBMODULES = frozenset(
    {
        "cli",
        "clients",
        "config",
        "engine",
        "errors",
        "generators",
        "kinds",
        "plots",
        "progress",
        "run",
        "simulated",
        "storage",
        "throttle",
        "tools",
        "trace",
    }
)


__getattr__, __dir__ = _lazy_exports(__name__, _PUBLIC, _SUBMODULES)

__all__ = [
    "BatchContext",
    "BernoulliColumn",
    "BinomialColumn",
    "CategoryColumn",
    "CellContext",
    "ClusterError",
    "ColumnConfig",
    "ColumnCounts",
    "ColumnGenerator",
    "ConfigError",
    "Constraint",
    "CustomColumn",
    "CycleError",
    "DatetimeColumn",
    "ExecutionGraph",
    "ExpressionColumn",
    "GaussianColumn",
    "GenerationError",
    "GridloomError",
    "ModelConfig",
    "OutputExistsError",
    "PipelineBuilder",
    "PipelineConfig",
    "PoissonColumn",
    "ProviderConfig",
    "RowFailure",
    "RunConfig",
    "RunError",
    "RunResult",
    "SeedDatasetConfig",
    "SeedPartition",
    "StorageError",
    "SubcategoryColumn",
    "TemplateError",
    "TemplateLimitExceeded",
    "TimedeltaColumn",
    "UUIDColumn",
    "UniformColumn",
    "UnknownReferenceError",
    "ValueTypeError",
    "__version__",
    "acheck_models",
    "acreate",
    "apreview",
    "check_models",
    "config_hash",
    "create",
    "dump_config",
    "load_config",
    "open_run",
    "plan_row_groups",
    "preview",
    "validate",
]
