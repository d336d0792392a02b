"""The start-up ramp of an AIMD controller: a limit rising linearly from 1 to the cap.

Pure arithmetic: ``min(cap, 1 + floor((cap - 1) * elapsed / seconds))``, the cap from the
ramp's end on.
"""

from __future__ import annotations

import math

__all__ = ["floor", "next_step_at", "ramp_limit"]

#: Absorbs binary rounding in ``floor``: ``10 * 1.3`` is 12.999…, and the limit meant is 13.
_TOLERANCE = 1e-9


def floor(value: float) -> int:
    """``math.floor`` that forgives binary rounding just below an integer."""
    return math.floor(value + _TOLERANCE)


def ramp_limit(now: float, *, start: float, seconds: float, cap: int) -> int:
    """The ramp's limit at ``now`` (``seconds`` above 0, ``cap`` above 1)."""
    if now >= start + seconds:
        return cap
    elapsed = max(0.0, now - start)
    return min(cap, 1 + floor((cap - 1) * elapsed / seconds))


def next_step_at(current: int, *, start: float, seconds: float, cap: int) -> float:
    """When the ramp's limit first exceeds ``current`` (it has by then, with no margin)."""
    end = start + seconds
    at = min(end, start + current * seconds / (cap - 1))
    for _ in range(64):  # a few ulps at most; the ramp's end is the safe fallback
        if at >= end or ramp_limit(at, start=start, seconds=seconds, cap=cap) > current:
            return at
        at = math.nextafter(at, math.inf)
    return end
