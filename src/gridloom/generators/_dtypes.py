"""Column dtypes: their Arrow types, and conversion of Python values into what Arrow accepts.

Every generated value passes through :func:`coerce` before it is stored, so a template that
renders ``"3"`` fills an ``int`` column with ``3`` and a value that cannot fit fails loudly
with :class:`~gridloom.errors.ValueTypeError` naming the column, the dtype and the value.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import math
import numbers
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, get_args

from ..config._columns import DType
from ..config._validators import text_problem
from ..errors import ConfigError, ValueTypeError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DTYPES",
    "arrow_type",
    "coerce",
    "infer_arrow_type",
    "json_text",
    "normalize_values",
    "short_repr",
    "to_naive_utc",
]

#: Every dtype a column can declare, in declaration order.
DTYPES: tuple[str, ...] = get_args(DType)


@functools.cache
def _arrow_types() -> dict[str, pa.DataType]:
    # Built on first use, not at import: pyarrow is imported once a preview's first model
    # request is out (gridloom.cli._startup), and compiling a pipeline needs only the names.
    import pyarrow as pa

    return {
        "string": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "datetime": pa.timestamp("us"),
        "timedelta": pa.duration("us"),
        "json": pa.string(),
    }


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_TRUE_TEXT = frozenset({"true", "yes", "1"})
_FALSE_TEXT = frozenset({"false", "no", "0"})

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


def short_repr(value: Any) -> str:
    """A ``repr`` of ``value`` cut to a readable length, for error messages."""
    return _repr.repr(value)


def arrow_type(dtype: DType | str, *, column: str | None = None) -> pa.DataType:
    """The Arrow type a column of ``dtype`` is stored as.

    ``json`` columns hold JSON text, so they are stored as strings (their generators mark the
    field with ``JSON_TEXT_METADATA``, see :mod:`gridloom.storage._convert`).

    Args:
        dtype: one of ``string``, ``int``, ``float``, ``bool``, ``datetime``, ``timedelta``,
            ``json``.
        column: the column declaring it, named in the error.

    Raises:
        ConfigError: ``dtype`` is not a known dtype (field ``dtype``).
    """
    try:
        return _arrow_types()[dtype]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}",
            column=column,
            field="dtype",
        ) from None


class _Unfit(Exception):
    """Internal: the value does not fit; the argument, if any, says why."""


def coerce(value: Any, dtype: DType | str, *, column: str) -> Any:
    """Convert ``value`` into a Python value Arrow accepts for ``dtype``; ``None`` stays ``None``.

    Conversions: numbers and numeric text to ``int`` (only when integral) and ``float``;
    ``true/false/yes/no/1/0`` (any case) and 0/1 to ``bool``; ISO 8601 text and dates to
    ``datetime`` (aware values become naive UTC); ``timedelta`` from seconds, ``str(timedelta)``
    text or ISO 8601 durations without years/months (``P1DT2H30M``); ``json`` parses text with
    ``json.loads`` and keeps any other value that ``json.dumps`` accepts — the value in memory
    (what downstream templates see: ``{{ e.a }}``) is the parsed one, and :func:`json_text` is
    what is stored; ``string`` keeps text,
    serialises mappings and lists as JSON and applies ``str`` to the rest.

    Args:
        value: the value to convert.
        dtype: the column's dtype.
        column: the column's name, for the error message.

    Raises:
        ValueTypeError: the value cannot be represented as ``dtype``.
        ConfigError: ``dtype`` is not a known dtype.
    """
    if value is None:
        return None
    convert = _CONVERTERS.get(dtype) if isinstance(dtype, str) else None
    if convert is None:
        arrow_type(dtype, column=column)  # raises the ConfigError
    assert convert is not None
    try:
        return convert(value)
    except (_Unfit, ArithmeticError, ValueError) as exc:  # ValueError: float(Decimal("sNaN"))
        reason = f": {exc}" if exc.args else ""
        raise ValueTypeError(
            f"column {column!r}: cannot store {short_repr(value)}"
            f" ({type(value).__name__}) as {dtype}{reason}"
        ) from None


def _utf8(text: str) -> str:
    """``text``, when UTF-8 can encode it (a lone surrogate, ``"\\ud800"``, cannot be stored)."""
    if (problem := text_problem(text)) is not None:
        raise _Unfit(problem)
    return text


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return _utf8(value)
    if isinstance(value, Mapping | list | tuple):
        return _to_json(value)
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Unfit("bytes are not UTF-8") from exc
    return _utf8(str(value))


def _int_in_range(value: int) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Unfit("outside the 64-bit integer range")
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, numbers.Integral):
        return _int_in_range(int(value))
    if isinstance(value, numbers.Real | decimal.Decimal):
        number = float(value)
        if not math.isfinite(number) or not number.is_integer():
            raise _Unfit("not a whole number")
        whole = int(value) if isinstance(value, decimal.Decimal) else int(number)
        return _int_in_range(whole)
    if isinstance(value, str):
        text = value.strip()
        try:
            return _int_in_range(int(text))
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise _Unfit from None
        if not math.isfinite(number) or not number.is_integer():
            raise _Unfit("not a whole number")
        return _int_in_range(int(number))
    raise _Unfit


def _to_float(value: Any) -> float:
    if isinstance(value, numbers.Real | decimal.Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _Unfit from None
    raise _Unfit


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
    raise _Unfit


def to_naive_utc(value: dt.datetime) -> dt.datetime:
    """``value`` unchanged when naive; converted to UTC and made naive when aware."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _to_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return to_naive_utc(value)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    if isinstance(value, str):
        try:
            return to_naive_utc(dt.datetime.fromisoformat(value.strip()))
        except ValueError:
            raise _Unfit("not an ISO 8601 datetime") from None
    raise _Unfit


