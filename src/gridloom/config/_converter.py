"""The one cattrs converter between config objects and plain YAML/JSON data.

Structuring is strict: unknown keys fail (``forbid_extra_keys``), ``"5"`` is not an integer,
``"yes"`` is not a boolean and ``"abc"`` is not a list. Every failure, wherever it happens, is
reported in a single :class:`~gridloom.errors.ConfigError` that lists every problem found, each
naming its column and field path (see :mod:`._issues`).

Unstructuring gives plain data only (dict, list, str, int, float, bool, None) in a canonical
form: every field written out, tuples as lists, datetimes as ISO strings, callables as
``"module:qualname"`` import paths.
"""

from __future__ import annotations

import collections.abc
import contextvars
import datetime as dt
import importlib
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    iterable_unstructure_factory,
    mapping_structure_factory,
)
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
)

from ..errors import ConfigError
from ._cache import CacheSetting
from ._columns import ColumnConfig
from ._document import by_column, document_issues, reported
from ._fields import field_unstructurers, structurer_for
from ._inference import InferenceDistribution, is_param_type, structure_param, unstructure_param
from ._issues import (
    ColumnIssues,
    Issue,
    PathPart,
    collect,
    describe,
    find_invalid_field,
    misplaced_key_message,
    render_path,
    suggest,
    to_config_error,
)
from ._keyed import keyed_hooks
from ._kind import COMMON_FIELDS, ColumnKind
from ._kinds import column_kinds, is_builtin_name, kind_named, unavailable, unavailable_message
from ._llm import Rubric
from ._models import PipelineConfig
from ._processors import PROCESSOR_KINDS, ProcessorConfig
from ._scalars import (
    literal_hook,
    structure_bool,
    structure_datetime,
    structure_float,
    structure_function,
    structure_int,
    structure_int_or_str,
    structure_str,
)
from ._tools import TOOL_KINDS, ToolConfig
from ._validator import ValidatorConfig
from ._validators import text_problem

__all__ = ["converter", "structure_pipeline", "structure_processor", "unstructure_pipeline"]

#: The converter; hooks are registered below, at import.
converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

_COMMON_FIELDS = COMMON_FIELDS
#: Top-level key order of a dumped pipeline (the order a reader wants, not field order).
_PIPELINE_KEYS = (
    "providers",
    "models",
    "seed_dataset",
    "columns",
    "constraints",
    "processors",
    "run",
)
_LITERAL: Any = Literal
#: Whether the unstructuring in progress refuses what cannot be loaded back (see ``strict``).
_STRICT: contextvars.ContextVar[bool] = contextvars.ContextVar("gridloom_config_strict")


# --------------------------------------------------------------------------- type predicates


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, types.UnionType)


def _is_optional(tp: Any) -> bool:
    if not _is_union(tp):
        return False
    args = get_args(tp)
    return type(None) in args and len(args) == 2


def _is_function_type(tp: Any) -> bool:
    """``str | Callable[..., Any]``, the type of ``CustomColumn.function``."""
    return (
        _is_union(tp)
        and str in get_args(tp)
        and any(get_origin(arg) is collections.abc.Callable for arg in get_args(tp))
    )


def _is_tuple(tp: Any) -> bool:
    return tp is tuple or get_origin(tp) is tuple


def _is_dict(tp: Any) -> bool:
    return get_origin(tp) is dict


def _is_config_class(tp: Any) -> bool:
    """Any attrs class but the column base (which dispatches on the kind key)."""
    return (
        isinstance(tp, type)
        and attrs.has(tp)
        and tp is not ColumnConfig
        and tp is not ProcessorConfig
    )


def _tuple_hook(tp: Any) -> Callable[[Any, Any], Any]:
    inner = homogenous_tuple_structure_factory(tp, converter)

    def structure_tuple(obj: Any, _: Any) -> Any:
        if not isinstance(obj, list | tuple):
            raise TypeError(f"expected a list, got {describe(obj)}")
        return inner(obj, tp)

    return structure_tuple


def _dict_hook(tp: Any) -> Callable[[Any, Any], Any]:
    inner = mapping_structure_factory(tp, converter)

    def structure_dict(obj: Any, _: Any) -> Any:
        if not isinstance(obj, Mapping):
            raise TypeError(f"expected a mapping, got {describe(obj)}")
        return inner(obj, tp)

    return structure_dict


