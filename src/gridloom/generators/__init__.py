"""Generators: what fills each column (samplers, expressions, custom functions, seed rows).

The engine builds one generator per column with :func:`build_generator` (the seed dataset's
:class:`SeedDatasetGenerator` directly) and calls it as :class:`ColumnGenerator` describes.
"""

from ._dtypes import arrow_type, coerce, infer_arrow_type, normalize_values
from ._factory import BuildContext, GeneratorBuilder, build_generator, register_builder
from .base import (
    BatchContext,
    CellContext,
    ColumnGenerator,
    Granularity,
    RowFailure,
    derive_rng,
    derive_seed,
)
from .custom import AsyncCustomGenerator, CustomGenerator, custom_generator, resolve_function
from .expression import ExpressionGenerator
from .samplers import (
    BernoulliSampler,
    BinomialSampler,
    CategorySampler,
    DatetimeSampler,
    GaussianSampler,
    PoissonSampler,
    SubcategorySampler,
    TimedeltaSampler,
    UniformSampler,
    UUIDSampler,
)
from .seed import SeedDatasetGenerator

__all__ = [
    "AsyncCustomGenerator",
    "BatchContext",
    "BernoulliSampler",
    "BinomialSampler",
    "BuildContext",
    "CategorySampler",
    "CellContext",
    "ColumnGenerator",
    "CustomGenerator",
    "DatetimeSampler",
    "ExpressionGenerator",
    "GaussianSampler",
    "GeneratorBuilder",
    "Granularity",
    "PoissonSampler",
    "RowFailure",
    "SeedDatasetGenerator",
    "SubcategorySampler",
    "TimedeltaSampler",
    "UUIDSampler",
    "UniformSampler",
    "arrow_type",
    "build_generator",
    "coerce",
    "custom_generator",
    "derive_rng",
    "derive_seed",
    "infer_arrow_type",
    "normalize_values",
    "register_builder",
    "resolve_function",
]
