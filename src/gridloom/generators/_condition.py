"""A condition over a row: one Jinja expression, compiled once, true or false per row.

``skip_when`` (every column) and the keys of ``conditional_params`` (samplers) are conditions.
A condition is written either bare (``topic == 'alpha'``) or wrapped in one pair of ``{{ }}``
(``{{ topic == 'alpha' }}``, whitespace control ``{{- -}}`` allowed); anything else — text
around the braces, several expressions, statements — is refused when the pipeline is compiled.
It is compiled as the template ``{% if (EXPR) %}1{% endif %}`` in the sandboxed environment
every user template uses (:func:`~gridloom.generators._jinja.compile_template`: the same safety
checks and render limits), so it is true exactly when the expression's value is truthy for
Jinja's ``if`` (Python truthiness: ``false``, ``none``, ``0``, ``''``, ``[]``, ``{}`` are false;
the *string* ``'false'`` is true). An undefined name or attribute raises (strict undefined).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import jinja2
from jinja2 import nodes

from ..errors import GenerationError, TemplateError, TemplateLimitExceeded
from ._jinja import (
    CompiledTemplate,
    TemplateLimits,
    compile_template,
    parse_template,
    template_variables,
)

__all__ = [
    "Condition",
    "condition_expression",
    "condition_source",
    "condition_variables",
]

_NOT_ONE = 'must be one Jinja expression, bare (x == 1) or in one {{ }} ("{{ x == 1 }}")'
#: The truthy text the wrapping template renders.
_TRUE = "1"


def _expression(condition: str) -> str:
    text = condition.strip()
    if text.startswith("{{") and text.endswith("}}") and len(text) >= 4:
        text = text[2:-2]
        text = text.removeprefix("-").removesuffix("-")
    return text


def condition_source(condition: str) -> str:
    """The template a condition compiles to (see the module docstring)."""
    return "{% if (" + _expression(condition) + ") %}" + _TRUE + "{% endif %}"


def condition_expression(condition: str, *, column: str, field: str) -> nodes.Expr:
    """The parsed expression of a condition (for checks of its shape and type).

    Raises:
        TemplateError: it does not parse, or is not one expression (names ``field``).
    """
    expression = _expression(condition)
    if not expression.strip() or any(m in expression for m in ("{{", "}}", "{%", "%}")):
        raise TemplateError(_NOT_ONE, column=column, field=field)
    try:
        tree = parse_template(condition_source(condition))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"condition does not parse: {exc.message}", column=column, field=field
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
        raise TemplateError(_NOT_ONE, column=column, field=field)
    test = body[0].test  # type: ignore[attr-defined]
    assert isinstance(test, nodes.Expr)
    return test


def condition_variables(
    condition: str, *, column: str, field: str, columns: Collection[str]
) -> set[str]:
    """The columns a condition reads (of the pipeline's ``columns``, or unknown names; see
    :func:`~gridloom.generators._jinja.template_variables`).

    Raises:
        TemplateError: it does not parse, or is not one expression (names ``field``).
    """
    condition_expression(condition, column=column, field=field)
    return template_variables(condition_source(condition), columns=columns)


class Condition:
    """A compiled condition of one column's field.

    Attributes:
        source: the condition as written.
        field: the field it was given in (for messages).
        simple: it evaluates in a moment (no loops, heavy operators): fine on the event loop.
    """

    __slots__ = ("_column", "_template", "field", "simple", "source")

    def __init__(
        self, condition: str, *, column: str, field: str, limits: TemplateLimits | None = None
    ):
        condition_expression(condition, column=column, field=field)
        self.source = condition
        self.field = field
        self._column = column
        self._template: CompiledTemplate = compile_template(
            condition_source(condition), column=column, field=field, limits=limits
        )
        self.simple = self._template.simple

    def holds(self, row: Mapping[str, object]) -> bool:
        """Whether the condition is true for ``row``.

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
                f"column {self._column!r}, field {self.field!r}: condition failed to evaluate:"
                f" {type(exc).__name__}: {exc}"
            ) from exc
