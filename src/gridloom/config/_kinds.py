"""The column-kind registry: every kind key, its declaration and where it came from.

Kinds are found through the ``gridloom.columns`` entry-point group — gridloom's own kinds
exactly like a plugin's — on first need (loading a config, building a generator, listing
kinds), not when gridloom is imported. Each entry point names a :class:`ColumnKind`; its name
is the kind key. When gridloom's own entry points are not installed (a source tree on
``PYTHONPATH``) the built-in kinds are loaded from :data:`BUILTIN_ENTRY_POINTS`, the same list
``pyproject.toml`` declares.

A built-in kind asked for by name (:func:`kind_named`: a config's columns, the builder's
methods, a generator's kind) is loaded on its own from that list, without reading any
installed package's entry points: no plugin can take a built-in's key, so the answer is the
same, and a pipeline of built-in kinds starts without scanning every installed distribution
and importing every plugin. Everything else reads them all, once: a name that is not a
built-in's, and every listing (:func:`column_kinds`, :func:`installed`, :data:`COLUMN_KINDS`).

A plugin that fails to import, declares an invalid kind or takes a name already registered
(a built-in's, or an earlier plugin's) is skipped, with one warning line naming it; the other
kinds still load. :func:`installed` lists every kind found, with its problem if it has one, and
a config naming an unavailable kind fails with a ConfigError that names the plugin and the
problem.

This module is the config layer's: it imports kinds' modules only dynamically, by the names
their entry points give.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .._attrs import frozen
from ._columns import ColumnConfig
from ._kind import ColumnKind, KindInfo, kind_problem

if TYPE_CHECKING:
    import importlib.metadata

__all__ = [
    "BUILTIN_ENTRY_POINTS",
    "COLUMN_KINDS",
    "ENTRY_POINT_GROUP",
    "column_kinds",
    "discover_entry_points",
    "installed",
    "is_builtin_name",
    "kind_named",
    "kind_of",
    "reload",
    "unavailable",
]

log = logging.getLogger("gridloom.kinds")

#: The entry-point group column kinds are declared in.
ENTRY_POINT_GROUP = "gridloom.columns"
#: The distribution whose entry points are the built-in kinds.
_OWN_DISTRIBUTION = "gridloom"
#: The built-in kinds' entry points, in the order they are documented; ``pyproject.toml``
#: declares the same (a test keeps them equal).
BUILTIN_ENTRY_POINTS: tuple[str, ...] = (
    "category = gridloom.kinds.category:KIND",
    "subcategory = gridloom.kinds.subcategory:KIND",
    "uniform = gridloom.kinds.uniform:KIND",
    "gaussian = gridloom.kinds.gaussian:KIND",
    "poisson = gridloom.kinds.poisson:KIND",
    "bernoulli = gridloom.kinds.bernoulli:KIND",
    "binomial = gridloom.kinds.binomial:KIND",
    "uuid = gridloom.kinds.uuid:KIND",
    "datetime = gridloom.kinds.datetime:KIND",
    "timedelta = gridloom.kinds.timedelta:KIND",
    "scipy = gridloom.kinds.scipy_dist:KIND",
    "bernoulli_mixture = gridloom.kinds.bernoulli_mixture:KIND",
    "person = gridloom.kinds.person:KIND",
    "expression = gridloom.kinds.expression:KIND",
    "custom = gridloom.kinds.custom:KIND",
    "llm_text = gridloom.kinds.llm_text:KIND",
    "llm_code = gridloom.kinds.llm_code:KIND",
    "llm_structured = gridloom.kinds.llm_structured:KIND",
    "llm_judge = gridloom.kinds.llm_judge:KIND",
    "embedding = gridloom.kinds.embedding:KIND",
    "validate = gridloom.kinds.validate:KIND",
    "llm_agent = gridloom.kinds.llm_agent:KIND",
)
#: Each built-in kind key and its entry point's value (``module:attribute``).
_BUILTIN_VALUES: dict[str, str] = {
    name.strip(): value.strip()
    for name, _, value in (line.partition("=") for line in BUILTIN_ENTRY_POINTS)
}


@frozen
class BuiltinPoint:
    """A built-in's entry point as the built-in list writes it, loaded without
    :mod:`importlib.metadata` (reading a distribution's metadata imports it, and parses
    files): loading one built-in kind by name needs neither."""

    name: str
    value: str
    group: str

    def load(self) -> Any:
        """The object named by ``value`` (``module:attribute``), as an entry point loads it."""
        module, _, attribute = self.value.partition(":")
        found: Any = importlib.import_module(module.strip())
        for part in filter(None, attribute.strip().split(".")):
            found = getattr(found, part)
        return found


@frozen
class _Found:
    """An entry point to load, and what is known of its distribution."""

    entry_point: importlib.metadata.EntryPoint | BuiltinPoint
    distribution: str | None
    version: str | None
    builtin: bool


@frozen
class _State:
    """What one load of the entry points found."""

    kinds: dict[str, ColumnKind[Any]]
    infos: tuple[KindInfo, ...]


class _Registry:
    """Loads the kinds once, on first use; :meth:`reload` forgets them (tests, new installs)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state: _State | None = None
        self._loading = False
        #: Built-in kinds loaded one by one (:meth:`builtin`), before :meth:`state` was needed.
        self._builtins: dict[str, ColumnKind[Any]] = {}

    def state(self) -> _State:
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is None:
                if self._loading:
                    raise RuntimeError(
                        "the column-kind registry was used while its plugins were loading"
                    )
                self._loading = True
                try:
                    self._state = _load()
                finally:
                    self._loading = False
            return self._state

    def builtin(self, name: str) -> ColumnKind[Any] | None:
        """The built-in kind ``name``, loaded from :data:`BUILTIN_ENTRY_POINTS` alone; ``None``
        when ``name`` is not a built-in's key, or the kind does not load (then :meth:`state`
        records why)."""
        value = _BUILTIN_VALUES.get(name)
        if value is None:
            return None
        state = self._state
        if state is not None:
            return state.kinds.get(name)
        kind = self._builtins.get(name)
        if kind is not None:
            return kind
        with self._lock:
            if self._state is not None:
                return self._state.kinds.get(name)
            if name not in self._builtins:
                loaded: dict[str, ColumnKind[Any]] = {}
                if _register(_fallback(name, value), loaded, []).problem is not None:
                    return None
                self._builtins[name] = loaded[name]
            return self._builtins[name]

    def reload(self) -> None:
        with self._lock:
            self._state = None
            self._builtins.clear()


