"""Field validators and converters that config classes share (column kinds' included).

A validator that a JSON Schema keyword can express carries that keyword
(:func:`schema_keywords`), so the generated schema (:mod:`._schema`) states the same bound
without a table of validators: a plugin's config class gets it for its own validators too.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "FieldTypeError",
    "FieldValueError",
    "as_finite",
    "as_mapping",
    "check_scalars",
    "clip",
    "describe",
    "finite",
    "float_or_none",
    "function_path",
    "int64",
    "is_finite",
    "list_problem",
    "positive",
    "probability",
    "scalar",
    "scalar_lists",
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


def describe(value: Any) -> str:
    """A short description of a value for messages: its type and a clipped repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


class _FieldError(Exception):
    """An error of one field, in attrs' shape (message, attribute, expected, value); it
    prints as the field's name and the message. ``keys`` locates the problem inside the
    field's value (a mapping's key, a list's index), when it is there."""

    keys: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        if len(self.args) == 4 and isinstance(self.args[1], attrs.Attribute):
            inside = "".join(f"[{key!r}]" for key in self.keys)
            return f"{self.args[1].name}{inside}: {self.args[0]}"
        return super().__str__()


class FieldTypeError(_FieldError, TypeError):
    """A field holds (or was given) a value of the wrong type."""


class FieldValueError(_FieldError, ValueError):
    """A field holds a value of the right type that a config file cannot hold."""


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


def list_problem(value: Any) -> str | None:
    """Why ``value`` cannot be given for a list, if it cannot: a config file's list, or in
    Python any ordered iterable (a tuple, a generator, a range...). Text and bytes are refused
    (a string is not a list of its characters), and so are a mapping (its keys) and a set (no
    order: a pipeline would draw differently from one process to the next)."""
    if isinstance(value, str | bytes | bytearray | memoryview | Mapping | AbstractSet) or not (
        isinstance(value, Iterable)
    ):
        return f"expected a list, got {describe(value)}"
    return None


def as_mapping(value: Any) -> Mapping[Any, Any]:
    """``value`` if it is a mapping; else a ``TypeError`` worded as a file's would be."""
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping, got {describe(value)}")
    return value


def _field_tuple(
    value: Any, field: attrs.Attribute[Any], keys: tuple[str | int, ...] = ()
) -> tuple[Any, ...]:
    problem = list_problem(value)
    if problem is not None:
        error = FieldTypeError(problem, field, "list", value)
        error.keys = keys
        raise error
    return tuple(value)


def _field_mapping(value: Any, field: attrs.Attribute[Any]) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise FieldTypeError(f"expected a mapping, got {describe(value)}", field, "dict", value)
    return value


def _scalar_lists(value: Any, field: attrs.Attribute[Any]) -> dict[Any, tuple[Any, ...]]:
    return {
        scalar(key): tuple(scalar(item) for item in _field_tuple(options, field, (key,)))
        for key, options in _field_mapping(value, field).items()
    }


def _field_scalars(value: Any, field: attrs.Attribute[Any]) -> tuple[Any, ...]:
    return tuple(scalar(item) for item in _field_tuple(value, field))


# The converters are attrs Converters given the field, so that their errors name it (a
# function converter is not told which field it converts). mypy's attrs plugin reads only
# function converters: type checkers see these as the functions they behave as.
if TYPE_CHECKING:

    def to_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
        """A converter: a list (any ordered iterable, see :func:`list_problem`) as a tuple."""

    def scalars(value: Iterable[Any]) -> tuple[Any, ...]:
        """A converter: each item of a list through :func:`scalar`, as a tuple."""

    def scalar_lists(value: Mapping[Any, Iterable[Any]]) -> dict[Any, tuple[Any, ...]]:
        """A converter: a mapping of scalars to lists of scalars (see :func:`scalars`)."""

else:
    #: A converter: a list (any ordered iterable, see :func:`list_problem`) as a tuple; any
    #: other value is a :class:`FieldTypeError` naming the field.
    to_tuple = attrs.Converter(_field_tuple, takes_field=True)
    #: A converter: each item of a list through :func:`scalar`, as a tuple (a
    #: :class:`FieldTypeError` naming the field for a value that is no list).
    scalars = attrs.Converter(_field_scalars, takes_field=True)
    #: A converter: a mapping whose keys go through :func:`scalar` and whose values through
    #: :func:`scalars` (a :class:`FieldTypeError` naming the field, and the key, for a value
    #: of the wrong shape).
    scalar_lists = attrs.Converter(_scalar_lists, takes_field=True)


def check_scalars(where: str, values: Any) -> None:
    """Raise ``ValueError`` at the first of ``values`` that cannot be a category value."""
    for index, item in enumerate(values):
        problem = scalar_problem(item)
        if problem is not None:
            raise ValueError(f"{where}[{index}]: {problem}")
