"""The machinery of :class:`~gridloom.config.PipelineBuilder`: its own methods, and one method
per registered column kind, made from the kind's declaration.

A kind's method is named after its kind key. It takes the column's name, then the fields the
kind lists as ``positional``, then every other field of its config class as a keyword, then
``depends_on``, ``drop`` and ``skip_when``; its types are the fields' types, widened to what
the method converts (any ordered iterable for a list — but not text, bytes, a mapping or a
set, refused as a file's would be —, any mapping for a mapping, a mapping for a nested config
object, ISO text or a date for a datetime), and its docstring comes from the config class's.
The methods of the built-in kinds are also written out, typed, in ``_builder.pyi`` (generated
by ``python -m gridloom.kinds._stub``) so editors and type checkers know them.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

import attrs
from cattrs.errors import ClassValidationError

from .._attrs import frozen
from ..errors import ConfigError
from ._columns import ColumnConfig
from ._constraints import DEFAULT_MAX_ATTEMPTS, Constraint
from ._converter import converter, structure_processor
from ._issues import ColumnIssues, collect, describe, find_invalid_field, render_path
from ._kind import COMMON_FIELDS, ColumnKind
from ._kinds import column_kinds, kind_named, unavailable, unavailable_message
from ._models import ModelConfig, PipelineConfig, ProviderConfig, RunConfig, SeedDatasetConfig
from ._processors import ProcessorConfig
from ._schema import split_doc
from ._seed_tables import seed_path
from ._tools import ToolConfig
from ._validator import ValidatorConfig
from ._validators import FieldTypeError, FieldValueError, list_problem

__all__ = ["BuilderBase", "KindParameter", "construct", "kind_method_doc", "kind_parameters"]


def construct(
    cls: type[Any], values: dict[str, Any], *, column: str | None, where: str, common: bool = False
) -> Any:
    """``cls(**values)``, with constructor errors turned into a located ConfigError.

    Args:
        cls: an attrs class.
        values: its keyword arguments.
        column: the column being built, if any.
        where: the field path of ``cls`` (``category``, ``run``, ``models[0]``...).
        common: ``cls`` is a column class, whose common fields (``name``...) are located at
            the column level.
    """
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(values) - known)
        keys: tuple[str | int, ...] = ()
        if unknown:
            name: str | None = unknown[0]
            message = f"unknown argument {unknown[0]!r}"
        else:
            name = _field_of(cls, exc) or find_invalid_field(cls, values)
            keys = exc.keys if isinstance(exc, FieldTypeError | FieldValueError) else ()
            message = _message(exc)
        if name is None:
            field = where or None
        else:
            inside = render_path((name, *keys))
            field = (
                inside if (common and name in COMMON_FIELDS) or not where else f"{where}.{inside}"
            )
        raise ConfigError(message, column=column, field=field) from None


def _field_of(cls: type[Any], exc: Exception) -> str | None:
    """The field of ``cls`` that an error in attrs' shape (a validator's, a converter's)
    names, if any (not one of a class made inside a converter)."""
    args = exc.args
    if len(args) == 4 and isinstance(args[1], attrs.Attribute):
        name: str = args[1].name
        if attrs.fields_dict(cls).get(name) is args[1]:
            return name
    return None


def _message(exc: Exception) -> str:
    """The text of a constructor's error. An attrs validator's error has four ``args`` (its
    message, the attribute, what was expected, the value): the message alone, or for a
    type check, the types expected by name and the value given."""
    args = exc.args
    if len(args) != 4 or not isinstance(args[1], attrs.Attribute):
        return str(exc)
    if isinstance(exc, TypeError) and isinstance(args[2], type | tuple):  # instance_of
        names = args[2] if isinstance(args[2], tuple) else (args[2],)
        wanted = " or ".join(getattr(t, "__name__", str(t)) for t in names)
        return f"expected {wanted}, got {describe(args[3])}"
    return str(args[0])


# --------------------------------------------------------------------------- kind methods


@frozen
class KindParameter:
    """One parameter of a kind's builder method.

    Attributes:
        name: the parameter's (and field's) name.
        annotation: the type the method accepts (wider than the field's, see the module doc).
        default: its default; ``attrs.NOTHING`` when it is required.
        positional: it may be given by position (else it is keyword-only).
    """

    name: str
    annotation: Any
    default: Any
    positional: bool


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _nested_class(tp: Any) -> type | None:
    """The attrs class a field of type ``tp`` holds (itself, or as list items), if any."""
    if _is_union(tp):
        found = [c for c in map(_nested_class, typing.get_args(tp)) if c is not None]
        return found[0] if found else None
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and args:
        return _nested_class(args[0])
    if isinstance(tp, type) and attrs.has(tp) and not issubclass(tp, ColumnConfig):
        return tp
    return None


def _is_list(tp: Any) -> bool:
    """Whether a field of type ``tp`` holds a list (``tuple[X, ...]``, or that or ``None``)."""
    if _is_union(tp):
        members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return len(members) == 1 and _is_list(members[0])
    args = typing.get_args(tp)
    return typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def widen(tp: Any) -> Any:
    """The type a builder method accepts for a field of type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is dt.datetime:
        return str | dt.datetime | dt.date
    if _is_union(tp):
        return typing.Union[tuple(widen(arg) for arg in args)]  # noqa: UP007
    if origin is tuple and args and (len(args) == 1 or args[1] is Ellipsis):
        return Iterable[widen(args[0])]  # type: ignore[misc]
    if origin is dict and len(args) == 2:
        return Mapping[args[0], widen(args[1])]  # type: ignore[misc,valid-type]
    if _nested_class(tp) is tp:
        return tp | Mapping[str, Any]
    return tp


@functools.cache
def kind_parameters(kind: ColumnKind[Any]) -> tuple[KindParameter, ...]:
    """The parameters of ``kind``'s builder method, ``name`` to ``skip_when``."""
    cls = kind.config
    hints = typing.get_type_hints(cls)
    fields = {a.name: a for a in attrs.fields(cls) if a.name not in COMMON_FIELDS}
    order = [*kind.positional, *(name for name in fields if name not in kind.positional)]
    params = [KindParameter("name", str, attrs.NOTHING, positional=True)]
    for name in order:
        annotation, default = widen(hints[name]), fields[name].default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            annotation, default = annotation | None, None  # None: the field's default
        params.append(KindParameter(name, annotation, default, name in kind.positional))
    params.append(KindParameter("depends_on", Iterable[str], (), positional=False))
    params.append(KindParameter("drop", bool, False, positional=False))
    params.append(KindParameter("skip_when", str | None, None, positional=False))
    params.append(
        KindParameter(
            "conditional_params", Mapping[str, Mapping[str, Any]] | None, None, positional=False
        )
    )
    return tuple(params)


def kind_method_doc(kind: ColumnKind[Any]) -> str:
    """The docstring of ``kind``'s builder method, from its config class's."""
    cls = kind.config
    prose, described = split_doc(cls)
    summary = prose.partition("\n\n")[0]
    first = summary.split()[0] if summary else ""
    if first and not (len(first) > 1 and first.isupper()):
        summary = summary[0].lower() + summary[1:]
    factories = {a.name for a in attrs.fields(cls) if isinstance(a.default, attrs.Factory)}  # type: ignore[arg-type]
    lines = textwrap.wrap(f"Add a `{kind.name}` column ({cls.__name__}): {summary}", width=88)
    lines += ["", "Args:"]
    for param in kind_parameters(kind):
        text = described.get(param.name, "")
        if param.name in factories:
            text = text.rstrip(".") + "; None for the default."
        lines += textwrap.wrap(
            f"{param.name}: {text}".rstrip(": "),
            width=88,
            initial_indent="    ",
            subsequent_indent="        ",
        )
    return "\n".join(lines)


@functools.cache
def _signature(kind: ColumnKind[Any]) -> inspect.Signature:
    """The method's signature without ``self``: what arguments are bound against."""
    parameters = [
        inspect.Parameter(
            p.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD
            if p.positional
            else inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if p.default is attrs.NOTHING else p.default,
            annotation=p.annotation,
        )
        for p in kind_parameters(kind)
    ]
    return inspect.Signature(parameters)


def _plain_params(value: Any) -> Any:
    """``conditional_params`` as given to a builder method, with each entry a plain dict (a
    value of the wrong shape is left for the field's validator to name)."""
    if not isinstance(value, Mapping):
        return value
    return {
        key: dict(params) if isinstance(params, Mapping) else params
        for key, params in value.items()
    }


def _prepared(kind: ColumnKind[Any], column: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The config class's keyword arguments for the builder method's ``arguments``."""
    fields = attrs.fields_dict(kind.config)
    hints = typing.get_type_hints(kind.config)
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        field, where = fields[name], f"{kind.name}.{name}"
        if value is None and isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            continue
        out[name] = _converted(hints[name], value, column=column, where=where)
    return out


def _structured(cls: type[Any], value: Mapping[str, Any], *, column: str | None, where: str) -> Any:
    """``value`` structured as ``cls`` by the config converter, as a file's would be; its
    problems become a ConfigError located under ``where``."""
    try:
        return converter.structure(dict(value), cls)
    except (ClassValidationError, ColumnIssues) as exc:
        issues = exc.issues if isinstance(exc, ColumnIssues) else collect(exc)
        # A misspelt key explains the missing one it was meant to be: name it first.
        issue = next((i for i in issues if i.unknown_key), issues[0])
        field = ".".join([where, *map(str, issue.path)])
        raise ConfigError(issue.message, column=column, field=field) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), column=column, field=where) from None


def _converted(tp: Any, value: Any, *, column: str | None, where: str) -> Any:
    """``value`` as the field of type ``tp`` holds it, for the wider forms :func:`widen`
    allows; any other value is left for the config class to refuse."""
    nested = _nested_class(tp)
    if value is None:
        return value
    if dt.datetime in (tp, *typing.get_args(tp)) and not isinstance(value, dt.datetime):
        try:
            return converter.structure(value, dt.datetime)
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc), column=column, field=where) from None
    many = typing.get_origin(tp) is tuple
    problem = list_problem(value) if nested is None and _is_list(tp) else None
    if problem is not None:
        # As a file's list is checked: a string is not the list of its characters (in a
        # plugin's field with a converter of its own too).
        raise ConfigError(problem, column=column, field=where)
    # A validator's (a tool's) class follows from its ``kind`` key (its one key), as in a file.
    by_key = nested in (ValidatorConfig, ToolConfig)
    if nested is ValidatorConfig and not many and isinstance(value, Mapping):
        # A validator's class follows from its ``kind`` key, as in a file.
        return _structured(nested, value, column=column, where=where)
    if nested is not None and not many and isinstance(value, Mapping):
        return construct(nested, dict(value), column=column, where=where)
    if nested is not None and many and list_problem(value) is not None:
        message = f"expected a list of {nested.__name__} objects or mappings, got {describe(value)}"
        raise ConfigError(message, column=column, field=where)
    if nested is not None and many and isinstance(value, Iterable):
        make = _structured if by_key else construct
        return tuple(
            make(nested, dict(item), column=column, where=f"{where}[{index}]")
            if isinstance(item, Mapping)
            else item
            for index, item in enumerate(value)
        )
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return dict(value)
    return value


@functools.cache
def _kind_function(kind: ColumnKind[Any]) -> Callable[..., Any]:
    """The builder method of ``kind``, as a plain function."""

    def method(self: BuilderBase, /, *args: Any, **kwargs: Any) -> BuilderBase:
        return self._add_kind(kind, args, kwargs)

    method.__name__ = kind.name
    method.__qualname__ = f"PipelineBuilder.{kind.name}"
    method.__module__ = "gridloom.config"
    method.__doc__ = kind_method_doc(kind)
    signature = _signature(kind)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *signature.parameters.values()], return_annotation="Self"
    )
    return method


def _missing(owner: str, name: str) -> AttributeError:
    info = unavailable(name)
    if info is not None:
        return AttributeError(f"{owner} has no method {name!r}: {unavailable_message(info)}")
    return AttributeError(f"{owner} has no attribute {name!r}")


def _kind_or_missing(owner: str, name: str) -> Callable[..., Any]:
    if name.startswith("_"):
        raise AttributeError(f"{owner} has no attribute {name!r}")
    kind = kind_named(name)
    if kind is None:
        raise _missing(owner, name)
    return _kind_function(kind)


class _KindMethods(type):
    """The builder's metaclass: ``PipelineBuilder.<kind>`` is the kind's method."""

    if not TYPE_CHECKING:  # type checkers see the built-ins' methods in _builder.pyi

        def __getattr__(cls, name: str) -> Any:
            return _kind_or_missing(f"type object {cls.__name__!r}", name)

    def __dir__(cls) -> Iterable[str]:
        return sorted({*super().__dir__(), *column_kinds()})


# --------------------------------------------------------------------------- the builder


P = TypeVar("P")


def _nested_values(cls: type[Any], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` (keyword arguments of ``cls``, a pipeline part) with each mapping given for
    a nested config class made into that class, as a file's would be (``simulation`` of a
    provider, ``throttle`` and ``ray`` of the run, ...)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for name, value in values.items():
        tp = hints.get(name)
        nested = None if tp is None else _nested_class(tp)
        many = typing.get_origin(tp) is tuple
        if nested is not None and not many and isinstance(value, Mapping) and _plain_data(value):
            # Plain data, as a file holds it: the converter makes it, nested levels and all.
            out[name] = _structured(nested, value, column=None, where=f"{where}.{name}")
        elif tp is not None:
            out[name] = _converted(tp, value, column=None, where=f"{where}.{name}")
        else:
            out[name] = value
    return out


def _plain_data(value: Any) -> bool:
    """Whether ``value`` is made of mappings, lists and scalars only (no config objects)."""
    if isinstance(value, Mapping):
        return all(_plain_data(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_plain_data(item) for item in value)
    return value is None or isinstance(value, str | int | float | bool)


def _part(cls: type[P], given: P | str, key: str, fields: dict[str, Any], where: str) -> P:
    """``given`` when it is a ``cls``, else ``cls(key=given, **fields)``."""
    if isinstance(given, cls):
        return given
    values = _nested_values(cls, {key: given, **fields}, where)
    built: P = construct(cls, values, column=None, where=where)
    return built


class BuilderBase(metaclass=_KindMethods):
    """Everything of :class:`~gridloom.config.PipelineBuilder` but its docstring.

    Args:
        seed: shorthand for ``.run(seed=...)``.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self._columns: list[ColumnConfig] = []
        self._providers: list[ProviderConfig] = []
        self._models: list[ModelConfig] = []
        self._seed_dataset: SeedDatasetConfig | None = None
        self._processors: list[ProcessorConfig] = []
        self._constraints: list[Constraint] = []
        self._run: dict[str, Any] = {} if seed is None else {"seed": seed}

    if not TYPE_CHECKING:  # see _KindMethods

        def __getattr__(self, name: str) -> Any:
            function = _kind_or_missing(f"{type(self).__name__!r} object", name)
            return types.MethodType(function, self)

    def __dir__(self) -> Iterable[str]:
        return sorted({*super().__dir__(), *column_kinds()})

    # ------------------------------------------------------------------ columns

    def column(self, column: ColumnConfig) -> Self:
        """Add a column built elsewhere (any :class:`ColumnConfig` subclass)."""
        if not isinstance(column, ColumnConfig):
            raise ConfigError(f"expected a column config object, got {type(column).__name__}")
        self._columns.append(column)
        return self

    def add(self, kind: str, name: str, /, *args: Any, **fields: Any) -> Self:
        """Add a column of ``kind`` (any registered kind, a plugin's too): the same as
        ``.<kind>(name, *args, **fields)``, for code that names the kind in a variable or
        that a type checker reads without knowing the plugin's method."""
        declared = kind_named(kind)
        if declared is None:
            info = unavailable(kind)
            message = unavailable_message(info) if info else f"unknown column kind {kind!r}"
            raise ConfigError(message, column=name)
        return self._add_kind(declared, (name, *args), fields)

    def _add_kind(
        self, kind: ColumnKind[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Self:
        signature = _signature(kind)
        name = args[0] if args else kwargs.get("name")
        column = name if isinstance(name, str) else None
        unknown = sorted(set(kwargs) - set(signature.parameters))
        if unknown:
            field = f"{kind.name}.{unknown[0]}"
            raise ConfigError(f"unknown argument {unknown[0]!r}", column=column, field=field)
        arguments = dict(signature.bind(*args, **kwargs).arguments)
        values = {
            "name": arguments.pop("name"),
            "depends_on": arguments.pop("depends_on", ()),
            "drop": arguments.pop("drop", False),
            "skip_when": arguments.pop("skip_when", None),
            "conditional_params": _plain_params(arguments.pop("conditional_params", None)),
            **_prepared(kind, column or "", arguments),
        }
        built = construct(kind.config, values, column=column, where=kind.name, common=True)
        return self.column(built)

    # ------------------------------------------------------------------ pipeline parts

    def provider(self, provider: ProviderConfig | str, /, **fields: Any) -> Self:
        """Add a provider: a :class:`ProviderConfig`, or its name and the other fields."""
        where = f"providers[{len(self._providers)}]"
        self._providers.append(_part(ProviderConfig, provider, "name", fields, where))
        return self

    def model(self, model: ModelConfig | str, /, **fields: Any) -> Self:
        """Add a model: a :class:`ModelConfig`, or its alias and the other fields."""
        where = f"models[{len(self._models)}]"
        self._models.append(_part(ModelConfig, model, "alias", fields, where))
        return self

    def seed_dataset(self, dataset: object, /, **fields: Any) -> Self:
        """Set the seed dataset: a :class:`SeedDatasetConfig`, or its path — or a pandas
        DataFrame or pyarrow Table, kept in memory — and other fields."""
        given = dataset if isinstance(dataset, SeedDatasetConfig) else seed_path(dataset)
        self._seed_dataset = _part(SeedDatasetConfig, given, "path", fields, "seed_dataset")
        return self

    def processors(self, *processors: ProcessorConfig | Mapping[str, Any]) -> Self:
        """Add processors, run in order on each finished row group: processor objects or
        their file form, ``{"drop_columns": ["a"]}``, ``{"rename": {"old": "new"}}``,
        ``{"schema_transform": {"template": {...}}}``."""
        for processor in processors:
            where = len(self._processors)
            self._processors.append(structure_processor(processor, where))
        return self

    def constraint(
        self,
        column: str,
        op: str,
        *,
        other: str | None = None,
        value: Any = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> Self:
        """Add a constraint: ``column op other`` (another column) or ``column op value`` (a
        constant), e.g. ``.constraint("hi", ">", other="lo")``, ``.constraint("age", ">=",
        value=18)``; ``column`` is a sampler column, redrawn where the constraint breaks."""
        where = f"constraints[{len(self._constraints)}]"
        values = {"column": column, "op": op, "other": other, "value": value}
        values["max_attempts"] = max_attempts
        self._constraints.append(construct(Constraint, values, column=column, where=where))
        return self

    def run(self, **fields: Any) -> Self:
        """Set :class:`RunConfig` fields; later calls override earlier ones field by field."""
        merged = _nested_values(RunConfig, {**self._run, **fields}, "run")
        construct(RunConfig, merged, column=None, where="run")  # fail here, not in build()
        self._run = merged
        return self

    def build(self) -> PipelineConfig:
        """The finished, validated pipeline.

        Raises:
            ConfigError: duplicate names, a model naming an unknown provider, no columns.
        """
        run: RunConfig = construct(RunConfig, self._run, column=None, where="run")
        pipeline: PipelineConfig = construct(
            PipelineConfig,
            {
                "columns": self._columns,
                "providers": self._providers,
                "models": self._models,
                "seed_dataset": self._seed_dataset,
                "processors": self._processors,
                "constraints": self._constraints,
                "run": run,
            },
            column=None,
            where="",
        )
        return pipeline
