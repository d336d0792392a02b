"""From column configs to generators: :func:`build_generator`, through the kind registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from .._attrs import frozen
from ..config._columns import ColumnConfig
from ..config._kinds import installed, kind_of, unavailable, unavailable_message
from ..config._llm import LLMColumn
from ..config._models import ModelConfig
from ..errors import ConfigError, GridloomError
from ._jinja import TemplateLimits
from .base import ColumnGenerator, Granularity

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["BuildContext", "GeneratorBuilder", "build_generator"]

C = TypeVar("C", bound=ColumnConfig)


@frozen(kw_only=True)
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
        supports: for each sampler column built so far, the smallest and largest value it
            can draw (``None`` for an unbounded side); what constraint checks read.
        producers: every column of the pipeline's data (each column's outputs and the seed
            dataset's columns) → the column filling it (``seed_dataset`` for the seed
            dataset's), for messages about a column user code read but was not handed.
    """

    columns: Mapping[str, ColumnConfig] = attrs.field(factory=dict)
    upstream_types: Mapping[str, pa.DataType] = attrs.field(factory=dict)
    upstream_granularity: Mapping[str, Granularity] = attrs.field(factory=dict)
    base_dir: Path | None = None
    models: Mapping[str, ModelConfig] = attrs.field(factory=dict)
    template_limits: TemplateLimits = attrs.field(factory=TemplateLimits)
    supports: Mapping[str, tuple[Any, Any]] = attrs.field(factory=dict)
    producers: Mapping[str, str] = attrs.field(factory=dict)

    def model_config(self, column: ColumnConfig, alias: str, field: str = "model") -> ModelConfig:
        """The configuration of the model ``alias`` that ``column`` calls.

        Raises:
            ConfigError: no model has that alias (``PipelineConfig`` checks aliases already;
                this guards direct use), naming ``<kind>.<field>``.
        """
        model = self.models.get(alias)
        if model is None:
            raise ConfigError(
                f"unknown model alias {alias!r}", column=column.name, field=f"{column.kind}.{field}"
            )
        return model


#: Builds the generator of one column kind (a :class:`~gridloom.kinds.ColumnKind`'s ``build``).
GeneratorBuilder = Callable[[C, BuildContext], ColumnGenerator[Any]]


def build_generator(column: ColumnConfig, ctx: BuildContext) -> ColumnGenerator[Any]:
    """The generator that fills ``column``, made by its kind's ``build``.

    Raises:
        ConfigError: a problem visible before running — a column of no registered kind (or of
            a plugin's kind that did not load), a subcategory whose parent is not a category
            column, an unknown dtype, an unresolvable custom function, a template that does
            not parse (:class:`TemplateError`), and so on; a kind's ``build`` that fails
            otherwise, or returns something other than a generator, is reported as one too.
    """
    kind = kind_of(column)
    if kind is None:
        info = unavailable(type(column).kind) if type(column).kind else None
        message = (
            unavailable_message(info)
            if info is not None
            else f"no generator for columns of type {type(column).__name__}"
        )
        raise ConfigError(message, column=column.name)
    try:
        generator = kind.build(column, ctx)
    except GridloomError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"the {kind.name!r} column kind{_from(kind.name)} could not make its generator:"
            f" {type(exc).__name__}: {exc}",
            column=column.name,
        ) from exc
    if not isinstance(generator, ColumnGenerator):
        raise ConfigError(
            f"the {kind.name!r} column kind{_from(kind.name)} made a"
            f" {type(generator).__name__}, not a ColumnGenerator",
            column=column.name,
        )
    if isinstance(column, LLMColumn) and column.validate_with:
        _check_answers(column, generator, ctx)
    return generator


def _check_answers(column: LLMColumn, generator: ColumnGenerator[Any], ctx: BuildContext) -> None:
    """Give a model column's generator its ``validate_with`` validators (every kind built on
    :class:`~gridloom.generators.llm.ModelColumnGenerator` takes them)."""
    from ..kinds.validate._feedback import answer_checks
    from .llm import ModelColumnGenerator

    if not isinstance(generator, ModelColumnGenerator):
        raise ConfigError(
            f"the {column.kind!r} column kind{_from(column.kind)} does not support validate_with"
            " (its generator is not a ModelColumnGenerator)",
            column=column.name,
            field=f"{column.kind}.validate_with",
        )
    generator.check_answers(answer_checks(column, ctx), column.max_correction_attempts)


def _from(name: str) -> str:
    info = next((i for i in installed() if i.name == name and i.available), None)
    return "" if info is None or info.builtin else f" (from {info.origin})"
