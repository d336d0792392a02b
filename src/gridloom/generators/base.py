"""The generator contract: what the scheduler calls to fill a column.

A generator fills one *node* of the execution graph: usually one column, sometimes several
(a seed dataset fills all of its columns at once). Implement **either** :meth:`generate`
(synchronous; the scheduler runs it in a worker thread unless the generator is marked
``inline``) **or** :meth:`agenerate` (asynchronous, runs on the trio loop).

Granularity:

* ``cell`` — called once per row with a :class:`CellContext`; returns the value.
* ``batch`` — called once per row group with a :class:`BatchContext` covering the row group's
  live rows; returns a sequence with one value per row.

A generator that fills one column named as itself returns that column's value (or sequence)
directly; any other — several outputs, or outputs named apart from the generator, like a seed
dataset's columns, even when there is just one — returns a mapping from output column to its
value (or sequence).

The result's shape is checked once, by :func:`normalize_result` (the scheduler calls it on
every result): a wrong shape fails the cell (or batch) with a
:class:`~gridloom.errors.GenerationError`. Every output the generator declares
(:attr:`ColumnGenerator.outputs`) must be there; a batch's sequences must each hold one value per
row.

Raising any exception fails the cell (or batch): its row (or rows) are dropped with the
exception as the recorded reason. A batch generator that fails on some rows only puts a
:class:`RowFailure` in those rows' places: just those rows are dropped. Generators know
nothing of row groups' storage, limits or scheduling; everything they need arrives in the
context.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypeVar

import attrs

from .._attrs import define, frozen
from ..errors import GenerationError

if TYPE_CHECKING:  # the clients and tools sit below the generators; imported for types only
    import pyarrow as pa

    from ..clients import ModelHandle
    from ..tools import Toolbox

__all__ = [
    "BatchContext",
    "CellContext",
    "ColumnGenerator",
    "Context",
    "Granularity",
    "Models",
    "Output",
    "RowFailure",
    "Toolboxes",
    "derive_rng",
    "derive_seed",
    "normalize_result",
]

Granularity = Literal["cell", "batch"]

#: The run's model handles by alias (:class:`~gridloom.clients.ModelHandle`), as generators
#: get them in their context; the engine passes them on under this name, never naming a client.
Models: TypeAlias = "Mapping[str, ModelHandle]"
#: The run's toolboxes by column (:class:`~gridloom.tools.Toolbox`), for ``llm_agent``
#: columns: opened by the run, handed to the column's cells as ``ctx.tools``.
Toolboxes: TypeAlias = "Mapping[str, Toolbox]"


def derive_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed derived from ``seed`` and ``parts``, stable across processes and Pythons."""
    text = ":".join([str(seed), *map(str, parts)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def derive_rng(seed: int, *parts: object) -> random.Random:
    """An independent ``random.Random`` stream for ``(seed, *parts)``."""
    return random.Random(derive_seed(seed, *parts))


@frozen
class RowFailure:
    """A batch generator's stand-in for one row's value: that row fails with ``error``
    (and is dropped), the batch's other rows go on."""

    error: Exception


@define(kw_only=True, slots=True)
class CellContext:
    """What a cell generator gets for one row.

    Attributes:
        row: this row's values of every upstream column (read-only by convention).
        row_id: the row's position in the whole dataset (0-based).
        column: the node's primary column name.
        seed: the run seed; :attr:`rng` is derived from it, the column and the row id.
        params: the column's own parameters (custom columns' ``params``).
        model: for a custom column with ``model``, that alias's handle (``await
            ctx.model.chat(request)``; ``ctx.model.config`` is its ``ModelConfig``).
        models: the run's model handles by alias (what LLM generators call).
        tools: the column's toolbox, for a column that offers its model tools
            (``llm_agent``); ``None`` otherwise.
    """

    row: Mapping[str, Any]
    row_id: int
    column: str
    seed: int
    params: Mapping[str, Any] = attrs.field(factory=dict)
    model: ModelHandle | None = None
    models: Models = attrs.field(factory=dict)
    tools: Toolbox | None = None
    _rng: random.Random | None = None

    @property
    def cell_key(self) -> tuple[int, int, str]:
        """(run seed, row id, column): pass it as ``ctx.model.chat(request, cell=ctx.cell_key)``
        so that a sampled request cached by ``cache: true`` keeps an answer of its own for
        this row (see ``docs/cache.md``)."""
        return (self.seed, self.row_id, self.column)

    @property
    def rng(self) -> random.Random:
        """A random stream unique to this (run seed, column, row); created on first use."""
        if self._rng is None:
            self._rng = derive_rng(self.seed, self.column, "row", self.row_id)
        return self._rng


@define(kw_only=True, slots=True)
class BatchContext:
    """What a batch generator gets for one row group.

    Attributes:
        row_ids: dataset positions of the live rows in this batch, ascending.
        columns: each upstream column's values over those rows, aligned with ``row_ids``.
        row_group: the row group's index.
        group_row_ids: every row id of the row group, dropped ones included. A generator that
            draws random values draws one per entry here and picks ``row_ids`` from them, so a
            row's value never depends on which other rows were dropped.
        column: the node's primary column name.
        seed: the run seed; :attr:`rng` is derived from it, the column and the row group.
        params: the column's own parameters (custom columns' ``params``).
        model: for a custom column with ``model``, that alias's handle (``await
            ctx.model.chat(request)``; ``ctx.model.config`` is its ``ModelConfig``).
        models: the run's model handles by alias (what LLM generators call).
    """

    row_ids: Sequence[int]
    columns: Mapping[str, Sequence[Any]]
    row_group: int
    column: str
    seed: int
    group_row_ids: Sequence[int] | None = None
    params: Mapping[str, Any] = attrs.field(factory=dict)
    model: ModelHandle | None = None
    models: Models = attrs.field(factory=dict)
    _rng: random.Random | None = None

    def positions(self) -> list[int] | None:
        """Where each of ``row_ids`` sits in ``group_row_ids``; ``None`` when they are the same
        rows (nothing dropped, or no group given)."""
        group = self.group_row_ids
        if group is None or len(group) == len(self.row_ids):
            return None
        first = group[0]
        return [row_id - first for row_id in self.row_ids]

    @property
    def rng(self) -> random.Random:
        """A random stream unique to this (run seed, column, row group); created on first use."""
        if self._rng is None:
            self._rng = derive_rng(self.seed, self.column, "group", self.row_group)
        return self._rng

    def __len__(self) -> int:
        return len(self.row_ids)


#: What a generator is called with: a :class:`CellContext` for a ``cell`` generator, a
#: :class:`BatchContext` for a ``batch`` one.
Context: TypeAlias = CellContext | BatchContext
#: The context a generator class takes: ``CellContext`` (cell generators), ``BatchContext``
#: (batch generators) or ``Context`` (generators that are either, by configuration).
ContextT = TypeVar("ContextT", bound=Context)

#: What a generator returns (see the module docstring): for a cell, the value of its one column
#: named as itself, else a mapping from each output column to its value; for a batch, the same
#: with a sequence of one value per row (or :class:`RowFailure`) in place of each value. Values
#: are whatever the output's Arrow type takes, so the type says no more than ``object``;
#: :func:`normalize_result` checks the shape.
Output: TypeAlias = object


@frozen
class DeferredOutputs:
    """A generator's outputs whose Arrow types are built only when first read (pyarrow need
    not be imported to compile a pipeline and send its first model request).

    Attributes:
        names: the output columns, in order.
        build: returns each of ``names`` (in that order) with its Arrow type.
    """

    names: tuple[str, ...]
    build: Callable[[], Mapping[str, pa.DataType]]


class ColumnGenerator(Generic[ContextT]):
    """Base class of every generator. Subclasses set the class variables and implement one of
    :meth:`generate` / :meth:`agenerate`.

    Class attributes (an instance may override them in ``__init__``):
        granularity: ``"cell"`` or ``"batch"``.
        model_bound: the generator waits on a model; the scheduler moves its task from the
            submission limiter to the LLM-wait limiter before calling it.
        encoders: per output column, a function from the in-memory value to the stored one.
        inline: a cheap synchronous generator (bookkeeping-sized work) that runs directly on the
            event loop instead of a worker thread. Only for built-ins that never block.
        model_lane: for a model-bound generator, the alias of the model its calls wait on and
            that model's ``max_parallel_requests``. The scheduler dispatches only a few times
            that many of the lane's tasks at once and keeps the rest in its ready queue, so
            tasks queued for a busy model never hold the LLM-wait slots another model's tasks
            need. ``None``: no lane (only the global limits apply).
    """

    granularity: Granularity = "cell"
    model_bound: bool = False
    inline: bool = False
    model_lane: tuple[str, int] | None = None
    #: Per output column, how a value is turned into what the file stores (e.g. a parsed JSON
    #: object into JSON text); downstream templates see the value before encoding.
    encoders: Mapping[str, Callable[[Any], Any]] = MappingProxyType({})
    #: Per output column, the Arrow field metadata it is stored with (e.g. the mark of a
    #: column holding JSON text, ``gridloom.storage._convert.JSON_TEXT_METADATA``).
    field_metadata: Mapping[str, Mapping[bytes, bytes]] = MappingProxyType({})

    def __init__(self, *, name: str, outputs: Mapping[str, pa.DataType] | DeferredOutputs):
        if isinstance(outputs, DeferredOutputs):
            names: tuple[str, ...] = outputs.names
            self._outputs: dict[str, pa.DataType] | None = None
            self._deferred: DeferredOutputs | None = outputs
        else:
            names = tuple(outputs)
            self._outputs, self._deferred = dict(outputs), None
        if not names:
            raise ValueError("a generator needs at least one output column")
        self.name = name
        self._output_names = names

    @property
    def outputs(self) -> dict[str, pa.DataType]:
        """Each output column and its Arrow type (built on first read when deferred)."""
        if self._outputs is None:
            assert self._deferred is not None
            built = dict(self._deferred.build())
            if tuple(built) != self._output_names:  # pragma: no cover - a generator bug
                raise ValueError(f"deferred outputs {list(built)} != {list(self._output_names)}")
            self._outputs, self._deferred = built, None
        return self._outputs

    @outputs.setter
    def outputs(self, outputs: Mapping[str, pa.DataType]) -> None:
        self._outputs, self._deferred = dict(outputs), None
        self._output_names = tuple(outputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The output columns, in order (their types are not built for this)."""
        if self._outputs is not None:
            return tuple(self._outputs)
        return self._output_names

    def add_output(self, name: str, type_of: Callable[[], pa.DataType]) -> None:
        """Add the output column ``name`` of type ``type_of()`` (called when the types are
        built, at once when they already are)."""
        if self._deferred is None:
            self.outputs[name] = type_of()
            self._output_names = tuple(self.outputs)
            return
        build = self._deferred.build
        self._deferred = DeferredOutputs(
            (*self._output_names, name), lambda: {**build(), name: type_of()}
        )
        self._output_names = self._deferred.names

    @property
    def is_async(self) -> bool:
        """True when the subclass implements :meth:`agenerate`."""
        return type(self).agenerate is not ColumnGenerator.agenerate

    def generate(self, ctx: ContextT) -> Output:
        """Synchronous generation; see the module docstring for the return shape."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither generate nor agenerate"
        )

    async def agenerate(self, ctx: ContextT) -> Output:
        """Asynchronous generation; see the module docstring for the return shape."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.granularity}>"


def normalize_result(
    generator: ColumnGenerator[Any], kind: Granularity, value: Output, n_rows: int
) -> Mapping[str, Any]:
    """A generator's result as a mapping from each of its declared outputs to its value (a
    ``cell`` task) or to its sequence of ``n_rows`` values (a ``batch`` task) — the one place
    the contract's shape is checked.

    A generator that fills one column named as itself returns that column's value (or
    sequence) directly; any other returns a mapping with exactly its output columns as keys.
    Values, and items of a batch's sequences, may be :class:`RowFailure`.

    Args:
        generator: the generator that returned ``value``.
        kind: ``cell`` or ``batch``: what the task was.
        value: what ``generate``/``agenerate`` returned.
        n_rows: the rows of a batch task (ignored for a cell).

    Raises:
        GenerationError: ``value`` is not of that shape; the message names the column.
    """
    outputs = generator.output_names
    name = generator.name
    mapping: Mapping[str, Any]
    if len(outputs) == 1 and name in outputs:
        mapping = {name: value}
    elif isinstance(value, Mapping) and set(value) == set(outputs):
        mapping = value
    else:
        raise GenerationError(
            f"column {name!r}: generator must return a mapping with keys "
            f"{sorted(outputs)}, got {type(value).__name__}"
        )
    if kind == "cell":
        return mapping
    for col in outputs:
        values = mapping[col]
        if not isinstance(values, Sequence) or isinstance(values, str | bytes):
            raise GenerationError(
                f"column {name!r}: batch generator returned "
                f"{type(values).__name__}, expected a list of {n_rows} values"
            )
        if len(values) != n_rows:
            raise GenerationError(
                f"column {name!r}: batch generator returned {len(values)} values for {n_rows} rows"
            )
    return mapping
