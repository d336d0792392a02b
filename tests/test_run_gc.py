"""A run tunes Python's cyclic collector for its length and restores it afterwards."""

from __future__ import annotations

import gc
import threading

import pytest

from gridloom.run._gc import THRESHOLDS, collector_for_run


@pytest.fixture(autouse=True)
def _restore() -> object:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_thresholds_raised_during_the_block_and_restored_after() -> None:
    """Inside, each threshold is at least THRESHOLDS' and the old objects are frozen; after,
    the process's own thresholds are back and nothing stays frozen."""
    gc.set_threshold(700, 10, 10)
    with collector_for_run():
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_higher_thresholds_of_the_host_are_kept() -> None:
    """A threshold the host set higher than gridloom's is never lowered."""
    gc.set_threshold(100_000, 5, 1000)
    with collector_for_run():
        assert gc.get_threshold() == (100_000, THRESHOLDS[1], 1000)
    assert gc.get_threshold() == (100_000, 5, 1000)


def test_nested_and_concurrent_runs_restore_once_at_the_outermost() -> None:
    """The outermost of overlapping runs restores; an inner one ending leaves it tuned."""
    gc.set_threshold(700, 10, 10)
    inner_done = threading.Event()
    with collector_for_run():

        def other_run() -> None:
            with collector_for_run():
                pass
            inner_done.set()

        thread = threading.Thread(target=other_run)
        thread.start()
        thread.join()
        assert inner_done.is_set()
        assert gc.get_threshold() == THRESHOLDS
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_when_the_block_raises() -> None:
    """An error leaving the run restores the collector too."""
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError), collector_for_run():
        raise RuntimeError("boom")
    assert gc.get_threshold() == (700, 10, 10)


def test_gridloom_gc_default_leaves_the_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """GRIDLOOM_GC=default: a host that tunes the collector itself keeps its settings."""
    monkeypatch.setenv("GRIDLOOM_GC", "default")
    gc.set_threshold(700, 10, 10)
    with collector_for_run():
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0
