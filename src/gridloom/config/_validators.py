"""Field validators and converters that config classes share (column kinds' included).

A validator that a JSON Schema keyword can express carries that keyword
(:func:`schema_keywords`), so the generated schema (:mod:`._schema`) states the same bound
without a table of validators: a plugin's config class gets it for its own validators too.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "as_finite",
    "check_scalars",
    "clip",
    "finite",
    "float_or_none",
    "function_path",
    "int64",
    "is_finite",
    "positive",
    "probability",
    "scalar",
    "scalar_problem",
    "scalars",
    "schema_keywords",
    "text",
    "text_problem",
    "to_tuple",
]

#: The range of a 64-bit signed integer: what an Arrow ``int64`` column (and numpy) can hold.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

F = TypeVar("F", bound=Callable[..., Any])


def schema_keywords(**keywords: float) -> Callable[[F], F]:
    """Mark a validator with the JSON Schema keywords (``minimum=0``, ...) that say what it
    checks; :func:`~gridloom.config.config_json_schema` adds them to the field's schema."""

    def mark(function: F) -> F:
        function.json_schema = dict(keywords)  # type: ignore[attr-defined]
        return function

    return mark


def clip(value: Any) -> str:
    """``repr(value)``, cut to 40 characters for a message."""
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def as_finite(name: str, value: Any) -> float:
    """``value`` as a finite float, or a ``TypeError``/``ValueError`` naming ``name``.

    Booleans are not numbers here (``true`` in YAML is not ``1``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {clip(value)}")
    number = float_or_none(value)
    if number is None:
        raise ValueError(f"{name} is too large: {clip(value)}")
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {clip(value)}")
    return number


def float_or_none(value: Any) -> float | None:
    """``float(value)`` for a real number, ``None`` when it is too large for a float."""
    try:
        return float(value)
    except OverflowError:
        return None


def is_finite(value: Any) -> bool:
    """Whether ``value`` is a finite number (not a boolean)."""
    try:
        as_finite("value", value)
    except (TypeError, ValueError):
        return False
    return True


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored or written as UTF-8 text (a lone surrogate), if it cannot."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds {value[exc.start]!r}, which is not a character UTF-8 can encode"
    return None


def finite(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number (not a boolean), finite: NaN and infinity are refused."""
    as_finite(attribute.name, value)


def function_path(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    """A user function: a callable, or its import path ``package.module:function``."""
    if isinstance(value, str):
        module, sep, attr = value.partition(":")
        if not sep or not module or not attr:
            raise ValueError(
                f"function must be an import path 'package.module:function', got {value!r}"
            )
    elif not callable(value):
        raise TypeError(f"function must be callable or an import path, got {value!r}")


def int64(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A whole number (not a boolean) that fits in 64 bits."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{attribute.name} must be an integer, got {type(value).__name__} {clip(value)}"
        )
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(
            f"{attribute.name} must fit in a 64-bit integer (at most {INT64_MAX}),"
            f" got {clip(value)}"
        )


def text(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Text that UTF-8 can encode (no lone surrogates)."""
    if isinstance(value, str) and (problem := text_problem(value)) is not None:
        raise ValueError(f"{attribute.name} {problem}")


@schema_keywords(exclusiveMinimum=0)
def positive(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    """A finite number above zero."""
    if as_finite(attribute.name, value) <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@schema_keywords(minimum=0, maximum=1)
def probability(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    """A number from 0 to 1."""
    if not 0.0 <= as_finite(attribute.name, value) <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def to_tuple(value: Any) -> tuple[Any, ...]:
    """A converter: any iterable (a YAML list) as a tuple."""
    return tuple(value)


def scalar_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a category value (or a subcategory key), if it cannot."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return None
        return f"{clip(value)} does not fit in a 64-bit integer (quote it to keep it as text)"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    return f"{clip(value)} is not text, a number, a boolean or null"


def scalar(value: Any) -> Any:
    """A category value as stored: a date or time YAML read from unquoted text is that text."""
    # A value of this kind is stored as its text anyway, so it is kept as that text (which a
    # config file can hold and reads back as is).
    return str(value) if isinstance(value, dt.date | dt.time) else value


def scalars(value: Any) -> tuple[Any, ...]:
    """A converter: each item through :func:`scalar`, as a tuple."""
    return tuple(scalar(item) for item in value)


def check_scalars(where: str, values: Any) -> None:
    """Raise ``ValueError`` at the first of ``values`` that cannot be a category value."""
    for index, item in enumerate(values):
        problem = scalar_problem(item)
        if problem is not None:
            raise ValueError(f"{where}[{index}]: {problem}")
