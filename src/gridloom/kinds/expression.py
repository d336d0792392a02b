"""``expression``: a sandboxed Jinja template rendered per row, then cast to a type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jinja2

from .._attrs import frozen
from ..config._columns import ColumnConfig, DType
from ..config._kind import ColumnKind
from ..errors import GenerationError, TemplateError, TemplateLimitExceeded, UnknownReferenceError
from ..generators._dtypes import DTYPES, arrow_type, coerce, json_text
from ..generators._factory import BuildContext
from ..generators._jinja import TemplateLimits, compile_template, template_variables
from ..generators.base import (
    BatchContext,
    CellContext,
    ColumnGenerator,
    Context,
    DeferredOutputs,
    Granularity,
    RowFailure,
)
from ..storage._convert import JSON_TEXT_METADATA

__all__ = ["KIND", "ExpressionColumn", "ExpressionGenerator"]


@frozen(kw_only=True)
class ExpressionColumn(ColumnConfig):
    """A Jinja template rendered per row (sandboxed), then cast to ``dtype``.

    Attributes:
        template: the template; its variables are the columns it references.
        dtype: the type the rendered text is cast to (``json``: parsed with ``json.loads``;
            templates downstream read the value, the file holds JSON text marked
            ``gridloom.json`` in the field's metadata, which ``to_pandas()`` parses).
    """

    kind: ClassVar[str] = "expression"
    template: str
    dtype: DType = "string"

    def templates(self) -> dict[str, str]:
        return {"template": self.template}


class ExpressionGenerator(ColumnGenerator[Context]):
    """Renders an :class:`ExpressionColumn`'s template against each row.

    The rendered text is stripped of surrounding whitespace and converted to the column's
    ``dtype`` with :func:`coerce`; for dtypes other than ``string`` an empty rendering is null.
    Runs per cell or (when every referenced column is produced by a batch generator) per
    batch: inline on the event loop when the template is simple (no loops, macros or heavy
    operators: a render takes microseconds), else in a worker thread, each render bounded by
    ``limits`` (a render over them fails its row with
    :class:`~gridloom.errors.TemplateLimitExceeded`).

    Args:
        config: the column.
        granularity: ``batch`` renders a whole row group from ``ctx.columns`` in one call;
            ``cell`` renders one row from ``ctx.row``.
        limits: what one render may use (the run's ``template_*`` settings).

    Raises:
        TemplateError: the template does not parse, or uses what templates may not.
        ConfigError: the dtype is unknown.
    """

    inline = True

    def __init__(
        self,
        config: ExpressionColumn,
        *,
        granularity: Granularity = "cell",
        limits: TemplateLimits | None = None,
    ):
        name, dtype = config.name, config.dtype
        if dtype not in DTYPES:
            arrow_type(dtype, column=name)  # raises the ConfigError naming it
        super().__init__(  # the Arrow type built when first read: see DeferredOutputs
            name=name,
            outputs=DeferredOutputs((name,), lambda: {name: arrow_type(dtype, column=name)}),
        )
        self.config = config
        self.granularity = granularity
        if config.dtype == "json":  # parsed in memory (for templates), JSON text on disk
            self.encoders = {config.name: json_text}
            self.field_metadata = {config.name: JSON_TEXT_METADATA}
        self._template = compile_template(
            config.template, column=config.name, field="template", limits=limits
        )
        self.inline = self._template.simple

    def generate(self, ctx: CellContext | BatchContext) -> Any:
        """The row's value (cell context), or one value per row (batch context)."""
        if isinstance(ctx, BatchContext):
            columns = ctx.columns
            out: list[Any] = []
            for i in range(len(ctx.row_ids)):
                try:
                    out.append(self._render({name: values[i] for name, values in columns.items()}))
                except GenerationError as exc:  # this row fails; the others go on
                    out.append(RowFailure(exc))
            return out
        return self._render(ctx.row)

    def _render(self, row: Mapping[str, Any]) -> Any:
        try:
            text = self._template.render(row).strip()
        except TemplateLimitExceeded:
            raise
        except Exception as exc:
            raise GenerationError(
                f"column {self.name!r}: template failed to render: {type(exc).__name__}: {exc}"
            ) from exc
        if not text and self.config.dtype != "string":
            return None
        return coerce(text, self.config.dtype, column=self.name)


def _build(column: ExpressionColumn, ctx: BuildContext) -> ExpressionGenerator:
    try:
        names = template_variables(column.template, columns=ctx.upstream_granularity)
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


KIND = ColumnKind(
    config=ExpressionColumn, build=_build, positional=("template",), shorthand="template"
)
