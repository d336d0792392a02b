"""Python's cyclic garbage collector, tuned for the length of a run.

A run makes a few dozen short-lived objects per cell (requests, responses, coroutine frames,
trio's bookkeeping) and keeps many long-lived ones (the row groups in flight, the imported
libraries). With the interpreter's default thresholds (700, 10, 10) the young generation is
collected every few cells and, every hundred or so collections, the whole heap is traversed:
profiling 10,000 rows of three LLM columns put a quarter of the CPU per cell in the collector,
almost all of it in full collections over objects that never become garbage.

So, while a run goes on, the objects that existed before it are frozen (:func:`gc.freeze`: never
traversed again) and the thresholds are raised to :data:`THRESHOLDS` (never lowered), so a
young collection happens every tens of thousands of allocations and a full one rarely. Reference
cycles are still collected, in larger, rarer batches: memory stays bounded. When the outermost
run ends, the thresholds the process had are restored and the frozen objects are handed back to
the collector. ``GRIDLOOM_GC=default`` leaves the collector alone (for a host program that tunes
it itself).
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterator

__all__ = ["THRESHOLDS", "collector_for_run"]

#: The collector's thresholds during a run (each at least the process's own).
THRESHOLDS = (50_000, 20, 20)

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def collector_for_run() -> Iterator[None]:
    """Tune the collector for the block (nested and concurrent runs: the outermost one
    tunes and restores)."""
    global _depth, _saved
    if os.environ.get("GRIDLOOM_GC", "").strip().lower() == "default":
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*(max(a, b) for a, b in zip(_saved, THRESHOLDS, strict=True)))
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                gc.unfreeze()
                _saved = None
