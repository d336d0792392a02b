"""Sharding a run without a cluster: the split of row groups and request caps, the merge of
the shards' counts, and the checks that refuse a cluster or output the run cannot use."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.config import PipelineConfig, load_config
from gridloom.engine import NodeProgress, RowGroupSpec, SchedulerStatistics
from gridloom.errors import ClusterError, ConfigError
from gridloom.progress import ModelProgress, ProgressReporter
from gridloom.run._cluster import Board, Cluster, _cause, _check_listening, import_ray
from gridloom.run._run import Run
from gridloom.run._shard import ShardJob
from gridloom.run._shards import (
    cap_share,
    check_shards,
    merge_models,
    merge_statistics,
    merge_summaries,
    shard_config,
)
from gridloom.storage import location_of


def _specs(n: int) -> list[RowGroupSpec]:
    return [RowGroupSpec(index=i, first_row_id=i * 10, num_rows=10) for i in range(n)]


@given(st.integers(0, 60), st.lists(st.integers(0, 3), max_size=200))
def test_the_board_hands_out_every_group_once_in_order(n: int, askers: list[int]) -> None:
    """Shards pulling from the board in any interleaving get every row group exactly once,
    lowest index first, then ``None``; each shard's ``taken`` is what it got, in order."""
    board = Board(_specs(n))
    got: dict[int, list[int]] = {}
    handed: list[int] = []
    for shard in askers:
        spec = board.take(shard)
        if spec is None:
            continue
        handed.append(spec.index)
        got.setdefault(shard, []).append(spec.index)
    while (spec := board.take(9)) is not None:
        handed.append(spec.index)
        got.setdefault(9, []).append(spec.index)
    assert handed == list(range(n))
    for shard, indices in got.items():
        assert [s.index for s in board.taken(shard)] == indices
    assert board.take(0) is None


@given(st.integers(1, 10_000), st.integers(1, 256))
def test_cap_shares_sum_to_the_cap(cap: int, k: int) -> None:
    """The shards' shares of a cap add up to it exactly and differ by at most one."""
    shares = [cap_share(cap, k, i) for i in range(k)]
    assert sum(shares) == cap
    assert max(shares) - min(shares) <= 1


def test_cap_share_refuses_a_shard_out_of_range() -> None:
    """A shard number outside the round is a programming error."""
    with pytest.raises(ValueError, match="shard must be in"):
        cap_share(8, 2, 2)


def _config(cap: int = 8, **run: Any) -> PipelineConfig:
    return load_config(
        {
            "providers": [{"name": "sim", "type": "simulated"}],
            "models": [
                {"alias": "w", "provider": "sim", "model": "m", "max_parallel_requests": cap}
            ],
            "columns": [{"name": "t", "llm_text": {"model": "w", "prompt": "hi"}}],
            "run": run,
        }
    )


def test_check_shards_refuses_more_shards_than_groups_or_slots() -> None:
    """More shards than row groups, or than a model's request slots, is one line naming the
    limit and the largest count that works."""
    cfg = _config(cap=3)
    check_shards(cfg, 3, 3)
    with pytest.raises(ConfigError, match=r"4 shards but only 3 row groups.*use 3 shards") as a:
        check_shards(cfg, 4, 3)
    with pytest.raises(ConfigError, match=r"model 'w': max_parallel_requests 3.*4 shards") as b:
        check_shards(cfg, 4, 10)
    assert "\n" not in str(a.value)
    assert "\n" not in str(b.value)


def test_shard_config_splits_caps_and_keeps_the_output_settings() -> None:
    """A shard's pipeline has its cap share, no display of its own, no top-ups (the driver
    does them), and the same configuration hash as the run's (the output is the same)."""
    from gridloom.config import config_hash

    cfg = _config(cap=7, fill_to_target=True, progress="bar", executor="ray")
    shards = [shard_config(cfg, 3, i) for i in range(3)]
    assert [s.models[0].max_parallel_requests for s in shards] == [3, 2, 2]
    for s in shards:
        assert (s.run.executor, s.run.progress, s.run.fill_to_target) == ("local", "off", False)
        assert config_hash(s) == config_hash(cfg)


