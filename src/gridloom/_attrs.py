"""attrs' class decorators as gridloom's classes use them: the same, with shared methods.

attrs writes the methods of each class it decorates as Python source and compiles it when the
class is created. gridloom has two hundred or so classes, most of them created before a
command's first request, and compiling their methods was the largest single cost of gridloom's
own start-up: in a ``gridloom preview`` of the quickstart, about an eighth of the instructions
of the whole process (callgrind). The ``__repr__``, ``__eq__`` and ``__hash__`` are half of that
source, yet none of them is on a hot path. So :func:`frozen` and :func:`define` make the class
without them and give it functions shared by all (:func:`attrs_repr`, :func:`attrs_eq`,
:func:`attrs_ne` and :func:`attrs_hash`), which return what attrs' own would:

- the repr ``Name(field=value, ...)``, leaving out the fields declared ``repr=False``, printing
  a field through its ``repr`` callable when it has one, and ``...`` for an object already
  being printed;
- equality of two objects of the same class, field by field in order, through each field's
  ``eq`` key function if any, leaving out the fields declared ``eq=False``; ``!=`` its negation;
- a frozen class's hash over its class and the fields its equality compares (or those a field's
  ``hash`` names), so equal objects hash alike; a mutable class with equality is unhashable.

A class keeps attrs' own methods when it asks for them (``repr=...``, ``eq=...``,
``unsafe_hash=...`` and the like) or writes its own, and an exception class keeps attrs' rule
for exceptions (compared and hashed by identity); a class hashed or compared on a hot path
(a cell's task) says ``eq=True`` for attrs' compiled ones, which are faster per call.

Type checkers see attrs' decorators themselves (the names are attrs' under ``TYPE_CHECKING``),
so mypy's attrs plugin reads these classes as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

__all__ = ["attrs_eq", "attrs_hash", "attrs_ne", "attrs_repr", "define", "frozen"]

_C = TypeVar("_C", bound=type)

#: The ids of the objects being printed by this thread now (one repr inside another).
_printing = threading.local()


def attrs_repr(self: Any) -> str:
    """``Name(field=value, ...)`` over the attrs fields of ``self``'s class that are printed."""
    seen: set[int] | None = getattr(_printing, "ids", None)
    if seen is None:
        seen = _printing.ids = set()
    if id(self) in seen:
        return "..."
    seen.add(id(self))
    try:
        parts = []
        for field in type(self).__attrs_attrs__:
            how = field.repr
            if how is False:
                continue
            value = getattr(self, field.name, attrs.NOTHING)
            parts.append(f"{field.name}={value!r}" if how is True else f"{field.name}={how(value)}")
        name = type(self).__qualname__.rsplit(">.", 1)[-1]
        return f"{name}({', '.join(parts)})"
    finally:
        seen.discard(id(self))


_Fields = tuple[tuple[str, Callable[[Any], Any] | None], ...]


def _fields(cls: type, which: str) -> _Fields:
    """The fields of ``cls`` that ``==`` compares (``which`` "eq") or that the hash covers
    ("hash"; attrs' rule: those compared, unless a field says otherwise), each as its name
    and its ``eq`` key function or ``None``; worked out once per class."""
    cached = f"__gridloom_{which}_fields__"
    fields: _Fields | None = cls.__dict__.get(cached)
    if fields is None:
        fields = tuple(
            (f.name, f.eq_key)
            for f in cls.__attrs_attrs__  # type: ignore[attr-defined]
            if (f.eq if which == "eq" else f.hash is True or (f.hash is None and f.eq))
        )
        setattr(cls, cached, fields)
    return fields


def attrs_eq(self: Any, other: Any) -> Any:
    """``self == other``: what attrs' own ``__eq__`` returns (same class, then each compared
    field in order, through its ``eq`` key function if it has one, the first false result
    ending it)."""
    if other.__class__ is not self.__class__:
        return NotImplemented
    result: Any = True
    for name, key in _fields(self.__class__, "eq"):
        if key is None:
            result = getattr(self, name) == getattr(other, name)
        else:
            result = key(getattr(self, name)) == key(getattr(other, name))
        if not result:
            return result
    return result


def attrs_ne(self: Any, other: Any) -> Any:
    """``self != other``: the negation of :func:`attrs_eq`."""
    result = self.__eq__(other)
    return NotImplemented if result is NotImplemented else not result


def attrs_hash(self: Any) -> int:
    """The hash of a frozen class's object: of its class and its hashed fields, so equal
    objects hash alike."""
    return hash(
        (
            self.__class__,
            *(
                getattr(self, name) if key is None else key(getattr(self, name))
                for name, key in _fields(self.__class__, "hash")
            ),
        )
    )


#: Options with which a class asks for attrs' own comparison methods.
_OWN_COMPARISON = ("eq", "order", "unsafe_hash", "hash", "cache_hash", "cmp")


def _shared_methods(
    decorator: Callable[..., Any], maybe_cls: Any, options: dict[str, Any], *, frozen: bool
) -> Any:
    share_comparison = not any(options.get(name) is not None for name in _OWN_COMPARISON)

    def wrap(cls: _C) -> _C:
        own = cls.__dict__
        repr_ = options.get("repr") is None and "__repr__" not in own
        comparison = (
            share_comparison
            and not {"__eq__", "__ne__", "__hash__"} & own.keys()
            # attrs' rule for an exception (auto_exc): compared and hashed by identity
            and not (options.get("auto_exc", True) and issubclass(cls, BaseException))
        )
        made: _C = decorator(
            cls,
            **options,
            **({"repr": False} if repr_ else {}),
            **({"eq": False} if comparison else {}),
        )
        if repr_:
            made.__repr__ = attrs_repr  # type: ignore[method-assign,assignment]
        if comparison:
            made.__eq__ = attrs_eq  # type: ignore[method-assign,assignment]
            made.__ne__ = attrs_ne  # type: ignore[method-assign,assignment]
            # attrs' rule: a frozen class is hashed by its fields, a mutable one not at all
            made.__hash__ = attrs_hash if frozen else None  # type: ignore[method-assign,assignment]
        return made

    return wrap if maybe_cls is None else wrap(maybe_cls)


if TYPE_CHECKING:
    from attrs import define, frozen
else:

    def frozen(maybe_cls=None, /, **options):
        """:func:`attrs.frozen`, with the shared methods (see the module)."""
        return _shared_methods(attrs.frozen, maybe_cls, options, frozen=True)

    def define(maybe_cls=None, /, **options):
        """:func:`attrs.define`, with the shared methods (see the module)."""
        return _shared_methods(attrs.define, maybe_cls, options, frozen=bool(options.get("frozen")))
