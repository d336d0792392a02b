"""The controller's history of ``(time, limit, in_flight)``, kept in flat arrays.

An entry is written on every change of either, so two per request (admitted, answered): a run
of a million requests writes two million. As tuples in a deque these were objects the cyclic
collector tracks, each counting towards its next collection — whose pause grows with all that
is young in flight. In three fixed-length arrays of machine numbers they are no objects at all.
"""

from __future__ import annotations

from array import array

__all__ = ["History"]


class History:
    """The newest ``capacity`` entries, oldest dropped first.

    Args:
        capacity: entries kept (at least 1).
        time, limit: the first entry (nothing in flight).
    """

    __slots__ = (
        "_capacity",
        "_flights",
        "_limits",
        "_next",
        "_times",
        "last_in_flight",
        "last_limit",
    )

    def __init__(self, capacity: int, *, time: float, limit: int):
        if capacity < 1:
            raise ValueError(f"a history keeps at least 1 entry, got {capacity}")
        self._capacity = capacity
        self._times = array("d")
        self._limits = array("q")
        self._flights = array("q")
        #: Where the next entry goes once the arrays are full (the oldest entry).
        self._next = 0
        #: The newest entry's limit and requests in flight.
        self.last_limit = limit
        self.last_in_flight = 0
        self.append(time, limit, 0)

    def append(self, time: float, limit: int, in_flight: int) -> None:
        """Add an entry, dropping the oldest when ``capacity`` are kept."""
        if len(self._times) < self._capacity:
            self._times.append(time)
            self._limits.append(limit)
            self._flights.append(in_flight)
        else:
            at = self._next
            self._times[at] = time
            self._limits[at] = limit
            self._flights[at] = in_flight
            self._next = (at + 1) % self._capacity
        self.last_limit = limit
        self.last_in_flight = in_flight

    def __len__(self) -> int:
        return len(self._times)

    def entries(self) -> list[tuple[float, int, int]]:
        """The kept entries, oldest first."""
        at = self._next
        times, limits, flights = self._times, self._limits, self._flights
        order = [*range(at, len(times)), *range(at)]
        return [(times[i], limits[i], flights[i]) for i in order]

    def sample(self, points: int) -> list[tuple[float, int, int]]:
        """At most ``points`` kept entries, oldest first, evenly spread over them and the
        newest always among them: the ``k``-th of ``n`` entries is taken for ``k`` in
        ``int(i * n / points)``, ``i < points - 1``. Only those are read, not the whole
        history (a report's plot wants a thousand of up to 100,000)."""
        if points < 1:
            raise ValueError(f"a sample has at least 1 point, got {points}")
        count = len(self._times)
        if count <= points:
            return self.entries()
        step = count / points
        picked = [int(i * step) for i in range(points - 1)] + [count - 1]
        at, times, limits, flights = self._next, self._times, self._limits, self._flights
        # Entry k (oldest first) is at (at + k) % count: the arrays are full once they wrap.
        slots = [(at + k) % count for k in picked]
        return [(times[i], limits[i], flights[i]) for i in slots]
