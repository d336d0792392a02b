"""Drop reasons with an example each: what a run summary, ``preview`` and ``inspect`` show."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from .._attrs import frozen

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MESSAGE_CHARS", "DropExample", "DropTally", "summarize_drops"]

#: How much of an example's message is kept (the full message stays in ``dropped/``).
MESSAGE_CHARS = 500


def _shorten(message: str) -> str:
    if len(message) <= MESSAGE_CHARS:
        return message
    return message[: MESSAGE_CHARS - 1] + "…"


@frozen(kw_only=True)
class DropExample:
    """One drop reason (a column and an error type) and an example of it.

    Attributes:
        column: the column whose failure dropped the rows.
        error_type: the error's class name.
        rows: rows dropped for this reason.
        row_id: the first such row (lowest row group, then as recorded).
        message: that row's message, cut to :data:`MESSAGE_CHARS` characters.
    """

    column: str
    error_type: str
    rows: int
    row_id: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict."""
        return attrs.asdict(self)


class DropTally:
    """Counts drop records per reason and keeps the first one of each, as they are fed."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, str], tuple[int, str]] = {}
        self._rows: dict[tuple[str, str], int] = {}

    def add(self, column: str, error_type: str, row_id: int, message: str | None) -> None:
        """One drop record (``message`` may be left out when an example is already held)."""
        key = (column, error_type)
        self._rows[key] = self._rows.get(key, 0) + 1
        if key not in self._first:
            self._first[key] = (row_id, _shorten(message or ""))

    def add_table(self, table: pa.Table) -> None:
        """Every record of a drop table (columns ``row_id``, ``column``, ``error_type``,
        ``message``); messages are converted only for the records kept as examples."""
        columns = table.column("column").to_pylist()
        errors = table.column("error_type").to_pylist()
        row_ids = table.column("row_id").to_pylist()
        messages = table.column("message")
        for i, (column, error) in enumerate(zip(columns, errors, strict=True)):
            key = (str(column), str(error))
            if key in self._first:
                self._rows[key] += 1
            else:
                self.add(key[0], key[1], int(row_ids[i]), str(messages[i].as_py()))

    def by_column(self) -> dict[str, dict[str, DropExample]]:
        """The reasons, per column then error type, each with its example."""
        out: dict[str, dict[str, DropExample]] = {}
        for (column, error), (row_id, message) in self._first.items():
            out.setdefault(column, {})[error] = DropExample(
                column=column,
                error_type=error,
                rows=self._rows[(column, error)],
                row_id=row_id,
                message=message,
            )
        return out


def summarize_drops(tables: pa.Table | Iterable[pa.Table]) -> dict[str, dict[str, DropExample]]:
    """Drop reasons (per column, then error type) with an example each, from drop tables."""
    import pyarrow as pa

    tally = DropTally()
    for table in [tables] if isinstance(tables, pa.Table) else tables:
        tally.add_table(table)
    return tally.by_column()
