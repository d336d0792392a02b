"""One shard of a sharded run, as the Ray task on a worker runs it.

A shard runs gridloom's own engine (a :class:`~gridloom.run.Run` under ``trio.run``) with each
model's request cap cut to the shard's share, on the row groups it pulls one at a time from
the driver's board (a Ray actor queueing the round's row groups in index order: every shard
stays busy until the queue is empty, so the shards end together however unevenly their
throttles share a provider). It writes each finished row group straight to the run's output
with a :class:`~gridloom.storage.ManifestStore` in its ``shard`` role (parts, then a commit
entry; never ``metadata.json``, which the driver owns). A shard restarted by Ray after its
worker died first takes up the row groups it had pulled, skipping those it had committed.
Its progress goes to the board every ``run.ray.progress_seconds``; its summary is the task's
return value.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from .._attrs import frozen
from ..clients import ModelHandle
from ..config import PipelineConfig
from ..engine import RowGroupSpec, SchedulerStatistics
from ..progress import model_progress
from ._shards import ShardThrottle

__all__ = ["ShardJob", "ShardReporter", "ray_get_taken", "run_shard", "shard_report"]


@frozen(kw_only=True)
class ShardJob:
    """What one shard is asked to do (sent to its Ray task).

    Attributes:
        index: the shard's number in its round (0-based), as messages name it.
        count: shards in the round.
        config: the pipeline as the shard runs it (:func:`~._shards.shard_config`).
        base_dir: the folder the config's relative paths resolve against.
        output: the run's output (a path every node sees, or a filesystem URI).
        num_records: rows of the whole run.
        config_hash: the run's configuration hash (of the unsplit pipeline).
        seed: the run's seed.
        board: the driver's progress board (a Ray actor handle), or ``None``.
        cache: use the response cache as the config says (``False``: ``--no-cache``).
        seed_tables: the config's in-memory seed table, ``memory://`` path → a reference to
            the table in Ray's object store (put there once by the driver); the worker
            registers it before the shard's run loads the config.
    """

    index: int
    count: int
    config: PipelineConfig
    base_dir: str | None
    output: str
    num_records: int
    config_hash: str
    seed: int
    board: Any = None
    cache: bool = True
    seed_tables: Mapping[str, Any] = attrs.field(factory=dict)

    def describe(self, taken: Sequence[RowGroupSpec] = ()) -> str:
        """``shard 2 of 4 (row groups 10-19)``, for messages (``taken``: its row groups)."""
        if not taken:
            return f"shard {self.index} of {self.count}"
        indices = sorted(spec.index for spec in taken)
        first, last = indices[0], indices[-1]
        if first == last:
            span = f"row group {first}"
        elif last - first + 1 == len(indices):
            span = f"row groups {first}-{last}"
        else:
            span = "row groups " + ", ".join(str(i) for i in indices[:8])
            span += ", ..." if len(indices) > 8 else ""
        return f"shard {self.index} of {self.count} ({span})"

    async def pull(
        self, done: frozenset[int], generated: list[RowGroupSpec]
    ) -> AsyncIterator[RowGroupSpec]:
        """The shard's row groups: those it took before a restart and has not committed
        (``done``), then one at a time from the board until its queue is empty; each one
        yielded is added to ``generated``. Ray's blocking calls run in a worker thread."""
        import ray

        async def ask(call: Any) -> Any:
            return await trio.to_thread.run_sync(ray.get, call)

        for spec in await ask(self.board.taken.remote(self.index)):
            if spec.index not in done:
                generated.append(spec)
                yield spec
        while (spec := await ask(self.board.take.remote(self.index))) is not None:
            generated.append(spec)
            yield spec


def peak_in_flight(history: Sequence[tuple[float, int, int]], since: float) -> int:
    """The most requests in flight at once from ``since`` on, from a controller's history
    (``(time, limit, in_flight)`` after each change, oldest first)."""
    peak = 0
    for when, _limit, in_flight in reversed(history):
        peak = max(peak, in_flight)
        if when <= since:  # the state in force at ``since``
            break
    return peak