_REGISTRY = _Registry()


def column_kinds() -> Mapping[str, ColumnKind[Any]]:
    """Every available kind by kind key: built-ins first (in documented order), then plugins'
    (by distribution, then name)."""
    return _REGISTRY.state().kinds


def installed() -> tuple[KindInfo, ...]:
    """Every column kind found, available or not, in the order of :func:`column_kinds` (those
    with a problem where they were found)."""
    return _REGISTRY.state().infos


def kind_named(name: str) -> ColumnKind[Any] | None:
    """The available kind whose key is ``name`` (``None``: none is). A built-in's is loaded on
    its own, without reading the installed entry points; any other name reads them."""
    kind = _REGISTRY.builtin(name)
    if kind is not None:
        return kind
    return _REGISTRY.state().kinds.get(name)


def is_builtin_name(name: object) -> bool:
    """Whether ``name`` is the key of one of gridloom's own kinds (which no plugin can take)."""
    return isinstance(name, str) and name in _BUILTIN_VALUES


def kind_of(column: ColumnConfig | type[ColumnConfig]) -> ColumnKind[Any] | None:
    """The registered kind of a column (or config class): the one its ``kind`` key names,
    when the column is an instance of that kind's config class."""
    cls = column if isinstance(column, type) else type(column)
    kind = kind_named(cls.kind) if isinstance(cls.kind, str) else None
    return kind if kind is not None and issubclass(cls, kind.config) else None


def unavailable(name: str) -> KindInfo | None:
    """What went wrong with the kind called ``name``, when one was found under that name but
    none is available (``None`` when the name is available or unknown)."""
    if _REGISTRY.builtin(name) is not None:
        return None
    state = _REGISTRY.state()
    if name in state.kinds:
        return None
    return next((info for info in state.infos if info.name == name and info.problem), None)


def unavailable_message(info: KindInfo) -> str:
    """``column kind 'x' from <origin> is not available: <problem>`` — one line."""
    return f"column kind {info.name!r} from {info.origin} is not available: {info.problem}"


def reload() -> None:
    """Forget the kinds loaded; the next use reads the entry points again."""
    _REGISTRY.reload()


class _KindClasses(Mapping[str, type[ColumnConfig]]):
    """A live, read-only view of the registry: kind key → config class."""

    def __getitem__(self, key: str) -> type[ColumnConfig]:
        return column_kinds()[key].config

    def __iter__(self) -> Iterator[str]:
        return iter(column_kinds())

    def __len__(self) -> int:
        return len(column_kinds())

    def __contains__(self, key: object) -> bool:
        return key in column_kinds()

    def __repr__(self) -> str:
        return f"COLUMN_KINDS({', '.join(self)})"


