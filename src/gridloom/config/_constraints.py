"""Constraints between columns: ``constraints:`` at the top of a pipeline.

Each constraint compares a sampler column with another column or with a constant::

    constraints:
      - {column: hi, op: ">", other: lo}          # another column
      - {column: age, op: ">=", value: 18}        # a constant

The column named in ``column`` is the one redrawn (rejection sampling, per row group) until
its rows satisfy every constraint on it; see :mod:`gridloom.generators._shaped`.
"""

from __future__ import annotations

import datetime as dt
import numbers
from typing import Any, Literal

import attrs

from .._attrs import frozen
from ._validators import as_finite, clip, int64, scalar, text

__all__ = ["CONSTRAINT_OPS", "DEFAULT_MAX_ATTEMPTS", "MAX_REDRAWS", "Constraint", "ConstraintOp"]

#: The comparisons a constraint may make.
ConstraintOp = Literal["<", "<=", ">", ">="]
CONSTRAINT_OPS: tuple[str, ...] = ("<", "<=", ">", ">=")
#: How many times, at most, a row's value may be redrawn by default.
DEFAULT_MAX_ATTEMPTS = 100
#: The most values one row group's rejection sampling may draw for a constraint:
#: ``max_attempts`` times ``run.row_group_size`` (each attempt draws a whole row group).
MAX_REDRAWS = 100_000_000


def _to_value(value: Any) -> Any:
    """The constant as kept: a date or time as its ISO text, a whole number of another type
    (``numpy.int64``) as an ``int``."""
    if type(value) not in (bool, int) and isinstance(value, numbers.Integral):
        return int(value)
    return scalar(value)


def _check_value(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str):
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                "value must be a number, or a date or time in ISO 8601 form"
                f" ('2024-01-31', '2024-01-31T12:00:00'), got {clip(value)}"
            ) from None
        return
    as_finite("value", value)


@frozen(kw_only=True)
class Constraint:
    """``column op other`` or ``column op value``, held by every row of the output.

    A constraint is enforced by redrawing ``column`` — which must be a sampler column — in
    the rows that break it, all of a row group's such rows at once, until they satisfy every
    constraint on that column or ``max_attempts`` redraws are spent; a row still breaking a
    constraint then is dropped, its reason naming the constraint and the values. A null on
    either side (a skipped cell) satisfies the constraint, as in SQL's ``CHECK``. A row that
    meets its constraints on the first draw keeps the value the column gives without them.

    For example:

        constraints:
          - {column: price, op: "<=", other: budget}     # another column
          - {column: age, op: ">=", value: 18}           # a constant
          - {column: signup, op: "<", value: "2025-01-01"}

    ``validate`` refuses a constraint that no value the samplers can draw satisfies (a
    ``uniform`` from 0 to 10 is never ``> 20``), one over a column that is not a sampler, or
    over values that cannot be ordered (text, structs) or compared (a number with a date).

    Attributes:
        column: the sampler column constrained (and redrawn); its values must be numbers,
            dates, times or durations.
        op: the comparison: ``<``, ``<=``, ``>`` or ``>=``.
        other: another column (of a comparable type) the values are compared with; it
            becomes a dependency of ``column``. Give ``other`` or ``value``, not both.
        value: a constant: a number, or for a date/time column an ISO 8601 date or time
            (``"2024-01-31"``); for a duration column a number of seconds.
        max_attempts: redraws allowed per row before the row is dropped (1 to 100,000).
            Each redraw draws a whole row group, so ``max_attempts`` times
            ``run.row_group_size`` may be at most 100,000,000.
    """

    column: str = attrs.field(validator=attrs.validators.and_(attrs.validators.min_len(1), text))
    op: ConstraintOp = attrs.field(validator=attrs.validators.in_(CONSTRAINT_OPS))
    other: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            attrs.validators.and_(attrs.validators.min_len(1), text)
        ),
    )
    value: Any = attrs.field(default=None, converter=_to_value, validator=_check_value)
    max_attempts: int = attrs.field(
        default=DEFAULT_MAX_ATTEMPTS,
        validator=[int64, attrs.validators.ge(1), attrs.validators.le(100_000)],
    )

    def __attrs_post_init__(self) -> None:
        if (self.other is None) == (self.value is None):
            raise ValueError("a constraint needs exactly one of other (a column) or value")
        if self.other == self.column:
            raise ValueError(f"a constraint compares column {self.column!r} with itself")

    @property
    def rhs(self) -> str:
        """The right-hand side as written: the other column's name or the constant."""
        return self.other if self.other is not None else repr(self.value)

    def describe(self) -> str:
        """The constraint as one expression: ``hi > lo``, ``age >= 18``."""
        return f"{self.column} {self.op} {self.rhs}"
