"""Inference parameters drawn per cell: :class:`InferenceDistribution`, and the checks and
converters of the fields that take one (``temperature``, ``top_p``, ``max_tokens`` of a model
and of a model-calling column).

Such a field holds a number, as it always has, or a distribution written

```yaml
temperature: {uniform: [0.5, 1.0]}                  # any number from 0.5 to 1.0
top_p: {values: [0.8, 0.95], weights: [1, 3]}       # 0.95 three times as often as 0.8
max_tokens: {uniform: [256, 1024]}                  # a whole number from 256 to 1024
```

from which each cell draws its own value (see ``docs/inference.md``). A field's bounds
(``temperature >= 0``, ``top_p`` from 0 to 1, ``max_tokens`` a whole number >= 1) hold over
the distribution's whole support, so no cell can be sent a value outside them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from .._attrs import frozen
from ._issues import describe
from ._scalars import structure_float, structure_int
from ._validators import INT64_MAX, as_finite, clip, list_problem, schema_keywords

__all__ = [
    "FORMS",
    "MAX_VALUES",
    "InferenceDistribution",
    "as_param",
    "check_max_tokens",
    "check_temperature",
    "check_top_p",
    "is_param_type",
    "structure_param",
    "unstructure_param",
]

#: The fields of a distribution (its file form's keys).
_KEYS = ("uniform", "values", "weights")
#: The most values a ``values`` distribution may list.
MAX_VALUES = 10_000
#: How a distribution is written, for messages.
FORMS = "{uniform: [low, high]} or {values: [...], weights: [...]}"


def _numbers(name: str, value: Any) -> tuple[float, ...] | None:
    """``value``, a list of finite numbers, as a tuple (``None`` stays ``None``)."""
    if value is None:
        return None
    if list_problem(value) is not None:
        raise TypeError(f"{name} must be a list of numbers, got {clip(value)}")
    items = list(value)
    if len(items) > MAX_VALUES:
        raise ValueError(f"{name} may list at most {MAX_VALUES} numbers, got {len(items)}")
    for item in items:
        as_finite(f"each number of {name}", item)
    return tuple(items)


def _uniform(value: Any) -> tuple[float, ...] | None:
    return _numbers("uniform", value)


def _values(value: Any) -> tuple[float, ...] | None:
    return _numbers("values", value)


def _weights(value: Any) -> tuple[float, ...] | None:
    return _numbers("weights", value)


@schema_keywords(minItems=2, maxItems=2)
def _check_uniform(_inst: Any, _attribute: Any, value: tuple[float, ...] | None) -> None:
    if value is None:
        return
    if len(value) != 2:
        raise ValueError(f"uniform is [low, high], two numbers; got {list(value)!r}")
    low, high = value
    if low > high:
        raise ValueError(f"uniform [low, high] needs low <= high, got {list(value)!r}")


@schema_keywords(minItems=1)
def _check_values(_inst: Any, _attribute: Any, value: tuple[float, ...] | None) -> None:
    if value is not None and not value:
        raise ValueError("values must list at least one number")


@schema_keywords(minItems=1)
def _check_weights(inst: Any, _attribute: Any, value: tuple[float, ...] | None) -> None:
    if value is None:
        return
    if inst.values is None:
        raise ValueError("weights go with values: {values: [...], weights: [...]}")
    if len(value) != len(inst.values):
        raise ValueError(
            f"weights must have one weight per value ({len(inst.values)}), got {len(value)}"
        )
    if any(weight < 0 for weight in value):
        raise ValueError(f"weights must be >= 0, got {list(value)!r}")
    if not any(weight > 0 for weight in value):
        raise ValueError("weights must not all be zero")
    if not math.isfinite(sum(value)):
        raise ValueError("weights must have a finite sum")


@frozen(kw_only=True)
class InferenceDistribution:
    """A distribution an inference parameter is drawn from, once per cell.

    Written ``{uniform: [low, high]}`` (any number from ``low`` to ``high``, evenly; a whole
    number for ``max_tokens``) or ``{values: [...], weights: [...]}`` (one of the values,
    each as likely as its weight, or equally likely without weights). Each cell draws its
    own value from a random stream of the run seed, the column and the row, so a row gets
    the same value whatever the concurrency, and its retries and correction turns are sent
    with that same value.

    Attributes:
        uniform: ``[low, high]``: a number drawn evenly from ``low`` to ``high`` (both
            included).
        values: the values to pick from.
        weights: one weight per value (``>= 0``, not all zero); equal weights when unset.
    """

    #: JSON Schema keywords added to the generated object schema: exactly one of the forms.
    json_schema_extra: ClassVar[dict[str, Any]] = {
        "oneOf": [{"required": ["uniform"]}, {"required": ["values"]}],
        "dependentRequired": {"weights": ["values"]},
    }

    uniform: tuple[float, ...] | None = attrs.field(
        default=None, converter=_uniform, validator=_check_uniform
    )
    values: tuple[float, ...] | None = attrs.field(
        default=None, converter=_values, validator=_check_values
    )
    weights: tuple[float, ...] | None = attrs.field(
        default=None, converter=_weights, validator=_check_weights
    )

    def __attrs_post_init__(self) -> None:
        if (self.uniform is None) == (self.values is None):
            given = "both" if self.uniform is not None else "neither"
            raise ValueError(
                "a distribution is {uniform: [low, high]} or {values: [...], weights: [...]};"
                f" {given} of uniform and values given"
            )

    @property
    def points(self) -> tuple[float, ...]:
        """The numbers that bound what can be drawn: ``low`` and ``high``, or the values."""
        return self.uniform if self.uniform is not None else self.values or ()

    def describe(self) -> str:
        """The distribution as written in a config file, for messages."""
        if self.uniform is not None:
            return f"{{uniform: {_listed(self.uniform)}}}"
        text = f"{{values: {_listed(self.values or ())}"
        if self.weights is not None:
            text += f", weights: {_listed(self.weights)}"
        return text + "}"

    def draw(self, rng: random.Random, *, integer: bool = False) -> float | int:
        """One value, from ``rng``: a float, or a whole number when ``integer``."""
        if self.uniform is not None:
            low, high = self.uniform
            if integer:
                return rng.randint(math.ceil(low), math.floor(high))
            # low + (high - low) * u may round past high; the support is closed.
            return min(float(high), max(float(low), low + (high - low) * rng.random()))
        values = self.values or ()
        weights = self.weights
        index = rng.choices(range(len(values)), weights=weights)[0] if len(values) > 1 else 0
        picked = values[index]
        return int(picked) if integer else float(picked)


def _listed(numbers: tuple[float, ...]) -> str:
    shown = ", ".join(repr(n) for n in numbers[:6])
    return f"[{shown}{', ...' if len(numbers) > 6 else ''}]"


def is_param_type(tp: Any) -> bool:
    """Whether ``tp`` is the type of a field taking a number or a distribution."""
    return InferenceDistribution in getattr(tp, "__args__", ())


def as_param(value: Any) -> Any:
    """A converter: a mapping (``{"uniform": [0.5, 1.0]}``) as an
    :class:`InferenceDistribution`; anything else as given. A mapping that is no valid
    distribution is left as is, for the field's validator to refuse naming the field."""
    if isinstance(value, Mapping):
        try:
            return _distribution(value)
        except (ValueError, TypeError):
            return value
    return value


