"""Strings that match a JSON Schema ``pattern``, built from the expression's parse tree.

jsonschema reads ``pattern`` as a Python regular expression and checks it with ``re.search``,
so a string holding one match is valid. The string is built, not searched for: the pattern is
parsed by Python's own parser (``re._parser``, the one ``re.compile`` uses) and each node
emits characters: a literal itself, a class one of its members, a branch one alternative, a
repeat a drawn count, a back-reference its group's text. The expression is never run, so a
client's pattern cannot make the simulator backtrack (see :mod:`._schema_checks`).

What cannot be built exactly is best effort: look-arounds (``(?=…)``, ``(?!…)``, ``(?<=…)``,
``(?<!…)``) and word boundaries are skipped, and a possessive repeat or atomic group followed
by what it could take (``a?+a``) may not match. ``^``/``$`` anchors emit nothing (the value is
the match itself, so they hold). JSON Schema's patterns are ECMA-262 expressions, which have
neither possessive repeats nor atomic groups. A back-reference to a group the draw left out
(``(a)?\\1``: Python's ``re`` fails it) makes the value drawn again, up to :data:`_DRAWS` times.

Bounded: a value is at most ``limit`` characters (a pattern whose shortest match is longer
raises :class:`~._schema_checks.SchemaTooLarge`), an open repeat (``*``, ``+``, ``{n,}``)
adds a few items at most, and the work is counted against the request's budget.
"""

from __future__ import annotations

import functools
import random
import re
import string
from collections.abc import Callable
from re import _constants as C  # type: ignore[attr-defined]  # the parser's opcodes
from re import _parser  # type: ignore[attr-defined]  # the parser re.compile uses
from typing import Any

from ._schema_checks import Budget, SchemaTooLarge

__all__ = ["Pattern", "parse_pattern"]

#: Characters drawn for ``.`` and negated classes: printable, no newline (``.`` skips it).
_POOL = string.ascii_letters + string.digits + " -_.,:;!?@#%&*+=/()[]{}<>'\""
_DIGITS = string.digits
_WORD = string.ascii_letters + string.digits + "_"
_SPACE = " "
_NOT_DIGIT = string.ascii_letters + "_ -."
_NOT_WORD = " -.,:;!?@#%&*+=/()"
_NOT_SPACE = string.ascii_letters + string.digits + "_-."
_CATEGORIES = {
    C.CATEGORY_DIGIT: _DIGITS,
    C.CATEGORY_NOT_DIGIT: _NOT_DIGIT,
    C.CATEGORY_WORD: _WORD,
    C.CATEGORY_NOT_WORD: _NOT_WORD,
    C.CATEGORY_SPACE: _SPACE,
    C.CATEGORY_NOT_SPACE: _NOT_SPACE,
}
#: Draws of a value before the last, kept as it comes out.
_DRAWS = 16
_REPEATS = {C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT}
_SKIPPED = {C.AT, C.ASSERT, C.ASSERT_NOT}
_END_ANCHORS = {C.AT_END, C.AT_END_STRING}
_START_ANCHORS = {C.AT_BEGINNING, C.AT_BEGINNING_STRING}


class _TooLong(Exception):
    """The value being built passed its limit."""


class _Unset(Exception):
    """A back-reference names a group this draw left out (Python's ``re`` then fails)."""


class Pattern:
    """A parsed ``pattern``, ready to build matching strings.

    Attributes:
        anchored_start: the pattern starts with ``^`` or ``\\A`` (nothing may precede a match).
        anchored_end: the pattern ends with ``$`` or ``\\Z`` (nothing may follow it).
    """

    def __init__(self, tree: Any):
        self._tree = tree
        items = list(tree)
        self.anchored_start = bool(items) and items[0][0] is C.AT and items[0][1] in _START_ANCHORS
        self.anchored_end = bool(items) and items[-1][0] is C.AT and items[-1][1] in _END_ANCHORS
        lo, _hi = tree.getwidth()
        self.min_length: int = lo

    def build(self, rng: random.Random, budget: Budget, *, limit: int, spread: int = 3) -> str:
        """A string matching the pattern, at most ``limit`` characters: each open repeat
        draws up to ``spread`` items beyond its minimum (a bounded one its own range, capped
        the same way).

        Raises:
            SchemaTooLarge: even the pattern's shortest match is longer than ``limit``.
        """
        if self.min_length > limit:
            raise SchemaTooLarge(
                f"a pattern whose shortest match is longer than {limit} characters is not supported"
            )
        for attempt in range(_DRAWS + 1):
            # a long draw is drawn again shorter; one that left out a group its back-reference
            # names, again as it was; the last is kept whatever it holds
            out: list[str] = []
            try:
                _Emitter(rng, budget, out, limit, spread, strict=attempt < _DRAWS).emit(self._tree)
            except _TooLong:
                spread = 0
            except _Unset:
                pass
            else:
                break
        return "".join(out)


