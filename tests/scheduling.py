"""Instrumented generators and graphs for scheduler tests.

A :class:`Probe` generator records, for every call, when it started and ended (virtual time),
which row group and rows it covered, and checks that every input column it was given holds the
value its producer must have written. Durations and failures come from the test's draw.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pyarrow as pa
import trio

from gridloom.engine import ExecutionGraph, Node
from gridloom.errors import ProviderUnavailable
from gridloom.generators import BatchContext, CellContext, ColumnGenerator, RowFailure

from .vclock import sleep_in_thread


@attrs.frozen
class NodeSpec:
    """One node of a generated DAG."""

    upstream: tuple[int, ...]
    granularity: str  # "cell" | "batch"
    mode: str  # "async" | "sync" | "inline"
    model_bound: bool = False
    durations: tuple[int, ...] = (1,)  # cycled over row ids (batch: over row groups)
    lane: tuple[str, int] | None = None  # model-bound: (model alias, max_parallel_requests)
    capacity: int = 0  # the lane's model serves at most this many calls at once (0: any)


@attrs.define
class Call:
    node: int
    row_group: int
    row_ids: tuple[int, ...]
    start: float
    end: float = -1.0
    failed: bool = False
    model_bound: bool = False
    transient: tuple[int, ...] = ()  # rows whose attempt failed with an error that may pass


@attrs.define
class Recorder:
    calls: list[Call] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)


def value_of(name: str, row_id: int) -> str:
    return f"{name}@{row_id}"


class _ProbeBase(ColumnGenerator):
    def __init__(
        self,
        index: int,
        spec: NodeSpec,
        recorder: Recorder,
        failures: frozenset[tuple[int, int]],
        row_group_size: int,
        transient: Mapping[tuple[int, int], int] | None = None,
        slow_retries: int | None = None,
        capacity: trio.CapacityLimiter | None = None,
    ):
        super().__init__(name=f"c{index}", outputs={f"c{index}": pa.string()})
        self.index = index
        self.spec = spec
        self.recorder = recorder
        self.failures = failures
        self.transient = dict(transient or {})
        self.attempts: Counter[int] = Counter()  # transient failures served, per row id
        self.slow_retries = slow_retries  # duration of every attempt after a transient failure
        self.row_group_size = row_group_size
        self.granularity = "batch" if spec.granularity == "batch" else "cell"
        self.model_bound = spec.model_bound
        self.model_lane = spec.lane if spec.model_bound else None
        self.capacity = capacity
        self.inline = spec.mode == "inline"

    def _duration(self, ctx: CellContext | BatchContext) -> int:
        ids = [ctx.row_id] if isinstance(ctx, CellContext) else ctx.row_ids
        if self.slow_retries is not None and any(self.attempts[i] for i in ids):
            return self.slow_retries
        pattern = self.spec.durations
        if isinstance(ctx, CellContext):
            return pattern[ctx.row_id % len(pattern)]
        return pattern[ctx.row_group % len(pattern)]

    def _begin(self, ctx: CellContext | BatchContext, now: float) -> Call:
        if isinstance(ctx, CellContext):
            ids: tuple[int, ...] = (ctx.row_id,)
            group = ctx.row_id // self.row_group_size
            inputs: Mapping[str, Sequence[Any]] = {k: [v] for k, v in ctx.row.items()}
        else:
            ids = tuple(ctx.row_ids)
            group = ctx.row_group
            inputs = ctx.columns
        for column, values in inputs.items():
            expected = [value_of(column, i) for i in ids]
            if list(values) != expected:
                self.recorder.problems.append(
                    f"{self.name} saw {column}={list(values)!r}, expected {expected!r}"
                )
        call = Call(self.index, group, ids, now, model_bound=self.model_bound)
        self.recorder.calls.append(call)
        return call

    def _flaky(self, row_id: int) -> bool:
        """Whether this attempt at ``row_id`` fails with an error that may pass."""
        if self.attempts[row_id] < self.transient.get((self.index, row_id), 0):
            self.attempts[row_id] += 1
            return True
        return False

    def _result(self, ctx: CellContext | BatchContext, call: Call, now: float) -> Any:
        call.end = now
        if isinstance(ctx, CellContext):
            if (self.index, ctx.row_id) in self.failures:
                call.failed = True
                raise RuntimeError(f"injected failure {self.name} row {ctx.row_id}")
            if self._flaky(ctx.row_id):
                call.transient = (ctx.row_id,)
                raise ProviderUnavailable(f"injected 503 {self.name} row {ctx.row_id}")
            return value_of(self.name, ctx.row_id)
        if any((self.index, i) in self.failures for i in ctx.row_ids):
            call.failed = True
            raise RuntimeError(f"injected batch failure {self.name}")
        flaky = tuple(i for i in ctx.row_ids if self._flaky(i))
        call.transient = flaky
        return [
            RowFailure(ProviderUnavailable(f"injected 503 {self.name} row {i}"))
            if i in flaky
            else value_of(self.name, i)
            for i in ctx.row_ids
        ]


class AsyncProbe(_ProbeBase):
    async def agenerate(self, ctx: Any) -> Any:
        call = self._begin(ctx, trio.current_time())
        if self.capacity is None:
            await trio.sleep(self._duration(ctx))
        else:
            async with self.capacity:
                await trio.sleep(self._duration(ctx))
        return self._result(ctx, call, trio.current_time())


class SyncProbe(_ProbeBase):
    def generate(self, ctx: Any) -> Any:
        if self.inline:
            now = trio.current_time()
            return self._result(ctx, self._begin(ctx, now), now)
        call = self._begin(ctx, trio.from_thread.run_sync(trio.current_time))
        sleep_in_thread(self._duration(ctx))
        return self._result(ctx, call, trio.from_thread.run_sync(trio.current_time))


def build_graph(
    specs: Sequence[NodeSpec],
    recorder: Recorder,
    *,
    failures: frozenset[tuple[int, int]] = frozenset(),
    row_group_size: int,
    transient: Mapping[tuple[int, int], int] | None = None,
    slow_retries: int | None = None,
) -> ExecutionGraph:
    """An ExecutionGraph whose node ``i`` is a probe named ``c{i}``."""
    downstream: list[list[int]] = [[] for _ in specs]
    for i, spec in enumerate(specs):
        for u in spec.upstream:
            downstream[u].append(i)
    ancestors: list[set[int]] = []
    nodes = []
    models: dict[str, trio.CapacityLimiter] = {}  # a model's capacity, shared by its nodes
    for i, spec in enumerate(specs):
        anc: set[int] = set()
        for u in spec.upstream:
            anc |= ancestors[u] | {u}
        ancestors.append(anc)
        cls = AsyncProbe if spec.mode == "async" else SyncProbe
        capacity = None
        if spec.capacity and spec.lane is not None:
            capacity = models.setdefault(spec.lane[0], trio.CapacityLimiter(spec.capacity))
        generator = cls(
            i, spec, recorder, failures, row_group_size, transient, slow_retries, capacity
        )
        nodes.append(
            Node(
                index=i,
                name=f"c{i}",
                outputs=(f"c{i}",),
                upstream=tuple(sorted(spec.upstream)),
                downstream=tuple(downstream[i]),
                granularity=generator.granularity,
                inputs=tuple(sorted(f"c{a}" for a in anc)),
                generator=generator,
            )
        )
    return ExecutionGraph(
        nodes=tuple(nodes),
        schema=pa.schema([pa.field(f"c{i}", pa.string()) for i in range(len(specs))]),
        producer={f"c{i}": i for i in range(len(specs))},
    )


def critical_path_makespan(specs: Sequence[NodeSpec], num_records: int, row_group_size: int) -> int:
    """Earliest-start makespan with unlimited concurrency and no failures."""
    makespan = 0
    for group, start in enumerate(range(0, num_records, row_group_size)):
        rows = range(start, min(num_records, start + row_group_size))
        finish: list[dict[int, int]] = []
        for spec in specs:
            pattern = spec.durations
            per_row: dict[int, int] = {}
            if spec.granularity == "batch":
                ready = max((finish[u][r] for u in spec.upstream for r in rows), default=0)
                end = ready + (0 if spec.mode == "inline" else pattern[group % len(pattern)])
                per_row = dict.fromkeys(rows, end)
            else:
                for r in rows:
                    ready = max((finish[u][r] for u in spec.upstream), default=0)
                    dur = 0 if spec.mode == "inline" else pattern[r % len(pattern)]
                    per_row[r] = ready + dur
            finish.append(per_row)
        makespan = max(makespan, *(max(f.values()) for f in finish))
    return makespan


def column_mode_makespan(specs: Sequence[NodeSpec], num_records: int, row_group_size: int) -> int:
    """Makespan when each row group runs its columns one after another (unlimited width)."""
    makespan = 0
    for group, start in enumerate(range(0, num_records, row_group_size)):
        rows = range(start, min(num_records, start + row_group_size))
        total = 0
        for spec in specs:
            if spec.mode == "inline":
                continue
            pattern = spec.durations
            if spec.granularity == "batch":
                total += pattern[group % len(pattern)]
            else:
                total += max(pattern[r % len(pattern)] for r in rows)
        makespan = max(makespan, total)
    return makespan
