"""A fluent builder for writing pipelines in Python.

::

    cfg = (PipelineBuilder(seed=7)
           .category("topic", ["rivers", "volcanoes"], weights=[2, 1])
           .uniform("age", 18, 90, convert_to="int")
           .expression("title", "{{ topic }} ({{ age }})")
           .custom("score", my_fn, depends_on=["title"], dtype="float")
           .run(row_group_size=100)
           .build())

Each column method mirrors the fields of its column class; every method except
:meth:`PipelineBuilder.build` returns the builder. Invalid arguments raise
:class:`~gridloom.errors.ConfigError` naming the column and the field, as loading a file would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Self

import attrs

from ..errors import ConfigError
from ._columns import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    ColumnConfig,
    ConvertTo,
    CustomColumn,
    DatetimeColumn,
    DType,
    ExpressionColumn,
    GaussianColumn,
    PoissonColumn,
    SubcategoryColumn,
    TimedeltaColumn,
    TimeUnit,
    UniformColumn,
    UUIDColumn,
)
from ._converter import converter, find_invalid_field
from ._llm import (
    EmbeddingColumn,
    LLMCodeColumn,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
    Rubric,
)
from ._models import ModelConfig, PipelineConfig, ProviderConfig, RunConfig, SeedDatasetConfig

__all__ = ["PipelineBuilder"]

_COMMON_FIELDS = frozenset(a.name for a in attrs.fields(ColumnConfig))


def _construct(cls: type[Any], values: dict[str, Any], *, column: str | None, where: str) -> Any:
    """``cls(**values)``, with constructor errors turned into a located ConfigError."""
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            name: str | None = unknown[0]
            message = f"unknown argument {unknown[0]!r}"
        else:
            name = find_invalid_field(cls, values)
            message = str(exc)
        if name is None:
            field = where or None
        elif column is not None and name in _COMMON_FIELDS:
            field = name
        else:
            field = f"{where}.{name}" if where else name
        raise ConfigError(message, column=column, field=field) from None


def _datetime(value: str | dt.datetime | dt.date, *, column: str, field: str) -> dt.datetime:
    try:
        parsed: dt.datetime = converter.structure(value, dt.datetime)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), column=column, field=field) from None
    return parsed


class PipelineBuilder:
    """Collects columns, providers, models and run settings, then builds a PipelineConfig.

    Args:
        seed: shorthand for ``.run(seed=...)``.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self._columns: list[ColumnConfig] = []
        self._providers: list[ProviderConfig] = []
        self._models: list[ModelConfig] = []
        self._seed_dataset: SeedDatasetConfig | None = None
        self._run: dict[str, Any] = {} if seed is None else {"seed": seed}

    # ------------------------------------------------------------------ any column

    def column(self, column: ColumnConfig) -> Self:
        """Add a column built elsewhere (any :class:`ColumnConfig` subclass)."""
        if not isinstance(column, ColumnConfig):
            raise ConfigError(f"expected a column config object, got {type(column).__name__}")
        self._columns.append(column)
        return self

    def _add(
        self,
        cls: type[ColumnConfig],
        name: str,
        depends_on: Iterable[str],
        drop: bool,
        **params: Any,
    ) -> Self:
        values = {"name": name, "depends_on": tuple(depends_on), "drop": drop, **params}
        column = _construct(cls, values, column=name, where=cls.kind)
        return self.column(column)

    # ------------------------------------------------------------------ samplers

    def category(
        self,
        name: str,
        values: Sequence[Any],
        *,
        weights: Sequence[float] | None = None,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`CategoryColumn`: a value drawn from ``values``, optionally weighted."""
        return self._add(CategoryColumn, name, depends_on, drop, values=values, weights=weights)

    def subcategory(
        self,
        name: str,
        parent: str,
        values: Mapping[Any, Sequence[Any]],
        *,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`SubcategoryColumn`: a value from the list of the row's ``parent``."""
        return self._add(SubcategoryColumn, name, depends_on, drop, parent=parent, values=values)

    def uniform(
        self,
        name: str,
        low: float,
        high: float,
        *,
        convert_to: ConvertTo | None = None,
        decimals: int | None = None,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`UniformColumn`: a number drawn uniformly from ``[low, high]``."""
        return self._add(
            UniformColumn,
            name,
            depends_on,
            drop,
            low=low,
            high=high,
            convert_to=convert_to,
            decimals=decimals,
        )

    def gaussian(
        self,
        name: str,
        mean: float = 0.0,
        stddev: float = 1.0,
        *,
        convert_to: ConvertTo | None = None,
        decimals: int | None = None,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`GaussianColumn`: a number from a normal distribution."""
        return self._add(
            GaussianColumn,
            name,
            depends_on,
            drop,
            mean=mean,
            stddev=stddev,
            convert_to=convert_to,
            decimals=decimals,
        )

    def poisson(
        self,
        name: str,
        mean: float,
        *,
        convert_to: ConvertTo | None = None,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`PoissonColumn`: a count with the given mean."""
        return self._add(PoissonColumn, name, depends_on, drop, mean=mean, convert_to=convert_to)

    def bernoulli(
        self,
        name: str,
        p: float,
        *,
        convert_to: ConvertTo | None = None,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`BernoulliColumn`: 1 with probability ``p``, else 0."""
        return self._add(BernoulliColumn, name, depends_on, drop, p=p, convert_to=convert_to)

    def binomial(
        self,
        name: str,
        n: int,
        p: float,
        *,
        convert_to: ConvertTo | None = None,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`BinomialColumn`: successes in ``n`` trials of probability ``p``."""
        return self._add(BinomialColumn, name, depends_on, drop, n=n, p=p, convert_to=convert_to)

    def uuid(
        self,
        name: str,
        *,
        prefix: str = "",
        short: bool = False,
        uppercase: bool = False,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`UUIDColumn`: a random UUID4 as text."""
        return self._add(
            UUIDColumn, name, depends_on, drop, prefix=prefix, short=short, uppercase=uppercase
        )

    def datetime(
        self,
        name: str,
        start: str | dt.datetime | dt.date,
        end: str | dt.datetime | dt.date,
        *,
        unit: TimeUnit = "seconds",
        format: str | None = None,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`DatetimeColumn`; ``start`` and ``end`` may be ISO 8601 strings."""
        return self._add(
            DatetimeColumn,
            name,
            depends_on,
            drop,
            start=_datetime(start, column=name, field="datetime.start"),
            end=_datetime(end, column=name, field="datetime.end"),
            unit=unit,
            format=format,
        )

    def timedelta(
        self,
        name: str,
        min: int,
        max: int,
        *,
        unit: TimeUnit = "days",
        reference: str | None = None,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`TimedeltaColumn`: a whole number of ``unit`` in ``[min, max]``."""
        return self._add(
            TimedeltaColumn,
            name,
            depends_on,
            drop,
            min=min,
            max=max,
            unit=unit,
            reference=reference,
        )

    # ------------------------------------------------------------------ expression, custom

    def expression(
        self,
        name: str,
        template: str,
        *,
        dtype: DType = "string",
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add an :class:`ExpressionColumn`: a Jinja template rendered per row."""
        return self._add(ExpressionColumn, name, depends_on, drop, template=template, dtype=dtype)

    def custom(
        self,
        name: str,
        function: str | Callable[..., Any],
        *,
        mode: Literal["cell", "batch"] = "cell",
        dtype: DType = "string",
        params: Mapping[str, Any] | None = None,
        model: str | None = None,
        depends_on: Iterable[str] = (),
        drop: bool = False,
    ) -> Self:
        """Add a :class:`CustomColumn`: ``function`` is a callable or ``"module:function"``."""
        return self._add(
            CustomColumn,
            name,
            depends_on,
            drop,
            function=function,
            mode=mode,
            dtype=dtype,
            params=dict(params or {}),
            model=model,
        )

    # ------------------------------------------------------------------ model columns

    def llm_text(
        self,
        name: str,
        model: str,
        prompt: str,
        *,
        depends_on: Iterable[str] = (),
        drop: bool = False,
        **fields: Any,
    ) -> Self:
        """Add an :class:`LLMTextColumn` (``fields``: system_prompt, temperature, top_p,
        max_tokens, timeout, extra_body, with_reasoning)."""
        return self._add(
            LLMTextColumn, name, depends_on, drop, model=model, prompt=prompt, **fields
        )

    def llm_code(
        self,
        name: str,
        model: str,
        prompt: str,
        *,
        language: str = "python",
        depends_on: Iterable[str] = (),
        drop: bool = False,
        **fields: Any,
    ) -> Self:
        """Add an :class:`LLMCodeColumn`: one fenced code block in ``language``."""
        return self._add(
            LLMCodeColumn,
            name,
            depends_on,
            drop,
            model=model,
            prompt=prompt,
            language=language,
            **fields,
        )

    def llm_structured(
        self,
        name: str,
        model: str,
        prompt: str,
        schema: Mapping[str, Any],
        *,
        depends_on: Iterable[str] = (),
        drop: bool = False,
        **fields: Any,
    ) -> Self:
        """Add an :class:`LLMStructuredColumn`: JSON valid against ``schema``."""
        return self._add(
            LLMStructuredColumn,
            name,
            depends_on,
            drop,
            model=model,
            prompt=prompt,
            schema=dict(schema),
            **fields,
        )

    def llm_judge(
        self,
        name: str,
        model: str,
        prompt: str,
        rubrics: Iterable[Rubric | Mapping[str, Any]],
        *,
        depends_on: Iterable[str] = (),
        drop: bool = False,
        **fields: Any,
    ) -> Self:
        """Add an :class:`LLMJudgeColumn`; each rubric is a :class:`Rubric` or a mapping with
        ``name``, ``description`` and ``scores``."""
        built = tuple(
            r if isinstance(r, Rubric) else _construct(Rubric, dict(r), column=name, where="rubric")
            for r in rubrics
        )
        return self._add(
            LLMJudgeColumn,
            name,
            depends_on,
            drop,
            model=model,
            prompt=prompt,
            rubrics=built,
            **fields,
        )

    def embedding(
        self,
        name: str,
        model: str,
        input: str,
        *,
        depends_on: Iterable[str] = (),
        drop: bool = False,
        **fields: Any,
    ) -> Self:
        """Add an :class:`EmbeddingColumn`: the vector of the rendered ``input``."""
        return self._add(
            EmbeddingColumn, name, depends_on, drop, model=model, input=input, **fields
        )

    # ------------------------------------------------------------------ pipeline parts

    def provider(self, provider: ProviderConfig | str, /, **fields: Any) -> Self:
        """Add a provider: a :class:`ProviderConfig`, or its name and the other fields."""
        if isinstance(provider, ProviderConfig):
            self._providers.append(provider)
        else:
            where = f"providers[{len(self._providers)}]"
            self._providers.append(
                _construct(ProviderConfig, {"name": provider, **fields}, column=None, where=where)
            )
        return self

    def model(self, model: ModelConfig | str, /, **fields: Any) -> Self:
        """Add a model: a :class:`ModelConfig`, or its alias and the other fields."""
        if isinstance(model, ModelConfig):
            self._models.append(model)
        else:
            where = f"models[{len(self._models)}]"
            self._models.append(
                _construct(ModelConfig, {"alias": model, **fields}, column=None, where=where)
            )
        return self

    def seed_dataset(self, dataset: SeedDatasetConfig | str, /, **fields: Any) -> Self:
        """Set the seed dataset: a :class:`SeedDatasetConfig`, or its path and other fields."""
        if isinstance(dataset, SeedDatasetConfig):
            self._seed_dataset = dataset
        else:
            self._seed_dataset = _construct(
                SeedDatasetConfig, {"path": dataset, **fields}, column=None, where="seed_dataset"
            )
        return self

    def run(self, **fields: Any) -> Self:
        """Set :class:`RunConfig` fields; later calls override earlier ones field by field."""
        merged = {**self._run, **fields}
        _construct(RunConfig, merged, column=None, where="run")  # fail here, not in build()
        self._run = merged
        return self

    def build(self) -> PipelineConfig:
        """The finished, validated pipeline.

        Raises:
            ConfigError: duplicate names, a model naming an unknown provider, no columns.
        """
        run: RunConfig = _construct(RunConfig, self._run, column=None, where="run")
        pipeline: PipelineConfig = _construct(
            PipelineConfig,
            {
                "columns": self._columns,
                "providers": self._providers,
                "models": self._models,
                "seed_dataset": self._seed_dataset,
                "run": run,
            },
            column=None,
            where="",
        )
        return pipeline
