"""Plain values passed between the engine and the storage layer."""

from __future__ import annotations

from typing import Any

import attrs

from .._attrs import frozen

__all__ = ["ColumnCounts", "CorrectionCounts", "DropRecord", "RowGroupData"]


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@frozen(kw_only=True)
class DropRecord:
    """Why one row was dropped.

    Attributes:
        row_id: global id of the dropped row (0-based, across the whole run).
        column: the column whose generator failed and so dropped the row.
        error_type: short name of the error, usually the exception class name.
        message: human-readable reason.
    """

    row_id: int
    column: str
    error_type: str
    message: str


def _histogram(value: Any) -> tuple[int, ...]:
    out = tuple(int(n) for n in value)
    if any(n < 0 for n in out):
        raise ValueError(f"corrected counts must be >= 0, got {out}")
    return out


@frozen(kw_only=True)
class CorrectionCounts:
    """How a model column's answers fared against its checks (its validators, and for a
    structured column its format and schema), cell by cell.

    Attributes:
        first_try: cells whose first answer passed.
        corrected: a histogram: ``corrected[k - 1]`` cells passed after ``k`` follow-up turns
            (``k`` = 1 .. the column's ``max_correction_attempts``).
        rejected: cells whose every answer failed (their rows were dropped).
    """

    first_try: int = attrs.field(default=0, validator=_non_negative)
    corrected: tuple[int, ...] = attrs.field(default=(), converter=_histogram)
    rejected: int = attrs.field(default=0, validator=_non_negative)

    def __add__(self, other: CorrectionCounts) -> CorrectionCounts:
        if not isinstance(other, CorrectionCounts):
            return NotImplemented
        size = max(len(self.corrected), len(other.corrected))
        mine = self.corrected + (0,) * (size - len(self.corrected))
        theirs = other.corrected + (0,) * (size - len(other.corrected))
        return CorrectionCounts(
            first_try=self.first_try + other.first_try,
            corrected=tuple(a + b for a, b in zip(mine, theirs, strict=True)),
            rejected=self.rejected + other.rejected,
        )

    def as_dict(self) -> dict[str, Any]:
        """The counts as a plain, JSON-serialisable dict."""
        return {
            "first_try": self.first_try,
            "corrected": list(self.corrected),
            "rejected": self.rejected,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> CorrectionCounts:
        """Inverse of :meth:`as_dict`; raises ``KeyError``/``TypeError``/``ValueError``."""
        if not isinstance(raw, dict) or not isinstance(raw["corrected"], list):
            raise TypeError("corrections must be an object with a 'corrected' list")
        return cls(
            first_try=int(raw["first_try"]),
            corrected=tuple(int(n) for n in raw["corrected"]),
            rejected=int(raw["rejected"]),
        )


@frozen(kw_only=True)
class ColumnCounts:
    """Outcome counts of the cells of one column.

    Attributes:
        done: cells whose generator succeeded, in the rows written, or in dropped rows
            when the column is upstream of the one that failed (such cells had to run first).
        failed: cells whose generator failed, which dropped their row.
        dropped: the other cells of dropped rows: never run, or run before the drop (which of
            the two is a race, so they are counted alike and counts never depend on timing).
        skipped: cells left null, never run, because the column's ``skip_when`` held
            (counted in the same rows as ``done``).
        corrections: for a model column with checks (``validate_with``, or a structured
            column's own parse and schema check), how its answers fared; ``None`` for others.
        truncated: of the ``done`` cells of a model column, those whose answer was cut at
            ``max_tokens`` (``finish_reason: length``, Anthropic's ``max_tokens``) and kept
            (``on_truncated: keep``; an ``llm_agent`` cell with any turn cut counts once).
        truncated_dropped: of the ``failed`` cells, those whose answer was cut at
            ``max_tokens`` and not kept (``on_truncated: drop``, or ``retry`` out of
            attempts): ``AnswerTruncated``.
        truncated_retries: how many times the column's cells were asked again because
            their answer was cut (``on_truncated: retry``).
    """

    done: int = attrs.field(default=0, validator=_non_negative)
    failed: int = attrs.field(default=0, validator=_non_negative)
    dropped: int = attrs.field(default=0, validator=_non_negative)
    skipped: int = attrs.field(default=0, validator=_non_negative)
    corrections: CorrectionCounts | None = None
    truncated: int = attrs.field(default=0, validator=_non_negative)
    truncated_dropped: int = attrs.field(default=0, validator=_non_negative)
    truncated_retries: int = attrs.field(default=0, validator=_non_negative)

    def __add__(self, other: ColumnCounts) -> ColumnCounts:
        if not isinstance(other, ColumnCounts):
            return NotImplemented
        return ColumnCounts(
            done=self.done + other.done,
            failed=self.failed + other.failed,
            dropped=self.dropped + other.dropped,
            skipped=self.skipped + other.skipped,
            corrections=_sum_corrections(self.corrections, other.corrections),
            truncated=self.truncated + other.truncated,
            truncated_dropped=self.truncated_dropped + other.truncated_dropped,
            truncated_retries=self.truncated_retries + other.truncated_retries,
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the counts as a plain, JSON-serialisable dict (``corrections`` only for a
        column that has them, ``truncated`` and its kin only when not 0)."""
        out: dict[str, Any] = {
            "done": self.done,
            "failed": self.failed,
            "dropped": self.dropped,
            "skipped": self.skipped,
        }
        if self.corrections is not None:
            out["corrections"] = self.corrections.as_dict()
        for key in ("truncated", "truncated_dropped", "truncated_retries"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


def _sum_corrections(
    a: CorrectionCounts | None, b: CorrectionCounts | None
) -> CorrectionCounts | None:
    if a is None:
        return b
    return a if b is None else a + b


@frozen(kw_only=True)
class RowGroupData:
    """A finished row group, handed by the engine to a store to be written.

    Row group ``index`` covers the global row ids
    ``first_row_id .. first_row_id + num_rows - 1``; ``row_ids`` lists the rows
    that were kept (ascending), the others were dropped.

    Attributes:
        index: 0-based index of the row group.
        first_row_id: global id of the first row of the group.
        num_rows: rows the group was asked to produce (kept + dropped).
        row_ids: ids of the kept rows, ascending.
        columns: output column name to values, aligned with ``row_ids``.
        drops: one record per dropped row, saying which column failed and why.
        counts: per column outcome counts for this row group.
    """

    index: int = attrs.field(validator=_non_negative)
    first_row_id: int = attrs.field(validator=_non_negative)
    num_rows: int = attrs.field(validator=_non_negative)
    row_ids: list[int]
    columns: dict[str, list[Any]]
    drops: list[DropRecord] = attrs.field(factory=list)
    counts: dict[str, ColumnCounts] = attrs.field(factory=dict)
