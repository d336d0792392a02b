"""Which seed row each dataset row takes when the seed is streamed from parquet row groups.

The kept seed rows (after ``index_range`` and ``partition``) are cut into *blocks*: the parts
of the parquet row groups that hold them, in file order. A streamed seed reads a block whole
(through a small cache), so these orders keep the rows one run row group takes within a few
blocks:

- ``shuffled`` (:class:`WindowedShuffle`): per cycle (one pass over the rows), a seeded
  permutation of the blocks; the permuted blocks are taken :data:`WINDOW_BLOCKS` at a time
  (a *window*), and within each window the rows are permuted by a keyed bijection (a Feistel
  network over the window's row numbers, with cycle walking), so no table of the window's
  rows is ever held. Every row appears exactly once per cycle.
- ``replacement`` (:func:`replacement_draws`): per run row group, :data:`WINDOW_BLOCKS` blocks
  drawn (with replacement) with probability proportional to their rows; each run row picks
  one of them uniformly, then one of its rows uniformly. So each run row takes each seed row
  with probability ``1 / N`` exactly, and a run row group reads at most that many blocks.

Both are pure functions of the run seed and the row (or row group) numbers: the same under any
concurrency, on a resumed run, and on every machine.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Sequence

from .base import derive_rng

__all__ = ["WINDOW_BLOCKS", "WindowedShuffle", "feistel_index", "replacement_draws"]

#: Blocks per shuffle window, and blocks one run row group draws from with replacement.
WINDOW_BLOCKS = 4
#: Cycle plans kept per shuffle (row groups in flight rarely span more cycles).
_PLANS_KEPT = 4
_ROUNDS = 4
_MASK64 = (1 << 64) - 1


def _mix(value: int) -> int:
    """A 64-bit integer hash (the finaliser of splitmix64)."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def feistel_index(keys: Sequence[int], size: int, index: int) -> int:
    """Position ``index`` of a keyed permutation of ``range(size)``.

    A balanced Feistel network over the smallest even number of bits covering ``size`` is a
    bijection of that power of two; applying it again until the value falls below ``size``
    (cycle walking) restricts it to a bijection of ``range(size)``. The domain is under
    ``4 * size``, so a few walks on average.
    """
    if not 0 <= index < size:
        raise IndexError(f"index {index} is outside range({size})")
    half = max(1, ((size - 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    value = index
    while True:
        left, right = value >> half, value & mask
        for key in keys:
            left, right = right, left ^ (_mix(key ^ right) & mask)
        value = (left << half) | right
        if value < size:
            return value


class _CyclePlan:
    """One cycle's block order, cut into windows."""

    def __init__(self, blocks: Sequence[tuple[int, int]], seed: int, node: str, cycle: int):
        order = list(range(len(blocks)))
        derive_rng(seed, node, "blocks", cycle).shuffle(order)
        self.windows: list[list[tuple[int, int]]] = [
            [blocks[b] for b in order[first : first + WINDOW_BLOCKS]]
            for first in range(0, len(order), WINDOW_BLOCKS)
        ]
        sizes = [sum(size for _start, size in window) for window in self.windows]
        self.starts = [0, *itertools.accumulate(sizes)]
        self._seed, self._node, self._cycle = seed, node, cycle
        self._keys: dict[int, tuple[int, ...]] = {}

    def keys(self, window: int) -> tuple[int, ...]:
        keys = self._keys.get(window)
        if keys is None:
            rng = derive_rng(self._seed, self._node, "window", self._cycle, window)
            keys = self._keys[window] = tuple(rng.getrandbits(64) for _ in range(_ROUNDS))
        return keys

    def row(self, position: int) -> int:
        window = bisect.bisect_right(self.starts, position) - 1
        start = self.starts[window]
        local = feistel_index(self.keys(window), self.starts[window + 1] - start, position - start)
        for block_start, size in self.windows[window]:
            if local < size:
                return block_start + local
            local -= size
        raise AssertionError("a window's rows are its blocks' rows")  # pragma: no cover


class WindowedShuffle:
    """The ``shuffled`` order of a streamed seed (see the module's docstring).

    Args:
        blocks: ``(first row, rows)`` of each block, in order, covering ``range(N)``.
        node: the generator's name, mixed into the random streams.
    """

    def __init__(self, blocks: Sequence[tuple[int, int]], node: str):
        self._blocks = tuple(blocks)
        self._node = node
        self._lock = threading.Lock()
        self._plans: dict[tuple[int, int], _CyclePlan] = {}

    def _plan(self, seed: int, cycle: int) -> _CyclePlan:
        key = (seed, cycle)
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                plan = _CyclePlan(self._blocks, seed, self._node, cycle)
                if len(self._plans) >= _PLANS_KEPT:
                    del self._plans[next(iter(self._plans))]
                self._plans[key] = plan
            return plan

    def row(self, seed: int, cycle: int, position: int) -> int:
        """The seed row (from 0) at ``position`` of cycle ``cycle`` under run seed ``seed``."""
        return self._plan(seed, cycle).row(position)


def replacement_draws(
    blocks: Sequence[tuple[int, int]], seed: int, node: str, row_group: int, count: int
) -> list[int]:
    """``count`` seed rows drawn with replacement for run row group ``row_group``: one per row
    of the row group, in order (see the module's docstring)."""
    rng = derive_rng(seed, node, "replacement", row_group)
    weights = list(itertools.accumulate(size for _start, size in blocks))
    chosen = rng.choices(blocks, cum_weights=weights, k=min(WINDOW_BLOCKS, len(blocks)))
    draws = []
    for _ in range(count):
        start, size = chosen[rng.randrange(len(chosen))]
        draws.append(start + rng.randrange(size))
    return draws
