"""What a run leaves behind: its summary, its trace, and the one error it raises."""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..clients import ModelHandle
from ..engine import Scheduler
from ..storage import Location
from ..trace import (
    CHROME_TRACE_FILE,
    TRACE_FILE,
    TaskTracer,
    throttle_counters,
    with_origin,
    write_trace,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["is_interrupt", "leaves", "save_trace", "summarize", "unwrap", "write_trace_at"]

log = logging.getLogger("gridloom")


def summarize(
    scheduler: Scheduler, models: Mapping[str, ModelHandle], status: str, wall: float
) -> dict[str, Any]:
    """What this invocation did (a resumed run's earlier invocations are not included; the
    run-wide counts are kept by the store in metadata.json)."""
    stats = scheduler.statistics()
    return {
        "status": status,
        "invocation": {
            "wall_time": wall,
            "cells_done": stats.cells_done,
            "cells_failed": stats.cells_failed,
            "rows_dropped": stats.rows_dropped,
            "row_groups_written": stats.row_groups_written,
            "retries": stats.retries,
            "salvage_rounds": stats.salvage_rounds,
            "cells_salvaged": stats.cells_salvaged,
            # Rows of row groups in flight when the run stopped: not written, a resume redoes them.
            "rows_abandoned": stats.rows_abandoned,
            # Rows of those that had failed (a cell raised): dropped, but in no drop record.
            "rows_failed_unwritten": stats.rows_failed_unwritten,
        },
        "models": {alias: handle.usage().as_dict() for alias, handle in models.items()},
    }


async def save_trace(
    tracer: TaskTracer | None,
    output: Path | Location | None,
    models: Mapping[str, ModelHandle],
) -> pa.Table | None:
    """The run's trace as a table, also written to ``output`` (if any) as ``trace.parquet``
    and ``trace.json`` (for Perfetto, with the counter tracks of ``models``' throttles); spans
    still open (the run was cut short) are marked ``cancelled``. The table's schema metadata
    records the run's start on the trio clock (``trace.ORIGIN_KEY``)."""
    if tracer is None:
        return None
    for span in tracer.spans:
        if not span.status:
            span.status = "cancelled"
    if tracer.overflow:
        log.warning(
            "the trace kept %d task spans; %d more were not kept",
            len(tracer.spans),
            tracer.overflow,
        )
    table = with_origin(tracer.table(), tracer.origin)
    if output is not None:
        usage = {alias: handle.usage().as_dict() for alias, handle in models.items()}
        write = functools.partial(
            write_trace_at,
            output,
            table,
            counters=throttle_counters(usage, origin=tracer.origin),
            metadata={"spans_not_kept": tracer.overflow},
        )
        await trio.to_thread.run_sync(write)
    return table


def write_trace_at(output: Path | Location, table: pa.Table, **options: Any) -> None:
    """:func:`~gridloom.trace.write_trace` to a run directory or to any location (a remote
    one's files are written in a temp folder, then each put in one piece); blocking."""
    if isinstance(output, Location) and output.local is not None:
        output = output.local
    if isinstance(output, Path):
        write_trace(output, table, **options)
        return
    with tempfile.TemporaryDirectory(prefix="gridloom-trace-") as tmp:
        write_trace(Path(tmp), table, **options)
        for name in (TRACE_FILE, CHROME_TRACE_FILE):
            output.write_bytes(name, (Path(tmp) / name).read_bytes())


def is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error grouped in it) is a Ctrl-C or a cancellation."""
    if isinstance(exc, KeyboardInterrupt | trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(is_interrupt(e) for e in exc.exceptions)
    return False


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def unwrap(exc: BaseException) -> BaseException:
    """The error a caller should see: nurseries wrap errors in exception groups, but a run
    stops for one reason. A Ctrl-C wins; else a lone error (with its traceback) is raised as
    itself; several different errors stay grouped."""
    found = leaves(exc)
    for leaf in found:
        if isinstance(leaf, KeyboardInterrupt):
            return leaf
    real = [leaf for leaf in found if not isinstance(leaf, trio.Cancelled)]
    if len(real) == 1:
        return real[0]
    return exc
