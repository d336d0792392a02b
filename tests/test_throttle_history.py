"""The controller's history in flat arrays (``gridloom.throttle._history``) keeps what a
``deque(maxlen=capacity)`` of tuples would, in the same order, and makes no objects the cyclic
collector tracks."""

from __future__ import annotations

import gc
from array import array
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.throttle._history import History

_ENTRY = st.tuples(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(0, 2**62),
    st.integers(0, 2**62),
)


@given(capacity=st.integers(1, 12), entries=st.lists(_ENTRY, max_size=60))
def test_history_is_a_bounded_deque_of_entries(
    capacity: int, entries: list[tuple[float, int, int]]
) -> None:
    history = History(capacity, time=-1.0, limit=3)
    model: deque[tuple[float, int, int]] = deque([(-1.0, 3, 0)], maxlen=capacity)
    assert history.entries() == list(model)
    for time, limit, in_flight in entries:
        history.append(time, limit, in_flight)
        model.append((time, limit, in_flight))
        assert (history.last_limit, history.last_in_flight) == (limit, in_flight)
        assert len(history) == len(model)
    assert history.entries() == list(model)


def test_appending_tracks_no_object() -> None:
    """However many entries a history was given, it holds three arrays of machine numbers
    (which refer to no object) and plain numbers: no object per entry for the cyclic
    collector to count and walk."""
    history = History(1_000, time=0.0, limit=1)
    for i in range(5_000):  # past the capacity: the ring wraps
        history.append(float(i), i % 7, i % 11)
    held = [ref for ref in gc.get_referents(history) if ref is not History]
    arrays = [ref for ref in held if isinstance(ref, array)]
    assert len(arrays) == 3
    assert all(gc.get_referents(a) == [array] for a in arrays)  # its type alone
    assert all(isinstance(ref, int | float | array) for ref in held)
    assert history.entries()[-1] == (4999.0, 4999 % 7, 4999 % 11)


def test_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        History(0, time=0.0, limit=1)


def _spread(entries: list[tuple[float, int, int]], points: int) -> list[tuple[float, int, int]]:
    """The sample's definition over the whole list: every entry when they fit, else the
    entries at ``int(i * n / points)`` for ``i < points - 1`` and the newest."""
    if len(entries) <= points:
        return entries
    step = len(entries) / points
    return [entries[int(i * step)] for i in range(points - 1)] + [entries[-1]]


@given(
    capacity=st.integers(1, 40),
    entries=st.lists(_ENTRY, max_size=120),
    points=st.integers(1, 50),
)
def test_a_sample_is_the_entries_spread_evenly(
    capacity: int, entries: list[tuple[float, int, int]], points: int
) -> None:
    """Before and after the ring wraps, a sample is what spreading :meth:`entries` would
    give: at most ``points``, oldest first, the newest always last."""
    history = History(capacity, time=-1.0, limit=3)
    for entry in entries:
        history.append(*entry)
    sample = history.sample(points)
    assert sample == _spread(history.entries(), points)
    assert len(sample) == min(points, len(history))
    assert sample[-1] == history.entries()[-1]


def test_a_sample_of_no_point_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 point"):
        History(4, time=0.0, limit=1).sample(0)
