"""A run's plan: its row groups, walked lazily, and the top-up groups of ``fill_to_target``."""

from __future__ import annotations

import bisect
import functools
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from .._attrs import frozen
from ..config import RunConfig
from ..engine import RowGroupSpec
from ..errors import ConfigError
from ..storage import RowGroupStore

__all__ = [
    "MAX_NUM_RECORDS",
    "Outcome",
    "TopUpRound",
    "announced_top_ups",
    "check_num_records",
    "iter_row_groups",
    "plan_row_groups",
    "shortfall",
    "store_outcomes",
    "top_up_rounds",
]

log = logging.getLogger("gridloom")


#: The most rows one run (or preview) may have: 10**12, a trillion. Far beyond any dataset
#: generated cell by cell (three years at 10,000 rows/s), it keeps every count exact where it
#: meets floating point (``allow_drops`` and ``fill_budget`` shares, rates, JSON readers that
#: hold numbers as doubles: below 2**53), and every row id, top-up row groups included, far
#: inside the int64 of the row id column.
MAX_NUM_RECORDS = 10**12


def check_num_records(num_records: int) -> None:
    """Refuse a run of fewer than one row, or more than :data:`MAX_NUM_RECORDS`, or a count
    that is not a whole number.

    Raises:
        ConfigError: ``num_records`` is not an int from 1 to :data:`MAX_NUM_RECORDS`.
    """
    if isinstance(num_records, bool) or not hasattr(num_records, "__index__"):
        raise ConfigError(
            f"num_records must be a whole number of rows, got {type(num_records).__name__}"
            f" {num_records!r}"
        )
    if num_records < 1:
        raise ConfigError(f"num_records must be >= 1, got {num_records}")
    if num_records > MAX_NUM_RECORDS:
        raise ConfigError(
            f"num_records must be at most {MAX_NUM_RECORDS:,} (10**12), got {num_records:,}"
        )


def plan_row_groups(num_records: int, row_group_size: int) -> list[RowGroupSpec]:
    """Split ``num_records`` rows into row groups of ``row_group_size`` (the last may be short).

    A list, for looking at a plan; a run walks it lazily (:func:`iter_row_groups`), so its
    size never depends on ``num_records``.
    """
    check_num_records(num_records)
    return list(iter_row_groups(num_records, row_group_size))


def iter_row_groups(
    num_records: int, row_group_size: int, skip: frozenset[int] = frozenset()
) -> Iterator[RowGroupSpec]:
    """The row groups of ``num_records`` rows, one at a time, but those in ``skip``."""
    for index, start in enumerate(range(0, num_records, row_group_size)):
        if index not in skip:
            rows = min(row_group_size, num_records - start)
            yield RowGroupSpec(index=index, first_row_id=start, num_rows=rows)


def shortfall(written: int, total: int, allow_drops: float) -> dict[str, Any] | None:
    """How far a run that generated every row group falls short of ``total`` rows, when that
    is more than ``allow_drops`` (a share of ``total``) lets go missing; else ``None``."""
    missing = total - written
    allowed = math.floor(allow_drops * total + 1e-9)
    if missing <= allowed:
        return None
    return {"missing": missing, "allowed": allowed, "allow_drops": allow_drops}


#: A held row group's outcome: the rows it covers (kept and dropped), and the rows it kept.
Outcome = tuple[int, int]


