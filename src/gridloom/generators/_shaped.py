"""Samplers shaped by the row: ``conditional_params`` and ``constraints``.

A sampler column with ``conditional_params`` or with constraints on it is filled by a
:class:`ShapedSampler` wrapping its sampler:

- **Conditions** pick, per row, which parameters draw its value: the first condition that
  holds names a variant (the column's kind built with that condition's parameters), rows where
  none holds use the column's own sampler.
- **Constraints** are enforced by rejection sampling over the whole row group at once: rows
  whose value breaks a constraint take their value from the next *attempt*, until every row
  passes or the attempts run out (the row then fails with :class:`ConstraintUnmet`).

Every (variant, attempt) pair draws a full row group from its own stream — the sampler called
with a run seed derived from ``(seed, column, variant, attempt)`` — and each row picks its
entry from the arrays its choices name. The column's own sampler at attempt 0 draws exactly
what the plain column would, so a row that meets its constraints on the first draw has the
value it would have without them; and a row's value never depends on the other rows (which
were dropped, which broke a constraint) nor on timing.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from jinja2 import nodes

from .._attrs import frozen
from ..config._columns import ColumnConfig
from ..config._constraints import Constraint
from ..config._variants import conditional_variant
from ..errors import (
    ConfigError,
    ConstraintUnmet,
    GenerationError,
    TemplateError,
    TemplateLimitExceeded,
    UnknownReferenceError,
)
from ._condition import Condition, condition_expression, condition_source
from ._factory import BuildContext, build_generator
from ._jinja import template_names
from .base import BatchContext, ColumnGenerator, RowFailure, derive_seed
from .sampling import NumericSampler, Sampler

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["INLINE_VARIANTS", "BoundConstraint", "ShapedSampler", "shape_sampler", "stored_support"]

#: The most conditions a column may have and still run on the event loop (with no
#: constraints on it): each evaluates in ~6 µs, so an inline batch of 1,024 rows holds the
#: loop a few milliseconds at most; more, and it runs in a worker thread.
INLINE_VARIANTS = 2

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
#: Expression nodes whose value is not true/false: a condition made of one is refused.
_NOT_BOOLEAN = (
    nodes.BinExpr,
    nodes.UnaryExpr,
    nodes.Concat,
    nodes.List,
    nodes.Dict,
    nodes.Tuple,
    nodes.Slice,
)


@frozen(kw_only=True)
class BoundConstraint:
    """A constraint as its column's sampler applies it.

    Attributes:
        constraint: the constraint as configured.
        index: its position in the pipeline's ``constraints``.
        value: the constant, converted to the column's type (``None`` with ``other``).
    """

    constraint: Constraint
    index: int
    value: Any = None

    def holds(self, mine: Any, row: Mapping[str, Any]) -> bool:
        """Whether ``mine`` (this column's value) satisfies the constraint in ``row`` (the
        other column's values); a null on either side does."""
        other = self.constraint.other
        theirs = self.value if other is None else row.get(other)
        if mine is None or theirs is None:
            return True
        return _COMPARE[self.constraint.op](mine, theirs)

    def failure(self, column: str, mine: Any, row: Mapping[str, Any], attempts: int) -> RowFailure:
        """The row's failure after ``attempts`` draws that all broke the constraint."""
        other = self.constraint.other
        compared = f"{other}={row.get(other)!r}" if other is not None else ""
        values = ", ".join(part for part in (f"{column}={mine!r}", compared) if part)
        return RowFailure(
            ConstraintUnmet(
                f"column {column!r}: constraint {self.constraint.describe()}"
                f" (constraints[{self.index}]) still broken after {attempts} draws ({values})"
            )
        )


class ShapedSampler(ColumnGenerator[BatchContext]):
    """A sampler column's generator with conditions and constraints (module docstring).

    Args:
        base: the column's own sampler.
        variants: each condition with the sampler of its parameters, in the config's order.
        constraints: the constraints on this column.
    """

    granularity = "batch"

    def __init__(
        self,
        base: Sampler,
        variants: Sequence[tuple[Condition, Sampler]],
        constraints: Sequence[BoundConstraint],
    ):
        super().__init__(name=base.name, outputs=base.outputs)
        self.base = base
        self.variants = tuple(variants)
        self.constraints = tuple(constraints)
        self.encoders = base.encoders
        self.field_metadata = base.field_metadata
        # Rejection redraws (up to max_attempts whole row groups) and long lists of
        # conditions are unbounded work per row: such a column runs in a worker thread.
        self.inline = (
            base.inline
            and not self.constraints
            and len(self.variants) <= INLINE_VARIANTS
            and all(sampler.inline for _, sampler in self.variants)
            and all(condition.simple for condition, _ in self.variants)
        )
        self.max_attempts = max((c.constraint.max_attempts for c in self.constraints), default=0)
        names: set[str] = set()
        for condition, _ in self.variants:
            # every name: those the batch has are its columns (globals included)
            names |= template_names(condition_source(condition.source))
        names |= {c.constraint.other for c in self.constraints if c.constraint.other}
        self._reads = tuple(sorted(names))

    def support(self) -> tuple[Any, Any] | None:
        """The union of the supports of the column's sampler and its variants."""
        return _support([self.base, *(sampler for _, sampler in self.variants)])

    def generate(self, ctx: BatchContext) -> list[Any]:
        """One value per live row of ``ctx`` (or a :class:`RowFailure`)."""
        rows = self._rows(ctx)
        choices = self._choose(rows)
        out: list[Any] = list(choices)
        self._draw(ctx, out, choices, [i for i, c in enumerate(choices) if isinstance(c, int)], 0)
        if not self.constraints:
            return out
        pending = [i for i in range(len(out)) if self._broken(out[i], rows[i]) is not None]
        attempt = 1
        while pending and attempt <= self.max_attempts:
            self._draw(ctx, out, choices, pending, attempt)
            pending = [i for i in pending if self._broken(out[i], rows[i]) is not None]
            attempt += 1
        for i in pending:
            broken = self._broken(out[i], rows[i])
            assert broken is not None
            out[i] = broken.failure(self.name, out[i], rows[i], self.max_attempts + 1)
        return out

    def _draw(
        self,
        ctx: BatchContext,
        out: list[Any],
        choices: Sequence[int | RowFailure],
        indices: Sequence[int],
        attempt: int,
    ) -> None:
        """Fill ``out[i]`` for each of ``indices`` (live-row positions) with its variant's
        draw of ``attempt``: one call per variant, for the rows that chose it."""
        by_variant: dict[int, list[int]] = {}
        for i in indices:
            choice = choices[i]
            assert isinstance(choice, int)
            by_variant.setdefault(choice, []).append(i)
        samplers = (self.base, *(sampler for _, sampler in self.variants))
        for variant, chosen in by_variant.items():
            sub = _context(ctx, variant, attempt, chosen)
            values = samplers[variant].generate(sub)
            for i, value in zip(chosen, values, strict=True):
                out[i] = value

    def _rows(self, ctx: BatchContext) -> list[dict[str, Any]]:
        """Per live row, the values of the columns the conditions and constraints read."""
        columns = {name: ctx.columns[name] for name in self._reads if name in ctx.columns}
        return [
            {name: values[i] for name, values in columns.items()} for i in range(len(ctx.row_ids))
        ]

    def _choose(self, rows: Sequence[Mapping[str, Any]]) -> list[int | RowFailure]:
        """Per row, the variant drawing its value (0: the column's own parameters)."""
        if not self.variants:
            return [0] * len(rows)
        memo: dict[tuple[Any, ...], int | RowFailure] = {}
        choices: list[int | RowFailure] = []
        for row in rows:
            key: tuple[Any, ...] | None = tuple(_memo_key(value) for value in row.values())
            try:
                choice = memo[key]  # type: ignore[index]
            except KeyError:
                choice = memo[key] = self._variant(row)  # type: ignore[index]
            except TypeError:  # an unhashable value (a struct, a list): no memo
                key = None
                choice = self._variant(row)
            choices.append(choice)
        return choices

    def _variant(self, row: Mapping[str, Any]) -> int | RowFailure:
        for number, (condition, _) in enumerate(self.variants, start=1):
            try:
                if condition.holds(row):
                    return number
            except (GenerationError, TemplateLimitExceeded) as exc:
                return RowFailure(exc)
        return 0

    def _broken(self, value: Any, row: Mapping[str, Any]) -> BoundConstraint | None:
        """The first constraint ``value`` breaks in ``row``, if any (failures break none)."""
        if isinstance(value, RowFailure):
            return None
        for constraint in self.constraints:
            if not constraint.holds(value, row):
                return constraint
        return None


def _memo_key(value: Any) -> Any:
    """``value`` as part of a memo key: values that are equal but may render or test
    differently (``1``, ``1.0`` and ``True``; ``0.0`` and ``-0.0``) get different keys."""
    if isinstance(value, float):
        return (float, repr(value))
    return (type(value), value)


def _context(ctx: BatchContext, variant: int, attempt: int, indices: Sequence[int]) -> BatchContext:
    """``ctx`` narrowed to the live rows at ``indices``, for drawing ``(variant, attempt)``
    from its own run seed (the column's own at ``(0, 0)``). The row group stays whole, so each
    row's draw is the one it gets however many rows are drawn with it."""
    seed = ctx.seed
    if variant or attempt:
        seed = derive_seed(ctx.seed, ctx.column, "shaped", variant, attempt)
    if len(indices) == len(ctx.row_ids):
        if seed == ctx.seed:
            return ctx
        row_ids: Sequence[int] = ctx.row_ids
        columns: Mapping[str, Sequence[Any]] = ctx.columns
    else:
        row_ids = [ctx.row_ids[i] for i in indices]
        columns = {name: [values[i] for i in indices] for name, values in ctx.columns.items()}
    group = ctx.group_row_ids if ctx.group_row_ids is not None else ctx.row_ids
    return BatchContext(
        row_ids=row_ids,
        columns=columns,
        row_group=ctx.row_group,
        column=ctx.column,
        seed=seed,
        group_row_ids=group,
        params=ctx.params,
        model=ctx.model,
        models=ctx.models,
    )


# --------------------------------------------------------------------------- building


def shape_sampler(
    column: ColumnConfig,
    generator: ColumnGenerator[Any],
    ctx: BuildContext,
    constraints: Sequence[tuple[int, Constraint]] = (),
) -> ColumnGenerator[Any]:
    """``generator`` wrapped in a :class:`ShapedSampler` when ``column`` has conditional
    parameters or constraints on it; else ``generator`` itself.

    Raises:
        ConfigError: the column is not a sampler, a condition is not a true/false
            expression, a variant's parameters are invalid or store another type, a
            constraint compares values that cannot be ordered, or can never hold given the
            values the samplers can draw.
    """
    if not column.conditional_params and not constraints:
        return generator
    if not isinstance(generator, Sampler):
        if column.conditional_params:
            raise ConfigError(
                f"conditional_params apply to sampler columns only; a {column.kind!r} column"
                " is not one (use skip_when, or a template's {% if %}, to vary it by row)",
                column=column.name,
                field="conditional_params",
            )
        index, constraint = constraints[0]
        mirror = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[constraint.op]
        hint = ""
        if constraint.other is not None:
            hint = (
                f"; to redraw {constraint.other!r} instead, write {{column:"
                f" {constraint.other}, op: {mirror!r}, other: {column.name}}}"
            )
        raise ConfigError(
            f"a constraint redraws its column, which must be a sampler column; a"
            f" {column.kind!r} column is not one{hint}",
            column=column.name,
            field=f"constraints[{index}].column",
        )
    variants = [
        _variant(column, generator, condition, ctx) for condition in column.conditional_params or {}
    ]
    bound = [_bind(column, generator, ctx, index, constraint) for index, constraint in constraints]
    for item in bound:
        _check_satisfiable(column, [generator, *(s for _, s in variants)], ctx, item)
    return ShapedSampler(generator, variants, bound)


def _variant(
    column: ColumnConfig, base: Sampler, condition: str, ctx: BuildContext
) -> tuple[Condition, Sampler]:
    field = f"conditional_params[{condition!r}]"
    compiled = Condition(condition, column=column.name, field=field, limits=ctx.template_limits)
    _check_boolean(column.name, field, condition, ctx.upstream_types)
    config = conditional_variant(column, condition)
    try:
        sampler = build_generator(config, ctx)
    except ConfigError as exc:
        raise _in_variant(exc, column, field) from None
    if not isinstance(sampler, Sampler):  # pragma: no cover - a kind builds one class
        raise ConfigError("its parameters do not make a sampler", column=column.name, field=field)
    if sampler.outputs != base.outputs:
        mine, theirs = base.outputs[column.name], sampler.outputs[column.name]
        raise ConfigError(
            f"its parameters store {theirs} values, but the column stores {mine}; every"
            " variant must store the column's type",
            column=column.name,
            field=field,
        )
    return compiled, sampler


def _in_variant(exc: ConfigError, column: ColumnConfig, field: str) -> ConfigError:
    """``exc``, raised building a variant, with its fields named under ``field``
    (``scipy.distribution`` becomes ``conditional_params['c'].distribution``)."""
    issues = []
    for issue in exc.issues:
        path = issue.field or ""
        path = "" if path == column.kind else path.removeprefix(f"{column.kind}.")
        located = f"{field}.{path}" if path else field
        issues.append(attrs.evolve(issue, column=column.name, field=located))
    first, *rest = issues
    kind = type(exc) if type(exc) in (TemplateError, UnknownReferenceError) else ConfigError
    return kind(first.message, column=first.column, field=first.field, more=rest)


def _check_boolean(
    column: str, field: str, condition: str, types: Mapping[str, pa.DataType]
) -> None:
    """Refuse a condition whose value is plainly not true/false: arithmetic, text, a literal
    that is not a boolean, or a column that does not hold booleans."""
    import pyarrow as pa

    expression = condition_expression(condition, column=column, field=field)
    problem: str | None = None
    if isinstance(expression, _NOT_BOOLEAN):
        problem = f"it gives a {type(expression).__name__.lower()} value"
    elif isinstance(expression, nodes.Const) and not isinstance(expression.value, bool):
        problem = f"it is the constant {expression.value!r}"
    elif isinstance(expression, nodes.Name):
        kind = types.get(expression.name)
        if kind is not None and not pa.types.is_boolean(kind):
            problem = f"column {expression.name!r} holds {kind} values, not booleans"
    if problem is not None:
        raise ConfigError(
            f"a condition must give true or false ({problem}); write a comparison"
            " (country == 'Japan'), a test (age is number) or a boolean column",
            column=column,
            field=field,
        )


def _family(kind: pa.DataType) -> str | None:
    """What values of ``kind`` compare with: ``number``, ``timestamp``, ``date``,
    ``duration``; ``None`` when they cannot be ordered by a constraint."""
    import pyarrow as pa

    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return "number"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_duration(kind):
        return "duration"
    return None


def _bind(
    column: ColumnConfig, sampler: Sampler, ctx: BuildContext, index: int, constraint: Constraint
) -> BoundConstraint:
    import pyarrow as pa

    prefix = f"constraints[{index}]"
    kind = sampler.outputs[column.name]
    family = _family(kind)
    if family is None:
        raise ConfigError(
            f"constraint {constraint.describe()}: column {column.name!r} holds {kind} values;"
            " a constraint compares numbers, dates, times or durations",
            column=column.name,
            field=f"{prefix}.column",
        )
    if constraint.other is not None:
        theirs = ctx.upstream_types.get(constraint.other)
        if theirs is None:  # pragma: no cover - the graph checks the name first
            raise ConfigError(
                f"unknown column {constraint.other!r}", column=column.name, field=f"{prefix}.other"
            )
        aware = pa.types.is_timestamp(kind) and kind.tz is not None
        their_aware = pa.types.is_timestamp(theirs) and theirs.tz is not None
        if _family(theirs) != family or aware != their_aware:
            raise ConfigError(
                f"constraint {constraint.describe()}: {column.name!r} holds {kind} values but"
                f" {constraint.other!r} holds {theirs}; they cannot be compared",
                column=column.name,
                field=f"{prefix}.other",
            )
        return BoundConstraint(constraint=constraint, index=index)
    try:
        value = _constant(constraint.value, family, kind)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(
            f"constraint {constraint.describe()}: {exc}",
            column=column.name,
            field=f"{prefix}.value",
        ) from None
    return BoundConstraint(constraint=constraint, index=index, value=value)


def _constant(value: Any, family: str, kind: pa.DataType) -> Any:
    """A constraint's constant as a value of the column's ``family``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if family == "number":
        if not number:
            raise TypeError(f"the column holds numbers, so value must be one, not {value!r}")
        return value
    if family == "duration":
        if not number:
            raise TypeError(f"the column holds durations: give value in seconds, not {value!r}")
        try:
            return dt.timedelta(seconds=value)
        except OverflowError:
            raise OverflowError(
                f"{value!r} seconds is beyond the longest duration (about 2.7 million years)"
            ) from None
    if not isinstance(value, str):
        raise TypeError(f"the column holds {kind} values: give value as an ISO 8601 text")
    moment = dt.datetime.fromisoformat(value)
    if family == "date":
        if moment.tzinfo is not None or moment.time() != dt.time():
            raise ValueError(
                f"the column holds dates: give value as a date ('2024-01-31'), not {value!r}"
            )
        return moment.date()
    if kind.tz is None and moment.tzinfo is not None:
        return moment.astimezone(dt.UTC).replace(tzinfo=None)
    if kind.tz is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment


def stored_support(sampler: ColumnGenerator[Any]) -> tuple[Any, Any] | None:
    """The smallest and largest value ``sampler`` stores (``None`` when unknown): its
    :meth:`~Sampler.support`, with a numeric sampler's bounds passed through its conversion,
    since rounding (``decimals``, ``convert_to: int``) can reach past the drawn range
    (``uniform: [0, 9.96]`` with ``decimals: 1`` stores 10.0). The conversion is monotonic, so
    the converted bounds are the stored ones."""
    support = getattr(sampler, "support", None)
    drawn: tuple[Any, Any] | None = support() if callable(support) else None
    if drawn is None or not isinstance(sampler, NumericSampler):
        return drawn
    low, high = drawn
    convert = sampler.convert
    try:
        return (None if low is None else convert(low), None if high is None else convert(high))
    except (ArithmeticError, ValueError):  # pragma: no cover - bounds are finite numbers
        return drawn


def _support(samplers: Sequence[Sampler]) -> tuple[Any, Any] | None:
    """The union of the samplers' stored supports (``None`` if any is unknown)."""
    lows: list[Any] = []
    highs: list[Any] = []
    for sampler in samplers:
        support = stored_support(sampler)
        if support is None:
            return None
        lows.append(support[0])
        highs.append(support[1])
    low = None if any(v is None for v in lows) else min(lows)
    high = None if any(v is None for v in highs) else max(highs)
    return (low, high)


def _check_satisfiable(
    column: ColumnConfig, samplers: Sequence[Sampler], ctx: BuildContext, bound: BoundConstraint
) -> None:
    """Refuse a constraint that no value the samplers can draw satisfies."""
    constraint = bound.constraint
    mine = _support(samplers)
    if mine is None:
        return
    if constraint.other is None:
        theirs: tuple[Any, Any] | None = (bound.value, bound.value)
        shown = repr(constraint.value)
    else:
        theirs = ctx.supports.get(constraint.other)
        shown = f"{constraint.other!r} (in {_span(theirs)})" if theirs else ""
    if theirs is None:
        return
    low, high = mine
    their_low, their_high = theirs
    op = constraint.op
    try:
        possible = {
            ">": high is None or their_low is None or high > their_low,
            ">=": high is None or their_low is None or high >= their_low,
            "<": low is None or their_high is None or low < their_high,
            "<=": low is None or their_high is None or low <= their_high,
        }[op]
    except TypeError:  # pragma: no cover - types are checked by _bind
        return
    if not possible:
        raise ConfigError(
            f"constraint {constraint.describe()} can never hold: {column.name!r} draws values in"
            f" {_span(mine)}, never {op} {shown}",
            column=column.name,
            field=f"constraints[{bound.index}]",
        )


def _span(support: tuple[Any, Any] | None) -> str:
    if support is None:
        return "an unknown range"
    low, high = support
    return f"[{'-inf' if low is None else _show(low)}, {'+inf' if high is None else _show(high)}]"


def _show(value: Any) -> str:
    """A bound for a message: whole floats without their ``.0``, dates and times as text."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