# --------------------------------------------------------------------------- attrs classes


def _attrs_hook(cls: type[Any]) -> Callable[[Any, Any], Any]:
    """The structure hook of the config class ``cls`` (:func:`._fields.structurer_for`). It
    looks up the hooks of its fields (and so of the classes they hold) the first time a value
    of ``cls`` is structured, not when a class holding one is: a config that leaves a section
    out (tools, seed datasets, Ray, MCP servers...) looks up none of that section's."""
    generated: list[Callable[[Any, Any], Any]] = []

    def structure_attrs(obj: Any, _: Any) -> Any:
        if not isinstance(obj, Mapping):
            raise TypeError(f"expected a mapping, got {describe(obj)}")
        if not generated:  # two threads may both make it: the same function either way
            generated.append(structurer_for(cls, converter))
        try:
            return generated[0](obj, cls)
        except ClassValidationError as exc:
            _point_at_fields(exc, cls, obj)
            raise

    return structure_attrs


def _point_at_fields(exc: ClassValidationError, cls: type[Any], obj: Mapping[str, Any]) -> None:
    """Attach a field note to errors raised by the constructor (validators) of ``cls``."""
    for sub in exc.exceptions:
        if (
            isinstance(sub, ConfigError | ForbiddenExtraKeysError)
            or not isinstance(sub, ValueError | TypeError)
            or any(isinstance(n, AttributeValidationNote) for n in getattr(sub, "__notes__", ()))
        ):
            continue
        fields = {a.name: a for a in attrs.fields(cls)}
        try:
            values = {k: converter.structure(v, fields[k].type) for k, v in obj.items()}
        except Exception:
            continue
        name = find_invalid_field(cls, values)
        if name is not None:
            note = AttributeValidationNote(f"Validating {cls.__name__}.{name}", name, None)
            sub.__notes__ = [*getattr(sub, "__notes__", ()), note]


# --------------------------------------------------------------------------- columns


def _column_issue(name: str | None, message: str, *path: PathPart) -> ColumnIssues:
    return ColumnIssues(name, [Issue(message, path)])


def _kinds_for(column: Mapping[Any, Any]) -> Mapping[str, ColumnKind[Any]]:
    """The kinds to read ``column``'s keys against: when every key but the common fields is a
    built-in kind's, just those (loaded without reading the installed plugins); else every
    available kind."""
    keys = [key for key in column if key not in _COMMON_FIELDS]
    if keys and all(is_builtin_name(key) for key in keys):
        found = {key: kind_named(key) for key in keys}
        if all(kind is not None for kind in found.values()):
            return {key: kind for key, kind in found.items() if kind is not None}
    return column_kinds()


def _structure_column(obj: Any, _: Any) -> ColumnConfig:
    """``{name, <kind>: {params}, depends_on?, drop?}`` → the kind's column class."""
    if isinstance(obj, ColumnConfig):
        return obj
    if not isinstance(obj, Mapping):
        raise TypeError(f"a column must be a mapping, got {describe(obj)}")
    raw_name = obj.get("name")
    name = raw_name if isinstance(raw_name, str) and raw_name else None
    kinds = _kinds_for(obj)
    keys = [key for key in obj if key in kinds]
    unknown = [key for key in obj if key not in kinds and key not in _COMMON_FIELDS]
    for key in unknown:
        info = unavailable(key) if isinstance(key, str) else None
        if info is not None:  # a plugin's kind that did not load
            raise _column_issue(name, unavailable_message(info), key)
    if not keys:
        for key in unknown:
            guess = suggest(key, kinds)
            if guess is not None:
                hint = " (a kind from a plugin needs its package installed)"
                raise _column_issue(
                    name, f"unknown column kind {key!r}; did you mean {guess!r}?{hint}", str(key)
                )
        found = ""
        if unknown:
            found = f" (found {', '.join(repr(k) for k in unknown)}; a kind from a plugin needs"
            found += " its package installed)"
        raise _column_issue(name, f"no kind key: a column needs one of {', '.join(kinds)}{found}")
    if len(keys) > 1:
        listed = ", ".join(repr(k) for k in keys)
        raise _column_issue(
            name, f"a column has exactly one kind key, found {len(keys)}: {listed}", keys[1]
        )
    kind = keys[0]
    declared = kinds[kind]
    if unknown:
        allowed = [*_COMMON_FIELDS, kind]
        inside = [a.name for a in attrs.fields(declared.config) if a.name not in _COMMON_FIELDS]
        where = f"inside {kind!r}, not beside it"
        message = misplaced_key_message(unknown[0], allowed, inside, where)
        raise _column_issue(name, message, str(unknown[0]))
    cls = declared.config
    params = obj[kind]
    if params is None:
        params = {}
    elif isinstance(params, str) and declared.shorthand is not None:
        params = {declared.shorthand: params}
    if not isinstance(params, Mapping):
        raise _column_issue(
            name, f"expected a mapping of {kind} parameters, got {describe(params)}", kind
        )
    for key in params:
        if key in _COMMON_FIELDS:
            raise _column_issue(
                name,
                f"{key!r} belongs at the column level, beside {kind!r}, not inside it",
                kind,
                key,
            )
    flat = {**params, **{key: obj[key] for key in _COMMON_FIELDS if key in obj}}
    try:
        column: ColumnConfig = converter.structure(flat, cls)
    except ClassValidationError as exc:
        issues = [
            issue
            if issue.path and issue.path[0] in _COMMON_FIELDS
            else attrs.evolve(issue, path=(kind, *issue.path))
            for issue in collect(exc)
        ]
        raise ColumnIssues(name, issues) from None
    return column


