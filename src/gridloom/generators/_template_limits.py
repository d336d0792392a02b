"""The limits a template render runs under, and the guards that enforce them.

A user template may loop, call macros, multiply strings and raise integers to powers; left
alone, ``{{ 'x' * 10**10 }}`` or ``{{ 2 ** 10**10 }}`` would hold a core (and the event loop,
when rendered on it) for as long as it likes and allocate gigabytes. Every render therefore
runs with a :class:`RenderBudget` (per thread) that the sandboxed environment consults:

* **text** — the rendered text, and every string (or container) an operation builds on the
  way, stays under ``max_output_chars``; all the text the filters of one render build,
  counted together, under :data:`PRODUCED_FACTOR` times that (a filter applied to each item
  of a long sequence — ``range(n)|map('center', w)|list`` — could otherwise fill the memory
  with values each under the limit). Operations that could allocate more than that in one C
  call (``*``, ``%``-formatting widths, ``center``, ``replace``, ``join`` ...) are checked
  *before* they run, from their arguments.
* **loops** — the iterations of all the ``for`` loops of one render, and the length of any
  ``range()``, stay under ``max_loop_iterations``.
* **integers** — ``**``, ``*`` and ``+`` never build an integer of more than
  :data:`MAX_INT_BITS` bits; the check is made from the operands' sizes, before the operation.
* **time** — the render's CPU time (of its thread) stays under ``time_budget_seconds``,
  checked at every call, loop iteration and guarded operation, so even a loop the other
  limits allow cannot run on.

A violation raises :class:`~gridloom.errors.TemplateLimitExceeded`: the cell fails (its row is
dropped) with a message naming the limit and the setting that raises it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
from jinja2.utils import Namespace

from .._attrs import frozen
from ..config import RunConfig
from ..errors import TemplateLimitExceeded

__all__ = [
    "MAX_INT_BITS",
    "MAX_NESTING",
    "METHOD_CHECKS",
    "PRODUCED_FACTOR",
    "CountedIterator",
    "RenderBudget",
    "TemplateLimits",
    "bounded_join",
    "check_binop",
    "check_printf",
    "check_value",
    "current_budget",
    "replaced_size",
    "repr_size",
    "set_budget",
]

#: The largest integer a template may build, in bits (about 19,700 decimal digits).
MAX_INT_BITS = 1 << 16
#: How deeply a value a template builds may nest lists, tuples and dicts.
MAX_NESTING = 100
#: All the text the filters of one render build, counted together, stays under this many
#: times the output limit.
PRODUCED_FACTOR = 64
#: One C call may take up to this many times the text a render may build, in steps.
_WORK_FACTOR = 16
#: The CPU clock is read once per this many checks (reading it costs about a microsecond).
_CLOCK_EVERY = 64

#: A ``%`` conversion specifier: flags, width, precision.
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?[diouxXeEfFgGcrsab%]")


@frozen(kw_only=True)
class TemplateLimits:
    """What one render of one template may use (see the module docstring).

    Attributes:
        max_output_chars: characters of rendered text, and of any string a template builds.
        max_loop_iterations: ``for`` iterations of one render, all loops together; also the
            largest ``range()``.
        time_budget_seconds: CPU seconds one render may use.
    """

    max_output_chars: int = attrs.field(default=1 << 20, validator=attrs.validators.ge(1))
    max_loop_iterations: int = attrs.field(default=100_000, validator=attrs.validators.ge(1))
    time_budget_seconds: float = attrs.field(default=2.0, validator=attrs.validators.gt(0.0))

    @classmethod
    def from_run(cls, run: RunConfig) -> TemplateLimits:
        """The limits a run's ``template_*`` settings give."""
        return cls(
            max_output_chars=run.template_max_output_chars,
            max_loop_iterations=run.template_max_loop_iterations,
            time_budget_seconds=run.template_time_budget_seconds,
        )


