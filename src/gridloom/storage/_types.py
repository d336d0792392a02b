"""Plain values passed between the engine and the storage layer."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["ColumnCounts", "DropRecord", "RowGroupData"]


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen(kw_only=True)
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


@attrs.frozen(kw_only=True)
class ColumnCounts:
    """Outcome counts of the cells of one column.

    Attributes:
        done: cells whose generator succeeded.
        failed: cells whose generator failed, which dropped their row.
        dropped: cells never run because their row was dropped upstream.
        skipped: cells left null, never run, because the column's ``skip_when`` held (their
            rows go on).
    """

    done: int = attrs.field(default=0, validator=_non_negative)
    failed: int = attrs.field(default=0, validator=_non_negative)
    dropped: int = attrs.field(default=0, validator=_non_negative)
    skipped: int = attrs.field(default=0, validator=_non_negative)

    def __add__(self, other: ColumnCounts) -> ColumnCounts:
        if not isinstance(other, ColumnCounts):
            return NotImplemented
        return ColumnCounts(
            done=self.done + other.done,
            failed=self.failed + other.failed,
            dropped=self.dropped + other.dropped,
            skipped=self.skipped + other.skipped,
        )

    def as_dict(self) -> dict[str, int]:
        """Return the counts as a plain, JSON-serialisable dict."""
        return {
            "done": self.done,
            "failed": self.failed,
            "dropped": self.dropped,
            "skipped": self.skipped,
        }


@attrs.frozen(kw_only=True)
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
