"""Filters and globals of the template environment, checked against the render's budget.

Jinja's own filters are kept; those whose output can be far larger than their input (or whose
work can grow faster than it) are replaced by versions that check their arguments first:
``center``, ``indent``, ``wordwrap``, ``replace``, ``join``, ``format``, ``batch``, ``slice``,
``round``, ``sum``, ``trim``, ``tojson``, ``urlize``; ``range`` and ``lipsum`` are bounded
too. The internal filters the instrumented tree calls (:mod:`._template_safety`) live here as
well. Every one takes the template context (``pass_context``), which also keeps Jinja from
calling it at compile time to fold constants: compiling a template never runs its work.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jinja2
from jinja2 import filters as jf
from jinja2.runtime import Context
from jinja2.utils import generate_lorem_ipsum
from markupsafe import soft_str

from ._template_limits import (
    CountedIterator,
    RenderBudget,
    bounded_join,
    check_printf,
    check_value,
    current_budget,
    replaced_size,
    repr_size,
)
from ._template_output import text_value
from ._template_safety import CONCAT_FILTER, LOOP_FILTER, VALUE_FILTER

__all__ = ["GUARDED_FILTERS", "GUARDED_GLOBALS", "bounded_concat"]

#: The longest ``tojson`` indent and ``urlize`` attribute text a template may ask for.
_MAX_INDENT = 64
_MAX_URLIZE_EXTRA = 256
#: Decimal digits per bit, rounded up.
_DIGITS_PER_BIT = 0.302


def _checked(value: Any, budget: RenderBudget) -> Any:
    check_value(value, budget, count=True)
    return value


def bounded_concat(parts: Iterable[str]) -> str:
    """``"".join(parts)``, refusing once the text passes the render's output limit: the
    environment's ``concat``, which joins the rendered text and every macro's, block's and
    ``{% set %}`` block's output."""
    budget = current_budget()
    limit = budget.max_chars
    out: list[str] = []
    total = 0
    for part in parts:
        total += len(part)
        if total > limit:
            budget.fits(total, "the rendered text")
        out.append(part)
        if len(out) % 256 == 0:
            budget.tick()
    budget.fits(total, "the rendered text")
    return "".join(out)


# ----------------------------------------------------------------------------- internal


@jinja2.pass_context
def _loop(context: Context, value: Any) -> Iterator[Any]:
    """Every ``for`` loop iterates through this: each iteration counts."""
    return CountedIterator(iter(value), current_budget())


@jinja2.pass_context
def _concat(context: Context, parts: list[Any]) -> str:
    """``a ~ b ~ c``: each operand as text, refused once the result passes the limit."""
    budget = current_budget()
    texts: list[str] = []
    total = 0
    for part in parts:
        text = str(text_value(part))
        total += len(text)
        budget.fits(total, "a ~ concatenation")
        texts.append(text)
    return "".join(texts)


@jinja2.pass_context
def _value(context: Context, value: Any) -> Any:
    """A list, tuple or dict literal holding run-time values: refused when it would print as
    more than the limit (``[a, a]`` nested in a loop doubles at each step)."""
    check_value(value, current_budget(), "a list or dict the template builds")
    return value


# ----------------------------------------------------------------------------- filters


@jinja2.pass_context
def _center(context: Context, value: Any, width: int = 80) -> str:
    budget = current_budget()
    if isinstance(width, int):
        budget.fits(width)
    return _checked(jf.do_center(value, width), budget)  # type: ignore[no-any-return]


@jinja2.pass_context
def _indent(
    context: Context, s: Any, width: int | str = 4, first: bool = False, blank: bool = False
) -> str:
    budget = current_budget()
    if isinstance(width, int):
        budget.fits(width)
        unit = width
    else:
        unit = len(str(width))
    text = str(s)
    budget.fits(len(text) + (text.count("\n") + 2) * unit)
    return _checked(jf.do_indent(s, width, first, blank), budget)  # type: ignore[no-any-return]


@jinja2.pass_context
def _wordwrap(
    context: Context,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    budget = current_budget()
    environment = context.environment
    separator = environment.newline_sequence if wrapstring is None else str(wrapstring)
    text = str(s)
    if isinstance(width, int):
        breaks = len(text) // max(width, 1) + text.count(" ") + text.count("\n") + 1
        budget.fits(len(text) + breaks * len(separator))
    result = jf.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)
    return _checked(result, budget)  # type: ignore[no-any-return]


