"""Column configurations: one frozen attrs class per column kind.

In YAML/JSON a column is a mapping with ``name``, exactly one *kind key* whose value holds the
kind's parameters, and the optional common fields ``depends_on`` and ``drop``::

    - {name: topic, category: {values: [rivers, volcanoes], weights: [2, 1]}}
    - {name: title, expression: {template: "All about {{ topic }}", dtype: string}}

In Python the same column is ``CategoryColumn(name="topic", values=("rivers", "volcanoes"),
weights=(2, 1))``. Each class's ``kind`` class variable is its kind key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import attrs

__all__ = [
    "SAMPLER_KINDS",
    "BernoulliColumn",
    "BinomialColumn",
    "CategoryColumn",
    "ColumnConfig",
    "CustomColumn",
    "DType",
    "DatetimeColumn",
    "ExpressionColumn",
    "GaussianColumn",
    "PoissonColumn",
    "SubcategoryColumn",
    "TimedeltaColumn",
    "UUIDColumn",
    "UniformColumn",
]

#: Value types a column can declare. ``json`` values are stored as JSON text.
DType = Literal["string", "int", "float", "bool", "datetime", "timedelta", "json"]
#: What a numeric sampler's value is converted to before it is stored.
ConvertTo = Literal["int", "float", "string"]
TimeUnit = Literal["days", "hours", "minutes", "seconds"]


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _probability(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value)


def _options_by_parent(value: Any) -> dict[Any, tuple[Any, ...]]:
    return {key: tuple(options) for key, options in dict(value).items()}


@attrs.frozen(kw_only=True)
class ColumnConfig:
    """Fields every column has.

    Attributes:
        name: the column's name; other columns reference it as ``{{ name }}``.
        depends_on: extra columns this one must wait for, beyond those its templates name.
        drop: compute the column (others may use it) but leave it out of the output.
    """

    kind: ClassVar[str] = ""
    name: str = attrs.field(validator=attrs.validators.min_len(1))
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    drop: bool = False

    def templates(self) -> dict[str, str]:
        """Jinja templates of this column, by field name; their variables are references."""
        return {}

    def direct_references(self) -> dict[str, tuple[str, ...]]:
        """Columns named outright by fields (not templates), by field name."""
        return {"depends_on": self.depends_on} if self.depends_on else {}

    def model_aliases(self) -> dict[str, str]:
        """Model aliases this column uses, by field path (e.g. ``custom.model``)."""
        return {}

    def output_names(self) -> tuple[str, ...]:
        """The columns this one fills: its own, then any side columns."""
        return (self.name,)


# --------------------------------------------------------------------------- samplers


@attrs.frozen(kw_only=True)
class CategoryColumn(ColumnConfig):
    """A value drawn from ``values``, optionally weighted.

    Attributes:
        values: the possible values (text, numbers or booleans; the column's type follows them).
        weights: relative weights, one per value; uniform when omitted.
    """

    kind: ClassVar[str] = "category"
    values: tuple[Any, ...] = attrs.field(converter=_tuple, validator=attrs.validators.min_len(1))
    weights: tuple[float, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(_tuple)
    )

    @weights.validator
    def _check_weights(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if len(value) != len(self.values):
            raise ValueError(f"weights has {len(value)} entries but values has {len(self.values)}")
        if any(w < 0 for w in value) or sum(value) <= 0:
            raise ValueError("weights must be >= 0 and not all zero")


@attrs.frozen(kw_only=True)
class SubcategoryColumn(ColumnConfig):
    """A value drawn from the list that belongs to the row's ``parent`` category value.

    Attributes:
        parent: the category column this one is conditioned on.
        values: for each value of the parent, the values this column may take.
    """

    kind: ClassVar[str] = "subcategory"
    parent: str
    values: dict[Any, tuple[Any, ...]] = attrs.field(converter=_options_by_parent)

    @values.validator
    def _check_values(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not value:
            raise ValueError("values must map each parent value to a non-empty list")
        for key, options in value.items():
            if not options:
                raise ValueError(f"values[{key!r}] is empty")

    def direct_references(self) -> dict[str, tuple[str, ...]]:
        return {**super().direct_references(), "parent": (self.parent,)}


@attrs.frozen(kw_only=True)
class UniformColumn(ColumnConfig):
    """A number drawn uniformly from ``[low, high]``.

    Attributes:
        low, high: the bounds; with ``convert_to: int`` a whole number in the bounds.
        convert_to: store the value as ``int``, ``float`` or ``string``.
        decimals: round to this many decimal places.
    """

    kind: ClassVar[str] = "uniform"
    low: float
    high: float = attrs.field()
    convert_to: ConvertTo | None = None
    decimals: int | None = None

    @high.validator
    def _check_high(self, _attribute: attrs.Attribute[Any], value: float) -> None:
        if value < self.low:
            raise ValueError(f"high ({value}) must be >= low ({self.low})")


@attrs.frozen(kw_only=True)
class GaussianColumn(ColumnConfig):
    """A number drawn from a normal distribution.

    Attributes:
        mean, stddev: the distribution's parameters.
        convert_to: store the value as ``int`` (rounded), ``float`` or ``string``.
        decimals: round to this many decimal places.
    """

    kind: ClassVar[str] = "gaussian"
    mean: float = 0.0
    stddev: float = attrs.field(default=1.0, validator=_positive)
    convert_to: ConvertTo | None = None
    decimals: int | None = None


@attrs.frozen(kw_only=True)
class PoissonColumn(ColumnConfig):
    """A count drawn from a Poisson distribution with the given mean.

    Attributes:
        mean: the expected count (> 0).
        convert_to: store the value as ``int``, ``float`` or ``string``.
    """

    kind: ClassVar[str] = "poisson"
    mean: float = attrs.field(validator=_positive)
    convert_to: ConvertTo | None = None


@attrs.frozen(kw_only=True)
class BernoulliColumn(ColumnConfig):
    """1 with probability ``p``, else 0.

    Attributes:
        p: probability of 1.
        convert_to: store the value as ``int``, ``float`` or ``string``.
    """

    kind: ClassVar[str] = "bernoulli"
    p: float = attrs.field(validator=_probability)
    convert_to: ConvertTo | None = None


@attrs.frozen(kw_only=True)
class BinomialColumn(ColumnConfig):
    """The number of successes in ``n`` trials of probability ``p``.

    Attributes:
        n: number of trials.
        p: probability of success in each.
        convert_to: store the value as ``int``, ``float`` or ``string``.
    """

    kind: ClassVar[str] = "binomial"
    n: int = attrs.field(validator=attrs.validators.ge(0))
    p: float = attrs.field(validator=_probability)
    convert_to: ConvertTo | None = None


@attrs.frozen(kw_only=True)
class UUIDColumn(ColumnConfig):
    """A random UUID4 as text (deterministic when ``run.seed`` is set).

    Attributes:
        prefix: text put before the UUID.
        short: keep only the first 8 hex digits.
        uppercase: upper-case hex digits.
    """

    kind: ClassVar[str] = "uuid"
    prefix: str = ""
    short: bool = False
    uppercase: bool = False


@attrs.frozen(kw_only=True)
class DatetimeColumn(ColumnConfig):
    """A datetime drawn uniformly from ``[start, end]``, rounded down to ``unit``.

    With ``format`` set, the value is stored as text formatted with ``strftime``.

    Attributes:
        start, end: the bounds (ISO 8601 text in YAML).
        unit: granularity of the drawn values.
        format: a ``strftime`` format; the value is then stored as text.
    """

    kind: ClassVar[str] = "datetime"
    start: dt.datetime
    end: dt.datetime = attrs.field()
    unit: TimeUnit = "seconds"
    format: str | None = None

    @end.validator
    def _check_end(self, _attribute: attrs.Attribute[Any], value: dt.datetime) -> None:
        if value < self.start:
            raise ValueError(f"end ({value}) must not be before start ({self.start})")


@attrs.frozen(kw_only=True)
class TimedeltaColumn(ColumnConfig):
    """A whole number of ``unit`` drawn from ``[min, max]``.

    Without ``reference`` the value is a duration; with ``reference`` naming a datetime column the
    value is that datetime plus the drawn duration.

    Attributes:
        min, max: bounds of the whole number of units drawn.
        unit: the unit of ``min`` and ``max``.
        reference: a datetime column to add the duration to.
    """

    kind: ClassVar[str] = "timedelta"
    min: int
    max: int = attrs.field()
    unit: TimeUnit = "days"
    reference: str | None = None

    @max.validator
    def _check_max(self, _attribute: attrs.Attribute[Any], value: int) -> None:
        if value < self.min:
            raise ValueError(f"max ({value}) must be >= min ({self.min})")

    def direct_references(self) -> dict[str, tuple[str, ...]]:
        refs = super().direct_references()
        if self.reference is not None:
            refs["reference"] = (self.reference,)
        return refs


SAMPLER_KINDS: tuple[type[ColumnConfig], ...] = (
    CategoryColumn,
    SubcategoryColumn,
    UniformColumn,
    GaussianColumn,
    PoissonColumn,
    BernoulliColumn,
    BinomialColumn,
    UUIDColumn,
    DatetimeColumn,
    TimedeltaColumn,
)

# --------------------------------------------------------------------------- expression, custom


@attrs.frozen(kw_only=True)
class ExpressionColumn(ColumnConfig):
    """A Jinja template rendered per row (sandboxed), then cast to ``dtype``.

    Attributes:
        template: the template; its variables are the columns it references.
        dtype: the type the rendered text is cast to.
    """

    kind: ClassVar[str] = "expression"
    template: str
    dtype: DType = "string"

    def templates(self) -> dict[str, str]:
        return {"template": self.template}


@attrs.frozen(kw_only=True)
class CustomColumn(ColumnConfig):
    """A user function, sync or async, called per cell or per batch.

    ``function`` is a callable, or an import path ``"package.module:function"`` (the form used
    in YAML). Per cell it receives ``(row, ctx)`` — ``row`` maps the upstream columns to this row's
    values — and returns the value. Per batch it receives ``(columns, ctx)`` — each upstream column
    as a list over the batch's rows — and returns a list with one value per row. ``params`` are
    passed as ``ctx.params``. Columns it reads must be listed in ``depends_on``.

    ``model`` names a model alias the function calls itself: the column is then *model-bound*
    (its tasks wait on the network under the LLM-wait limit, without holding a dispatch slot)
    and ``ctx.model`` is that alias's model handle: ``await ctx.model.chat(request)`` sends a
    request through the alias's throttle, retries and usage counts, and ``ctx.model.config``
    is its ``ModelConfig``.

    Attributes:
        function: the callable or its import path ``"package.module:function"``.
        mode: ``cell`` (one call per row) or ``batch`` (one call per row group).
        dtype: the type each returned value is stored as.
        params: passed to the function as ``ctx.params``.
        model: a model alias the function calls itself (makes the column model-bound).
    """

    kind: ClassVar[str] = "custom"
    function: str | Callable[..., Any] = attrs.field()
    mode: Literal["cell", "batch"] = "cell"
    dtype: DType = "string"
    params: dict[str, Any] = attrs.field(factory=dict)
    model: str | None = None

    def model_aliases(self) -> dict[str, str]:
        return {f"{self.kind}.model": self.model} if self.model is not None else {}

    @function.validator
    def _check_function(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, str):
            module, sep, attr = value.partition(":")
            if not sep or not module or not attr:
                raise ValueError(
                    f"function must be an import path 'package.module:function', got {value!r}"
                )
        elif not callable(value):
            raise TypeError(f"function must be callable or an import path, got {value!r}")
