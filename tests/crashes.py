"""Stores opened by tests that stand for processes: opening a run again stands for a new process,
so the writers opened before it are taken to have ended (their lock let go, as the operating
system lets go of a dead process's lock; the stores stay readable and writable)."""

from __future__ import annotations

from typing import TypeVar

from gridloom.storage._runstore import RunStore

__all__ = ["as_a_new_process", "opened"]

S = TypeVar("S", bound=RunStore)

_writers: list[RunStore] = []


def as_a_new_process() -> None:
    """End (in the lock's eyes) every writer opened through :func:`opened` so far."""
    while _writers:
        _writers.pop().close()


def opened(store: S) -> S:
    """Record ``store``, a writer standing for a process."""
    _writers.append(store)
    return store
