"""A column's ``skip_when`` condition: one Jinja expression over the row, compiled once.

The condition is written either bare (``topic == 'alpha'``) or wrapped in one pair of
``{{ }}`` (``{{ topic == 'alpha' }}``, whitespace control ``{{- -}}`` allowed); anything else —
text around the braces, several expressions, statements — is refused when the pipeline is
compiled. It is compiled as the template ``{% if (EXPR) %}1{% endif %}`` in the sandboxed
environment every user template uses (:func:`~gridloom.generators._jinja.compile_template`:
the same safety checks and render limits), so it is true exactly when the expression's value
is truthy for Jinja's ``if`` (Python truthiness: ``false``, ``none``, ``0``, ``''``, ``[]``,
``{}`` are false; the *string* ``'false'`` is true). An undefined name or attribute raises
(strict undefined), which fails the cell like any template error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from jinja2 import nodes

from ..errors import GenerationError, TemplateError, TemplateLimitExceeded
from ..generators._jinja import (
    CompiledTemplate,
    TemplateLimits,
    compile_template,
    parse_template,
    template_variables,
)
from ..generators.base import RowFailure

__all__ = ["FIELD", "SKIPPED", "SkipCondition", "skip_source", "skip_variables"]

#: The field name errors about the condition carry.
FIELD = "skip_when"


class _Skipped:
    """The outcome of a cell (or a batch's entry for one row) whose condition held."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIPPED"


#: Stands for a skipped cell's value between the dispatcher and the outcomes.
SKIPPED: Any = _Skipped()

_NOT_ONE = 'must be one Jinja expression, bare (x == 1) or in one {{ }} ("{{ x == 1 }}")'
#: The truthy text the wrapping template renders.
_TRUE = "1"


def _expression(condition: str) -> str:
    text = condition.strip()
    if text.startswith("{{") and text.endswith("}}") and len(text) >= 4:
        text = text[2:-2]
        text = text.removeprefix("-").removesuffix("-")
    return text


def skip_source(condition: str) -> str:
    """The template a condition compiles to (see the module docstring)."""
    return "{% if (" + _expression(condition) + ") %}" + _TRUE + "{% endif %}"


def _check_shape(condition: str, column: str) -> None:
    """Refuse a condition that is not one expression (text, statements or several
    ``{{ }}`` around it would change the shape of the wrapping template)."""
    expression = _expression(condition)
    if not expression.strip() or any(m in expression for m in ("{{", "}}", "{%", "%}")):
        raise TemplateError(_NOT_ONE, column=column, field=FIELD)
    try:
        tree = parse_template(skip_source(condition))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"condition does not parse: {exc.message}", column=column, field=FIELD
        ) from exc
    body = tree.body
    shaped = (
        len(body) == 1
        and isinstance(body[0], nodes.If)
        and not body[0].elif_
        and not body[0].else_
        and len(body[0].body) == 1
        and isinstance(body[0].body[0], nodes.Output)
        and [type(n) for n in body[0].body[0].nodes] == [nodes.TemplateData]
    )
    if not shaped:
        raise TemplateError(_NOT_ONE, column=column, field=FIELD)


def skip_variables(condition: str, column: str) -> set[str]:
    """The columns a condition reads.

    Raises:
        TemplateError: it does not parse, or is not one expression (names ``skip_when``).
    """
    _check_shape(condition, column)
    return template_variables(skip_source(condition))


class SkipCondition:
    """A compiled ``skip_when`` of one column.

    Attributes:
        source: the condition as written.
        simple: it evaluates in a moment (no loops, heavy operators): fine on the event loop.
    """

    __slots__ = ("_column", "_template", "simple", "source")

    def __init__(self, condition: str, *, column: str, limits: TemplateLimits | None = None):
        _check_shape(condition, column)
        self.source = condition
        self._column = column
        self._template: CompiledTemplate = compile_template(
            skip_source(condition), column=column, field=FIELD, limits=limits
        )
        self.simple = self._template.simple

    def holds(self, row: Mapping[str, Any]) -> bool:
        """Whether the cell of ``row`` is skipped.

        Raises:
            TemplateLimitExceeded: the evaluation went past a limit.
            GenerationError: the evaluation failed (an undefined name, a bad operation).
        """
        try:
            return self._template.render(row) == _TRUE
        except TemplateLimitExceeded:
            raise
        except Exception as exc:
            raise GenerationError(
                f"column {self._column!r}, field {FIELD!r}: condition failed to evaluate: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def verdict(self, row: Mapping[str, Any]) -> object:
        """:data:`SKIPPED`, ``None`` (the cell runs), or a :class:`RowFailure`."""
        try:
            return SKIPPED if self.holds(row) else None
        except GenerationError as exc:
            return RowFailure(exc)

    def verdicts(self, rows: Sequence[Mapping[str, Any]]) -> list[object]:
        """:meth:`verdict` of each row (a batch's; may run in a worker thread)."""
        return [self.verdict(row) for row in rows]
