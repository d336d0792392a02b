"""The user code a run's columns call, as ``metadata.json`` records it and a resume checks it.

A run records ``code_fingerprint``: column name to the fingerprint of the Python code the
column calls (its custom function, callable validator, Python tools; how it is computed is in
:mod:`gridloom.generators._code_fingerprint`). A resume computes it again and compares: a
column whose code changed since would write rows of the new code beside rows of the old, so
the resume is refused naming the columns — unless the caller accepts the change
(``--accept-code-change``), which appends to ``code_changes`` what changed, when, and which
row groups were written before, so the mix stays visible (``gridloom inspect`` shows it).

Runs recorded without ``code_fingerprint`` (written before it existed) are not checked; the
resume records the code's fingerprint from then on. A digest ``"unknown"`` (code without
source or bytecode, e.g. a builtin) matches only itself: a change there cannot be seen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from gridloom.errors import StorageError

from .._attrs import frozen
from ._metadata import now_iso

__all__ = [
    "Change",
    "CodeFingerprint",
    "check_code",
    "code_after_resume",
    "row_group_ranges",
]

logger = logging.getLogger("gridloom.storage")

#: A column's entry in a change record: its digest before and after (``None``: none).
Change = dict[str, dict[str, str | None]]


@frozen(kw_only=True)
class CodeFingerprint:
    """The fingerprint of the user code a run's columns call, and whether a resume may go on
    when it differs from the recorded one.

    Attributes:
        columns: column name to digest (columns calling no user code are left out).
        accept_change: resume anyway when a column's code changed, recording the change in
            ``metadata.json`` (``code_changes``) instead of refusing.
    """

    columns: Mapping[str, str]
    accept_change: bool = False


def _changed(recorded: Mapping[str, Any], now: Mapping[str, str]) -> Change:
    names = [*now, *(name for name in recorded if name not in now)]
    return {
        name: {"was": recorded.get(name), "now": now.get(name)}
        for name in names
        if recorded.get(name) != now.get(name)
    }


def _names(change: Change) -> str:
    return ", ".join(repr(name) for name in change)


def check_code(doc: Mapping[str, Any], out: object, code: CodeFingerprint | None) -> Change:
    """The columns whose code changed since the run in ``out`` (``doc``: its
    ``metadata.json``) recorded its fingerprint, with their digests then and now; empty when
    none did, when the run recorded none, or when ``code`` is ``None`` (not checked: a shard,
    whose driver checked).

    Raises:
        StorageError: some code changed and ``code`` does not accept it; the message names
            the columns and what to do.
    """
    recorded = doc.get("code_fingerprint")
    if code is None:
        return {}
    if not isinstance(recorded, dict):
        if code.columns:
            logger.info(
                "%s records no fingerprint of its columns' Python code (written before there"
                " was one): the code is not checked this time, and is recorded from now on",
                out,
            )
        return {}
    change = _changed(recorded, code.columns)
    if not change:
        return {}
    names = _names(change)
    it = "its" if len(change) == 1 else "their"
    if not code.accept_change:
        raise StorageError(
            f"cannot resume {out}: the Python code of column{'s' if len(change) > 1 else ''}"
            f" {names} changed since the run started (the rows already written came from the"
            f" code as it was; any edit of the file of the module defining a function counts,"
            f" comments included); revert {it} code, or start again with --overwrite"
            " (overwrite=True from Python) or in another output directory, or resume anyway"
            " with --accept-code-change (accept_code_change=True from Python), which records"
            " the change in metadata.json (code_changes; gridloom inspect shows it)"
        )
    logger.warning(
        "resuming %s with changed Python code in column(s) %s (accepted): the rows already"
        " written came from the old code; the change is recorded in metadata.json"
        " (code_changes)",
        out,
        names,
    )
    return change


def row_group_ranges(indices: Iterable[int]) -> list[list[int]]:
    """``indices`` as sorted ``[first, last]`` ranges: ``{0, 1, 2, 5}`` → ``[[0, 2], [5, 5]]``
    (a run's completed row groups are mostly one range, however many)."""
    ranges: list[list[int]] = []
    for index in sorted(indices):
        if ranges and ranges[-1][1] == index - 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ranges


def code_after_resume(
    doc: Mapping[str, Any],
    code: CodeFingerprint | None,
    change: Change,
    *,
    row_groups: Iterable[int],
    rows_written: int,
) -> tuple[dict[str, str] | None, list[dict[str, Any]]]:
    """What a resumed run records: the code fingerprint (the current one when computed, else
    the recorded one) and the ``code_changes`` history, with a record of ``change`` (accepted
    by :func:`check_code`) appended: when, the columns' digests before and after, and the row
    groups (``[first, last]`` ranges) and rows written before it."""
    history = list(doc.get("code_changes") or [])
    if change:
        history.append(
            {
                "at": now_iso(),
                "columns": change,
                "row_groups_before": row_group_ranges(row_groups),
                "rows_before": rows_written,
            }
        )
    if code is not None:
        return dict(code.columns), history
    recorded = doc.get("code_fingerprint")
    return (dict(recorded) if isinstance(recorded, dict) else None), history
