"""Virtual time that also waits for worker threads.

trio's ``autojump_clock`` jumps as soon as every task is blocked — including a task waiting
for a worker thread, which would let virtual time leap ahead while a synchronous generator is
still running. ``run_virtual`` drives a ``MockClock`` by hand instead: it jumps to the next
deadline only when every task is blocked *and* every worker thread is itself parked in
:func:`sleep_in_thread` (waiting on virtual time), never while a thread runs real code.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
import trio.lowlevel
import trio.testing

T = TypeVar("T")

#: Any run that is still going after this much virtual time is deadlocked.
DEADLOCK_AFTER = 1e6


#: Worker threads now waiting in sleep_in_thread (changed only on the trio side).
_parked = 0


async def _parked_sleep(seconds: float) -> None:
    # from_thread.run executes this in the trio task that started the thread, so the count
    # changes on the trio side: before the sleep begins and after it ends.
    global _parked
    _parked += 1
    try:
        await trio.sleep(seconds)
    finally:
        _parked -= 1


def sleep_in_thread(seconds: float) -> None:
    """From a worker thread started by ``trio.to_thread``: let ``seconds`` of virtual time pass."""
    trio.from_thread.run(_parked_sleep, seconds)


async def _drive(clock: trio.testing.MockClock) -> None:
    while True:
        await trio.testing.wait_all_tasks_blocked()
        if trio.testing.active_thread_count() > _parked:
            # A thread is running real code: look again after a moment of real time.
            await trio.testing.wait_all_tasks_blocked(cushion=0.0005)
            continue
        delay = trio.lowlevel.current_statistics().seconds_to_next_deadline
        if math.isinf(delay):  # pragma: no cover - nothing left that time could wake
            await trio.sleep_forever()
        clock.jump(delay)


def run_virtual(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn()`` in a fresh trio run on a thread-aware virtual clock."""
    clock = trio.testing.MockClock()
    result: list[T] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drive, clock)
            with trio.fail_after(DEADLOCK_AFTER):
                result.append(await fn())
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)
    return result[0]