@frozen(kw_only=True)
class TopUpRound:
    """One round of top-up row groups (``fill_to_target``): ``rows`` rows cut into groups of
    ``row_group_size`` (the last may be short) from index ``first_index`` on.

    A round's size follows from the outcome of the planned row groups and of the rounds
    before it only, so an interrupted round is the same round on resume: the groups not in
    ``held`` are generated again with their indices and sizes (:meth:`missing`).

    Attributes:
        number: the round's number, from 1.
        first_index: index of the round's first row group.
        rows: rows the whole round covers.
        row_group_size: rows per row group.
        held: indices of the round's groups already held (on resume: found on disk).
    """

    number: int
    first_index: int
    rows: int
    row_group_size: int
    held: frozenset[int] = frozenset()

    @property
    def end(self) -> int:
        """Index after the round's last row group (where the next round starts)."""
        return self.first_index + -(-self.rows // self.row_group_size)

    def size_of(self, index: int) -> int:
        """Rows the round's row group ``index`` covers."""
        offset = (index - self.first_index) * self.row_group_size
        return min(self.row_group_size, self.rows - offset)

    def groups(self) -> Iterator[RowGroupSpec]:
        """Every row group of the round, one at a time."""
        size = self.row_group_size
        for index in range(self.first_index, self.end):
            yield RowGroupSpec(index=index, first_row_id=index * size, num_rows=self.size_of(index))

    def missing(self) -> Iterator[RowGroupSpec]:
        """The round's row groups not held yet, one at a time."""
        return (spec for spec in self.groups() if spec.index not in self.held)

    @property
    def rows_missing(self) -> int:
        """Rows the round's groups not held yet cover."""
        return self.rows - sum(self.size_of(index) for index in self.held)


def top_up_rounds(
    outcomes: Callable[[], Mapping[int, Outcome]],
    total: int,
    row_group_size: int,
    budget: float,
) -> Iterator[TopUpRound]:
    """The top-up rounds that replace dropped rows (``fill_to_target``), each with row groups
    still to generate, one at a time: a round yielded is expected held (``outcomes``) when
    the caller asks for the next.

    ``outcomes()`` gives each held row group's :data:`Outcome` by index; it is read once
    before the first round and again after each round yielded. Round 1 starts after the
    planned row groups and covers the rows they dropped; each next round starts after the
    one before and covers the rows still missing, as long as the budget of
    ``ceil(budget * total)`` extra rows (all rounds together) allows. A round's size depends
    only on the planned groups and the rounds before it, never on what part of the round
    itself is held, so a resumed run (whose store holds some rounds and part of one) walks
    the very rounds an uninterrupted run generates: the rounds it holds are passed over,
    the round it stopped in is yielded with just its missing groups. The walk stops when no
    rows are missing, the budget is spent, or a round yielded is still not wholly held
    afterwards (the run was cut short).
    """
    planned = -(-total // row_group_size)
    allowed = math.ceil(budget * total)
    held = outcomes()
    written = sum(kept for index, (_covered, kept) in held.items() if index < planned)
    extra = 0
    start, number = planned, 0
    tops = sorted(index for index in held if index >= planned)
    while (wanted := min(total - written, allowed - extra)) > 0:
        number += 1
        rnd = TopUpRound(
            number=number, first_index=start, rows=wanted, row_group_size=row_group_size
        )
        inside = tops[bisect.bisect_left(tops, rnd.first_index) : bisect.bisect_left(tops, rnd.end)]
        if len(inside) < rnd.end - rnd.first_index:
            yield attrs.evolve(rnd, held=frozenset(inside))
            held = outcomes()
            tops = sorted(index for index in held if index >= planned)
            if any(index not in held for index in range(rnd.first_index, rnd.end)):
                log.warning("top-up round %d is not complete: no further round is planned", number)
                return
        for index in range(rnd.first_index, rnd.end):
            covered, kept = held[index]
            written += kept
            extra += covered
        start = rnd.end


def store_outcomes(store: RowGroupStore) -> dict[int, Outcome]:
    """Each row group ``store`` holds: the rows it covers, and the rows it kept."""
    kept = store.rows_kept()
    return {index: (covered, kept[index]) for index, covered in store.rows_covered().items()}


def announced_top_ups(
    store: RowGroupStore,
    total: int,
    run: RunConfig,
    add_rows: Callable[[int], None] | None = None,
) -> Iterator[Iterator[RowGroupSpec]]:
    """The row groups still to generate of each :func:`top_up_rounds` round, a round at a
    time, when ``run.fill_to_target`` asks for them; each round is said in the log and told
    to the display (``add_rows``). A round yielded is expected written to ``store`` when the
    caller asks for the next."""
    if not run.fill_to_target:
        return
    rounds = top_up_rounds(
        functools.partial(store_outcomes, store), total, run.row_group_size, run.fill_budget
    )
    for rnd in rounds:
        log.info(
            "%d rows were dropped: generating %d more (fill_to_target, round %d)",
            total - store.rows_written,
            rnd.rows_missing,
            rnd.number,
        )
        if add_rows is not None:
            add_rows(rnd.rows_missing)
        yield rnd.missing()
