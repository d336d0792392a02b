"""Compile a pipeline into an :class:`ExecutionGraph`.

Compilation is where every configuration mistake that can be caught is caught, before any row
is generated or any request sent: unknown references (with a suggestion), dependency cycles
(spelled out), template syntax errors, and generator-specific problems. The result is a list of
nodes in a deterministic topological order (Kahn's algorithm, ties broken by config order), each
holding its generator, its granularity (cell or batch) and its edges.
"""

from __future__ import annotations

import difflib
import functools
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import jinja2

from .._attrs import frozen
from ..config import ColumnConfig, Constraint, LLMColumn, PipelineConfig
from ..config._constraints import MAX_REDRAWS
from ..config._variants import conditional_variant
from ..errors import ConfigError, CycleError, TemplateError, UnknownReferenceError
from ..generators import BuildContext, ColumnGenerator, build_generator
from ..generators._condition import condition_source, condition_variables
from ..generators._jinja import TemplateLimits, template_variables
from ..generators._shaped import ShapedSampler, shape_sampler, stored_support
from ..generators.base import Granularity
from ._fields import field_problems, value_schema
from ._seed_names import seed_name_problems
from ._skip import FIELD as SKIP_FIELD
from ._skip import SkipCondition, skip_source, skip_variables

if TYPE_CHECKING:
    import pyarrow as pa

    from ..generators.seed import SeedDatasetGenerator

__all__ = ["ExecutionGraph", "Node", "compile_pipeline"]

SEED_NODE = "seed_dataset"


@frozen(kw_only=True)
class Node:
    """One generator in the graph.

    Attributes:
        index: position in topological order; upstream nodes always have smaller indices.
        name: the primary column's name (``seed_dataset`` for the seed node).
        outputs: the columns this node fills.
        upstream: indices of the nodes whose columns this node reads directly.
        downstream: indices of the nodes that read this node's columns directly.
        granularity: ``cell`` (one task per row) or ``batch`` (one task per row group).
        inputs: every column available to the generator: the outputs of all its ancestors.
        generator: the generator that fills the outputs.
        skip: the column's compiled ``skip_when``: rows where it holds get null, and the
            generator is not called for them.
    """

    index: int
    name: str
    outputs: tuple[str, ...]
    upstream: tuple[int, ...]
    downstream: tuple[int, ...]
    granularity: Granularity
    inputs: tuple[str, ...]
    generator: ColumnGenerator[Any] = attrs.field(eq=False, repr=False)
    skip: SkipCondition | None = attrs.field(default=None, eq=False, repr=False)


class UpstreamTypes(Mapping[str, "pa.DataType"]):
    """The Arrow type of each output column built so far, read from its generator when asked
    (a generator's types may be built only then)."""

    def __init__(self, generators: Mapping[str, ColumnGenerator[Any]]):
        self._generators = generators

    def __getitem__(self, column: str) -> pa.DataType:
        return self._generators[column].outputs[column]

    def __iter__(self) -> Iterator[str]:
        return iter(self._generators)

    def __len__(self) -> int:
        return len(self._generators)


