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
import math
import numbers
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


#: The range of a 64-bit signed integer: what an Arrow ``int64`` column (and numpy) can hold.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: The largest Poisson mean: counts near it are still exact in floating point (below 2**53).
POISSON_MEAN_MAX = 1e15
#: ``random.gauss`` never strays further than this many standard deviations from the mean (its
#: Box-Muller draw is bounded by sqrt(-2 ln 2**-53) ≈ 8.6).
GAUSS_REACH = 9.0
#: Each time unit, as a duration.
_UNIT_STEPS: dict[str, dt.timedelta] = {
    "days": dt.timedelta(days=1),
    "hours": dt.timedelta(hours=1),
    "minutes": dt.timedelta(minutes=1),
    "seconds": dt.timedelta(seconds=1),
}
#: The longest duration an Arrow ``duration[us]`` column holds (a 64-bit count of microseconds).
DURATION_MAX = dt.timedelta(microseconds=INT64_MAX)
#: The span of Python's datetimes (years 1 to 9999), all of which ``timestamp[us]`` holds.
DATETIME_SPAN = dt.datetime.max - dt.datetime.min


def _clip(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_finite(name: str, value: Any) -> float:
    """``value`` as a finite float, or a ``TypeError``/``ValueError`` naming ``name``.

    Booleans are not numbers here (``true`` in YAML is not ``1``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {_clip(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large: {_clip(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {_clip(value)}")
    return number


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored or written as UTF-8 text (a lone surrogate), if it cannot."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds {value[exc.start]!r}, which is not a character UTF-8 can encode"
    return None


def _finite(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number (not a boolean), finite: NaN and infinity are refused."""
    as_finite(attribute.name, value)


def _int64(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A whole number (not a boolean) that fits in 64 bits."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{attribute.name} must be an integer, got {type(value).__name__} {_clip(value)}"
        )
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(
            f"{attribute.name} must fit in a 64-bit integer (at most {INT64_MAX}),"
            f" got {_clip(value)}"
        )


def _text(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Text that UTF-8 can encode (no lone surrogates)."""
    if isinstance(value, str) and (problem := text_problem(value)) is not None:
        raise ValueError(f"{attribute.name} {problem}")


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if as_finite(attribute.name, value) <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _probability(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= as_finite(attribute.name, value) <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _scalar_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a category value (or a subcategory key), if it cannot."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return None
        return f"{_clip(value)} does not fit in a 64-bit integer (quote it to keep it as text)"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    return f"{_clip(value)} is not text, a number, a boolean or null"


def _scalar(value: Any) -> Any:
    # YAML reads an unquoted 2024-01-31 as a date; such a value is stored as its text anyway,
    # so it is kept as that text (which a config file can hold and reads back as is).
    return str(value) if isinstance(value, dt.date | dt.time) else value


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value)


def _scalars(value: Any) -> tuple[Any, ...]:
    return tuple(_scalar(item) for item in value)


def _options_by_parent(value: Any) -> dict[Any, tuple[Any, ...]]:
    return {_scalar(key): _scalars(options) for key, options in dict(value).items()}


def _is_finite(value: Any) -> bool:
    try:
        as_finite("value", value)
    except (TypeError, ValueError):
        return False
    return True


def _naive_utc(value: Any) -> dt.datetime | None:
    """``value`` as naive UTC (``None`` when it is not a datetime or leaves the range)."""
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        return value
    try:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError:
        return None


def _utc_moment(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A datetime that stays within years 1 to 9999 once converted to UTC."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{attribute.name} must be a datetime, got {type(value).__name__}")
    if _naive_utc(value) is None:
        raise ValueError(
            f"{attribute.name} ({value.isoformat()}) leaves the datetime range (years 1 to"
            " 9999) once converted to UTC"
        )


def _check_scalars(where: str, values: Any) -> None:
    for index, item in enumerate(values):
        problem = _scalar_problem(item)
        if problem is not None:
            raise ValueError(f"{where}[{index}]: {problem}")


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
        values: the possible values: text, numbers (finite; integers within 64 bits), booleans
            or null; the column's type follows them. A date YAML reads from an unquoted
            ``2024-01-31`` is kept as its text.
        weights: relative weights, one per value (finite, >= 0, not all zero); uniform when
            omitted.
    """

    kind: ClassVar[str] = "category"
    values: tuple[Any, ...] = attrs.field(converter=_scalars, validator=attrs.validators.min_len(1))
    weights: tuple[float, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(_tuple)
    )

    @values.validator
    def _check_values(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        _check_scalars("values", value)

    @weights.validator
    def _check_weights(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if len(value) != len(self.values):
            raise ValueError(f"weights has {len(value)} entries but values has {len(self.values)}")
        weights = [as_finite(f"weights[{i}]", w) for i, w in enumerate(value)]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be >= 0 and not all zero")
        if not math.isfinite(sum(weights)):
            raise ValueError("weights are too large: their sum is not a finite number")


@attrs.frozen(kw_only=True)
class SubcategoryColumn(ColumnConfig):
    """A value drawn from the list that belongs to the row's ``parent`` category value.

    Attributes:
        parent: the category column this one is conditioned on.
        values: for each value of the parent, the values this column may take (keys and
            values follow the rules of ``category`` values).
    """

    kind: ClassVar[str] = "subcategory"
    parent: str
    values: dict[Any, tuple[Any, ...]] = attrs.field(converter=_options_by_parent)

    @values.validator
    def _check_values(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not value:
            raise ValueError("values must map each parent value to a non-empty list")
        for key, options in value.items():
            problem = _scalar_problem(key)
            if problem is not None:
                raise ValueError(f"values: key {problem}")
            if not options:
                raise ValueError(f"values[{key!r}] is empty")
            _check_scalars(f"values[{key!r}]", options)

    def direct_references(self) -> dict[str, tuple[str, ...]]:
        return {**super().direct_references(), "parent": (self.parent,)}


@attrs.frozen(kw_only=True)
class UniformColumn(ColumnConfig):
    """A number drawn uniformly from ``[low, high]``.

    Attributes:
        low, high: the bounds (finite numbers, ``high - low`` too); with ``convert_to: int``
            a whole number in the bounds, which must then lie in the 64-bit integer range.
        convert_to: store the value as ``int``, ``float`` or ``string``.
        decimals: round to this many decimal places.
    """

    kind: ClassVar[str] = "uniform"
    low: float = attrs.field(validator=_finite)
    high: float = attrs.field(validator=_finite)
    convert_to: ConvertTo | None = attrs.field(default=None)
    decimals: int | None = attrs.field(default=None, validator=attrs.validators.optional(_int64))

    @high.validator
    def _check_high(self, _attribute: attrs.Attribute[Any], value: float) -> None:
        if value < self.low:
            raise ValueError(f"high ({value}) must be >= low ({self.low})")
        if not (_is_finite(self.low) and _is_finite(value)):
            return  # their own validators say what is wrong
        if not math.isfinite(float(value) - float(self.low)):
            raise ValueError(
                f"high - low must be a finite number; [{self.low}, {value}] is too wide"
            )

    @convert_to.validator
    def _check_convert_to(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value != "int" or not all(map(_is_finite, (self.low, self.high))):
            return
        if math.ceil(self.low) < INT64_MIN or math.floor(self.high) > INT64_MAX:
            raise ValueError(
                "with convert_to: int, low and high must lie within the 64-bit integer range"
                f" ({INT64_MIN} to {INT64_MAX})"
            )


@attrs.frozen(kw_only=True)
class GaussianColumn(ColumnConfig):
    """A number drawn from a normal distribution.

    Attributes:
        mean, stddev: the distribution's parameters (finite, ``stddev > 0``); draws stay within
            9 standard deviations of the mean, so ``abs(mean) + 9 * stddev`` must be a finite number
            (and below 2**63 with ``convert_to: int``).
        convert_to: store the value as ``int`` (rounded), ``float`` or ``string``.
        decimals: round to this many decimal places.
    """

    kind: ClassVar[str] = "gaussian"
    mean: float = attrs.field(default=0.0, validator=_finite)
    stddev: float = attrs.field(default=1.0, validator=_positive)
    convert_to: ConvertTo | None = attrs.field(default=None)
    decimals: int | None = attrs.field(default=None, validator=attrs.validators.optional(_int64))

    def _reach(self) -> float | None:
        """How far from zero a draw can go, ``|mean| + 9 stddev`` (``None``: invalid bounds)."""
        if not (_is_finite(self.mean) and _is_finite(self.stddev)):
            return None
        return abs(float(self.mean)) + GAUSS_REACH * float(self.stddev)

    @stddev.validator
    def _check_reach(self, _attribute: attrs.Attribute[Any], _value: float) -> None:
        reach = self._reach()
        if reach is not None and not math.isfinite(reach):
            raise ValueError(
                f"|mean| + {GAUSS_REACH:g} * stddev must be a finite number (draws would overflow)"
            )

    @convert_to.validator
    def _check_convert_to(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        reach = self._reach()
        if value == "int" and reach is not None and reach >= 2.0**63:
            raise ValueError(
                f"with convert_to: int, |mean| + {GAUSS_REACH:g} * stddev must be below 2**63"
                " (draws must fit in a 64-bit integer)"
            )


@attrs.frozen(kw_only=True)
class PoissonColumn(ColumnConfig):
    """A count drawn from a Poisson distribution with the given mean.

    Attributes:
        mean: the expected count (> 0, at most 1e15).
        convert_to: store the value as ``int``, ``float`` or ``string``.
    """

    kind: ClassVar[str] = "poisson"
    mean: float = attrs.field(validator=[_positive, attrs.validators.le(POISSON_MEAN_MAX)])
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
        n: number of trials (0 to 2**63 - 1).
        p: probability of success in each.
        convert_to: store the value as ``int``, ``float`` or ``string``.
    """

    kind: ClassVar[str] = "binomial"
    n: int = attrs.field(validator=[_int64, attrs.validators.ge(0)])
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
    prefix: str = attrs.field(default="", validator=_text)
    short: bool = False
    uppercase: bool = False


@attrs.frozen(kw_only=True)
class DatetimeColumn(ColumnConfig):
    """A datetime drawn uniformly from ``[start, end]``, rounded down to ``unit``.

    With ``format`` set, the value is stored as text formatted with ``strftime``.

    Attributes:
        start, end: the bounds (ISO 8601 text in YAML); bounds with a UTC offset are compared
            (and drawn between) in UTC, and must stay within years 1 to 9999 there.
        unit: granularity of the drawn values.
        format: a ``strftime`` format; the value is then stored as text.
    """

    kind: ClassVar[str] = "datetime"
    start: dt.datetime = attrs.field(validator=_utc_moment)
    end: dt.datetime = attrs.field(validator=_utc_moment)
    unit: TimeUnit = "seconds"
    format: str | None = attrs.field(default=None)

    @end.validator
    def _check_end(self, _attribute: attrs.Attribute[Any], value: dt.datetime) -> None:
        start, end = _naive_utc(self.start), _naive_utc(value)
        if start is not None and end is not None and end < start:
            raise ValueError(f"end ({value}) must not be before start ({self.start})")

    @format.validator
    def _check_format(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            raise TypeError(f"format must be text, got {type(value).__name__}")
        problem = text_problem(value)
        if problem is None and "\x00" in value:
            problem = "holds a NUL character, which strftime stops at"
        if problem is not None:
            raise ValueError(f"format {problem}")
        try:
            dt.datetime(2000, 1, 1).strftime(value)
        except ValueError as exc:
            raise ValueError(f"format is not a strftime format: {exc}") from None


@attrs.frozen(kw_only=True)
class TimedeltaColumn(ColumnConfig):
    """A whole number of ``unit`` drawn from ``[min, max]``.

    Without ``reference`` the value is a duration; with ``reference`` naming a datetime column the
    value is that datetime plus the drawn duration.

    Attributes:
        min, max: bounds of the whole number of units drawn: at most what a duration holds
            (about 106 million days), or with ``reference`` what separates two datetimes
            (years 1 to 9999: about 3.65 million days).
        unit: the unit of ``min`` and ``max``.
        reference: a datetime column to add the duration to.
    """

    kind: ClassVar[str] = "timedelta"
    min: int = attrs.field(validator=_int64)
    max: int = attrs.field(validator=_int64)
    unit: TimeUnit = "days"
    reference: str | None = None

    @min.validator
    @max.validator
    def _check_span(self, attribute: attrs.Attribute[Any], value: int) -> None:
        step = _UNIT_STEPS.get(self.unit)
        if step is None or not isinstance(value, int):
            return
        if self.reference is None:
            limit, what = DURATION_MAX // step, "the longest duration a column holds"
        else:
            limit, what = DATETIME_SPAN // step, "the span of datetimes, years 1 to 9999"
        if abs(value) > limit:
            raise ValueError(
                f"{attribute.name} must be between -{limit} and {limit} {self.unit} ({what}),"
                f" got {value}"
            )

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