def parse_pattern(pattern: Any) -> Pattern | None:
    """``pattern`` parsed, or ``None`` when it is not a string Python's ``re`` can parse (the
    schema check refuses those first; a value is then built without it)."""
    if not isinstance(pattern, str):
        return None
    return _parsed(pattern)


@functools.lru_cache(maxsize=64)
def _parsed(pattern: str) -> Pattern | None:
    """Parsed once per pattern (an array of 256 strings shares one parse); built values never
    change a :class:`Pattern`."""
    try:
        return Pattern(_parser.parse(pattern, 0))
    except (re.error, OverflowError, RecursionError, ValueError):
        return None


class _Emitter:
    """Appends one match of a parse tree to ``out``."""

    def __init__(
        self,
        rng: random.Random,
        budget: Budget,
        out: list[str],
        limit: int,
        spread: int,
        *,
        strict: bool,
    ):
        self.strict = strict
        self.rng = rng
        self.budget = budget
        self.out = out
        self.room = limit
        self.spread = spread
        self.groups: dict[int, str] = {}
        self._ops: dict[Any, Callable[[Any], None]] = {
            C.LITERAL: lambda av: self._put(chr(av)),
            C.NOT_LITERAL: lambda av: self._put(self._other_than(lambda ch: ord(ch) == av)),
            C.ANY: lambda _av: self._put(rng.choice(_POOL)),
            C.IN: self._in,
            C.BRANCH: lambda av: self.emit(rng.choice(av[1])),
            C.SUBPATTERN: self._group,
            C.ATOMIC_GROUP: self.emit,
            C.GROUPREF: self._reference,
            C.GROUPREF_EXISTS: self._if_group,
        }

    def emit(self, items: Any) -> None:
        for op, av in items:
            self.budget.spend(1)
            if op in _REPEATS:
                self._repeat(av)
            elif op not in _SKIPPED:
                handler = self._ops.get(op)
                if handler is not None:
                    handler(av)

    def _put(self, text: str) -> None:
        self.room -= len(text)
        if self.room < 0:
            raise _TooLong
        self.out.append(text)

    def _repeat(self, av: Any) -> None:
        low, high, item = av
        top = low + self.spread if high is C.MAXREPEAT else min(high, low + max(self.spread, 3))
        for _ in range(self.rng.randint(low, max(low, top))):
            self.budget.spend(1)  # an item may emit nothing, many times over
            self.emit(item)

    def _group(self, av: Any) -> None:
        group, _add_flags, _del_flags, item = av
        start = len(self.out)
        self.emit(item)
        if group is not None:
            self.groups[group] = "".join(self.out[start:])

    def _reference(self, group: int) -> None:
        text = self.groups.get(group)
        if text is None and self.strict:
            raise _Unset
        self._put(text or "")

    def _if_group(self, av: Any) -> None:
        group, yes, no = av
        if group in self.groups:
            self.emit(yes)
        elif no is not None:
            self.emit(no)

    def _in(self, items: Any) -> None:
        if items and items[0][0] is C.NEGATE:
            rest = items[1:]
            self._put(self._other_than(lambda ch: _in_set(ch, rest)))
            return
        op, av = self.rng.choice(items)
        if op is C.LITERAL:
            self._put(chr(av))
        elif op is C.RANGE:
            low, high = av
            self._put(chr(self.rng.randint(low, high)))
        elif op is C.CATEGORY:
            self._put(self.rng.choice(_CATEGORIES.get(av, _WORD)))
        else:  # pragma: no cover - the parser puts nothing else in a class
            self._put("a")

    def _other_than(self, excluded: Callable[[str], bool]) -> str:
        allowed = [ch for ch in _POOL if not excluded(ch)]
        return self.rng.choice(allowed) if allowed else "\u00e9"


def _in_set(ch: str, items: Any) -> bool:
    """Whether ``ch`` is a member of a class's items (negation stripped)."""
    code = ord(ch)
    for op, av in items:
        if op is C.LITERAL and code == av:
            return True
        if op is C.RANGE and av[0] <= code <= av[1]:
            return True
        if op is C.CATEGORY and _MEMBER[av](ch):
            return True
    return False


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


#: Membership of each class category, as ``re`` reads it (Unicode strings).
_MEMBER: dict[Any, Callable[[str], bool]] = {
    C.CATEGORY_DIGIT: str.isdecimal,
    C.CATEGORY_NOT_DIGIT: lambda ch: not ch.isdecimal(),
    C.CATEGORY_WORD: _is_word,
    C.CATEGORY_NOT_WORD: lambda ch: not _is_word(ch),
    C.CATEGORY_SPACE: str.isspace,
    C.CATEGORY_NOT_SPACE: lambda ch: not ch.isspace(),
}