@frozen(kw_only=True)
class ExecutionGraph:
    """Nodes in topological order, plus the output schema.

    Attributes:
        nodes: the nodes, ``nodes[i].index == i``.
        schema: the Arrow schema of the dataset written (columns marked ``drop`` are absent).
        producer: output column name → index of the node that fills it.
    """

    nodes: tuple[Node, ...]
    schema_source: pa.Schema | Callable[[], pa.Schema] = attrs.field(eq=False, alias="schema")
    producer: Mapping[str, int]

    @functools.cached_property
    def schema(self) -> pa.Schema:
        """The Arrow schema (built on first use when the graph was given a function)."""
        source = self.schema_source
        return source() if callable(source) else source

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column filled by the graph, output or not, in topological order."""
        return tuple(c for node in self.nodes for c in node.outputs)

    def depth(self) -> int:
        """Number of nodes on the longest dependency chain."""
        level: list[int] = []
        for node in self.nodes:
            level.append(1 + max((level[u] for u in node.upstream), default=0))
        return max(level, default=0)

    def describe(self) -> list[dict[str, object]]:
        """One plain dict per node (for ``gridloom validate`` and logs)."""
        described: list[dict[str, object]] = []
        for node in self.nodes:
            entry: dict[str, object] = {
                "node": node.name,
                "outputs": list(node.outputs),
                "granularity": node.granularity,
                "model_bound": node.generator.model_bound,
                "depends_on": [self.nodes[u].name for u in node.upstream],
            }
            if node.skip is not None:
                entry["skip_when"] = node.skip.source
            shaped = node.generator
            if isinstance(shaped, ShapedSampler):
                if shaped.variants:
                    entry["conditional_params"] = [c.source for c, _ in shaped.variants]
                if shaped.constraints:
                    entry["constraints"] = [c.constraint.describe() for c in shaped.constraints]
            described.append(entry)
        return described


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _references(
    column: ColumnConfig, known: Mapping[str, int], schemas: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, str], list[ConfigError]]:
    """Referenced column → the field that references it, and the column's problems: templates
    that do not parse, unknown names, fields of structured columns that their schemas lack."""
    refs: dict[str, str] = {}
    problems: list[ConfigError] = []
    templates = column.templates()
    for field, source in templates.items():
        try:
            names = template_variables(source, columns=known)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(
                TemplateError(
                    f"template does not parse: {exc.message} (line {exc.lineno})",
                    column=column.name,
                    field=f"{column.kind}.{field}",
                )
            )
            continue
        for name in sorted(names):
            refs.setdefault(name, f"{column.kind}.{field}")
    if column.skip_when is not None:
        try:
            for name in sorted(skip_variables(column.skip_when, column.name, known)):
                refs.setdefault(name, SKIP_FIELD)
        except TemplateError as exc:
            problems.append(exc)
    conditions = {f"conditional_params[{c!r}]": c for c in column.conditional_params or {}}
    for field, condition in conditions.items():
        try:
            for name in sorted(
                condition_variables(condition, column=column.name, field=field, columns=known)
            ):
                refs.setdefault(name, field)
        except TemplateError as exc:
            problems.append(exc)
    for field, names_ in column.direct_references().items():
        path = field if field == "depends_on" else f"{column.kind}.{field}"
        for name in names_:
            refs.setdefault(name, path)
    for field, name in _variant_references(column):
        refs.setdefault(name, field)
    for name, path in refs.items():
        if name not in known:
            problems.append(
                UnknownReferenceError(
                    f"references unknown column {name!r}{_suggest(name, known)}",
                    column=column.name,
                    field=path,
                )
            )
    read = {name: schemas[name] for name in refs if name in schemas and name != column.name}
    checked = {f"{column.kind}.{field}": source for field, source in templates.items()}
    if column.skip_when is not None:
        checked[SKIP_FIELD] = skip_source(column.skip_when)
    checked.update({field: condition_source(c) for field, c in conditions.items()})
    for path, source in checked.items() if read else ():
        try:
            found = field_problems(source, read)
        except jinja2.TemplateSyntaxError:
            continue  # reported above
        problems.extend(
            UnknownReferenceError(problem.message(), column=column.name, field=path)
            for problem in found
        )
    return refs, problems


def _variant_references(column: ColumnConfig) -> list[tuple[str, str]]:
    """(field, column) for each column a ``conditional_params`` entry's parameters name
    outright (a ``subcategory``'s ``parent``): dependencies like the column's own."""
    found: list[tuple[str, str]] = []
    for condition in column.conditional_params or {}:
        try:
            variant = conditional_variant(column, condition)
        except ConfigError:
            continue  # reported when the variant is built
        for field, names in variant.direct_references().items():
            if field != "depends_on":
                found += [(f"conditional_params[{condition!r}].{field}", n) for n in names]
    return found


def _find_cycle(edges: Mapping[int, Sequence[int]], among: set[int]) -> list[int]:
    """A cycle (first node repeated at the end) inside ``among``, following ``edges``."""
    state: dict[int, int] = {}  # 1 = on the stack, 2 = finished
    stack: list[int] = []

    def visit(u: int) -> list[int] | None:
        state[u] = 1
        stack.append(u)
        for v in edges.get(u, ()):
            if v not in among:
                continue
            if state.get(v) == 1:
                return [*stack[stack.index(v) :], v]
            if v not in state and (found := visit(v)) is not None:
                return found
        stack.pop()
        state[u] = 2
        return None

    for start in sorted(among):
        if start not in state and (found := visit(start)) is not None:
            return found
    raise AssertionError("no cycle among the given nodes")  # pragma: no cover


def _constraint_edges(
    config: PipelineConfig,
    names: Sequence[str],
    producer: Mapping[str, int],
    upstream: dict[int, set[int]],
    problems: list[ConfigError],
    failed: set[int],
) -> dict[str, list[tuple[int, Constraint]]]:
    """Check each constraint's columns, make its ``other`` a dependency of its ``column``, and
    group the constraints by the column they redraw."""
    constrained: dict[str, list[tuple[int, Constraint]]] = {}
    for index, constraint in enumerate(config.constraints):
        where = f"constraints[{index}]"
        slot = producer.get(constraint.column)
        if slot is None:
            problems.append(
                UnknownReferenceError(
                    f"constraint {constraint.describe()} names unknown column"
                    f" {constraint.column!r}{_suggest(constraint.column, producer)}",
                    column=constraint.column,
                    field=f"{where}.column",
                )
            )
            continue
        if names[slot] != constraint.column:
            owner = "the seed dataset" if names[slot] == SEED_NODE else f"column {names[slot]!r}"
            problems.append(
                ConfigError(
                    f"constraint {constraint.describe()}: {constraint.column!r} is filled by"
                    f" {owner}, not by a sampler column of its own; a constraint redraws a"
                    " sampler column",
                    column=constraint.column,
                    field=f"{where}.column",
                )
            )
            failed.add(slot)
            continue
        other = constraint.other
        if other is not None:
            source = producer.get(other)
            if source is None or source == slot:
                what = "unknown column" if source is None else "a column filled with it:"
                problems.append(
                    UnknownReferenceError(
                        f"constraint {constraint.describe()} compares with {what} {other!r}"
                        f"{_suggest(other, producer) if source is None else ''}",
                        column=constraint.column,
                        field=f"{where}.other",
                    )
                )
                failed.add(slot)
                continue
            upstream[slot].add(source)
        redraws = constraint.max_attempts * config.run.row_group_size
        if redraws > MAX_REDRAWS:
            problems.append(
                ConfigError(
                    f"constraint {constraint.describe()}: each attempt redraws the whole row"
                    f" group, so max_attempts ({constraint.max_attempts}) times"
                    f" run.row_group_size ({config.run.row_group_size}) may be at most"
                    f" {MAX_REDRAWS:,}; lower one of them",
                    column=constraint.column,
                    field=f"{where}.max_attempts",
                )
            )
            failed.add(slot)
            continue
        constrained.setdefault(constraint.column, []).append((index, constraint))
    return constrained


def compile_pipeline(config: PipelineConfig, *, base_dir: Path | None = None) -> ExecutionGraph:
    """Check ``config`` and build its execution graph.

    Args:
        config: the pipeline.
        base_dir: folder that relative paths (seed dataset, custom modules) are resolved
            against; usually the config file's folder.

    Raises:
        ConfigError: with the column and field at fault (subclasses name the kind of problem).
            Every column is checked: the error lists all the problems found (``issues``) and
            has the type of the first. A column whose own checks fail is not built, nor are
            the columns downstream of it.
    """
    problems: list[ConfigError] = []
    failed: set[int] = set()  # slots with a problem of their own or upstream
    # Node slots in config order: the seed dataset first, then each column.
    seed: SeedDatasetGenerator | None = None
    names: list[str] = []
    outputs: list[tuple[str, ...]] = []
    producer: dict[str, int] = {}
    if config.seed_dataset is not None:
        from ..generators.seed import SeedDatasetGenerator  # only a pipeline with one loads it

        seed = SeedDatasetGenerator(config.seed_dataset, base_dir=base_dir)
        names.append(SEED_NODE)
        outputs.append(seed.output_names)
        for col in seed.output_names:
            producer[col] = 0
        problems.extend(seed_name_problems(seed.output_names, config))
    offset = len(names)
    models = {model.alias: model for model in config.models}
    for i, column in enumerate(config.columns):
        # A model that draws a parameter per cell gives its LLM columns an __inference output.
        column_outputs = (
            column.output_names(models) if isinstance(column, LLMColumn) else column.output_names()
        )
        for output in column_outputs:
            if output in producer:
                owner = names[producer[output]]
                what = "a seed dataset column" if owner == SEED_NODE else f"column {owner!r}"
                problems.append(
                    ConfigError(
                        f"{what} already fills a column named {output!r}",
                        column=column.name,
                        field="name",
                    )
                )
                failed.add(offset + i)
                continue
            producer[output] = offset + i
        names.append(column.name)
        outputs.append(column_outputs)

    # Edges from references.
    upstream: dict[int, set[int]] = {i: set() for i in range(len(names))}
    schemas = {c.name: schema for c in config.columns if (schema := value_schema(c)) is not None}
    for i, column in enumerate(config.columns):
        slot = offset + i
        refs, found = _references(column, producer, schemas)
        if found:
            problems.extend(found)
            failed.add(slot)
        for ref in refs:
            if ref not in producer:
                continue
            if producer[ref] == slot:
                problems.append(CycleError([column.name, column.name]))
                failed.add(slot)
                continue
            upstream[slot].add(producer[ref])
    constrained = _constraint_edges(config, names, producer, upstream, problems, failed)
    downstream: dict[int, list[int]] = {i: [] for i in range(len(names))}
    for v, ups in upstream.items():
        for u in ups:
            downstream[u].append(v)

    # Kahn's algorithm, ties broken by config order so the order is deterministic.
    indegree = {v: len(ups) for v, ups in upstream.items()}
    ready = [v for v, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        u = heapq.heappop(ready)
        order.append(u)
        for v in downstream[u]:
            indegree[v] -= 1
            if indegree[v] == 0:
                heapq.heappush(ready, v)
    if len(order) < len(names):
        left = set(range(len(names))) - set(order)
        cycle = _find_cycle({u: sorted(vs) for u, vs in downstream.items()}, left)
        problems.append(CycleError([names[u] for u in cycle]))

    # Build generators in topological order so each sees its upstream types.
    position = {slot: pos for pos, slot in enumerate(order)}
    by_name = {column.name: column for column in config.columns}
    producers = {output: names[slot] for output, slot in producer.items()}
    template_limits = TemplateLimits.from_run(config.run)
    built: dict[str, ColumnGenerator[Any]] = {}  # output column → its generator
    granularity: dict[str, Granularity] = {}
    supports: dict[str, tuple[Any, Any]] = {}
    ancestors: dict[int, set[str]] = {}
    nodes: list[Node] = []
    for pos, slot in enumerate(order):
        if slot in failed or failed & upstream[slot]:
            failed.add(slot)  # its upstream types are unknown: building it would mislead
            continue
        generator: ColumnGenerator[Any]
        skip: SkipCondition | None = None
        if seed is not None and slot == 0:
            generator = seed
        else:
            column = config.columns[slot - offset]
            if column.skip_when is not None:
                try:
                    skip = SkipCondition(
                        column.skip_when, column=column.name, limits=template_limits
                    )
                except ConfigError as exc:
                    problems.append(exc)
                    failed.add(slot)
                    continue
            ctx = BuildContext(
                columns=by_name,
                upstream_types=UpstreamTypes(dict(built)),
                upstream_granularity=dict(granularity),
                base_dir=base_dir,
                models=models,
                template_limits=template_limits,
                supports=dict(supports),
                producers=producers,
            )
            try:
                generator = build_generator(column, ctx)
                generator = shape_sampler(column, generator, ctx, constrained.get(column.name, ()))
            except ConfigError as exc:
                problems.append(exc)
                failed.add(slot)
                continue
        if generator.output_names != outputs[slot]:
            raise ConfigError(  # pragma: no cover - a generator bug, not a user error
                f"generator {type(generator).__name__} declares outputs "
                f"{list(generator.output_names)}, expected {list(outputs[slot])}",
                column=names[slot],
            )
        built.update(dict.fromkeys(generator.output_names, generator))
        if (drawn := stored_support(generator)) is not None:
            supports[names[slot]] = drawn
        for col in outputs[slot]:
            granularity[col] = generator.granularity
        inherited: set[str] = set()
        for u in upstream[slot]:
            inherited |= ancestors[u] | set(outputs[u])
        ancestors[slot] = inherited
        nodes.append(
            Node(
                index=pos,
                name=names[slot],
                outputs=outputs[slot],
                upstream=tuple(sorted(position[u] for u in upstream[slot])),
                downstream=tuple(sorted(position[v] for v in downstream[slot])),
                granularity=generator.granularity,
                inputs=tuple(sorted(inherited)),
                generator=generator,
                skip=skip,
            )
        )

    if problems:
        raise ConfigError.gather(problems)

    dropped = {column.name for column in config.columns if column.drop}
    stored = [col for slot in range(len(names)) for col in outputs[slot] if col not in dropped]

    def output_schema() -> pa.Schema:
        # Built on first use: the generators' Arrow types need pyarrow, which a preview
        # imports only once its first model request is out.
        import pyarrow as pa

        def field(col: str) -> pa.Field:
            generator = built[col]
            metadata = generator.field_metadata.get(col)
            return pa.field(col, generator.outputs[col], metadata=metadata or None)

        return pa.schema([field(col) for col in stored])

    return ExecutionGraph(
        nodes=tuple(nodes),
        schema=output_schema,
        producer={col: position[slot] for col, slot in producer.items()},
    )
