"""Column kinds: one module per kind, each declaring a :class:`ColumnKind`.

A kind is a config class (a frozen attrs subclass of :class:`~gridloom.config.ColumnConfig`,
whose fields are the kind's parameters and whose docstring its documentation), the generator
that fills its columns, and how ``PipelineBuilder``'s method for it takes arguments. Every
kind — the built-in ones here and a plugin's — is declared by a ``gridloom.columns`` entry
point naming its ``ColumnKind``, and found through the same registry, on first need. Writing
one is described in ``docs/plugins.md``.

:func:`installed` lists the kinds found, where each came from and what is wrong with those
that did not load.
"""

import typing as _typing

from .._lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from ..config._distribution import ScipyDistribution
    from ..config._kind import ColumnKind, KindInfo
    from ..config._kinds import ENTRY_POINT_GROUP, installed
    from .bernoulli import BernoulliColumn
    from .bernoulli_mixture import BernoulliMixtureColumn
    from .binomial import BinomialColumn
    from .category import CategoryColumn
    from .custom import CustomColumn
    from .datetime import DatetimeColumn
    from .embedding import EmbeddingColumn
    from .expression import ExpressionColumn
    from .gaussian import GaussianColumn
    from .llm_code import LLMCodeColumn
    from .llm_judge import LLMJudgeColumn
    from .llm_structured import LLMStructuredColumn
    from .llm_text import LLMTextColumn
    from .person import PersonColumn
    from .poisson import PoissonColumn
    from .scipy_dist import ScipyColumn
    from .subcategory import SubcategoryColumn
    from .timedelta import TimedeltaColumn
    from .uniform import UniformColumn
    from .uuid import UUIDColumn

#: Each public name and the module defining it, imported on first use: loading one kind
#: (``gridloom.kinds.llm_text``, as the registry does for a config naming it) does not load
#: the others.
_PUBLIC: dict[str, str] = {
    "BernoulliColumn": ".bernoulli",
    "BernoulliMixtureColumn": ".bernoulli_mixture",
    "BinomialColumn": ".binomial",
    "CategoryColumn": ".category",
    "ColumnKind": "..config._kind",
    "CustomColumn": ".custom",
    "DatetimeColumn": ".datetime",
    "ENTRY_POINT_GROUP": "..config._kinds",
    "EmbeddingColumn": ".embedding",
    "ExpressionColumn": ".expression",
    "GaussianColumn": ".gaussian",
    "KindInfo": "..config._kind",
    "LLMCodeColumn": ".llm_code",
    "LLMJudgeColumn": ".llm_judge",
    "LLMStructuredColumn": ".llm_structured",
    "LLMTextColumn": ".llm_text",
    "PersonColumn": ".person",
    "PoissonColumn": ".poisson",
    "ScipyColumn": ".scipy_dist",
    "ScipyDistribution": "..config._distribution",
    "SubcategoryColumn": ".subcategory",
    "TimedeltaColumn": ".timedelta",
    "UUIDColumn": ".uuid",
    "UniformColumn": ".uniform",
    "installed": "..config._kinds",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "BernoulliColumn",
    "BernoulliMixtureColumn",
    "BinomialColumn",
    "CategoryColumn",
    "ColumnKind",
    "CustomColumn",
    "DatetimeColumn",
    "EmbeddingColumn",
    "ExpressionColumn",
    "GaussianColumn",
    "KindInfo",
    "LLMCodeColumn",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "PersonColumn",
    "PoissonColumn",
    "ScipyColumn",
    "ScipyDistribution",
    "SubcategoryColumn",
    "TimedeltaColumn",
    "UUIDColumn",
    "UniformColumn",
    "installed",
]

#: The kinds' modules (and the ``validate`` package), reachable as attributes before they
#: were imported, as they were when this package imported them all.
_SUBMODULES = frozenset(
    {
        "bernoulli",
        "bernoulli_mixture",
        "binomial",
        "category",
        "custom",
        "datetime",
        "embedding",
        "expression",
        "gaussian",
        "llm_agent",
        "llm_code",
        "llm_judge",
        "llm_structured",
        "llm_text",
        "person",
        "poisson",
        "scipy_dist",
        "subcategory",
        "timedelta",
        "uniform",
        "uuid",
        "validate",
    }
)

__getattr__, __dir__ = _lazy_exports(__name__, _PUBLIC, _SUBMODULES)
