"""The Ray cluster as a sharded run's driver uses it (blocking calls: run them in threads).

Ray is imported here only, when a run asks for ``executor: ray``, so ``import gridloom`` never
pays for it. Every way the cluster cannot be used (Ray not installed, an address nobody
answers at, an output folder the other nodes do not see) is one :class:`ClusterError` line,
raised before any model request is sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from ..errors import ClusterError
from ..storage import Location
from ._shard import ShardJob, run_shard
from ._shards import ShardThrottle, SharedCeiling

__all__ = ["Board", "Cluster", "import_ray"]

log = logging.getLogger("gridloom")

#: Seconds ``ray.init`` may take to reach a cluster before the run gives up on it.
CONNECT_TIMEOUT_SECONDS = 30
#: Name of the probe file written to check that every node sees a local output folder.
_PROBE = ".gridloom-probe-"


def import_ray() -> ModuleType:
    """Ray, or one clear line saying how to install it.

    Raises:
        ClusterError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "executor 'ray' needs Ray, which is not installed here: pip install 'gridloom[ray]'"
        ) from None
    return ray


class Board:
    """The driver's board for one round of shards, a Ray actor: the queue of row groups the
    shards pull from (in index order, one at a time, so every shard stays busy until the
    queue is empty and the shards end together), which shard took which, and each shard's
    latest counts for the display; and, per model, the shards' one AIMD ceiling
    (:class:`~._shards.SharedCeiling`), whose share it hands back to each shard's report."""

    def __init__(self, specs: Sequence[Any] = ()) -> None:
        self._queue = list(reversed(specs))  # popped from the end: lowest index first
        self._taken: dict[int, list[Any]] = {}
        self._latest: dict[int, tuple[Any, Any]] = {}
        self._ceilings: dict[str, SharedCeiling] = {}

    def take(self, shard: int) -> Any:
        """The next row group for ``shard``, or ``None`` when none is left."""
        if not self._queue:
            return None
        spec = self._queue.pop()
        self._taken.setdefault(shard, []).append(spec)
        return spec

    def taken(self, shard: int) -> list[Any]:
        """The row groups ``shard`` took so far (a restarted shard takes them up again)."""
        return list(self._taken.get(shard, []))

    def push(
        self,
        shard: int,
        statistics: Any,
        models: Any,
        throttles: Mapping[str, ShardThrottle] | None = None,
    ) -> dict[str, int] | None:
        """Keep shard ``shard``'s latest counts; with its ``throttles`` (by alias), the cap
        each model's limiters of that shard should have now (else ``None``)."""
        self._latest[shard] = (statistics, models)
        if throttles is None:
            return None
        now = time.monotonic()
        caps: dict[str, int] = {}
        for alias, state in throttles.items():
            ceiling = self._ceilings.setdefault(alias, SharedCeiling())
            caps[alias] = ceiling.report(shard, state, now)
        return caps

    def ceilings(self) -> dict[str, int | None]:
        """Each model's shared ceiling (``None`` before its first refusal)."""
        return {alias: c.ceiling for alias, c in self._ceilings.items()}

    def read(self) -> dict[int, tuple[Any, Any]]:
        """Every shard's latest counts."""
        return dict(self._latest)


def _sees(path: str) -> bool:
    """Run on one node: whether the probe file at ``path`` is there."""
    return os.path.exists(path)


