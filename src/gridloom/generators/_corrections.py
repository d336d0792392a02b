"""What a model column's correction rounds leave behind: a log of how many each cell took.

A model column whose answers are checked (its ``validate_with`` validators; a structured
column's parse and schema check) may send an answer back for correction, up to its
``max_correction_attempts``, all inside one cell. The generator records the outcome of each
cell in its :class:`CorrectionLog`, keyed by row id: the engine takes a row group's entries
when the group is finished (:meth:`CorrectionLog.take`) and stores the counts with the group,
so they are checkpointed with it and survive a resume exactly. A cell tried again (a model
error, a salvage round) overwrites its entry: the attempt that ended counts.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ..clients._types import CUT_FINISH_REASONS
from .base import CellContext

__all__ = ["REJECTED", "TRUNCATED_REASONS", "AnswerCheck", "CorrectionLog", "TruncationLog"]

#: Checks one answer value of a model column: the validators' messages (empty: valid).
AnswerCheck = Callable[[Any, CellContext], Awaitable[list[str]]]

#: The finish reasons of an answer cut short (at ``max_tokens`` or a full context window).
TRUNCATED_REASONS = CUT_FINISH_REASONS

#: The entry of a cell whose every answer was rejected.
REJECTED = -1


class CorrectionLog:
    """Per row id, how many follow-up turns a model column's cell took (0: its first answer
    passed) or :data:`REJECTED`.

    Args:
        limit: the column's ``max_correction_attempts`` (the histogram's length).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._rounds: dict[int, int] = {}
        self._lock = threading.Lock()

    def record(self, row_id: int, rounds: int) -> None:
        """The cell of ``row_id`` ended after ``rounds`` follow-ups (or :data:`REJECTED`)."""
        with self._lock:
            self._rounds[row_id] = rounds

    def take(self, first_row_id: int, num_rows: int) -> dict[int, int]:
        """Remove and return the entries of rows ``first_row_id .. + num_rows - 1``."""
        with self._lock:
            if len(self._rounds) <= num_rows:
                keys = [r for r in self._rounds if first_row_id <= r < first_row_id + num_rows]
            else:
                end = first_row_id + num_rows
                keys = [r for r in range(first_row_id, end) if r in self._rounds]
            return {row: self._rounds.pop(row) for row in keys}


class TruncationLog:
    """The row ids whose model cell kept an answer cut at ``max_tokens`` (truncated), taken
    by the engine with the row group like a :class:`CorrectionLog`; a cell tried again
    overwrites its entry. Also how many times each cell failed, to be asked again, because its
    answer was cut (``on_truncated: retry``, :meth:`asked_again`): those add up over
    attempts."""

    def __init__(self) -> None:
        self._rows: set[int] = set()
        self._again: dict[int, int] = {}
        self._lock = threading.Lock()

    def asked_again(self, row_id: int) -> None:
        """The cell of ``row_id`` failed, to be asked again, because its answer was cut."""
        with self._lock:
            self._again[row_id] = self._again.get(row_id, 0) + 1

    def take_retries(self, first_row_id: int, num_rows: int) -> dict[int, int]:
        """Remove and return how often each row of ``first_row_id .. + num_rows - 1`` failed
        to be asked again (the last of a row dropped for a cut answer was not)."""
        with self._lock:
            end = first_row_id + num_rows
            rows = [r for r in self._again if first_row_id <= r < end]
            return {r: self._again.pop(r) for r in rows}

    def record(self, row_id: int, truncated: bool) -> None:
        """The cell of ``row_id`` ended with an answer that was (or was not) truncated."""
        with self._lock:
            if truncated:
                self._rows.add(row_id)
            else:
                self._rows.discard(row_id)

    def take(self, first_row_id: int, num_rows: int) -> set[int]:
        """Remove and return the rows of ``first_row_id .. + num_rows - 1`` truncated."""
        with self._lock:
            end = first_row_id + num_rows
            taken = {r for r in self._rows if first_row_id <= r < end}
            self._rows -= taken
            return taken
