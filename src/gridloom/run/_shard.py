"""One shard of a sharded run, as the Ray task on a worker runs it.

A shard is a range of the run's row groups. Its task runs gridloom's own engine (a
:class:`~gridloom.run.Run` under ``trio.run``) on the range, with each model's request cap cut
to the shard's share, and writes each finished row group straight to the run's output with a
:class:`~gridloom.storage.ManifestStore` in its ``shard`` role (parts, then a commit entry;
never ``metadata.json``, which the driver owns). A shard restarted by Ray after its worker
died skips the row groups it had committed. Its progress goes to the driver's board (a Ray
actor) every ``run.ray.progress_seconds``; its summary is the task's return value.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from ..clients import ModelHandle
from ..config import PipelineConfig
from ..engine import RowGroupSpec, SchedulerStatistics
from ..progress import model_progress

__all__ = ["ShardJob", "ShardReporter", "run_shard"]


@attrs.frozen(kw_only=True)
class ShardJob:
    """What one shard is asked to do (sent to its Ray task).

    Attributes:
        index: the shard's number in its round (0-based), as messages name it.
        count: shards in the round.
        config: the pipeline as the shard runs it (:func:`~._shards.shard_config`).
        base_dir: the folder the config's relative paths resolve against.
        output: the run's output (a path every node sees, or a filesystem URI).
        specs: the row groups of the shard.
        num_records: rows of the whole run.
        config_hash: the run's configuration hash (of the unsplit pipeline).
        seed: the run's seed.
        board: the driver's progress board (a Ray actor handle), or ``None``.
    """

    index: int
    count: int
    config: PipelineConfig
    base_dir: str | None
    output: str
    specs: tuple[RowGroupSpec, ...]
    num_records: int
    config_hash: str
    seed: int
    board: Any = None

    def describe(self) -> str:
        """``shard 2 of 4 (row groups 10-19)``, for messages."""
        if not self.specs:
            return f"shard {self.index} of {self.count}"
        first, last = self.specs[0].index, self.specs[-1].index
        span = f"row group {first}" if first == last else f"row groups {first}-{last}"
        return f"shard {self.index} of {self.count} ({span})"


class ShardReporter:
    """A shard's progress service: its scheduler snapshot and model lines, pushed to the
    driver's board every ``interval`` seconds and once more when the shard ends."""

    def __init__(
        self,
        board: Any,
        shard: int,
        statistics: Callable[[], SchedulerStatistics],
        models: Mapping[str, ModelHandle],
        interval: float,
    ) -> None:
        self._board = board
        self._shard = shard
        self._statistics = statistics
        self._models = dict(models)
        self._interval = interval
        self._scope = trio.CancelScope()

    def _push(self) -> None:
        lines = [model_progress(handle) for handle in self._models.values()]
        self._board.push.remote(self._shard, self._statistics(), lines)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Push now, report started, then push every ``interval`` until :meth:`stop`."""
        self._push()
        with self._scope:
            task_status.started()
            while True:
                await trio.sleep(self._interval)
                self._push()

    def stop(self) -> None:
        """Stop pushing, after a last push of the final counts."""
        self._scope.cancel()
        self._push()

    def finish(self, status: str) -> None:
        """Nothing to show: the driver shows the run's end."""

    def add_rows(self, rows: int) -> None:
        """Nothing to do: a shard replaces no dropped rows (the driver does)."""


def shard_report(job: ShardJob, planned: Sequence[RowGroupSpec], result: Any) -> dict[str, Any]:
    """What a shard's task returns to the driver: how it ended, this attempt's counts and
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
        "row_groups": [spec.index for spec in job.specs],
        "row_groups_generated": [spec.index for spec in planned],
        "trace": result.trace,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def run_shard(job: ShardJob) -> dict[str, Any]:
    """The body of a shard's Ray task: the shard's run, start to end (see the module)."""
    from ._run import Run  # the run layer's entry, imported in the worker

    return trio.run(Run(job.config, base_dir=job.base_dir).shard, job)
