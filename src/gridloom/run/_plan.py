"""A run's plan: its row groups, walked lazily, and the top-up groups of ``fill_to_target``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

from ..config import RunConfig
from ..engine import RowGroupSpec
from ..errors import ConfigError
from ..storage import RowGroupStore

__all__ = [
    "MAX_NUM_RECORDS",
    "announced_top_up",
    "check_num_records",
    "iter_row_groups",
    "plan_row_groups",
    "shortfall",
    "top_up",
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


def top_up(
    store: RowGroupStore, total: int, row_group_size: int, budget: float
) -> tuple[int, Iterator[RowGroupSpec]] | None:
    """Row groups that replace dropped rows (``fill_to_target``), after the planned ones: as
    many rows as are missing, within the budget of ``budget * total`` extra rows overall.
    Their row count, and the groups one at a time; ``None`` when there are none."""
    planned = -(-total // row_group_size)
    covered = store.rows_covered()
    extra = sum(rows for index, rows in covered.items() if index >= planned)
    wanted = min(total - store.rows_written, math.ceil(budget * total) - extra)
    if wanted <= 0:
        return None
    start = max([planned, *(index + 1 for index in covered)])

    def groups() -> Iterator[RowGroupSpec]:
        for n, offset in enumerate(range(0, wanted, row_group_size)):
            index = start + n
            rows = min(row_group_size, wanted - offset)
            yield RowGroupSpec(index=index, first_row_id=index * row_group_size, num_rows=rows)

    return wanted, groups()


def announced_top_up(
    store: RowGroupStore,
    total: int,
    run: RunConfig,
    add_rows: Callable[[int], None] | None = None,
) -> Iterator[RowGroupSpec] | None:
    """The next round of :func:`top_up` groups when ``run.fill_to_target`` asks for one, said
    in the log and told to the display (``add_rows``); ``None`` when there is none."""
    if not run.fill_to_target:
        return None
    extra = top_up(store, total, run.row_group_size, run.fill_budget)
    if extra is None:
        return None
    rows, groups = extra
    log.info(
        "%d rows were dropped: generating %d more (fill_to_target)",
        total - store.rows_written,
        rows,
    )
    if add_rows is not None:
        add_rows(rows)
    return groups