def _unstructure_column(column: ColumnConfig) -> dict[str, Any]:
    try:
        flat: dict[str, Any] = converter.unstructure(column, unstructure_as=type(column))
    except ConfigError as exc:
        raise ConfigError(exc.message, column=column.name, field=exc.field) from None
    out: dict[str, Any] = {"name": flat.pop("name")}
    common = {key: flat.pop(key) for key in _COMMON_FIELDS if key in flat}
    for key in ("skip_when", "conditional_params"):
        if common.get(key) is None:  # unset: left out, so older configs keep their hash
            common.pop(key, None)
    # Parameters a kind gained later are left out at their (plain) default, so older configs
    # keep their hash; the kind names them in its ``omit_at_default`` class variable.
    fields = attrs.fields_dict(type(column))
    for key in getattr(type(column), "omit_at_default", ()):
        default = fields[key].default
        if isinstance(default, tuple):  # a tuple is written as a list
            default = list(default)
        if key in flat and flat[key] == default:
            del flat[key]
    # Execution settings (an LLM column's ``cache``) are written only when set.
    for key in getattr(type(column), "execution_fields", ()):
        if key in flat and flat[key] is None:
            del flat[key]
    out[column.kind] = flat
    out.update(common)
    return out


def _function_to_path(function: str | Callable[..., Any]) -> str:
    if isinstance(function, str):
        return function
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not _STRICT.get(True):
        return f"{module or '?'}:{qualname or type(function).__qualname__}"
    problem = "a lambda or local function cannot be written to a config file"
    if not module or not qualname or "<" in qualname:
        raise ConfigError(
            f"{problem}: {function!r}; use a module-level function", field="custom.function"
        )
    target: Any = None
    try:
        target = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        target = None
    if target is not function:
        raise ConfigError(
            f"{problem}: {module}:{qualname} is not importable by that path",
            field="custom.function",
        )
    return f"{module}:{qualname}"


# --------------------------------------------------------------------------- unstructure


def _optional_unhook(tp: Any) -> Callable[[Any], Any]:
    (inner,) = [arg for arg in get_args(tp) if arg is not type(None)]

    def unstructure_optional(obj: Any) -> Any:
        return None if obj is None else converter.unstructure(obj, unstructure_as=inner)

    return unstructure_optional


def _unstructure_float(obj: Any) -> Any:
    return obj if isinstance(obj, bool) else float(obj)


def _plain(obj: Any, path: tuple[PathPart, ...]) -> Any:
    """Check that ``obj`` holds only YAML/JSON-safe values (lists, not tuples)."""
    if isinstance(obj, str):
        problem = text_problem(obj)
        if problem is not None:
            raise ConfigError(
                f"the text {problem}: it cannot be written to a config file",
                field=render_path(path) or None,
            )
        return obj
    if obj is None or isinstance(obj, bool | int):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ConfigError(
                f"{obj!r} cannot be written to a config file", field=render_path(path) or None
            )
        return obj
    if isinstance(obj, list | tuple):
        return [_plain(item, (*path, i)) for i, item in enumerate(obj)]
    if isinstance(obj, dt.date | dt.time) and not _STRICT.get(True):
        return obj.isoformat()
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ConfigError(
                    f"mapping key {describe(key)} cannot be written to a config file",
                    field=render_path(path) or None,
                )
            _plain(key, path)
            out[key] = _plain(value, (*path, str(key)))
        return out
    raise ConfigError(
        f"a value of type {type(obj).__name__} cannot be written to a config file",
        field=render_path(path) or None,
    )


