"""gridloom: generate synthetic datasets cell by cell, on trio structured concurrency.

The public face. Everything a user needs is importable from here::

    import gridloom as gl
    result = gl.create("pipeline.yaml", num_records=10_000, output_dir="out/")
"""

import importlib.metadata as _metadata

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

try:
    __version__ = _metadata.version("gridloom")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

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