class RenderBudget:
    """What is left of one render's limits; :func:`current_budget` finds it from the hooks.

    Args:
        limits: the template's limits.
        timed: enforce the CPU time budget (its clock costs a microsecond per read; templates
            without loops or calls, which cannot run long, skip it).
    """

    __slots__ = (
        "_checks",
        "deadline",
        "iterations",
        "limits",
        "max_chars",
        "max_iterations",
        "max_produced",
        "produced",
    )

    def __init__(self, limits: TemplateLimits, *, timed: bool = True):
        self.limits = limits
        self.max_chars = limits.max_output_chars
        self.max_produced = limits.max_output_chars * PRODUCED_FACTOR
        self.max_iterations = limits.max_loop_iterations
        self.deadline = time.thread_time() + limits.time_budget_seconds if timed else math.inf
        self.iterations = 0
        self.produced = 0
        self._checks = 0

    def tick(self) -> None:
        """A unit of work happened (a call, an iteration, an operation): check the clock now
        and then."""
        self._checks += 1
        if self._checks % _CLOCK_EVERY == 0 and time.thread_time() > self.deadline:
            self.fail(
                f"rendering used more than {self.limits.time_budget_seconds:g} s of CPU time"
                " (run.template_time_budget_seconds)"
            )

    def iterate(self) -> None:
        """One more ``for`` iteration."""
        self.iterations += 1
        if self.iterations > self.max_iterations:
            self.fail(
                f"loops ran more than {self.max_iterations:,} iterations"
                " (run.template_max_loop_iterations)"
            )
        self.tick()

    def fits(self, size: int, what: str = "a value the template builds") -> None:
        """A string (or list) of ``size`` characters (items) is about to be built: refuse it
        when it is over the text limit."""
        if size > self.max_chars:
            self.fail(
                f"{what} would be {size:,} characters long, over the limit of"
                f" {self.max_chars:,} (run.template_max_output_chars)"
            )

    def text(self, size: int, what: str = "a value the template builds") -> None:
        """A string of ``size`` characters was built: check it and count it."""
        self.fits(size, what)
        self.produced += size
        if self.produced > self.max_produced:
            self.fail(
                f"the template's filters built more than {self.max_produced:,} characters"
                " of text in all"
                f" ({PRODUCED_FACTOR} x run.template_max_output_chars)"
            )
        self.tick()

    def work(self, steps: int, what: str) -> None:
        """An operation is about to take about ``steps`` elementary steps in one C call (where
        the clock cannot be checked): refuse it when that is far more than a render builds."""
        if steps > self.max_produced * _WORK_FACTOR:
            self.fail(f"{what} would take about {steps:,} steps, too many for one render")

    def integer(self, bits: int) -> None:
        """An integer of about ``bits`` bits is about to be built."""
        if bits > MAX_INT_BITS:
            self.fail(
                f"an integer of about {bits:,} bits would be built, over the limit of"
                f" {MAX_INT_BITS:,} bits"
            )

    def fail(self, message: str) -> None:
        raise TemplateLimitExceeded(message)


_LOCAL = threading.local()


def current_budget() -> RenderBudget:
    """The budget of the render running in this thread (a fresh default one outside a render,
    e.g. for a template rendered by other code)."""
    budget: RenderBudget | None = getattr(_LOCAL, "budget", None)
    if budget is None:
        return RenderBudget(TemplateLimits(), timed=False)
    return budget


def set_budget(budget: RenderBudget | None) -> RenderBudget | None:
    """Make ``budget`` the current one in this thread; returns the one it replaces (to put
    back when the render ends)."""
    previous: RenderBudget | None = getattr(_LOCAL, "budget", None)
    _LOCAL.budget = budget
    return previous


# ----------------------------------------------------------------------------- sizes


def repr_size(value: Any, limit: int) -> int:
    """About how many characters ``str(value)`` has, counting each container once per place
    it appears (a list holding the same list twice prints it twice) but walking it only once;
    the walk stops as soon as the count passes ``limit``.

    Raises:
        TemplateLimitExceeded: the value nests deeper than :data:`MAX_NESTING`.
    """
    return _size(value, limit, {}, 0)


