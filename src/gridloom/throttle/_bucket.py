"""A token bucket for published rate limits (requests or tokens per minute); pure, clock injected.

The level refills at ``rate`` per second up to ``capacity``. :meth:`TokenBucket.reserve` takes
tokens at once — the level may go negative — and says when the taker may go: takers queue in
the order they reserved, without polling. :meth:`TokenBucket.debit` charges tokens after the
fact (a response's token usage); the debt delays the next reservations, by at most
:data:`MAX_DEBT_SECONDS`: one reply, however large its reported usage, never blocks for long.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["MAX_DEBT_SECONDS", "TokenBucket"]

#: The longest a debt charged after the fact may delay the next reservation, in seconds (a
#: minute: a per-minute budget's whole worth).
MAX_DEBT_SECONDS = 60.0


class TokenBucket:
    """Args:
    rate: tokens per second.
    capacity: the most tokens that can be spent at once after a quiet period (at least 1).
    clock: the current time in seconds.
    """

    def __init__(self, *, rate: float, capacity: float, clock: Callable[[], float]):
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self._clock = clock
        self._level = self.capacity
        self._updated = clock()

    @classmethod
    def per_minute(cls, amount: float, clock: Callable[[], float]) -> TokenBucket:
        """A bucket for a limit of ``amount`` per minute, allowing one second's worth at once."""
        return cls(rate=amount / 60.0, capacity=amount / 60.0, clock=clock)

    def _refill(self) -> float:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
        self._updated = now
        return now

    @property
    def level(self) -> float:
        """Tokens available now (negative while in debt)."""
        self._refill()
        return self._level

    def reserve(self, amount: float = 1.0) -> float:
        """Take ``amount`` tokens; returns the time at which the taker may proceed."""
        now = self._refill()
        self._level -= amount
        return now if self._level >= 0 else now + (-self._level) / self.rate

    def available_at(self) -> float:
        """When the level is back to zero (now, if it is not in debt)."""
        now = self._refill()
        return now if self._level >= 0 else now + (-self._level) / self.rate

    def debit(self, amount: float) -> None:
        """Charge ``amount`` tokens after the fact; the debt is capped at
        :data:`MAX_DEBT_SECONDS` worth of the rate (a non-finite or negative amount is
        ignored)."""
        if not math.isfinite(amount) or amount <= 0:
            return
        self._refill()
        self._level = max(self._level - amount, min(self._level, -self.rate * MAX_DEBT_SECONDS))
