"""Sharding a run (pure): each shard's share of the models' request caps, the checks on the
shard count, and the shards' counts merged into one view of the run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._attrs import frozen
from ..config import PipelineConfig
from ..engine import NodeProgress, SchedulerStatistics
from ..errors import ConfigError
from ..progress import ModelProgress

__all__ = [
    "ShardThrottle",
    "SharedCeiling",
    "cap_share",
    "check_shards",
    "merge_models",
    "merge_statistics",
    "merge_summaries",
    "shard_config",
]


def cap_share(cap: int, shards: int, shard: int) -> int:
    """Shard ``shard``'s share of a cap of ``cap`` concurrent requests split among ``shards``:
    the shares sum to ``cap`` and differ by at most one."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in [0, {shards}), got {shard}")
    base, extra = divmod(cap, shards)
    return base + (1 if shard < extra else 0)


@frozen(kw_only=True)
class ShardThrottle:
    """What a shard reports of one model's throttle each ``run.ray.progress_seconds``.

    Attributes:
        cap: the shard's share of the model's ``max_parallel_requests`` (its hard bound).
        peak: the most requests it had in flight at once since its previous report.
        rate_limited: its refusals (429s) so far, cumulative.
        active: ``False`` once the shard has ended (its share goes to the others).
        limit: its limiters' limit now (``None``: its cap).
    """

    cap: int
    peak: int
    rate_limited: int
    active: bool = True
    limit: int | None = None


class SharedCeiling:
    """The board's policy for one model shared by the shards of a round: one AIMD ceiling
    for all of them (pure: the caller passes the time).

    Each shard's own AIMD would learn its own ceiling from the refusals it happens to get,
    and their sum would keep exceeding the endpoint's capacity. Instead the board learns one
    *global* ceiling ``G`` from every shard's reports and hands each active shard a share of
    it as the cap of its limiters, so the shards' limits add up to about ``G``:

    * **Refused**: a shard reports new 429s. The requests then in flight were at least the
      capacity plus the refused one, so ``G`` becomes ``peak + others - 1`` when that is
      lower (the shard's peak in flight since its last report; for each other active shard
      its latest peak or limit, plus the raise of its cap it was last handed: an upper
      bound of what they had in flight); a refusal while the sum of peaks is
      not below ``G`` — the ceiling itself was too high — lowers it by one (not within
      ``settle`` seconds of the last change: those refusals speak of caps not yet applied).
    * **Probe**: after ``probe_seconds`` without a refusal, while the shards fill ``G``,
      it rises by one; refused, it steps back and the wait doubles (up to 8 times).
    * **Caps**: ``G`` split among the active shards (:func:`cap_share`, by rank), never
      above a shard's own share of ``max_parallel_requests`` nor below 1; ``G`` never falls
      below the number of active shards. Before the first refusal a shard's cap is its share.
    """

    def __init__(self, *, probe_seconds: float = 10.0, settle: float = 3.0) -> None:
        self.ceiling: int | None = None
        self._probe_base = probe_seconds
        self._probe_wait = probe_seconds
        self._settle = settle
        self._latest: dict[int, ShardThrottle] = {}
        self._granted: dict[int, int] = {}  # the cap each shard was last handed
        self._had: dict[int, int] = {}  # the cap it had before that
        self._changed_at = -float("inf")
        self._quiet_since: float | None = None
        self._probing = False
        self.refusals = 0
        self.probes = 0

    def _active(self) -> list[int]:
        return sorted(s for s, state in self._latest.items() if state.active)

    def _set(self, value: int, now: float) -> None:
        floor = max(1, len(self._active()))
        value = max(floor, value)
        if value != self.ceiling:
            self._changed_at = now
        self.ceiling = value

    def report(self, shard: int, state: ShardThrottle, now: float) -> int:
        """Take shard ``shard``'s report made at ``now``; the cap it is to have now."""
        self._update(shard, state, now)
        if self.ceiling is not None and self.ceiling < len(self._active()):
            self._set(self.ceiling, now)  # raised to one slot per active shard
        self._had[shard] = self._granted.get(shard, state.cap)
        self._granted[shard] = cap = self.cap(shard)
        return cap

    def _update(self, shard: int, state: ShardThrottle, now: float) -> None:
        before = self._latest.get(shard)
        self._latest[shard] = state
        refused = state.rate_limited > (0 if before is None else before.rate_limited)
        if self._quiet_since is None:
            self._quiet_since = now
        peaks = sum(s.peak for s in self._latest.values() if s.active)
        if refused:
            self.refusals += 1
            self._quiet_since = now
            # At most what the others may have had in flight meanwhile: their latest peak or
            # limit, plus any raise of their cap handed out with it (not in either yet).
            others = sum(
                max(o.peak, o.cap if o.limit is None else o.limit)
                + max(0, self._granted.get(i, o.cap) - self._had.get(i, o.cap))
                for i, o in self._latest.items()
                if o.active and i != shard
            )
            estimate = state.peak + others - 1
            if self._probing:
                self._probing = False
                self._probe_wait = min(2 * self._probe_wait, 8 * self._probe_base)
                if self.ceiling is not None:
                    self._set(min(estimate, self.ceiling - 1), now)
                    return
            if self.ceiling is None or estimate < self.ceiling:
                self._set(estimate, now)
            elif now - self._changed_at >= self._settle:
                self._set(self.ceiling - 1, now)
            return
        if self.ceiling is None:
            return
        bound = sum(s.cap for s in self._latest.values() if s.active)
        if (
            now - self._quiet_since >= self._probe_wait
            and peaks >= self.ceiling
            and self.ceiling < bound
        ):
            self.probes += 1
            self._probing = True
            self._quiet_since = now
            self._set(self.ceiling + 1, now)
        elif self._probing and now - self._quiet_since >= self._probe_wait:
            self._probing = False  # the probe held: keep it and wait as at first
            self._probe_wait = self._probe_base

    def cap(self, shard: int) -> int:
        """Shard ``shard``'s cap now (its own share until the ceiling is known)."""
        state = self._latest.get(shard)
        if state is None:
            raise KeyError(f"shard {shard} has not reported")
        if self.ceiling is None or not state.active:
            return state.cap
        active = self._active()
        share = cap_share(self.ceiling, len(active), active.index(shard))
        return max(1, min(state.cap, share))