class ShardReporter:
    """A shard's progress service: its scheduler snapshot and model lines, pushed to the
    driver's board every ``interval`` seconds and once more when the shard ends.

    With ``coordinate`` (a round of more than one shard) each push also carries, per model,
    the shard's share of its cap, its peak in flight since the last push and its 429s; the
    board answers with the cap each model's limiters should have now (their share of the
    shards' one learnt ceiling, :class:`~._shards.SharedCeiling`), set here. The answer is
    awaited in a worker thread, never on the trio loop.
    """

    def __init__(
        self,
        board: Any,
        shard: int,
        statistics: Callable[[], SchedulerStatistics],
        models: Mapping[str, ModelHandle],
        interval: float,
        *,
        coordinate: bool = False,
    ) -> None:
        self._board = board
        self._shard = shard
        self._statistics = statistics
        self._models = dict(models)
        self._interval = interval
        self._scope = trio.CancelScope()
        self._coordinate = coordinate and any(h.throttles for h in self._models.values())
        # Each alias's share of its cap (the smallest of the aliases sharing a limiter).
        self._shares = {
            alias: min(
                [h.config.max_parallel_requests, *(t.controller.cap for t in h.throttles.values())]
            )
            for alias, h in self._models.items()
        }
        self._since = trio.current_time()

    def _throttles(self, active: bool) -> dict[str, ShardThrottle] | None:
        if not self._coordinate:
            return None
        since, self._since = self._since, trio.current_time()
        out: dict[str, ShardThrottle] = {}
        for alias, handle in self._models.items():
            if not handle.throttles:
                continue
            limiters = handle.throttles.values()
            out[alias] = ShardThrottle(
                cap=self._shares[alias],
                peak=sum(peak_in_flight(t.controller.history(), since) for t in limiters),
                rate_limited=sum(t.statistics().rate_limited for t in limiters),
                active=active,
                limit=max(t.controller.limit for t in limiters),
            )
        return out

    def _push(self, active: bool = True) -> Any:
        lines = [model_progress(handle) for handle in self._models.values()]
        throttles = self._throttles(active)
        return self._board.push.remote(self._shard, self._statistics(), lines, throttles)

    def _apply(self, caps: Mapping[str, int] | None) -> None:
        """Set the board's caps (a limiter shared by aliases takes the smallest)."""
        if not caps:
            return
        wanted: dict[int, tuple[Any, int]] = {}
        for alias, cap in caps.items():
            handle = self._models.get(alias)
            if handle is None:
                continue
            cap = max(1, min(int(cap), self._shares[alias]))
            for limiter in handle.throttles.values():
                seen = wanted.get(id(limiter))
                wanted[id(limiter)] = (limiter, cap if seen is None else min(seen[1], cap))
        for limiter, cap in wanted.values():
            if cap != limiter.controller.cap or limiter.controller.ceiling is not None:
                limiter.set_cap(cap, lift=True)

    async def _exchange(self) -> None:
        ref = self._push()
        if not self._coordinate:
            return
        import ray

        try:
            caps: Any = await trio.to_thread.run_sync(functools.partial(ray.get, ref, timeout=10))
        except Exception:  # a late answer only delays the next cap
            return
        self._apply(caps)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Push now, report started, then push every ``interval`` until :meth:`stop`."""
        self._push()
        with self._scope:
            task_status.started()
            while True:
                await trio.sleep(self._interval)
                await self._exchange()

    def stop(self) -> None:
        """Stop pushing, after a last push of the final counts (the shard is then no longer
        one of those sharing the models)."""
        self._scope.cancel()
        self._push(active=False)

    def finish(self, status: str) -> None:
        """Nothing to show: the driver shows the run's end."""

    def add_rows(self, rows: int) -> None:
        """Nothing to do: a shard replaces no dropped rows (the driver does)."""


def shard_report(
    job: ShardJob, taken: Sequence[RowGroupSpec], generated: Sequence[RowGroupSpec], result: Any
) -> dict[str, Any]:
    """What a shard's task returns to the driver: how it ended, the row groups it took
    (``taken``, over its attempts) and generated (this attempt), this attempt's counts and
    model usage, and where it ran."""
    extras = result.extras
    return {
        "shard": job.index,
        # The run's completeness is the driver's to judge (it sees every shard's rows).
        "status": "stopped" if result.status == "stopped" else "done",
        "stop_reason": result.stop_reason,
        "stop": extras.get("stop"),
        "invocation": extras.get("invocation", {}),
        "models": extras.get("models", {}),
        # Its share of each model's request cap (a shard that found the queue empty used none).
        "caps": {m.alias: m.max_parallel_requests for m in job.config.models},
        "row_groups": sorted(spec.index for spec in taken),
        "row_groups_generated": sorted(spec.index for spec in generated),
        "trace": result.trace,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def ray_get_taken(job: ShardJob) -> list[RowGroupSpec]:
    """The row groups ``job``'s shard took from its board, over all its attempts (blocking)."""
    import ray

    taken: list[RowGroupSpec] = ray.get(job.board.taken.remote(job.index))
    return taken


def run_shard(job: ShardJob) -> dict[str, Any]:
    """The body of a shard's Ray task: the shard's run, start to end (see the module)."""
    from ._run import Run  # the run layer's entry, imported in the worker

    if job.seed_tables:
        import ray

        from ..config._seed_tables import register

        for path, ref in job.seed_tables.items():
            register(path, ray.get(ref))
    return trio.run(Run(job.config, base_dir=job.base_dir, cache=job.cache).shard, job)