def _size(value: Any, limit: int, seen: dict[int, int], depth: int) -> int:
    if isinstance(value, str | bytes | bytearray):
        return len(value) + 3
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, float | complex | range):
        return 32
    children: Iterable[Any]
    if isinstance(value, Namespace):
        children = object.__getattribute__(value, "__dict__").values()
    elif isinstance(value, Mapping):
        children = (part for item in value.items() for part in item)
    elif isinstance(value, list | tuple | set | frozenset):
        children = value
    else:
        return 64  # other objects print as a short description
    key = id(value)
    known = seen.get(key)
    if known is not None:
        return known
    if depth >= MAX_NESTING:
        raise TemplateLimitExceeded(f"a value nests more than {MAX_NESTING} levels deep")
    seen[key] = 5  # while walking it: a reference to itself prints as [...]
    total = 2
    for child in children:
        total += _size(child, limit - total, seen, depth + 1) + 2
        if total > limit:
            break
    seen[key] = total
    return total


def check_value(
    value: Any,
    budget: RenderBudget,
    what: str = "a value the template builds",
    *,
    count: bool = False,
) -> None:
    """Check a value a template operation built: a string under the text limit (and, with
    ``count``, counted against the render's total), an integer under :data:`MAX_INT_BITS`, a
    container whose printed form is under the text limit."""
    if isinstance(value, str | bytes | bytearray):
        if count:
            budget.text(len(value), what)
        else:
            budget.fits(len(value), what)
            budget.tick()
    elif isinstance(value, int) and not isinstance(value, bool):
        budget.integer(value.bit_length())
    elif isinstance(value, list | tuple | dict | set | frozenset | Namespace):
        size = repr_size(value, budget.max_chars)
        if size > budget.max_chars:
            budget.fail(
                f"{what} would print as more than {budget.max_chars:,} characters"
                " (run.template_max_output_chars)"
            )
        budget.tick()


