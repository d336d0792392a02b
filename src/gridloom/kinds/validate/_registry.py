"""The validator registry: every validator kind by key, found through the ``gridloom.validators``
entry-point group on first need, with the same discovery as column kinds
(:func:`gridloom.config._kinds.discover_entry_points`): gridloom's own first (from
:data:`BUILTIN_VALIDATORS` when its entry points are not installed), then plugins'. A plugin
that fails to load, declares something that is not a :class:`ValidatorKind`, is named unlike
its kind key or takes a key already registered is skipped with one warning line; a config
naming it fails with that line.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from ..._attrs import frozen
from ...config._kinds import discover_entry_points
from ...config._validator import ValidatorConfig
from ._base import ValidatorKind

__all__ = [
    "BUILTIN_VALIDATORS",
    "VALIDATOR_GROUP",
    "reload_validators",
    "validator_kinds",
    "validator_problem",
]

log = logging.getLogger("gridloom.kinds")

#: The entry-point group validator kinds are declared in.
VALIDATOR_GROUP = "gridloom.validators"
#: The built-in validators' entry points, in documented order; ``pyproject.toml`` declares the
#: same (a test keeps them equal).
BUILTIN_VALIDATORS: tuple[str, ...] = (
    "python = gridloom.kinds.validate.python:VALIDATOR",
    "sql = gridloom.kinds.validate.sql:VALIDATOR",
    "json_schema = gridloom.kinds.validate.json_schema:VALIDATOR",
    "regex = gridloom.kinds.validate.regex:VALIDATOR",
    "callable = gridloom.kinds.validate.callable:VALIDATOR",
    "http = gridloom.kinds.validate.http:VALIDATOR",
)


@frozen
class _State:
    kinds: dict[str, ValidatorKind[Any]]
    problems: dict[str, str]


_LOCK = threading.Lock()
_STATE: list[_State] = []


def validator_kinds() -> Mapping[str, ValidatorKind[Any]]:
    """Every available validator kind by key: built-ins first, then plugins'."""
    return _state().kinds


def validator_problem(name: str) -> str | None:
    """Why the validator kind ``name`` was found but is not available (``None`` when it is
    available or unknown)."""
    return _state().problems.get(name)


def reload_validators() -> None:
    """Forget the validator kinds loaded; the next use reads the entry points again."""
    with _LOCK:
        _STATE.clear()


def _state() -> _State:
    if _STATE:
        return _STATE[0]
    with _LOCK:
        if not _STATE:
            _STATE.append(_load())
        return _STATE[0]


def _load() -> _State:
    kinds: dict[str, ValidatorKind[Any]] = {}
    problems: dict[str, str] = {}
    for ep, distribution, version, builtin in discover_entry_points(
        VALIDATOR_GROUP, BUILTIN_VALIDATORS
    ):
        origin = (
            "gridloom (built in)" if builtin else f"plugin {distribution or '?'} {version or ''}"
        )
        origin = f"{origin.rstrip()} (entry point {ep.name} = {ep.value})"
        problem = _problem(ep, kinds)
        if isinstance(problem, ValidatorKind):
            kinds[ep.name] = problem
            continue
        message = f"validator kind {ep.name!r} from {origin} is not available: {problem}"
        problems.setdefault(ep.name, message)
        log.warning(message)
    return _State(kinds=kinds, problems=problems)


def _problem(ep: Any, kinds: Mapping[str, ValidatorKind[Any]]) -> ValidatorKind[Any] | str:
    try:
        declared = ep.load()
    except Exception as exc:
        return f"it failed to import: {_one_line(exc)}"
    if not isinstance(declared, ValidatorKind):
        return "it names something that is not a gridloom.kinds.validate.ValidatorKind"
    cls: Any = declared.config
    if not (isinstance(cls, type) and issubclass(cls, ValidatorConfig) and attrs.has(cls)):
        return "its config is not an attrs subclass of ValidatorConfig"
    key = getattr(cls, "kind", None)
    if key != ep.name:
        return f"the entry point is named {ep.name!r} but its config declares {key!r}"
    if any(field.name == "kind" for field in attrs.fields(cls)):
        return f"{cls.__qualname__} has a field named 'kind'; the kind key is a ClassVar"
    if ep.name in kinds:
        return f"the validator kind {ep.name!r} is already taken"
    return declared


def _one_line(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip()[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
