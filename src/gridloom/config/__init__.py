"""Pipeline configuration: frozen attrs models, the YAML/JSON converter, files, a builder.

Build a pipeline in Python with :class:`PipelineBuilder` or the config classes, or load one
with :func:`load_config`; :func:`dump_config` writes it back losslessly and
:func:`config_hash` fingerprints it; :func:`config_json_schema` describes the file format as a
JSON Schema.
"""

from ._builder import PipelineBuilder
from ._columns import (
    SAMPLER_KINDS,
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    ColumnConfig,
    CustomColumn,
    DatetimeColumn,
    DType,
    ExpressionColumn,
    GaussianColumn,
    PoissonColumn,
    SubcategoryColumn,
    TimedeltaColumn,
    UniformColumn,
    UUIDColumn,
)
from ._converter import converter, structure_pipeline, unstructure_pipeline
from ._io import config_hash, dump_config, load_config, load_config_with_base
from ._kinds import COLUMN_KINDS
from ._llm import (
    EmbeddingColumn,
    LLMCodeColumn,
    LLMColumn,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
    Rubric,
)
from ._models import ModelConfig, PipelineConfig, ProviderConfig, RunConfig, SeedDatasetConfig
from ._schema import config_json_schema
from ._simulation import CapacityStep, LatencyConfig, SimulatedModel, SimulationConfig
from ._throttle import ThrottleConfig

__all__ = [
    "COLUMN_KINDS",
    "SAMPLER_KINDS",
    "BernoulliColumn",
    "BinomialColumn",
    "CapacityStep",
    "CategoryColumn",
    "ColumnConfig",
    "CustomColumn",
    "DType",
    "DatetimeColumn",
    "EmbeddingColumn",
    "ExpressionColumn",
    "GaussianColumn",
    "LLMCodeColumn",
    "LLMColumn",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "LatencyConfig",
    "ModelConfig",
    "PipelineBuilder",
    "PipelineConfig",
    "PoissonColumn",
    "ProviderConfig",
    "Rubric",
    "RunConfig",
    "SeedDatasetConfig",
    "SimulatedModel",
    "SimulationConfig",
    "SubcategoryColumn",
    "ThrottleConfig",
    "TimedeltaColumn",
    "UUIDColumn",
    "UniformColumn",
    "config_hash",
    "config_json_schema",
    "converter",
    "dump_config",
    "load_config",
    "load_config_with_base",
    "structure_pipeline",
    "unstructure_pipeline",
]
