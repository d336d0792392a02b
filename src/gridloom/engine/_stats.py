"""What the scheduler counts, and the frozen snapshot of it that progress, traces and tests read."""

from __future__ import annotations

from .._attrs import frozen

__all__ = ["Counters", "NodeProgress", "SchedulerStatistics"]


@frozen(kw_only=True)
class NodeProgress:
    """Cells of one node (a column, or a multi-output generator) so far.

    Attributes:
        name: the node's name; outputs: the columns it fills.
        done: cells (rows, for a batch node) generated.
        failed: cells whose failure dropped their row.
        skipped: cells left null because the column's ``skip_when`` held.
    """

    name: str
    outputs: tuple[str, ...]
    done: int
    failed: int
    skipped: int = 0


@frozen(kw_only=True)
class SchedulerStatistics:
    """A snapshot of the scheduler (read by progress, traces and tests).

    ``nodes`` gives per node progress in execution order; the other fields are run-wide.
    """

    row_groups_in_flight: int
    row_groups_written: int
    tasks_submitted: int
    tasks_waiting_on_model: int
    tasks_ready: int
    cells_done: int
    cells_failed: int
    cells_skipped: int = 0
    rows_dropped: int
    retries: int
    cells_deferred: int
    salvage_rounds: int
    cells_salvaged: int
    rows_abandoned: int
    #: Rows dropped (a cell failed) in row groups the run stopped without writing: counted in
    #: ``rows_dropped`` but in no drop record, as their row groups are generated again on
    #: resume.
    rows_failed_unwritten: int = 0
    nodes: tuple[NodeProgress, ...] = ()
    peak_row_groups_in_flight: int
    peak_tasks_submitted: int
    peak_tasks_waiting_on_model: int


class Counters:
    """The scheduler's running counts, shared by its parts (mutable; only
    :meth:`~gridloom.engine.Scheduler.statistics` reads them, into a snapshot)."""

    __slots__ = (
        "cells_done",
        "cells_failed",
        "cells_salvaged",
        "cells_skipped",
        "deferred",
        "in_flight",
        "node_done",
        "node_failed",
        "node_skipped",
        "peak_groups",
        "peak_llm",
        "peak_submitted",
        "retries",
        "rows_abandoned",
        "rows_dropped",
        "rows_failed_unwritten",
        "salvage_rounds",
        "written",
    )

    def __init__(self, nodes: int) -> None:
        self.in_flight = 0  #: row groups admitted and not yet released
        self.written = 0  #: row groups handed to the store
        self.cells_done = 0
        self.cells_failed = 0
        self.rows_dropped = 0
        self.retries = 0
        self.node_done = [0] * nodes
        self.node_failed = [0] * nodes
        self.cells_skipped = 0
        self.node_skipped = [0] * nodes
        self.rows_abandoned = 0
        self.rows_failed_unwritten = 0  #: rows dropped in row groups left unwritten
        self.deferred = 0  #: tasks sleeping before a retry
        self.salvage_rounds = 0
        self.cells_salvaged = 0
        self.peak_groups = 0
        self.peak_submitted = 0
        self.peak_llm = 0
