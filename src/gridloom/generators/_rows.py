"""The row mappings user code is handed: a plain ``dict`` that says what went wrong when a
column it does not hold is read.

A ``custom`` column's function gets ``row`` (per cell) or ``columns`` (per batch), and a
``callable`` validator gets ``ctx.row`` / ``ctx.columns``: they hold only the upstream
columns the column depends on (its ``depends_on`` and what its templates read). Reading any
other column used to fail with a bare ``KeyError: 'greeting'``. :func:`row_class` makes, once
per column, a ``dict`` subclass whose ``__missing__`` raises
:class:`~gridloom.errors.ColumnNotInRow` instead, naming the column asked for, whether the
pipeline has it (and which column fills it), the column whose ``depends_on`` must list it, and
what the row holds. ``__missing__`` runs only on a miss: reading a held column, ``get``,
``in`` and iteration are a plain dict's.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from ..errors import ColumnNotInRow

__all__ = ["Row", "row_class"]

#: What :func:`row_class` returns: a ``dict`` subclass.
Row = type[dict[str, Any]]

#: How many held column names a message lists.
_MAX_LISTED = 20


def _held(names: list[str]) -> str:
    if not names:
        return "nothing (the column depends on no other column)"
    shown = ", ".join(repr(name) for name in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def missing_message(
    key: object, held: list[str], *, column: str, producers: Mapping[str, str], what: str
) -> str:
    """Why ``what`` (user code) of ``column`` could not read ``key`` from a row holding ``held``.

    Args:
        key: the key asked for.
        held: the columns the row holds.
        column: the column whose code read it.
        producers: every column of the pipeline → the column (or ``seed_dataset``) filling it;
            empty when unknown.
        what: the code, as a message names it (``the function``).
    """
    asked = repr(key)
    holds = f"the row holds {_held(held)}"
    listing = f"list it in depends_on of column {column!r}"
    owner = producers.get(key) if isinstance(key, str) else None
    if owner is not None:
        if owner == "seed_dataset":
            filled = " (a seed dataset column)"
        elif owner != key:
            filled = f" (filled by column {owner!r})"
        else:
            filled = ""
        return (
            f"column {column!r}: {what} read {asked}, a column of the pipeline{filled} that is"
            f" not in its row: {listing} to have it computed first and handed over; {holds}"
        )
    if producers:
        text = f"column {column!r}: {what} read {asked}, which is not a column of the pipeline"
        close = difflib.get_close_matches(key, list(producers), n=1) if isinstance(key, str) else []
        if close:
            text += f" (did you mean {close[0]!r}?)"
        return f"{text}; {holds}"
    return (
        f"column {column!r}: {what} read {asked}, which its row does not hold: a column it reads"
        f" must be one of the pipeline's, and {listing}; {holds}"
    )


def row_class(column: str, producers: Mapping[str, str], what: str = "the function") -> Row:
    """A ``dict`` subclass for the rows handed to ``column``'s user code ``what``: reading a
    key it does not hold raises :class:`~gridloom.errors.ColumnNotInRow` (a ``KeyError``).

    Args:
        column: the column whose code reads the rows.
        producers: every column of the pipeline → the column (or ``seed_dataset``) filling it
            (empty when unknown: the message then cannot say whether the pipeline has it).
        what: the code, as a message names it.
    """
    known = dict(producers)

    class ColumnRow(dict[str, Any]):
        __slots__ = ()

        def __missing__(self, key: object) -> Any:
            message = missing_message(key, list(self), column=column, producers=known, what=what)
            raise ColumnNotInRow(key, message)

    return ColumnRow