# --------------------------------------------------------------------------- processors


_structure_processor, _unstructure_processor = keyed_hooks(converter, "processor", PROCESSOR_KINDS)
_structure_tool, _unstructure_tool = keyed_hooks(converter, "tool", TOOL_KINDS)


# --------------------------------------------------------------------------- validators


def _structure_validator(obj: Any, tp: Any) -> Any:
    """A validator, ``{kind, **parameters}``, before the ``validate`` kind has loaded (an LLM
    column's ``validate_with`` in a pipeline with no ``validate`` column): loads that kind,
    whose module registers the validators' own hook in this one's place, and structures
    ``obj`` with it."""
    kind_named("validate")
    hook = converter.get_structure_hook(ValidatorConfig)
    if hook is _structure_validator:
        raise TypeError("validators are unavailable: the 'validate' column kind did not load")
    return hook(obj, tp)


# --------------------------------------------------------------------------- registration


def _register() -> None:
    c = converter
    c.register_structure_hook(str, structure_str)
    c.register_structure_hook(int, structure_int)
    c.register_structure_hook(float, structure_float)
    c.register_structure_hook(bool, structure_bool)
    c.register_structure_hook(dt.datetime, structure_datetime)
    c.register_structure_hook(int | str, structure_int_or_str)
    # ``cache``: true, false, read_only or null; its validator checks the raw value.
    c.register_structure_hook(CacheSetting, lambda obj, _: obj)
    c.register_structure_hook_factory(lambda tp: get_origin(tp) is _LITERAL, literal_hook)
    c.register_structure_hook_factory(_is_tuple, _tuple_hook)
    c.register_structure_hook_factory(_is_dict, _dict_hook)
    c.register_structure_hook_func(_is_function_type, structure_function)
    c.register_structure_hook_factory(_is_config_class, _attrs_hook)
    c.register_structure_hook_func(lambda tp: tp is ColumnConfig, _structure_column)
    c.register_structure_hook_func(lambda tp: tp is ProcessorConfig, _structure_processor)
    c.register_structure_hook_func(lambda tp: tp is ToolConfig, _structure_tool)
    c.register_structure_hook_func(lambda tp: tp is ValidatorConfig, _structure_validator)
    # temperature, top_p, max_tokens: a number, or a distribution drawn from per cell.
    c.register_structure_hook_func(
        is_param_type, structure_param(lambda obj: c.structure(obj, InferenceDistribution))
    )

    c.register_unstructure_hook(float, _unstructure_float)
    c.register_unstructure_hook(dt.datetime, dt.datetime.isoformat)
    # Score keys are written as text so JSON can hold them; loading turns digits back to ints.
    c.register_unstructure_hook(
        Rubric,
        lambda r: {
            "name": r.name,
            "description": r.description,
            "scores": {str(k): v for k, v in r.scores.items()},
        },
    )
    c.register_unstructure_hook_factory(_is_optional, _optional_unhook)
    c.register_unstructure_hook_factory(_is_config_class, field_unstructurers(c))
    c.register_unstructure_hook_factory(
        _is_tuple, lambda tp: iterable_unstructure_factory(tp, converter, unstructure_to=list)
    )
    c.register_unstructure_hook_func(_is_function_type, _function_to_path)
    c.register_unstructure_hook_func(lambda tp: tp is ColumnConfig, _unstructure_column)
    c.register_unstructure_hook_func(lambda tp: tp is ProcessorConfig, _unstructure_processor)
    c.register_unstructure_hook_func(lambda tp: tp is ToolConfig, _unstructure_tool)
    c.register_unstructure_hook_factory(
        is_param_type, lambda tp: unstructure_param(integer=int in get_args(tp))
    )


_register()


# --------------------------------------------------------------------------- public functions


