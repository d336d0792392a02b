"""Where a run executes: in this process, or sharded over a Ray cluster."""

from __future__ import annotations

import attrs

from .._attrs import frozen
from ._validators import schema_keywords, text

__all__ = ["RayConfig"]


@schema_keywords(minimum=1)
def _optional_positive(
    _inst: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be >= 1 or null, got {value!r}")


@frozen(kw_only=True)
class RayConfig:
    """How a run with ``executor: ray`` is sharded (``pip install 'gridloom[ray]'``).

    The run's row groups still to generate wait in one queue, in index order; each of the
    ``shards`` is a Ray task running gridloom's own engine on the row groups it pulls from that
    queue, one at a time as it finishes the last (so every shard stays busy until the queue
    is empty), and writing them straight to the run's output (a path every node sees, or ``s3://``, ``gs://``,
    ``hdfs://``). Each model's ``max_parallel_requests`` stays a cap for the whole run: every
    shard gets its share of it.

    Attributes:
        address: the cluster to join (``ray://host:10001``, ``host:6379``, ``auto`` for the
            one already running on this machine); ``null`` joins the cluster ``RAY_ADDRESS``
            names, else starts a new one on this machine for the run (stopped after it).
        shards: how many shards (Ray tasks) share the run; ``null``: one per CPU of the
            cluster (``cpus_per_shard`` each), no more than there are row groups to generate
            or than the smallest ``max_parallel_requests`` allows.
        cpus_per_shard: CPUs Ray reserves for each shard.
        max_retries: how often Ray restarts a shard whose worker process or node died; the
            restarted shard skips the row groups it had committed.
        progress_seconds: how often each shard reports its counts to the driver's display.
    """

    address: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(text),
    )
    shards: int | None = attrs.field(default=None, validator=_optional_positive)
    cpus_per_shard: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))
    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    progress_seconds: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))
