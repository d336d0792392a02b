"""Pipeline configuration: frozen attrs models, the YAML/JSON converter, files, a builder.

Build a pipeline in Python with :class:`PipelineBuilder` or the config classes, or load one
with :func:`load_config`; :func:`dump_config` writes it back losslessly and
:func:`config_hash` fingerprints it; :func:`config_json_schema` describes the file format as a
JSON Schema.

The column classes live with their kinds in :mod:`gridloom.kinds` (a plugin's in its own
package); :data:`COLUMN_KINDS` maps each registered kind key to its class. The built-in
classes stay reachable here by name (``gridloom.config.CategoryColumn``), looked up in the
registry when first asked for.
"""

import importlib
from typing import Any

from ._builder import PipelineBuilder
from ._cache import PriceConfig
from ._columns import ColumnConfig, DType
from ._constraints import Constraint
from ._converter import converter, structure_pipeline, unstructure_pipeline
from ._executor import RayConfig
from ._inference import InferenceDistribution
from ._io import config_hash, dump_config, load_config, load_config_with_base
from ._kinds import COLUMN_KINDS
from ._llm import LLMColumn, Rubric
from ._models import (
    ModelConfig,
    PipelineConfig,
    ProviderConfig,
    RunConfig,
    SeedDatasetConfig,
    SeedPartition,
)
from ._schema import config_json_schema
from ._simulation import (
    BatchSimulation,
    CapacityStep,
    LatencyConfig,
    SimulatedModel,
    SimulationConfig,
)
from ._throttle import ThrottleConfig
from ._validators import schema_keywords, to_tuple

__all__ = [
    "COLUMN_KINDS",
    "BatchSimulation",
    "CapacityStep",
    "ColumnConfig",
    "Constraint",
    "DType",
    "InferenceDistribution",
    "LLMColumn",
    "LatencyConfig",
    "ModelConfig",
    "PipelineBuilder",
    "PipelineConfig",
    "PriceConfig",
    "ProviderConfig",
    "RayConfig",
    "Rubric",
    "RunConfig",
    "SeedDatasetConfig",
    "SeedPartition",
    "SimulatedModel",
    "SimulationConfig",
    "ThrottleConfig",
    "config_hash",
    "config_json_schema",
    "converter",
    "dump_config",
    "load_config",
    "load_config_with_base",
    "schema_keywords",
    "structure_pipeline",
    "to_tuple",
    "unstructure_pipeline",
]

#: The built-in column classes still reachable here, by the kind (module of gridloom.kinds)
#: that declares each; the first ten are the samplers (``SAMPLER_KINDS``).
_BUILTIN_CLASSES = {
    "CategoryColumn": "category",
    "SubcategoryColumn": "subcategory",
    "UniformColumn": "uniform",
    "GaussianColumn": "gaussian",
    "PoissonColumn": "poisson",
    "BernoulliColumn": "bernoulli",
    "BinomialColumn": "binomial",
    "UUIDColumn": "uuid",
    "DatetimeColumn": "datetime",
    "TimedeltaColumn": "timedelta",
    "ExpressionColumn": "expression",
    "CustomColumn": "custom",
    "LLMTextColumn": "llm_text",
    "LLMCodeColumn": "llm_code",
    "LLMStructuredColumn": "llm_structured",
    "LLMJudgeColumn": "llm_judge",
    "EmbeddingColumn": "embedding",
}


def __getattr__(name: str) -> Any:
    """The built-in column classes by name (``CategoryColumn``...) and ``SAMPLER_KINDS``, as
    before they moved to :mod:`gridloom.kinds`: imported by name when first asked for (config
    sits below the kinds, so it never imports them itself)."""
    if name == "SAMPLER_KINDS":
        return tuple(__getattr__(cls) for cls in list(_BUILTIN_CLASSES)[:10])
    kind = _BUILTIN_CLASSES.get(name)
    if kind is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"gridloom.kinds.{kind}"), name)
