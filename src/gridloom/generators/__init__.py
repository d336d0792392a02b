"""Generators: the contract the engine calls, and what column kinds build theirs from.

The engine builds one generator per column with :func:`build_generator` — each column kind
(:mod:`gridloom.kinds`) makes its own — and the seed dataset's :class:`SeedDatasetGenerator`
directly, and calls them as :class:`ColumnGenerator` describes. The shared helpers live here:
dtypes, the Jinja sandbox, the sampler base, the model-calling machinery, function lookup.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports as _lazy_exports
from ._dtypes import arrow_type, coerce, infer_arrow_type, normalize_values
from ._factory import BuildContext, GeneratorBuilder, build_generator
from ._jinja import TemplateLimits
from .base import (
    BatchContext,
    CellContext,
    ColumnGenerator,
    Granularity,
    RowFailure,
    derive_rng,
    derive_seed,
)
from .custom import is_async_callable, resolve_function
from .llm import LLMStructuredGenerator, ModelColumnGenerator
from .sampling import NumericSampler, Sampler

if TYPE_CHECKING:
    from .seed import SeedDatasetGenerator

__all__ = [
    "BatchContext",
    "BuildContext",
    "CellContext",
    "ColumnGenerator",
    "GeneratorBuilder",
    "Granularity",
    "LLMStructuredGenerator",
    "ModelColumnGenerator",
    "NumericSampler",
    "RowFailure",
    "Sampler",
    "SeedDatasetGenerator",
    "TemplateLimits",
    "arrow_type",
    "build_generator",
    "coerce",
    "derive_rng",
    "derive_seed",
    "infer_arrow_type",
    "is_async_callable",
    "normalize_values",
    "resolve_function",
]

# The seed dataset's reader (pyarrow's datasets, the Hugging Face and streaming sources) loads
# only for a pipeline that has one.
__getattr__, __dir__ = _lazy_exports(__name__, {"SeedDatasetGenerator": ".seed"})