_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_ISO_DURATION = re.compile(
    rf"(?P<sign>[-+])?P(?:{_NUMBER}W)?(?:{_NUMBER}D)?"
    rf"(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?",
    re.IGNORECASE,
)
_CLOCK_DURATION = re.compile(
    r"(?:(?P<days>[-+]?\d+) days?,\s*)?(?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)"
)


def _parse_duration(text: str) -> dt.timedelta:
    if match := _CLOCK_DURATION.fullmatch(text):
        return dt.timedelta(
            days=int(match["days"] or 0),
            hours=int(match["h"]),
            minutes=int(match["m"]),
            seconds=float(match["s"]),
        )
    if (match := _ISO_DURATION.fullmatch(text)) and any(match.groups()[1:]):
        weeks, days, hours, minutes, seconds = (float(g or 0) for g in match.groups()[1:])
        delta = dt.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
        return -delta if match["sign"] == "-" else delta
    try:
        return dt.timedelta(seconds=float(text))
    except (ValueError, OverflowError):
        raise _Unfit("not a duration") from None


def _to_timedelta(value: Any) -> dt.timedelta:
    delta = _timedelta(value)
    if not _INT64_MIN <= delta // _MICROSECOND <= _INT64_MAX:  # stored in microseconds
        raise _Unfit("outside the 64-bit microsecond range")
    return delta


_MICROSECOND = dt.timedelta(microseconds=1)


def _timedelta(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool):
        raise _Unfit
    try:
        if isinstance(value, numbers.Real):
            return dt.timedelta(seconds=float(value))
        if isinstance(value, str):
            return _parse_duration(value.strip())
    except OverflowError:
        raise _Unfit("out of range") from None
    raise _Unfit


def _to_json_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise _Unfit(f"invalid JSON ({exc})") from None
    # Raises when it cannot be stored as JSON text (json_text): not JSON-able, NaN or infinity
    # (which json.loads accepts), or a lone surrogate (which a "\\ud800" escape decodes to).
    _dumped(value)
    return value


def json_text(value: Any) -> str | None:
    """How a ``json`` column's value (parsed, see :func:`coerce`) is stored: JSON text."""
    return None if value is None else json.dumps(value, ensure_ascii=False, allow_nan=False)


def _to_json(value: Any) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise _Unfit(f"invalid JSON ({exc})") from None
        return _utf8(value)
    return _dumped(value)


def _dumped(value: Any) -> str:
    """``value`` as the JSON text stored (:func:`json_text`), which UTF-8 can encode."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _Unfit(str(exc)) from None
    return _utf8(text)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _to_string,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "datetime": _to_datetime,
    "timedelta": _to_timedelta,
    "json": _to_json_value,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def infer_dtype(values: Iterable[Any]) -> DType:
    """The dtype for a list of literal values (category values, for instance): ``None``
    entries are nulls and do not count. All bools → ``bool``; all ints (bools excluded) within
    64 bits → ``int``; ints and floats → ``float``; anything else → ``string`` (see
    :func:`normalize_values` for the matching conversion)."""
    present = [value for value in values if value is not None]
    if not present:
        return "string"
    if all(isinstance(value, bool) for value in present):
        return "bool"
    if all(_is_int(value) and _INT64_MIN <= value <= _INT64_MAX for value in present):
        return "int"
    if all(_is_int(value) or isinstance(value, float) for value in present):
        return "float"
    return "string"


def infer_arrow_type(values: Iterable[Any]) -> pa.DataType:
    """The Arrow type of :func:`infer_dtype` of ``values``."""
    return arrow_type(infer_dtype(values))


def normalize_dtype(values: Iterable[Any]) -> tuple[DType, tuple[Any, ...]]:
    """:func:`infer_dtype` of ``values``, and the values converted to fit it.

    Ints become floats in a ``float`` list; non-strings become ``str(value)`` in a
    ``string`` list; ``None`` stays ``None``.
    """
    items = tuple(values)
    kind = infer_dtype(items)
    if kind == "float":
        return kind, tuple(None if v is None else float(v) for v in items)
    if kind == "string":
        return kind, tuple(v if v is None or isinstance(v, str) else str(v) for v in items)
    return kind, items


def normalize_values(values: Iterable[Any]) -> tuple[pa.DataType, tuple[Any, ...]]:
    """:func:`normalize_dtype`, with the dtype as its Arrow type."""
    kind, items = normalize_dtype(values)
    return arrow_type(kind), items
