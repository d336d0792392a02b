"""Column dtypes: Arrow types, value coercion and inference of literal value types."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.errors import ConfigError, ValueTypeError
from gridloom.generators import arrow_type, coerce, infer_arrow_type, normalize_values
from gridloom.generators._dtypes import DTYPES, json_text, normalize_dtype

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20
)
JSON_CONTAINERS = st.lists(JSON) | st.dictionaries(st.text(), JSON)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("string", pa.string()),
        ("int", pa.int64()),
        ("float", pa.float64()),
        ("bool", pa.bool_()),
        ("datetime", pa.timestamp("us")),
        ("timedelta", pa.duration("us")),
        ("json", pa.string()),
    ],
)
def test_arrow_type_of_each_dtype(dtype: str, expected: pa.DataType) -> None:
    """Each dtype maps to its documented Arrow type."""
    assert arrow_type(dtype) == expected


def test_unknown_dtype_is_a_config_error() -> None:
    """An unknown dtype is a ConfigError on field dtype naming the column."""
    with pytest.raises(ConfigError, match="unknown dtype 'integer'") as info:
        arrow_type("integer", column="age")
    assert (info.value.column, info.value.field) == ("age", "dtype")
    with pytest.raises(ConfigError):
        coerce("1", "integer", column="age")


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        (" 3 ", "int", 3),
        ("3.0", "int", 3),
        (4.0, "int", 4),
        (True, "int", 1),
        (decimal.Decimal("12"), "int", 12),
        ("2.5", "float", 2.5),
        (7, "float", 7.0),
        ("TRUE", "bool", True),
        ("no", "bool", False),
        ("1", "bool", True),
        (0, "bool", False),
        ("2024-05-01T12:30:00", "datetime", dt.datetime(2024, 5, 1, 12, 30)),
        ("2024-05-01T12:30:00+02:00", "datetime", dt.datetime(2024, 5, 1, 10, 30)),
        (dt.date(2024, 5, 1), "datetime", dt.datetime(2024, 5, 1)),
        ("90", "timedelta", dt.timedelta(seconds=90)),
        ("P1DT2H30M", "timedelta", dt.timedelta(days=1, hours=2, minutes=30)),
        ("-PT1.5S", "timedelta", dt.timedelta(seconds=-1.5)),
        ("-1 day, 23:00:00", "timedelta", dt.timedelta(hours=-1)),
        (2.5, "timedelta", dt.timedelta(seconds=2.5)),
        ({"a": [1, 2]}, "json", {"a": [1, 2]}),
        ([], "json", []),
        (' {"a": 1} ', "json", {"a": 1}),
        ('"text"', "json", "text"),
        (12, "string", "12"),
        ({"k": "v"}, "string", '{"k": "v"}'),
        (b"abc", "string", "abc"),
        (None, "int", None),
        (None, "json", None),
    ],
)
def test_coerce_converts_values(value: Any, dtype: str, expected: Any) -> None:
    """coerce converts text and Python values into what Arrow stores for the dtype (a json
    column's value is the parsed one, stored as its JSON text)."""
    result = coerce(value, dtype, column="c")
    assert result == expected
    assert type(result) is type(expected)
    pa.array([json_text(result) if dtype == "json" else result], type=arrow_type(dtype))


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        ("three", "int"),
        ("3.5", "int"),
        (3.5, "int"),
        (float("nan"), "int"),
        (2**70, "int"),
        ([1], "int"),
        ("abc", "float"),
        ("maybe", "bool"),
        (2, "bool"),
        ("yesterday", "datetime"),
        (1700000000, "datetime"),
        ("soon", "timedelta"),
        (True, "timedelta"),
        ("{not json", "json"),
        ({"when": dt.date(2024, 1, 1)}, "json"),
        (float("inf"), "json"),
        (b"\xff", "string"),
    ],
)
def test_coerce_refuses_values_that_do_not_fit(value: Any, dtype: str) -> None:
    """A value that does not fit raises ValueTypeError naming column, dtype and value."""
    with pytest.raises(ValueTypeError, match=rf"column 'price'.*as {dtype}") as info:
        coerce(value, dtype, column="price")
    assert repr(value)[:10] in str(info.value)


def test_coerce_error_message_cuts_long_values() -> None:
    """Long values appear shortened in the error message."""
    with pytest.raises(ValueTypeError) as info:
        coerce("x" * 10_000, "int", column="n")
    assert len(str(info.value)) < 200


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_int_text_round_trips(number: int) -> None:
    """Any int64's decimal text coerces back to the same int."""
    assert coerce(str(number), "int", column="c") == number


@given(st.floats(allow_nan=False))
def test_float_text_round_trips(number: float) -> None:
    """Any float's repr coerces back to the same float."""
    assert coerce(repr(number), "float", column="c") == number


@given(st.datetimes())
def test_datetime_iso_text_round_trips(moment: dt.datetime) -> None:
    """A naive datetime's ISO text coerces back to the same datetime."""
    assert coerce(moment.isoformat(), "datetime", column="c") == moment


#: The durations a ``duration("us")`` column stores: 64-bit microseconds.
STORABLE_DELTA = dt.timedelta(microseconds=2**63 - 1)


