"""gridloom's class decorators (``gridloom._attrs``): the shared ``__repr__``, ``__eq__``,
``__ne__`` and ``__hash__`` behave as attrs' own would, for any fields; and the classes that
ask for attrs' own (or write their own) keep them."""

from __future__ import annotations

import keyword
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom._attrs import attrs_eq, attrs_hash, attrs_repr, define, frozen


def _masked(value: Any) -> str:
    return "<hidden>"


#: How a field is printed: attrs' default, left out, or by a callable.
_HOW = st.sampled_from([True, False, _masked])

_NAMES = st.lists(
    # attrs names a private field's init argument without its underscore: none here
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
        lambda n: not keyword.iskeyword(n)
    ),
    min_size=0,
    max_size=6,
    unique=True,
)

_VALUES = st.recursive(
    st.none() | st.integers() | st.text(max_size=5) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


def _sample(decorator: Any, fields: dict[str, Any]) -> type:
    """A class ``Sample`` with ``fields`` (name → ``attrs.field``), made by ``decorator``
    (gridloom's or attrs'), so that both make it from the same body."""
    body = {"__annotations__": dict.fromkeys(fields, "Any"), "__qualname__": "Sample", **fields}
    made: type = decorator(type("Sample", (), body))
    return made


@given(
    data=st.data(),
    names=_NAMES,
    use_frozen=st.booleans(),
)
def test_the_shared_repr_prints_what_attrs_own_would(
    data: st.DataObject, names: list[str], use_frozen: bool
) -> None:
    hows = [data.draw(_HOW) for _ in names]
    inits = [data.draw(st.booleans()) for _ in names]

    def fields() -> dict[str, Any]:
        return {
            name: attrs.field(default=None, repr=how, init=init)
            for name, how, init in zip(names, hows, inits, strict=True)
        }

    ours = _sample(frozen if use_frozen else define, fields())
    theirs = _sample(attrs.frozen if use_frozen else attrs.define, fields())
    assert ours.__repr__ is attrs_repr
    assert theirs.__repr__ is not attrs_repr
    values = {name: data.draw(_VALUES) for name in names}
    inited = {name: v for name, v, init in zip(names, values.values(), inits, strict=True) if init}
    a, b = ours(**inited), theirs(**inited)
    for name, value in values.items():  # the fields without init, set afterwards
        if name not in inited:
            object.__setattr__(a, name, value)
            object.__setattr__(b, name, value)
    assert repr(a) == repr(b)


def test_an_object_inside_itself_is_printed_once() -> None:
    @define
    class Node:
        children: list[Any] = attrs.field(factory=list)

    @attrs.define
    class Theirs:
        children: list[Any] = attrs.field(factory=list)

    ours, theirs = Node(), Theirs()
    ours.children.append(ours)
    theirs.children.append(theirs)
    assert repr(ours) == "Node(children=[...])" == repr(theirs).replace("Theirs", "Node")
    assert repr(ours) == repr(ours)  # the set of objects being printed was emptied


def test_a_subclass_prints_and_compares_its_own_fields() -> None:
    @frozen
    class Base:
        a: int

    @frozen
    class Child(Base):
        b: str

    class Plain(Base):
        pass

    assert repr(Child(1, "x")) == "Child(a=1, b='x')"
    assert repr(Plain(2)) == "Plain(a=2)"
    assert Child(1, "x") == Child(1, "x")
    assert Child(1, "x") != Child(1, "y")
    assert Base(1) != Child(1, "x")
    assert hash(Child(1, "x")) == hash(Child(1, "x"))


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


#: How a field takes part in == (and the hash): compared, left out, or through a key.
_EQ = st.sampled_from([True, False, _lower])
_SMALL = (
    st.none() | st.integers(-2, 2) | st.sampled_from(["a", "A", "b"]) | st.tuples(st.integers(0, 1))
)


@given(data=st.data(), names=_NAMES, use_frozen=st.booleans())
def test_equality_and_hash_are_attrs_own(
    data: st.DataObject, names: list[str], use_frozen: bool
) -> None:
    eqs = [data.draw(_EQ) for _ in names]

    def fields() -> dict[str, Any]:
        return {name: attrs.field(default=None, eq=eq) for name, eq in zip(names, eqs, strict=True)}

    ours = _sample(frozen if use_frozen else define, fields())
    theirs = _sample(attrs.frozen if use_frozen else attrs.define, fields())
    assert ours.__eq__ is attrs_eq
    first = {name: data.draw(_SMALL) for name in names}
    # mostly the same values, one or none changed, so that equal pairs are common
    second = dict(first)
    if names and data.draw(st.booleans()):
        second[data.draw(st.sampled_from(names))] = data.draw(_SMALL)
    a1, a2, b1, b2 = ours(**first), ours(**second), theirs(**first), theirs(**second)
    assert (a1 == a2) == (b1 == b2)
    assert (a1 != a2) == (b1 != b2)
    assert a1 == ours(**first)
    assert a1 != b1  # another class: attrs' NotImplemented both ways, then identity
    assert (a1 == 5) is False
    if use_frozen:
        assert ours.__hash__ is attrs_hash
        if a1 == a2:
            assert hash(a1) == hash(a2)
    else:
        assert ours.__hash__ is None  # as attrs: a mutable class with equality is unhashable
        with pytest.raises(TypeError):
            hash(a1)


def test_a_class_asking_for_attrs_methods_or_writing_its_own_keeps_them() -> None:
    @frozen(repr=True, eq=True)
    class Compiled:
        a: int

    @frozen(repr=False, eq=False)
    class Refused:
        secret: str

    @frozen
    class Own:
        secret: str

        def __repr__(self) -> str:
            return "Own(***)"

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return 7

    @define(frozen=True)
    class Frozen:
        a: int

    assert Compiled.__repr__ is not attrs_repr
    assert Compiled.__eq__ is not attrs_eq
    assert repr(Compiled(1)) == "Compiled(a=1)"
    assert Compiled(1) == Compiled(1)
    assert hash(Compiled(1)) == hash(Compiled(1))
    assert "key" not in repr(Refused("key"))
    assert repr(Refused("key")).startswith("<")  # object's own
    assert Refused("key") != Refused("key")  # identity
    assert repr(Own("key")) == "Own(***)"
    assert Own("a") == Own("b")
    assert hash(Own("a")) == 7
    assert Frozen.__hash__ is attrs_hash
    assert hash(Frozen(1)) == hash(Frozen(1))


def test_an_exception_class_is_compared_by_identity_as_with_attrs() -> None:
    @define
    class Failed(Exception):
        code: int

    @frozen
    class Stopped(Exception):
        code: int

    for cls in (Failed, Stopped):
        assert cls(1) != cls(1)
        assert cls.__eq__ is Exception.__eq__
        assert cls.__hash__ is Exception.__hash__
        assert repr(cls(1)) == f"{cls.__name__}(code=1)"


def test_a_field_compared_through_a_key_hashes_through_it() -> None:
    @frozen
    class Word:
        text: str = attrs.field(eq=str.lower)
        note: str = attrs.field(default="", eq=False)

    assert Word("Rain", "a") == Word("rain", "b")
    assert hash(Word("Rain", "a")) == hash(Word("rain", "b"))
    assert Word("Rain") != Word("snow")