#: Every available column class by its kind key (a live view of the registry).
COLUMN_KINDS: Mapping[str, type[ColumnConfig]] = _KindClasses()


# --------------------------------------------------------------------------- loading


def _load() -> _State:
    kinds: dict[str, ColumnKind[Any]] = {}
    infos: list[KindInfo] = []
    for found in _discover():
        info = _register(found, kinds, infos)
        infos.append(info)
        if info.problem is not None:
            log.warning(unavailable_message(info))
    return _State(kinds=kinds, infos=tuple(infos))


def _register(
    found: _Found, kinds: dict[str, ColumnKind[Any]], earlier: list[KindInfo]
) -> KindInfo:
    ep = found.entry_point
    info = KindInfo(
        name=ep.name,
        config=None,
        distribution=found.distribution,
        version=found.version,
        entry_point=f"{ep.name} = {ep.value}",
        builtin=found.builtin,
    )
    try:
        declared = ep.load()
    except Exception as exc:
        return attrs.evolve(info, problem=f"it failed to import: {_one_line(exc)}")
    try:
        problem = kind_problem(declared, ep.name, thorough=not found.builtin)
    except Exception as exc:  # a declaration odd enough to break the checks themselves
        problem = f"its declaration cannot be checked: {_one_line(exc)}"
    config = getattr(declared, "config", None)
    if isinstance(config, type) and issubclass(config, ColumnConfig):
        info = attrs.evolve(info, config=config)
    if problem is None and ep.name in kinds:
        taken = next(i for i in earlier if i.name == ep.name and i.problem is None)
        problem = f"the kind key {ep.name!r} is already taken by {taken.origin}"
    if problem is not None:
        return attrs.evolve(info, problem=problem)
    kinds[ep.name] = declared
    return info


def _one_line(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip()
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def discover_entry_points(
    group: str, builtin: tuple[str, ...]
) -> list[tuple[importlib.metadata.EntryPoint | BuiltinPoint, str | None, str | None, bool]]:
    """The entry points of ``group`` to load, as ``(entry point, distribution, version,
    builtin)``: gridloom's own (installed, else ``builtin``, a list of ``name = module:attr``
    lines) in that list's order, then the plugins' sorted by distribution and name. Other
    plugin registries (the ``validate`` kind's validators) find their entry points with it."""
    return [
        (f.entry_point, f.distribution, f.version, f.builtin) for f in _discover(group, builtin)
    ]


def _discover(
    group: str = ENTRY_POINT_GROUP, builtin: tuple[str, ...] = BUILTIN_ENTRY_POINTS
) -> list[_Found]:
    """The entry points to load: the built-ins (installed, else the fallback list) in
    documented order, then the plugins' sorted by distribution and name."""
    import importlib.metadata

    try:
        points = list(importlib.metadata.entry_points(group=group))
    except Exception as exc:  # broken metadata somewhere on sys.path
        log.warning(f"cannot read the {group} entry points: {_one_line(exc)}")
        points = []
    own: dict[str, _Found] = {}
    plugins: list[_Found] = []
    read: dict[int, tuple[str | None, str | None]] = {}  # a distribution's metadata, read once
    for ep in points:
        dist = getattr(ep, "dist", None)
        if id(dist) not in read:
            read[id(dist)] = _distribution(dist)
        name, version = read[id(dist)]
        found = _Found(ep, name, version, builtin=name == _OWN_DISTRIBUTION)
        if found.builtin:
            own.setdefault(ep.name, found)
        else:
            plugins.append(found)
    builtins: list[_Found] = []
    for line in builtin:
        name, _, value = (part.strip() for part in line.partition("="))
        builtins.append(own.pop(name) if name in own else _fallback(name, value, group))
    builtins += own.values()
    plugins.sort(key=lambda f: (f.distribution or "", f.entry_point.name, f.entry_point.value))
    return [*builtins, *plugins]


def _fallback(name: str, value: str, group: str = ENTRY_POINT_GROUP) -> _Found:
    return _Found(BuiltinPoint(name, value, group), _OWN_DISTRIBUTION, None, builtin=True)


def _distribution(dist: importlib.metadata.Distribution | None) -> tuple[str | None, str | None]:
    """The (normalized) name and the version of ``dist``."""
    if dist is None:
        return None, None
    try:
        metadata = dist.metadata
        name, version = metadata["Name"], metadata["Version"]
    except Exception:  # unreadable metadata: the kinds still load, unnamed
        return None, None
    return (re.sub(r"[-_.]+", "-", name).lower() if name else None), version
