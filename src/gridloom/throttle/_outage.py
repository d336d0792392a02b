"""Telling an outage from a capacity boundary: the refusal streaks of an AIMD controller.

Pure bookkeeping (no clock, no limit of its own): :class:`~gridloom.throttle.AIMDController`
reports every capacity refusal and every success, and applies the answers. Rules:

* A **streak** begins with a capacity refusal after a success (or before the first) and ends
  with the next success. Its first refusal records the limit and the ceiling in force, before
  that refusal changes them: what the provider was known to accept.
* The streak becomes an **outage** at a refusal of a request sent after the streak began
  that leaves nothing in flight: the provider refused a fresh request too, and answered every
  request it held with no success (refused, or failed otherwise). At a capacity boundary a
  request is refused only while others the provider accepted are in flight; they were in
  flight when it was sent, after the streak began, so they end — with a success, which ends
  the streak — before its refusal can find nothing in flight: a boundary never becomes an
  outage, however the answers are ordered or delayed.
* The success that ends an outage hands the recorded limit and ceiling back to the
  controller, which climbs back to them (``"outage-recovery"``).
"""

from __future__ import annotations

__all__ = ["Streak", "StreakWatch"]


class Streak:
    """Capacity refusals with no success in between, and what was in force before them.

    Args:
        first_id: the id the next admitted ticket gets (tickets below it were sent before).
        limit: the limit to climb back to after an outage.
        ceiling: the ceiling to restore after an outage (``None``: none was known).
        to_cap: a start-up slow start was under way: the recovery resumes it up to the cap.
    """

    __slots__ = ("ceiling", "first_id", "limit", "outage", "to_cap")

    def __init__(self, *, first_id: int, limit: int, ceiling: int | None, to_cap: bool):
        self.first_id = first_id
        self.limit = limit
        self.ceiling = ceiling
        self.to_cap = to_cap
        #: Whether the streak has shown an outage (see the module docstring).
        self.outage = False


class StreakWatch:
    """The current refusal streak of one controller, if any."""

    __slots__ = ("streak",)

    def __init__(self) -> None:
        self.streak: Streak | None = None

    def begin(self, first_id: int, *, limit: int, ceiling: int | None, to_cap: bool) -> None:
        """Begin a streak (see :class:`Streak` for the arguments)."""
        self.streak = Streak(first_id=first_id, limit=limit, ceiling=ceiling, to_cap=to_cap)

    def describe(self) -> str:
        """The log line for a streak just found an outage."""
        streak = self.streak
        assert streak is not None
        aim = "the cap" if streak.to_cap else f"limit {streak.limit}, ceiling {streak.ceiling}"
        return (
            f"refused with no success since the first refusal: an outage ({aim} kept for its end)"
        )

    def refused(self, ticket_id: int, in_flight: int) -> bool:
        """A refusal of ``ticket_id`` (already released, ``in_flight`` left) within the
        current streak; whether it *made* the streak an outage (only the first such refusal
        returns true)."""
        streak = self.streak
        if streak is None or streak.outage or ticket_id < streak.first_id or in_flight:
            return False
        streak.outage = True
        return True

    def succeeded(self) -> Streak | None:
        """A success ends the streak; the streak if it was an outage, else ``None``."""
        streak, self.streak = self.streak, None
        return streak if streak is not None and streak.outage else None

    @property
    def in_outage(self) -> bool:
        """Whether the current streak is an outage."""
        return self.streak is not None and self.streak.outage
