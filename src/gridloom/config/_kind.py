"""What declares a column kind (:class:`ColumnKind`), what the registry knows of one
(:class:`KindInfo`), and the checks a declaration must pass to be registered."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs

from .._attrs import frozen
from ._columns import ColumnConfig
from ._validators import to_tuple

__all__ = ["BUILDER_METHODS", "COMMON_FIELDS", "ColumnKind", "KindInfo", "kind_problem"]

C = TypeVar("C", bound=ColumnConfig)

#: The fields every column has; a kind's config class inherits them and may not redefine them.
COMMON_FIELDS: tuple[str, ...] = tuple(a.name for a in attrs.fields(ColumnConfig))
#: ``PipelineBuilder``'s own methods: a kind key may not take one of these names.
BUILDER_METHODS = frozenset(
    {
        "add",
        "build",
        "column",
        "constraint",
        "model",
        "processors",
        "provider",
        "run",
        "seed_dataset",
    }
)


@frozen(kw_only=True)
class ColumnKind(Generic[C]):
    """A column kind, declared by one module and named by its ``gridloom.columns`` entry point.

    Built-in kinds and plugins' kinds are declared and found the same way::

        KIND = ColumnKind(config=LabelColumn, build=build_label, positional=("model", "prompt"))

    and in the distribution's ``pyproject.toml``::

        [project.entry-points."gridloom.columns"]
        llm_label = "my_package.label:KIND"

    Attributes:
        config: the kind's configuration: a frozen attrs subclass of
            :class:`~gridloom.config.ColumnConfig` (``@attrs.frozen(kw_only=True)``) whose
            ``kind`` class variable is the kind key (the entry point's name). Its fields are the
            kind's parameters in YAML; its docstring (prose, then a Google-style
            ``Attributes:`` section) documents the kind in the configuration reference, the
            JSON Schema and the builder method.
        build: ``build(column, ctx)``: the :class:`~gridloom.generators.ColumnGenerator` that
            fills a column of this kind; ``ctx`` is a :class:`~gridloom.generators.BuildContext`.
            It may raise :class:`~gridloom.errors.ConfigError` for problems visible before a run.
        positional: the fields ``PipelineBuilder.<kind>()`` takes positionally after the
            column's name, in order; the other fields are keyword-only.
        shorthand: a field that a plain string may stand for in a file:
            ``{expression: "{{ a }}"}`` means ``{expression: {template: "{{ a }}"}}``.
        schema: adjusts the JSON Schema of the kind's parameters (generated from ``config``):
            called with that schema, returns the one to use.
    """

    config: type[C]
    build: Callable[[C, Any], Any]
    positional: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    shorthand: str | None = None
    schema: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def name(self) -> str:
        """The kind key (``config.kind``)."""
        return self.config.kind


@frozen(kw_only=True)
class KindInfo:
    """One column kind the registry found, available or not (see ``gridloom.kinds.installed``).

    Attributes:
        name: the kind key (the entry point's name).
        config: the kind's config class; ``None`` when its module did not load.
        distribution: the distribution (installed package) that declares it, ``gridloom`` for
            the built-in kinds; ``None`` when the entry point belongs to none.
        version: that distribution's version, when known.
        entry_point: the entry point, ``name = module:attribute``.
        builtin: one of gridloom's own kinds.
        problem: why the kind is not available (its module failed to import, its declaration
            is invalid, or its name is taken); ``None`` when it is.
    """

    name: str
    config: type[ColumnConfig] | None
    distribution: str | None
    version: str | None
    entry_point: str
    builtin: bool
    problem: str | None = None

    @property
    def available(self) -> bool:
        """Whether columns of this kind can be used."""
        return self.problem is None

    @property
    def origin(self) -> str:
        """Where the kind comes from, for messages: ``plugin example 0.1.0 (entry point ...)``."""
        if self.builtin:
            return "gridloom (built in)"
        package = " ".join(part for part in (self.distribution, self.version) if part)
        where = f"entry point {self.entry_point}"
        return f"plugin {package} ({where})" if package else where

    @property
    def summary(self) -> str:
        """The first sentence of the kind's documentation (empty when it did not load)."""
        if self.config is None:
            return ""
        prose = inspect.cleandoc(self.config.__doc__ or "").partition("\n\n")[0]
        return " ".join(prose.split()).replace("``", "`")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the config class as ``module:qualname``)."""
        config = self.config
        return {
            "name": self.name,
            "config": None if config is None else f"{config.__module__}:{config.__qualname__}",
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "builtin": self.builtin,
            "available": self.available,
            "problem": self.problem,
            "summary": self.summary,
        }


def kind_problem(declared: object, entry_name: str, *, thorough: bool = True) -> str | None:
    """Why ``declared`` (what an entry point named ``entry_name`` loaded) cannot be registered,
    or ``None`` when it can.

    ``thorough=False`` leaves out the two slow checks, that the config's field types resolve
    and that the kind's parameters have a JSON Schema: the registry skips them for gridloom's
    own kinds, which the test suite checks in full, so that a run does not build every
    built-in's schema before its first request.
    """
    if not isinstance(declared, ColumnKind):
        return f"it names {_short(declared)}, not a gridloom.kinds.ColumnKind"
    cls = declared.config
    if not (isinstance(cls, type) and issubclass(cls, ColumnConfig)):
        return f"its config {cls!r} is not a subclass of gridloom.config.ColumnConfig"
    return (
        _key_problem(cls, entry_name)
        or _field_problem(cls, resolve=thorough)
        or _declaration_problem(declared, cls)
        or (_schema_problem(declared) if thorough else None)
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key_problem(cls: type[ColumnConfig], entry_name: str) -> str | None:
    where = cls.__qualname__
    if "__attrs_attrs__" not in vars(cls):
        return f"config class {where} is not an attrs class (decorate it @attrs.frozen)"
    key = cls.kind
    if not key:
        return f"config class {where} sets no kind key (add kind: ClassVar[str] = {entry_name!r})"
    if not isinstance(key, str) or not key.isidentifier():
        return f"the kind key {key!r} of {where} is not a name (letters, digits, underscores)"
    if key != entry_name:
        return (
            f"the entry point is named {entry_name!r} but {where} declares the kind key {key!r};"
            " name the entry point after the kind"
        )
    if key in COMMON_FIELDS or key == "kind" or key in BUILDER_METHODS:
        return f"the kind key {key!r} is reserved (a common column field or a builder method)"
    return None


def _field_problem(cls: type[ColumnConfig], *, resolve: bool = True) -> str | None:
    where = cls.__qualname__
    for field in attrs.fields(cls):
        if field.name == "kind":
            return f"{where} has a field named 'kind'; the kind key is a ClassVar"
        if field.name in COMMON_FIELDS and not field.inherited:
            return f"{where} redefines the common column field {field.name!r}"
    if not resolve:
        return None
    try:
        typing.get_type_hints(cls)
    except Exception as exc:
        return f"the field types of {where} cannot be resolved: {type(exc).__name__}: {exc}"
    return None


def _declaration_problem(declared: ColumnKind[Any], cls: type[ColumnConfig]) -> str | None:
    fields = {a.name: a for a in attrs.fields(cls) if a.name not in COMMON_FIELDS}
    build: object = declared.build
    if not callable(build):
        return f"its build ({build!r}) is not callable"
    unknown = [name for name in (*declared.positional, declared.shorthand) if name is not None]
    unknown = [name for name in unknown if name not in fields]
    if unknown:
        return f"{unknown[0]!r} (positional or shorthand) is not a field of {cls.__qualname__}"
    if len(set(declared.positional)) != len(declared.positional):
        return "its positional fields repeat a name"
    with_default = [n for n in declared.positional if fields[n].default is not attrs.NOTHING]
    if with_default and any(
        fields[n].default is attrs.NOTHING
        for n in declared.positional[declared.positional.index(with_default[0]) :]
    ):
        return "a positional field without a default follows one with a default"
    return None


def _schema_problem(declared: ColumnKind[Any]) -> str | None:
    from ._schema import kind_schema  # the schema module reads the registry in turn

    try:
        kind_schema(declared)
    except Exception as exc:
        return f"its parameters have no JSON Schema: {type(exc).__name__}: {exc}"
    return None
