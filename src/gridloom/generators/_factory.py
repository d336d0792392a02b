"""From column configs to generators: :func:`build_generator` and its registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import attrs
import jinja2
import pyarrow as pa

from ..config._columns import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    ColumnConfig,
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
from ..config._llm import (
    EmbeddingColumn,
    LLMCodeColumn,
    LLMColumn,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
)
from ..config._models import ModelConfig
from ..errors import ConfigError, TemplateError, UnknownReferenceError
from ._dtypes import normalize_values, short_repr
from ._jinja import TemplateLimits, template_variables
from .base import ColumnGenerator, Granularity
from .custom import custom_generator
from .expression import ExpressionGenerator
from .llm import build_llm_generator
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

__all__ = ["BuildContext", "GeneratorBuilder", "build_generator", "register_builder"]

C = TypeVar("C", bound=ColumnConfig)


@attrs.frozen(kw_only=True)
class BuildContext:
    """What :func:`build_generator` may know about the rest of the pipeline.

    Attributes:
        columns: every column config of the pipeline, by name.
        upstream_types: Arrow type of every output column built so far (generators are built
            in topological order, so a column's references are all here).
        upstream_granularity: granularity of the generator producing each of those columns.
        base_dir: folder relative file paths are resolved against.
        models: the pipeline's model configurations, by alias.
        template_limits: what one render of a template may use (the run's ``template_*``
            settings).
    """

    columns: Mapping[str, ColumnConfig] = attrs.field(factory=dict)
    upstream_types: Mapping[str, pa.DataType] = attrs.field(factory=dict)
    upstream_granularity: Mapping[str, Granularity] = attrs.field(factory=dict)
    base_dir: Path | None = None
    models: Mapping[str, ModelConfig] = attrs.field(factory=dict)
    template_limits: TemplateLimits = attrs.field(factory=TemplateLimits)


#: Builds the generator of one column kind.
GeneratorBuilder = Callable[[C, BuildContext], ColumnGenerator]

_BUILDERS: dict[type[ColumnConfig], Callable[[ColumnConfig, BuildContext], ColumnGenerator]] = {}


def register_builder(config_type: type[C], builder: GeneratorBuilder[C]) -> None:
    """Make :func:`build_generator` build columns of ``config_type`` (and its subclasses
    without a builder of their own) with ``builder``."""
    _BUILDERS[config_type] = builder  # type: ignore[assignment]


def build_generator(column: ColumnConfig, ctx: BuildContext) -> ColumnGenerator:
    """The generator that fills ``column``.

    Raises:
        ConfigError: a problem visible before running — an unknown column kind, a subcategory
            whose parent is not a category column or has values it does not cover, a timedelta
            reference that is not a datetime column, an unknown dtype, an unresolvable custom
            function, a template that does not parse (:class:`TemplateError`), and so on.
    """
    for config_type in type(column).__mro__:
        builder = _BUILDERS.get(config_type)
        if builder is not None:
            return builder(column, ctx)
    raise ConfigError(
        f"no generator for columns of type {type(column).__name__}", column=column.name
    )


def _subcategory(column: SubcategoryColumn, ctx: BuildContext) -> ColumnGenerator:
    parent = ctx.columns.get(column.parent)
    if not isinstance(parent, CategoryColumn):
        what = "no column" if parent is None else f"a {type(parent).__name__}"
        raise ConfigError(
            f"parent {column.parent!r} must be a category column, but it is {what}",
            column=column.name,
            field="parent",
        )
    _kind, parent_values = normalize_values(parent.values)
    missing = [value for value in parent_values if value not in column.values]
    if missing:
        raise ConfigError(
            f"values has no entry for parent {column.parent!r} value(s)"
            f" {', '.join(map(short_repr, missing))}",
            column=column.name,
            field="values",
        )
    return SubcategorySampler(column)


def _timedelta(column: TimedeltaColumn, ctx: BuildContext) -> ColumnGenerator:
    reference_type = None
    if column.reference is not None:
        reference_type = ctx.upstream_types.get(column.reference)
        if reference_type is None:
            raise ConfigError(
                f"reference {column.reference!r} is not a column built before this one",
                column=column.name,
                field="reference",
            )
    bounds = None
    reference = ctx.columns.get(column.reference) if column.reference is not None else None
    if isinstance(reference, DatetimeColumn) and reference.format is None:
        bounds = (reference.start, reference.end)  # so a sum past year 9999 is refused here
    return TimedeltaSampler(column, reference_type=reference_type, reference_bounds=bounds)


def _expression(column: ExpressionColumn, ctx: BuildContext) -> ColumnGenerator:
    try:
        names = template_variables(column.template)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template does not parse: {exc.message} (line {exc.lineno})",
            column=column.name,
            field="template",
        ) from exc
    names |= set(column.depends_on)
    unknown = sorted(name for name in names if name not in ctx.upstream_granularity)
    if unknown:
        raise UnknownReferenceError(
            f"references unknown or later column(s) {', '.join(map(repr, unknown))}",
            column=column.name,
            field="template",
        )
    batch = all(ctx.upstream_granularity[name] == "batch" for name in names)
    return ExpressionGenerator(
        column, granularity="batch" if batch else "cell", limits=ctx.template_limits
    )


def _simple(factory: Callable[[C], ColumnGenerator]) -> GeneratorBuilder[C]:
    def build(column: C, _ctx: BuildContext) -> ColumnGenerator:
        return factory(column)

    return build


def _llm(column: LLMColumn | EmbeddingColumn, ctx: BuildContext) -> ColumnGenerator:
    model = ctx.models.get(column.model)
    if model is None:  # PipelineConfig already checks aliases; this guards direct use
        raise ConfigError(
            f"unknown model alias {column.model!r}",
            column=column.name,
            field=f"{column.kind}.model",
        )
    return build_llm_generator(column, model, limits=ctx.template_limits)


register_builder(CategoryColumn, _simple(CategorySampler))
register_builder(SubcategoryColumn, _subcategory)
register_builder(UniformColumn, _simple(UniformSampler))
register_builder(GaussianColumn, _simple(GaussianSampler))
register_builder(PoissonColumn, _simple(PoissonSampler))
register_builder(BernoulliColumn, _simple(BernoulliSampler))
register_builder(BinomialColumn, _simple(BinomialSampler))
register_builder(UUIDColumn, _simple(UUIDSampler))
register_builder(DatetimeColumn, _simple(DatetimeSampler))
register_builder(TimedeltaColumn, _timedelta)
register_builder(ExpressionColumn, _expression)
register_builder(
    CustomColumn,
    lambda column, ctx: custom_generator(
        column,
        search_path=ctx.base_dir,
        model=ctx.models.get(column.model) if column.model is not None else None,
    ),
)
register_builder(LLMTextColumn, _llm)
register_builder(LLMCodeColumn, _llm)
register_builder(LLMStructuredColumn, _llm)
register_builder(LLMJudgeColumn, _llm)
register_builder(EmbeddingColumn, _llm)