@given(st.timedeltas(min_value=-STORABLE_DELTA, max_value=STORABLE_DELTA))
def test_timedelta_text_round_trips(delta: dt.timedelta) -> None:
    """str(timedelta) of a storable duration coerces back to the same timedelta."""
    assert coerce(str(delta), "timedelta", column="c") == delta


@given(JSON_CONTAINERS)
def test_json_values_round_trip(value: Any) -> None:
    """Lists and dicts stay themselves in memory and are stored as JSON text that loads back
    to them."""
    kept = coerce(value, "json", column="c")
    assert kept == value
    text = json_text(kept)
    assert text is not None
    assert json.loads(text) == value


@given(JSON)
def test_json_text_is_parsed(value: Any) -> None:
    """Valid JSON text becomes its value (what downstream templates see), stored as JSON text
    that loads back to it."""
    text = json.dumps(value)
    parsed = coerce(text, "json", column="c")
    assert parsed == value
    assert json.loads(json_text(parsed) or "null") == value


@given(st.booleans())
def test_bool_text_round_trips(flag: bool) -> None:
    """str(bool) and its lower-case form coerce back to the bool."""
    assert coerce(str(flag), "bool", column="c") is flag
    assert coerce(str(flag).lower(), "bool", column="c") is flag


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([True, False], pa.bool_()),
        ([1, 2, None], pa.int64()),
        ([1, 2.5], pa.float64()),
        ([True, 1], pa.string()),
        (["a", "b"], pa.string()),
        (["a", 1], pa.string()),
        ([None], pa.string()),
        ([2**64], pa.float64()),
        ([dt.date(2024, 1, 1)], pa.string()),
    ],
)
def test_infer_arrow_type(values: list[Any], expected: pa.DataType) -> None:
    """Literal values' type: all bool, all int, numbers, else string."""
    assert infer_arrow_type(values) == expected


def test_normalize_values_converts_to_the_inferred_type() -> None:
    """normalize_values makes the values fit the inferred type, keeping None."""
    assert normalize_values([1, 2.5, None]) == (pa.float64(), (1.0, 2.5, None))
    assert normalize_values(["a", 1, None]) == (pa.string(), ("a", "1", None))
    kind, values = normalize_values([3, 4])
    assert kind == pa.int64()
    assert values == (3, 4)


#: Text with lone surrogates (``"\ud800"``), which UTF-8 cannot encode, among other characters.
HOSTILE_TEXT = st.text(
    st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udfff", "\udc80"]),
    max_size=8,
)
#: Anything a custom function may return: scalars of many types, and containers of them with
#: hostile text anywhere (keys included).
RETURNED = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | HOSTILE_TEXT
    | st.binary(max_size=8)
    | st.decimals()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.timedeltas()
    | st.builds(object),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(HOSTILE_TEXT | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(RETURNED, st.sampled_from(DTYPES))
def test_a_coerced_value_can_always_be_stored(value: Any, dtype: str) -> None:
    """Whatever a function returns, coerce either refuses it (ValueTypeError: the row is
    dropped) or gives a value its column's Arrow type stores: a lone surrogate at any depth,
    NaN in JSON text, a duration beyond 64-bit microseconds never reach the data file."""
    try:
        kept = coerce(value, dtype, column="c")
    except ValueTypeError:
        return
    stored = json_text(kept) if dtype == "json" else kept
    pa.array([stored], type=arrow_type(dtype))


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        ("\ud800", "string"),
        ("ok \udfff", "string"),
        ({"k": ["\ud800"]}, "string"),
        ({"\ud800": 1}, "string"),
        (["\udc80"], "json"),
        ({"\ud800": 1}, "json"),
        ('"\\ud800"', "json"),  # an escape json.loads decodes to a lone surrogate
        ("NaN", "json"),
        ("[1e999]", "json"),
        (dt.timedelta(days=999_999_999), "timedelta"),
        pytest.param(10**400, "float", id="int-beyond-float"),
        (decimal.Decimal("sNaN"), "float"),
    ],
)
def test_values_that_cannot_be_stored_are_refused(value: Any, dtype: str) -> None:
    """A lone surrogate (at any depth, in a key too), NaN or infinity read from JSON text, and
    numbers out of the stored type's range are a ValueTypeError naming the column."""
    with pytest.raises(ValueTypeError, match="column 'c'"):
        coerce(value, dtype, column="c")


#: What a category's values may be (config-checked: integers within 64 bits, finite floats).
CATEGORY_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)


@given(st.lists(CATEGORY_VALUES, max_size=8))
def test_a_dtype_inferred_without_arrow_gives_the_same_type_and_values(values: list[Any]) -> None:
    """normalize_dtype (what a category column compiles with, no pyarrow needed) names the
    dtype whose Arrow type infer_arrow_type gives, converts the values as normalize_values
    does, and Arrow stores the converted values as they are."""
    kind, converted = normalize_dtype(values)
    assert arrow_type(kind) == infer_arrow_type(values)
    assert normalize_values(values) == (arrow_type(kind), converted)
    assert pa.array(list(converted), type=arrow_type(kind)).to_pylist() == list(converted)