def _distribution(value: Mapping[Any, Any]) -> InferenceDistribution:
    unknown = [key for key in value if key not in _KEYS]
    if unknown:
        raise ValueError(
            f"unknown key {clip(unknown[0])} in a distribution; it takes uniform, or values"
            " and weights"
        )
    return InferenceDistribution(**value)


def _param_check(
    what: str, low: float, high: float, *, integer: bool
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """A validator: ``None``, a number within ``[low, high]``, or a distribution whose whole
    support is within it (whole numbers only when ``integer``)."""
    kind = "a whole number" if integer else "a number"

    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        name = attribute.name
        if value is None:
            return
        if isinstance(value, Mapping):
            try:
                value = _distribution(value)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"{name}: {exc}") from None
        if isinstance(value, InferenceDistribution):
            for point in value.points:
                if (integer and not float(point).is_integer()) or not low <= point <= high:
                    raise ValueError(
                        f"{name} must be {what} over its whole distribution, but"
                        f" {value.describe()} reaches {point!r}"
                    )
            return
        accepted = int if integer else int | float
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise TypeError(
                f"{name} must be {kind} or a distribution ({FORMS}),"
                f" got {type(value).__name__} {clip(value)}"
            )
        number = value if integer else as_finite(name, value)
        if not low <= number <= high:
            raise ValueError(f"{name} must be {what}, got {clip(value)}")

    return check


#: ``temperature``: a number >= 0, or a distribution over such numbers.
check_temperature = schema_keywords(minimum=0)(_param_check(">= 0", 0.0, math.inf, integer=False))
#: ``top_p``: a number from 0 to 1, or a distribution over such numbers.
check_top_p = schema_keywords(minimum=0, maximum=1)(
    _param_check("between 0 and 1", 0.0, 1.0, integer=False)
)
#: ``max_tokens``: a whole number from 1 (to 2**63 - 1), or a distribution over such numbers.
check_max_tokens = schema_keywords(minimum=1)(
    _param_check("a whole number >= 1", 1, INT64_MAX, integer=True)
)


def structure_param(
    structure_distribution: Callable[[Any], InferenceDistribution],
) -> Callable[[Any, Any], Any]:
    """The structure hook of a parameter field (given how the converter structures a
    distribution's mapping, so that its keys are checked like any config object's): a
    number stays a number, exactly as before."""

    def structure(obj: Any, tp: Any) -> Any:
        if obj is None and type(None) in tp.__args__:
            return None
        if isinstance(obj, InferenceDistribution):
            return obj
        if isinstance(obj, Mapping):
            return structure_distribution(obj)
        if isinstance(obj, bool) or not isinstance(obj, int | float):
            raise TypeError(f"expected a number or a distribution ({FORMS}), got {describe(obj)}")
        if int in tp.__args__:
            return structure_int(obj, int)
        return structure_float(obj, float)

    return structure


def unstructure_param(integer: bool) -> Callable[[Any], Any]:
    """The unstructure hook of a parameter field: a number as before (a float, or an integer
    for ``max_tokens``: a config's hash does not change), a distribution as its file form."""
    number: Callable[[Any], Any] = int if integer else float

    def unstructure(obj: Any) -> Any:
        if obj is None:
            return None
        if isinstance(obj, InferenceDistribution):
            out: dict[str, Any] = {}
            for key in _KEYS:
                items = getattr(obj, key)
                if items is not None:
                    convert = number if integer and key != "weights" else float
                    out[key] = [convert(item) for item in items]
            return out
        return obj if isinstance(obj, bool) else number(obj)

    return unstructure