def _stats(done: int, nodes: dict[str, tuple[int, int, int]]) -> SchedulerStatistics:
    zero = {f.name: 0 for f in attrs.fields(SchedulerStatistics) if f.name != "nodes"}
    zero["cells_done"] = done
    return SchedulerStatistics(
        nodes=tuple(
            NodeProgress(name=n, outputs=(n,), done=d, failed=f, skipped=s)
            for n, (d, f, s) in nodes.items()
        ),
        **dict(zero.items()),
    )


@given(
    st.lists(
        st.tuples(st.integers(0, 1000), st.integers(0, 50), st.integers(0, 50)),
        min_size=0,
        max_size=6,
    )
)
def test_merged_statistics_sum_every_count(shards: list[tuple[int, int, int]]) -> None:
    """The merged snapshot's counts are the shards' sums, per column by name."""
    stats = [_stats(d, {"a": (d, f, s), "b": (d // 2, f, 0)}) for d, f, s in shards]
    merged = merge_statistics(stats)
    assert merged.cells_done == sum(d for d, _, _ in shards)
    if shards:
        a, b = merged.nodes
        assert (a.name, a.done, a.failed, a.skipped) == (
            "a",
            sum(d for d, _, _ in shards),
            sum(f for _, f, _ in shards),
            sum(s for _, _, s in shards),
        )
        assert b.done == sum(d // 2 for d, _, _ in shards)
    else:
        assert merged.nodes == ()


def test_merged_model_lines_add_limits_and_traffic() -> None:
    """One line per alias: limits, requests in flight, requests and 429s summed."""
    line = ModelProgress(alias="w", limit=4, in_flight=3, requests=10, rate_limited=1)
    other = ModelProgress(alias="j", limit=None, in_flight=0, requests=2, rate_limited=0)
    merged = merge_models([[line, other], [attrs.evolve(line, limit=3, requests=5)]])
    assert merged == [
        ModelProgress(alias="w", limit=7, in_flight=6, requests=15, rate_limited=2),
        other,
    ]


def test_merged_summaries_add_counts_and_weigh_latencies() -> None:
    """Counts add up, the wall time is the longest shard's, the mean latency is weighted by
    requests, the p95 is the worst shard's, and each throttle's cap is the shards' sum."""

    def usage(requests: int, mean: float, p95: float, cap: int) -> dict[str, Any]:
        return {
            "alias": "w", "model": "m", "provider": "sim", "requests": requests,
            "succeeded": requests, "failed": 0, "errors": {"RateLimited": 1},
            "transport_retries": {}, "rate_limited": 1, "input_tokens": 10 * requests,
            "output_tokens": requests, "mean_latency": mean, "p95_latency": p95,
            "throttle": {"chat": {"limit": cap, "cap": cap, "cuts": 1, "history": [[0, 1, 0]]}},
        }  # fmt: skip

    merged = merge_summaries(
        [
            {
                "invocation": {"wall_time": 2.0, "cells_done": 5},
                "models": {"w": usage(10, 1.0, 2.0, 3)},
            },
            {
                "invocation": {"wall_time": 3.0, "cells_done": 7},
                "models": {"w": usage(30, 2.0, 5.0, 4)},
            },
        ]
    )
    assert merged["invocation"] == {"wall_time": 3.0, "cells_done": 12}
    w = merged["models"]["w"]
    assert (w["requests"], w["rate_limited"], w["errors"]) == (40, 2, {"RateLimited": 2})
    assert w["mean_latency"] == pytest.approx(1.75)
    assert w["p95_latency"] == 5.0
    assert w["throttle"]["chat"] == {"shards": 2, "limit": 7, "cap": 7, "cuts": 2}


async def test_the_driver_display_shows_the_shards_model_lines() -> None:
    """A reporter fed by the shards' board shows their merged counts and model lines, without
    any model handle of its own."""
    import io

    stats = merge_statistics([_stats(4, {"a": (4, 0, 0)}), _stats(6, {"a": (6, 1, 0)})])
    line = ModelProgress(alias="w", limit=8, in_flight=2, requests=20, rate_limited=3)
    reporter = ProgressReporter(
        "log", statistics=lambda: stats, model_lines=lambda: [line], total=20, stream=io.StringIO()
    )
    snapshot = reporter.snapshot()
    assert snapshot.columns[0].done == 10
    assert snapshot.columns[0].failed == 1
    assert snapshot.models == (line,)


def test_a_job_describes_its_shard_for_messages() -> None:
    """Messages name the shard, the round's size and the row groups it took."""
    job = ShardJob(
        index=1, count=4, config=_config(), base_dir=None, output="out", num_records=30,
        config_hash="h", seed=1,
    )  # fmt: skip
    assert job.describe() == "shard 1 of 4"
    assert job.describe(_specs(3)) == "shard 1 of 4 (row groups 0-2)"
    assert job.describe(_specs(1)) == "shard 1 of 4 (row group 0)"
    spread = [_specs(12)[i] for i in (1, 3, 4, 6, 7, 8, 9, 10, 11)]
    assert job.describe(spread) == "shard 1 of 4 (row groups 1, 3, 4, 6, 7, 8, 9, 10, ...)"


def test_ray_missing_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Ray installed, asking for it says how to install it."""
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ClusterError, match=r"pip install 'gridloom\[ray\]'"):
        import_ray()


def test_a_run_without_ray_fails_before_any_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`executor: ray` without Ray fails before the output is touched or a request sent."""
    import trio

    monkeypatch.setitem(sys.modules, "ray", None)
    run = Run(_config(executor="ray"))
    with pytest.raises(ClusterError, match="needs Ray"):
        trio.run(lambda: run.create(num_records=10, output_dir=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_closed_port_is_refused_at_once() -> None:
    """An address where nothing listens is one line, without Ray's long retries."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match=f"127.0.0.1:{port}: nothing answers there"):
        _check_listening(f"127.0.0.1:{port}")
    _check_listening("auto")
    _check_listening("ray://head:10001")


class _FakeRay:
    """Just enough of Ray for the shared-output check: nodes, and tasks pinned to them whose
    answer is whether their node sees the probe file."""

    def __init__(self, sees: list[bool]) -> None:
        self._sees = sees

    def nodes(self) -> list[dict[str, Any]]:
        return [
            {"Alive": True, "NodeID": f"{i:056x}", "NodeManagerAddress": f"10.0.0.{i}"}
            for i in range(len(self._sees))
        ]

    def remote(self, **_: Any) -> Any:
        fake = self

        class _Fn:
            def __init__(self, fn: Any) -> None:
                self.fn = fn

            def options(self, scheduling_strategy: Any) -> Any:
                node = int(scheduling_strategy.node_id, 16)
                fn = self.fn

                class _Call:
                    def remote(self, path: str) -> bool:
                        return fn(path) and fake._sees[node]

                return _Call()

        return _Fn

    def get(self, refs: list[bool], timeout: float) -> list[bool]:
        return refs


def test_a_local_output_some_node_cannot_see_is_refused(tmp_path: Path) -> None:
    """A local folder is accepted when a probe file written here is seen from every node,
    and refused, naming the blind nodes, when it is not; URIs are shared by nature."""
    pytest.importorskip("ray")
    seen = Cluster(_FakeRay([True, True]), None, started=False)  # type: ignore[arg-type]
    seen.check_shared(location_of(tmp_path / "out"))
    blind = Cluster(_FakeRay([True, False, False]), None, started=False)  # type: ignore[arg-type]
    with pytest.raises(ClusterError, match=r"2 of the cluster's 3 nodes cannot see \(10.0.0.1"):
        blind.check_shared(location_of(tmp_path / "out"))
    assert not list((tmp_path / "out").iterdir())  # the probe file is removed


def test_a_failed_shard_names_its_own_error_first() -> None:
    """A shard's error is reported as its own type and first line, however Ray wraps it."""

    class Wrapped(Exception):
        def __init__(self, cause: BaseException) -> None:
            super().__init__("ray wrapper text\nwith a traceback")
            self.cause = cause

    assert _cause(Wrapped(OSError("disk full\nmore"))) == "OSError: disk full"
    assert _cause(RuntimeError("\n\nworker died\n")) == "RuntimeError: worker died"