def check_shards(cfg: PipelineConfig, shards: int, groups: int) -> None:
    """Refuse a shard count the run cannot use: more shards than row groups to generate, or
    than some model has request slots to share (each shard needs one).

    Raises:
        ConfigError: one line naming the limit and the largest count that works.
    """
    if shards > groups > 0:
        raise ConfigError(
            f"{shards} shards but only {groups} row groups to generate: each shard needs at"
            f" least one row group; use {groups} shards or fewer (or a smaller"
            " run.row_group_size)"
        )
    for model in cfg.models:
        if model.max_parallel_requests < shards:
            raise ConfigError(
                f"model {model.alias!r}: max_parallel_requests {model.max_parallel_requests}"
                f" is a cap for the whole run and cannot be split among {shards} shards (each"
                f" needs at least one request slot); use {model.max_parallel_requests} shards"
                " or fewer, or raise the cap"
            )


def shard_config(cfg: PipelineConfig, shards: int, shard: int) -> PipelineConfig:
    """The pipeline as shard ``shard`` of ``shards`` runs it: each model's
    ``max_parallel_requests`` is its share of the run's cap; it runs locally, shows no
    progress of its own (the driver shows the run's), and leaves replacing dropped rows to the
    driver (which needs every shard's drops to know how many)."""
    models = tuple(
        attrs.evolve(m, max_parallel_requests=cap_share(m.max_parallel_requests, shards, shard))
        for m in cfg.models
    )
    run = attrs.evolve(cfg.run, executor="local", progress="off", fill_to_target=False)
    return attrs.evolve(cfg, models=models, run=run)


def merge_statistics(stats: Sequence[SchedulerStatistics]) -> SchedulerStatistics:
    """The shards' scheduler snapshots as one: counts summed, per node by name in the first
    shard's order (peaks are summed too: an upper bound of the run's); all zero for none."""
    fields = {
        f.name: sum(getattr(s, f.name) for s in stats)
        for f in attrs.fields(SchedulerStatistics)
        if f.name != "nodes"
    }
    nodes: dict[str, NodeProgress] = {}
    for snapshot in stats:
        for node in snapshot.nodes:
            seen = nodes.get(node.name)
            nodes[node.name] = (
                node
                if seen is None
                else attrs.evolve(
                    seen,
                    done=seen.done + node.done,
                    failed=seen.failed + node.failed,
                    skipped=seen.skipped + node.skipped,
                )
            )
    return SchedulerStatistics(nodes=tuple(nodes.values()), **fields)


