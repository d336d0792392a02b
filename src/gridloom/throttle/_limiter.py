"""The trio side of the AIMD controller: a ``trio.CapacityLimiter`` whose size follows it.

Lowering the limiter's ``total_tokens`` lets requests in flight finish; raising it wakes waiters,
first come first served. A cooldown (after a 429) holds new admissions until the controller's
``blocked_until`` with a single ``trio.sleep_until`` — no polling. A start-up ramp raises the
limit at the exact moments its steps fall due (:meth:`AdaptiveLimiter.run_ramp`), and a slow
start doubles it at the moments its doublings fall due, or when the limit is first used after
one fell due (:meth:`AdaptiveLimiter.run_slow_start`).
"""

from __future__ import annotations

import trio

from ._controller import AIMDController, ControllerStatistics, Ticket, Transition
from ._holds import server_hold

__all__ = ["AdaptiveLimiter"]


class AdaptiveLimiter:
    """Admits requests for one (provider, model, domain) as its controller allows.

    Args:
        controller: the pure AIMD state machine (its clock must be trio's).
        rampup_seconds: the controller's ramp length, to schedule ramp steps (0: no ramp).
    """

    def __init__(self, controller: AIMDController, *, rampup_seconds: float = 0.0):
        self.controller = controller
        self._limiter = trio.CapacityLimiter(max(1, controller.limit))
        self._borrowers: dict[int, object] = {}
        self._rampup = rampup_seconds
        # Set when a slow start's doubling, already due, waits for the limit to be used.
        self._used: trio.Event | None = None

    def _sync(self) -> None:
        self._limiter.total_tokens = max(1, self.controller.limit)

    async def acquire(self) -> Ticket:
        """Wait for admission; returns the ticket to settle with one of the release methods."""
        controller = self.controller
        while True:
            if trio.current_time() < controller.blocked_until:  # a cooldown or a hold
                await trio.sleep_until(controller.blocked_until)
            borrower = object()
            try:  # a free slot is taken without a checkpoint: the request has plenty
                self._limiter.acquire_on_behalf_of_nowait(borrower)
            except trio.WouldBlock:
                await self._limiter.acquire_on_behalf_of(borrower)
            if trio.current_time() < controller.blocked_until or not controller.can_admit():
                # A 429 arrived (cooldown) or the limit fell while we waited: queue again.
                self._limiter.release_on_behalf_of(borrower)
                continue
            ticket = controller.admit()
            self._borrowers[ticket.id] = borrower
            self._wake()  # a doubling waiting for the limit to be used may be due now
            return ticket

    def _wake(self) -> None:
        if self._used is not None:
            self._used.set()
            self._used = None

    def _settle(self, ticket: Ticket, transition: Transition | None) -> None:
        borrower = self._borrowers.pop(ticket.id)
        if transition is not None:
            self._sync()
            self._wake()  # a slow start may have ended
        self._limiter.release_on_behalf_of(borrower)

    def succeeded(self, ticket: Ticket) -> None:
        """The request succeeded."""
        self._settle(ticket, self.controller.on_success(ticket))

    def rate_limited(self, ticket: Ticket, retry_after: float | None) -> float:
        """The provider refused for capacity (429, or a capacity status: 502/503/529).

        Returns:
            When the refused request may be sent again (trio time): after its
            ``Retry-After`` (else the cooldown; at most
            :data:`~gridloom.throttle.MAX_SERVER_HOLD_SECONDS`), even where the others go on
            (a refused probe steps the limit back with no cooldown for them).
        """
        self._settle(ticket, self.controller.on_rate_limited(ticket, retry_after))
        config = self.controller.config
        wait = config.cooldown_seconds if retry_after is None else server_hold(retry_after)
        return max(self.controller.blocked_until, trio.current_time() + wait)

    def released(self, ticket: Ticket) -> None:
        """The request ended otherwise (another error, cancellation): free its slot only."""
        self._settle(ticket, self.controller.on_release(ticket))

    def hold_until(self, when: float, reason: str) -> None:
        """Admit nothing before ``when`` (trio time), leaving the limit alone; waiters already
        queued re-check the hold when they get a slot."""
        self.controller.hold_until(when, reason)

    def set_cap(self, cap: int, *, lift: bool = False) -> None:
        """Change the cap (the smallest ``max_parallel_requests`` of the aliases sharing it,
        or a sharded run's share: ``lift``, see :meth:`AIMDController.set_cap`)."""
        if self.controller.set_cap(cap, lift=lift) is not None:
            self._sync()

    async def run_ramp(self) -> None:
        """During a start-up ramp, raise the limiter at each ramp step; returns when it ends."""
        controller = self.controller
        cap = controller.cap
        if self._rampup <= 0 or cap <= 1:
            return
        while controller.statistics().ramping:
            self._sync()
            current = controller.limit
            if current >= cap:
                break
            step = controller.next_ramp_step_at()
            if step is None:
                break
            await trio.sleep_until(step)
        self._sync()

    async def run_slow_start(self) -> None:
        """During a slow start, raise the limiter at each doubling; returns when it ends.

        A doubling falls due every period; if the limit has not been used by then, it waits
        for the admission that uses it (it doubles there and then)."""
        controller = self.controller
        while True:
            self._sync()
            at = controller.next_slow_start_step_at()
            if at is None:
                return
            if at > trio.current_time():
                await trio.sleep_until(at)
                continue
            self._used = used = trio.Event()
            await used.wait()

    def statistics(self) -> ControllerStatistics:
        """The controller's snapshot (limit, in flight, ceiling, cooldown, counters)."""
        return self.controller.statistics()