def structure_pipeline(data: Mapping[str, Any]) -> PipelineConfig:
    """Build a :class:`PipelineConfig` from plain data (a parsed YAML or JSON document).

    Args:
        data: the top-level mapping; columns may also be given as column objects.

    Raises:
        ConfigError: on any problem; it lists every problem found (``issues``), each naming
            its column and field path, the first one on the first line of its message.
            Lists and mappings nested more than :data:`MAX_NESTING` levels deep, more than
            :data:`MAX_CONFIG_VALUES` values, numbers that are not finite (NaN, infinity)
            and text UTF-8 cannot encode are refused wherever they are.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"a pipeline config must be a mapping, got {describe(data)}")
    found = [by_column(data, issue) for issue in document_issues(data)]
    try:
        pipeline: PipelineConfig = converter.structure(data, PipelineConfig)
    except ClassValidationError as exc:
        # A problem found in the document is not reported again by the field holding it.
        found += [issue for issue in collect(exc) if not reported(issue, found)]
    except RecursionError:  # pragma: no cover - MAX_NESTING keeps structuring shallow
        raise ConfigError("the config is nested too deeply to be read") from None
    except ConfigError as exc:
        # The pipeline's own checks (unique names...) run once every field is structured.
        if not found:
            raise
        found += [
            Issue(issue.message, (issue.field,) if issue.field else (), issue.column)
            for issue in exc.issues
        ]
    if found:
        raise to_config_error(found)
    return pipeline


def structure_processor(obj: Any, index: int) -> ProcessorConfig:
    """One processor from its file form (``{"rename": {...}}``) or a processor object.

    Raises:
        ConfigError: naming ``processors[index]`` and the field at fault.
    """
    try:
        processor: ProcessorConfig = _structure_processor(obj, None)
        return processor
    except ColumnIssues as exc:
        issues = [
            attrs.evolve(issue, path=("processors", index, *issue.path)) for issue in exc.issues
        ]
    except (ValueError, TypeError) as exc:
        issues = [Issue(str(exc), ("processors", index))]
    raise to_config_error(issues)


def unstructure_pipeline(cfg: PipelineConfig, *, strict: bool = True) -> dict[str, Any]:
    """The plain-data (YAML/JSON-safe) canonical form of a pipeline.

    Every field is written out; an absent seed dataset and empty provider and model lists are
    left out. ``structure_pipeline(unstructure_pipeline(cfg)) == cfg`` whenever custom column
    functions are given as import paths (or importable module-level functions).

    Args:
        cfg: the pipeline.
        strict: refuse what could not be loaded back. With ``strict=False`` a function that is
            not importable by its name (a lambda, a local function) is written as
            ``"module:qualname"`` anyway, and dates and times inside free-form values as ISO
            strings: the result describes the pipeline (for a run's ``config.yaml`` or its
            hash) but may not load back to an equal one.

    Raises:
        ConfigError: a value cannot be written to a config file (in strict mode a lambda or
            local function; always a non-finite float or an object of an unknown type).
    """
    token = _STRICT.set(strict)
    try:
        return _unstructure_pipeline(cfg)
    finally:
        _STRICT.reset(token)


#: Seed dataset fields added after runs were first saved: absent from a config when unset.
_SEED_FIELDS_OMITTED_WHEN_UNSET = ("index_range", "partition", "split", "config", "revision")
#: Seed dataset flags added later: absent from a config when false (their default).
_SEED_FLAGS_OMITTED_WHEN_FALSE = ("replacement",)


def _unstructure_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    raw: dict[str, Any] = converter.unstructure(cfg, unstructure_as=PipelineConfig)
    out: dict[str, Any] = {}
    for key in _PIPELINE_KEYS:
        value = raw[key]
        if key != "columns" and value in (None, []):
            continue
        out[key] = value
    seed = out.get("seed_dataset")
    if isinstance(seed, dict):
        # Fields the seed dataset gained later are left out when unset, so older configs
        # keep their hash (and their runs can be resumed).
        for key in _SEED_FIELDS_OMITTED_WHEN_UNSET:
            if seed.get(key) is None:
                seed.pop(key, None)
        for key in _SEED_FLAGS_OMITTED_WHEN_FALSE:
            if seed.get(key) is False:
                seed.pop(key, None)
    for index, column in enumerate(cfg.columns):
        try:
            out["columns"][index] = _plain(out["columns"][index], ())
        except ConfigError as exc:
            raise ConfigError(exc.message, column=column.name, field=exc.field) from None
    plain: dict[str, Any] = _plain(out, ())
    return plain