def merge_models(per_shard: Sequence[Sequence[ModelProgress]]) -> list[ModelProgress]:
    """The shards' model lines as one per alias: limits, requests in flight, requests and
    429s summed (the run's aggregate concurrency and traffic)."""
    merged: dict[str, ModelProgress] = {}
    for models in per_shard:
        for m in models:
            seen = merged.get(m.alias)
            if seen is None:
                merged[m.alias] = m
                continue
            limit = None if seen.limit is None or m.limit is None else seen.limit + m.limit
            merged[m.alias] = ModelProgress(
                alias=m.alias,
                limit=limit,
                in_flight=seen.in_flight + m.in_flight,
                requests=seen.requests + m.requests,
                rate_limited=seen.rate_limited + m.rate_limited,
            )
    return list(merged.values())


#: Per model usage fields that add up across shards.
_SUMMED = (
    "requests",
    "succeeded",
    "failed",
    "rate_limited",
    "input_tokens",
    "output_tokens",
    "online_requests",
    "batch_requests",
    "batch_input_tokens",
    "batch_output_tokens",
    "cached_requests",
    "cached_input_tokens",
    "cached_output_tokens",
)
#: Per model money fields that add up across shards when every shard has them (priced).
_MONEY = ("estimated_cost", "cache_savings")


def _merge_usage(usages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One alias's usage over the shards: counts summed, latencies combined (the mean
    weighted by requests; the p95 is the worst shard's, an upper bound), and each throttle
    domain's cuts, increases and 429s summed, its limit the sum of the shards' limits."""
    first = usages[0]
    out: dict[str, Any] = {k: first.get(k) for k in ("alias", "model", "provider")}
    for key in _SUMMED:
        out[key] = sum(int(u.get(key) or 0) for u in usages)
    for key in _MONEY:
        amounts = [u.get(key) for u in usages]
        priced = [float(a) for a in amounts if isinstance(a, int | float)]
        out[key] = sum(priced) if priced and len(priced) == len(amounts) else None
    for key in ("errors", "transport_retries"):
        total: Counter[str] = Counter()
        for u in usages:
            total.update({str(k): int(v) for k, v in (u.get(key) or {}).items()})
        out[key] = dict(total)
    weighted = [
        (u["mean_latency"], u.get("requests") or 0) for u in usages if u.get("mean_latency")
    ]
    weight = sum(w for _, w in weighted)
    out["mean_latency"] = sum(m * w for m, w in weighted) / weight if weight else None
    p95 = [u["p95_latency"] for u in usages if u.get("p95_latency") is not None]
    out["p95_latency"] = max(p95) if p95 else None
    throttle: dict[str, dict[str, Any]] = {}
    for u in usages:
        for domain, state in (u.get("throttle") or {}).items():
            into = throttle.setdefault(domain, {"shards": 0})
            into["shards"] += 1
            for key in ("limit", "cap", "cuts", "increases", "probes", "rate_limited"):
                if isinstance(state.get(key), int):
                    into[key] = into.get(key, 0) + state[key]
    out["throttle"] = throttle
    return out


def merge_summaries(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The shards' summaries (``{"invocation": ..., "models": ...}``) as the run's: the
    invocation's counts summed (its wall time is the longest shard's), each model's usage
    merged (:func:`_merge_usage`)."""
    invocation: dict[str, Any] = {}
    for summary in summaries:
        for key, value in (summary.get("invocation") or {}).items():
            if key == "wall_time":
                invocation[key] = max(invocation.get(key, 0.0), float(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                invocation[key] = invocation.get(key, 0) + value
    by_alias: dict[str, list[Mapping[str, Any]]] = {}
    for summary in summaries:
        for alias, usage in (summary.get("models") or {}).items():
            by_alias.setdefault(alias, []).append(usage)
    return {
        "invocation": invocation,
        "models": {alias: _merge_usage(usages) for alias, usages in by_alias.items()},
    }
