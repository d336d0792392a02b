"""A column's ``skip_when`` condition: one Jinja expression over the row, compiled once.

The condition's syntax and truthiness are those of every condition
(:mod:`gridloom.generators._condition`); an undefined name or attribute raises (strict
undefined), which fails the cell like any template error.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..errors import GenerationError
from ..generators._condition import Condition, condition_source, condition_variables
from ..generators._jinja import TemplateLimits
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


def skip_source(condition: str) -> str:
    """The template a condition compiles to (see :mod:`gridloom.generators._condition`)."""
    return condition_source(condition)


def skip_variables(condition: str, column: str, columns: Collection[str]) -> set[str]:
    """The columns a condition reads.

    Raises:
        TemplateError: it does not parse, or is not one expression (names ``skip_when``).
    """
    return condition_variables(condition, column=column, field=FIELD, columns=columns)


class SkipCondition(Condition):
    """A compiled ``skip_when`` of one column."""

    __slots__ = ()

    def __init__(self, condition: str, *, column: str, limits: TemplateLimits | None = None):
        super().__init__(condition, column=column, field=FIELD, limits=limits)

    def verdict(self, row: Mapping[str, Any]) -> object:
        """:data:`SKIPPED`, ``None`` (the cell runs), or a :class:`RowFailure`."""
        try:
            return SKIPPED if self.holds(row) else None
        except GenerationError as exc:
            return RowFailure(exc)

    def verdicts(self, rows: Sequence[Mapping[str, Any]]) -> list[object]:
        """:meth:`verdict` of each row (a batch's; may run in a worker thread)."""
        return [self.verdict(row) for row in rows]