class Cluster:
    """A connection to a Ray cluster (made by :meth:`connect`, ended by :meth:`close`)."""

    def __init__(self, ray: ModuleType, address: str | None, started: bool) -> None:
        self._ray = ray
        self.address = address
        self._started = started
        self._shard_fn: Any = None

    @classmethod
    def connect(cls, address: str | None) -> Cluster:
        """Join the cluster at ``address`` (``None``: the one ``RAY_ADDRESS`` names, else a
        new one on this machine, stopped by :meth:`close`). A process already connected to
        Ray (the caller ran ``ray.init``) keeps its connection, and :meth:`close` leaves it.

        Raises:
            ClusterError: Ray is missing, or nothing answers at the address.
        """
        ray = import_ray()
        if ray.is_initialized():
            return cls(ray, address, started=False)
        target = address or os.environ.get("RAY_ADDRESS") or None
        if target is not None:
            _check_listening(target)
        # Bound how long Ray keeps knocking (it retries for minutes by default).
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(CONNECT_TIMEOUT_SECONDS))
        quiet = logging.getLogger("ray")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # e.g. "SIGTERM handler is not set": the run handles it
        try:
            ray.init(
                # Without an address, Ray would join a cluster it finds running here; the run
                # starts its own instead (``auto`` asks for the running one).
                address=target or "local",
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                logging_level=logging.WARNING,
            )
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            where = f"at {target}" if target else "on this machine"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"cannot reach a Ray cluster {where}: {first}") from None
        finally:
            quiet.setLevel(level)
        return cls(ray, address, started=True)

    # ------------------------------------------------------------------ what it offers

    def cpus(self) -> float:
        """CPUs the cluster has in all."""
        return float(self._ray.cluster_resources().get("CPU", 0.0))

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's live nodes."""
        return [n for n in self._ray.nodes() if n.get("Alive")]

    def check_shared(self, location: Location) -> None:
        """Refuse a local output folder that some node does not see: a probe file written
        here must be visible from a task on every node (a shared mount passes; a node's own
        disk does not). Object stores and other URIs are shared by nature.

        Raises:
            ClusterError: naming the folder and how many nodes cannot see it.
        """
        if location.local is None:
            return
        nodes = self.nodes()
        if len(nodes) < 2:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        location.local.mkdir(parents=True, exist_ok=True)
        probe = location.local / f"{_PROBE}{secrets.token_hex(6)}"
        probe.write_bytes(b"")
        try:
            sees = self._ray.remote(num_cpus=0)(_sees)
            refs = [
                sees.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                ).remote(str(probe))
                for n in nodes
            ]
            seen = self._ray.get(refs, timeout=CONNECT_TIMEOUT_SECONDS)
        finally:
            probe.unlink(missing_ok=True)
        blind = [
            n.get("NodeManagerAddress", "?") for n, ok in zip(nodes, seen, strict=True) if not ok
        ]
        if blind:
            raise ClusterError(
                f"output {location.display} is a local folder that {len(blind)} of the"
                f" cluster's {len(nodes)} nodes cannot see ({', '.join(blind[:3])}): write to a"
                " folder every node mounts, or to an object store (s3://, gs://, hdfs://)"
            )

    def board(self, specs: Sequence[Any]) -> Any:
        """A new board (a Ray actor using no CPU) queueing ``specs`` for the shards."""
        return self._ray.remote(num_cpus=0)(Board).remote(list(specs))

    def taken(self, board: Any, shard: int) -> list[Any]:
        """The row groups ``shard`` took from ``board`` (empty when it cannot be read)."""
        try:
            found: list[Any] = self._ray.get(board.taken.remote(shard), timeout=10)
        except Exception:  # a message must not hide the error it reports
            return []
        return found

    def read_board(self, board: Any) -> dict[int, tuple[Any, Any]]:
        """The board's latest counts (empty when it cannot be read now)."""
        try:
            found: dict[int, tuple[Any, Any]] = self._ray.get(board.read.remote(), timeout=10)
        except Exception:  # a display must not stop the run
            return {}
        return found

    def put(self, value: Any) -> Any:
        """``value`` in the cluster's object store, once: the reference every shard gets."""
        return self._ray.put(value)

    def submit(self, job: ShardJob, *, cpus: float, max_retries: int) -> Any:
        """Start ``job`` as a Ray task; its worker dying is retried ``max_retries`` times, an
        error it raises is not (it would only fail again)."""
        if self._shard_fn is None:
            self._shard_fn = self._ray.remote(run_shard)
        return self._shard_fn.options(
            num_cpus=cpus,
            max_retries=max_retries,
            retry_exceptions=False,
            name=f"gridloom-shard-{job.index}",
        ).remote(job)

    def wait(self, refs: Sequence[Any], timeout: float) -> list[Any]:
        """The refs of ``refs`` whose tasks ended within ``timeout`` seconds."""
        if not refs:
            return []
        ready, _ = self._ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        return list(ready)

    def result(self, ref: Any, job: ShardJob) -> dict[str, Any]:
        """What shard ``job``'s task returned.

        Raises:
            ClusterError: the task failed (it raised, or its worker kept dying), naming the
                shard and the cause.
        """
        try:
            report: dict[str, Any] = self._ray.get(ref)
        except Exception as exc:
            shard = job.describe(self.taken(job.board, job.index))
            raise ClusterError(f"{shard} failed: {_cause(exc)}") from None
        return report

    def cancel(self, refs: Sequence[Any]) -> None:
        """Stop the tasks of ``refs`` now (their committed row groups stay)."""
        for ref in refs:
            with contextlib.suppress(Exception):  # already ended
                self._ray.cancel(ref, force=True)

    def close(self) -> None:
        """Leave the cluster, when this connection joined it (a cluster it started on this
        machine stops with it)."""
        if self._started:
            self._ray.shutdown()


def _check_listening(address: str) -> None:
    """Refuse at once a ``host:port`` address where nothing accepts connections (Ray would
    retry for a long while before saying so); other forms (``auto``, ``ray://``, a
    ``local`` cluster) are left to Ray.

    Raises:
        ClusterError: the port refuses connections, or the host does not resolve.
    """
    if "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"cannot reach a Ray cluster at {address}: nothing answers there ({reason});"
            " start one with `ray start --head`, or check the address"
        ) from None


def _cause(exc: BaseException) -> str:
    """A failed task's cause in one line: the shard's own error when it raised one (a Ray
    ``RayTaskError`` wraps it), else what Ray says (a worker that kept dying)."""
    inner = getattr(exc, "cause", None)
    if isinstance(inner, BaseException):
        text = str(inner).strip()
        return f"{type(inner).__name__}: {text.splitlines()[0]}" if text else type(inner).__name__
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    name = type(exc).__name__
    return f"{name}: {lines[0][:500]}" if lines else name