def check_printf(fmt: str | bytes, budget: RenderBudget) -> None:
    """Refuse a ``%``-format whose widths or precisions could build more than the text limit
    (``'%0999999999d' % 1``) before it runs."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    if "%" not in text:
        return
    for match in _PRINTF.finditer(text):
        for number in match.groups():
            if number == "*":
                budget.fail("a %-format may not take its width or precision from '*'")
            if number and (len(number) > 9 or int(number) > budget.max_chars):
                budget.fail(
                    f"a %-format width or precision of {number} is over the limit of"
                    f" {budget.max_chars:,} characters (run.template_max_output_chars)"
                )


# ----------------------------------------------------------------------------- operators


def _length(value: Any) -> int | None:
    if isinstance(value, str | bytes | bytearray | list | tuple):
        return len(value)
    return None


def check_binop(operator: str, left: Any, right: Any, budget: RenderBudget) -> None:
    """Refuse, from its operands, an operation that would build a value over the limits."""
    budget.tick()
    if operator == "**":
        if isinstance(right, int) and not isinstance(left, float | complex):
            base = _magnitude_bits(left)
            exponent = abs(right)
            if base > 1 and exponent > 1:  # |left| >= 2: the result has over (base-1)*n bits
                budget.integer((base - 1) * exponent + 1)
    elif operator == "*":
        _check_repeat(left, right, budget)
        _check_repeat(right, left, budget)
        if isinstance(left, int) and isinstance(right, int):
            budget.integer(left.bit_length() + right.bit_length())
    elif operator == "+":
        a, b = _length(left), _length(right)
        if a is not None and b is not None:
            budget.fits(a + b)
    elif operator == "%" and isinstance(left, str | bytes):
        check_printf(left, budget)


def _magnitude_bits(value: Any) -> int:
    """Bits of an integer-like value's size (numerator and denominator of a fraction); 0 for
    values whose powers do not grow without bound (floats, decimals)."""
    if isinstance(value, int):
        return abs(value).bit_length()
    numerator = getattr(value, "numerator", None)
    denominator = getattr(value, "denominator", None)
    if isinstance(numerator, int) and isinstance(denominator, int):
        return max(abs(numerator).bit_length(), denominator.bit_length())
    return 0


def _check_repeat(sequence: Any, times: Any, budget: RenderBudget) -> None:
    if not isinstance(times, int) or times <= 1:
        return
    if isinstance(sequence, str | bytes | bytearray):
        budget.fits(len(sequence) * times)
    elif isinstance(sequence, list | tuple):
        items = len(sequence) * times
        if items > budget.max_chars:
            budget.fail(
                f"a repeated list would have {items:,} items, over the limit of"
                f" {budget.max_chars:,} (run.template_max_output_chars)"
            )
        size = repr_size(sequence, budget.max_chars)
        if size * times > budget.max_chars:
            budget.fail(
                f"a repeated list would print as about {size * times:,} characters, over the"
                f" limit of {budget.max_chars:,} (run.template_max_output_chars)"
            )


# ----------------------------------------------------------------------------- methods


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _check_width(
    text: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], b: RenderBudget
) -> None:
    width = _arg(args, kwargs, 0, "width")
    if isinstance(width, int):
        b.fits(width)


def _check_expandtabs(
    text: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], b: RenderBudget
) -> None:
    size = _arg(args, kwargs, 0, "tabsize")
    size = 8 if size is None else size
    if isinstance(size, int) and isinstance(text, str | bytes | bytearray):
        tab = "\t" if isinstance(text, str) else b"\t"
        b.fits(len(text) + text.count(tab) * max(size, 0))  # type: ignore[arg-type]


def _check_replace(
    text: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], b: RenderBudget
) -> None:
    old, new = _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new")
    count = _arg(args, kwargs, 2, "count")
    b.fits(replaced_size(text, old, new, count))


def replaced_size(text: Any, old: Any, new: Any, count: Any = None) -> int:
    """How long ``text.replace(old, new, count)`` would be (0 when the call would fail)."""
    if not (isinstance(text, str | bytes | bytearray) and type(old) is type(new)):
        return 0
    if not isinstance(old, str | bytes | bytearray) or isinstance(text, str) != isinstance(
        old, str
    ):
        return 0
    hits = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _check_strip(
    text: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], b: RenderBudget
) -> None:
    chars = _arg(args, kwargs, 0, "chars")
    if isinstance(chars, str | bytes | bytearray) and isinstance(text, str | bytes | bytearray):
        b.work(len(text) * len(chars), "stripping")


def _check_translate(
    text: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], b: RenderBudget
) -> None:
    table = _arg(args, kwargs, 0, "table")
    if isinstance(table, Mapping) and isinstance(text, str):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        b.fits(len(text) * max(longest, 1))


def _check_to_bytes(
    number: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], b: RenderBudget
) -> None:
    length = _arg(args, kwargs, 0, "length")
    if isinstance(length, int):
        b.fits(length)


#: Methods of str/bytes/int whose result can be far larger than their object and arguments:
#: checked from the arguments before the call.
METHOD_CHECKS: dict[
    str, Callable[[Any, tuple[Any, ...], Mapping[str, Any], RenderBudget], None]
] = {
    "ljust": _check_width,
    "rjust": _check_width,
    "center": _check_width,
    "zfill": _check_width,
    "expandtabs": _check_expandtabs,
    "replace": _check_replace,
    "translate": _check_translate,
    "strip": _check_strip,
    "lstrip": _check_strip,
    "rstrip": _check_strip,
    "to_bytes": _check_to_bytes,
}


def bounded_join(separator: Any, items: Iterable[Any], budget: RenderBudget) -> Any:
    """``separator.join(items)``, refusing before it is built when it would be too long (the
    items are taken one by one, so a lazy sequence of large strings is never all in memory)."""
    if not isinstance(separator, str | bytes | bytearray):
        return separator.join(items)
    parts: list[Any] = []
    total = -len(separator)
    for item in items:
        total += len(item) + len(separator)
        budget.fits(total, "a joined string")
        parts.append(item)
    return separator.join(parts)


class CountedIterator:
    """The iterable of a ``for`` loop, counting each iteration against the budget."""

    __slots__ = ("_budget", "_items")

    def __init__(self, items: Iterator[Any], budget: RenderBudget):
        self._items = items
        self._budget = budget

    def __iter__(self) -> CountedIterator:
        return self

    def __next__(self) -> Any:
        item = next(self._items)
        self._budget.iterate()
        return item