@jinja2.pass_context
def _replace(context: Context, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    budget = current_budget()
    budget.fits(replaced_size(str(s), str(old), str(new), count))
    return _checked(jf.do_replace(context.eval_ctx, s, old, new, count), budget)  # type: ignore[no-any-return]


@jinja2.pass_context
def _join(context: Context, value: Iterable[Any], d: Any = "", attribute: Any = None) -> str:
    budget = current_budget()
    if attribute is not None:
        value = map(jf.make_attrgetter(context.environment, attribute), value)
    texts = (str(text_value(item)) for item in value)
    return _checked(bounded_join(str(d), texts, budget), budget)  # type: ignore[no-any-return]


@jinja2.pass_context
def _string(context: Context, value: Any) -> str:
    """``string``: the value as text (refused for what is not data, like ``{{ }}``)."""
    return soft_str(text_value(value))


@jinja2.pass_context
def _format(context: Context, value: Any, *args: Any, **kwargs: Any) -> str:
    budget = current_budget()
    check_printf(str(value), budget)
    return _checked(jf.do_format(value, *args, **kwargs), budget)  # type: ignore[no-any-return]


@jinja2.pass_context
def _batch(
    context: Context, value: Iterable[Any], linecount: int, fill_with: Any = None
) -> Iterator[list[Any]]:
    budget = current_budget()
    if fill_with is not None and isinstance(linecount, int):
        budget.fits(linecount, "a batch filled up")
        budget.fits(linecount * repr_size(fill_with, budget.max_chars), "a batch filled up")
    return jf.do_batch(value, linecount, fill_with)


@jinja2.pass_context
def _slice(context: Context, value: Any, slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    budget = current_budget()
    if isinstance(slices, int):
        if slices > budget.max_iterations:
            budget.fail(
                f"slice() into {slices:,} slices is over the limit of"
                f" {budget.max_iterations:,} (run.template_max_loop_iterations)"
            )
        if fill_with is not None:
            budget.fits(slices * repr_size(fill_with, budget.max_chars), "slices filled up")
    return jf.sync_do_slice(value, slices, fill_with)


@jinja2.pass_context
def _round(context: Context, value: Any, precision: int = 0, method: str = "common") -> float:
    budget = current_budget()
    if isinstance(precision, int) and not isinstance(precision, bool):
        # floor/ceil compute 10 ** precision, and so does rounding an int to -precision
        budget.integer(int(abs(precision) / _DIGITS_PER_BIT) + 1)
    return jf.do_round(value, precision, method)  # type: ignore[arg-type]


@jinja2.pass_context
def _sum(context: Context, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    budget = current_budget()
    if attribute is not None:
        iterable = map(jf.make_attrgetter(context.environment, attribute), iterable)
    if isinstance(start, numbers.Number | str | bytes):  # numbers; strings raise TypeError
        return _checked(sum(iterable, start), budget)  # type: ignore[type-var]
    # Sequences: each + copies what was summed so far; count that work as text built.
    total = start
    for item in iterable:
        size = len(total) if hasattr(total, "__len__") else 0
        budget.text(size, "a sum of sequences")
        total = total + item
    return _checked(total, budget)


@jinja2.pass_context
def _trim(context: Context, value: Any, chars: str | None = None) -> str:
    budget = current_budget()
    if chars is not None:
        budget.work(len(str(value)) * len(str(chars)), "trimming")
    return jf.do_trim(value, chars)


@jinja2.pass_context
def _tojson(context: Context, value: Any, indent: int | str | None = None) -> Any:
    budget = current_budget()
    width = len(indent) if isinstance(indent, str) else indent
    if isinstance(width, int) and width > _MAX_INDENT:
        budget.fail(f"tojson indent of {width} is over the limit of {_MAX_INDENT}")
    return _checked(jf.do_tojson(context.eval_ctx, value, indent), budget)  # type: ignore[arg-type]


@jinja2.pass_context
def _urlize(
    context: Context,
    value: Any,
    trim_url_limit: int | None = None,
    nofollow: bool = False,
    target: str | None = None,
    rel: str | None = None,
    extra_schemes: Iterable[str] | None = None,
) -> str:
    budget = current_budget()
    extra = len(str(target or "")) + len(str(rel or ""))
    extra += sum(len(str(scheme)) for scheme in (extra_schemes or ()))
    if extra > _MAX_URLIZE_EXTRA:
        budget.fail(
            f"urlize's target, rel and schemes are {extra:,} characters, over the limit of"
            f" {_MAX_URLIZE_EXTRA}"
        )
    result = jf.do_urlize(
        context.eval_ctx, value, trim_url_limit, nofollow, target, rel, extra_schemes
    )
    return _checked(result, budget)  # type: ignore[no-any-return]


GUARDED_FILTERS: dict[str, Callable[..., Any]] = {
    "batch": _batch,
    "center": _center,
    "format": _format,
    "indent": _indent,
    "join": _join,
    "replace": _replace,
    "round": _round,
    "slice": _slice,
    "string": _string,
    "sum": _sum,
    "tojson": _tojson,
    "trim": _trim,
    "urlize": _urlize,
    "wordwrap": _wordwrap,
    LOOP_FILTER: _loop,
    CONCAT_FILTER: _concat,
    VALUE_FILTER: _value,
}


# ----------------------------------------------------------------------------- globals


def _range(*args: int) -> range:
    """``range()``, refused when it has more items than a render may iterate."""
    budget = current_budget()
    rng = range(*args)
    try:
        size = len(rng)
    except OverflowError:
        size = budget.max_iterations + 1
    if size > budget.max_iterations:
        budget.fail(
            f"range() of {size:,} items is over the limit of {budget.max_iterations:,}"
            " (run.template_max_loop_iterations)"
        )
    return rng


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """``lipsum()``, refused when it would be longer than the output limit."""
    budget = current_budget()
    if isinstance(n, int) and isinstance(max, int):
        budget.fits(n * max * 12, "lipsum()")
    return _checked(generate_lorem_ipsum(n, html, min, max), budget)  # type: ignore[no-any-return]


GUARDED_GLOBALS: dict[str, Callable[..., Any]] = {"lipsum": _lipsum, "range": _range}
# Named as templates call them (messages about them say 'range', not '_range').
for _name, _function in GUARDED_GLOBALS.items():
    _function.__name__ = _function.__qualname__ = _name
