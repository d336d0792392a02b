"""The package's layers (DESIGN.md §2): no module imports from a layer above its own, nor
along an arrow the design forbids.

Every module of ``src/gridloom`` is read with ``ast`` (nothing is imported): every ``import``
and ``from ... import`` counts, relative ones resolved, those inside functions and under
``if TYPE_CHECKING:`` too. The table it enforces, top to bottom (a module may import its own
package, and any package of a lower layer)::

    layer        packages (and top-level modules)
    ----------   ----------------------------------------------------------------------
    cli          cli, __main__
    api          the package's face: gridloom/__init__.py, _api
    run          run
    progress     progress, plots
    engine       engine
    generators   generators, kinds          (the two may import each other)
    clients      clients, tools
    services     throttle, simulated, trace
    base         storage, config
    errors       errors, _attrs, _sockets, _lazy, _version  (the standard library, trio and attrs)

Arrows forbidden on top of that:

- the engine imports only config, errors (and _attrs), generators (and kinds), storage and
  trace: never clients, throttle or simulated (the run opens those and hands the engine typed
  handles);
- packages of one layer do not import each other (throttle knows nothing of HTTP or traces,
  storage nothing of config), but generators and kinds, the face and ``_api``,
  ``__main__`` and ``cli``, and errors and ``_attrs``.

A package missing from the table fails the test: a new one must be given its place.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import gridloom

ROOT = Path(gridloom.__file__).parent

#: Layers, top to bottom; the packages (or top-level modules) of each. ``<root>`` is
#: gridloom/__init__.py.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("cli", frozenset({"cli", "__main__"})),
    ("api", frozenset({"<root>", "_api"})),
    ("run", frozenset({"run"})),
    ("progress", frozenset({"progress", "plots"})),
    ("engine", frozenset({"engine"})),
    ("generators", frozenset({"generators", "kinds"})),
    ("clients", frozenset({"clients", "tools"})),
    ("services", frozenset({"throttle", "simulated", "trace"})),
    ("base", frozenset({"storage", "config"})),
    ("errors", frozenset({"errors", "_attrs", "_sockets", "_lazy", "_version"})),
)
#: Packages a package may import, beyond its layer rule: the whole list, when given.
ONLY: dict[str, frozenset[str]] = {
    "engine": frozenset(
        {"engine", "_attrs", "config", "errors", "generators", "kinds", "storage", "trace"}
    ),
}
#: Packages of one layer that may import one another (the first the second).
SIDEWAYS: frozenset[tuple[str, str]] = frozenset(
    {
        ("generators", "kinds"),
        ("kinds", "generators"),
        ("<root>", "_api"),  # the face re-exports the entry points
        ("__main__", "cli"),  # python -m gridloom is the command line
        ("tools", "clients"),  # tools speak the clients' ToolSpec and ToolCall
        ("errors", "_attrs"),  # the errors are attrs classes too
    }
)

RANK = {package: rank for rank, (_, packages) in enumerate(LAYERS) for package in packages}


def _module_name(path: Path) -> tuple[str, str]:
    """The dotted name of the module at ``path``, and of the package its relative imports
    start from."""
    parts = ["gridloom", *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _is_module(dotted: str) -> bool:
    path = ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) of every gridloom import in the module at ``path``."""
    _, package = _module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "gridloom":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "gridloom":
                continue
            subs = {f"{target}.{alias.name}" for alias in node.names}
            modules = {sub for sub in subs if _is_module(sub)}  # `from .. import plots`
            for imported in sorted(modules | ({target} if subs - modules else set())):
                yield node.lineno, imported


def _package(dotted: str) -> str:
    """The package (or top-level module) a module belongs to: ``gridloom.run._run`` →
    ``run``; ``gridloom`` → ``<root>``."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def _violation(source: str, target: str) -> str | None:
    if source == target:
        return None
    if source in ONLY:
        return None if target in ONLY[source] else f"{source} imports only {sorted(ONLY[source])}"
    if RANK[target] < RANK[source]:
        return f"{target} is in a layer above {source}"
    if RANK[target] == RANK[source] and (source, target) not in SIDEWAYS:
        return f"{source} and {target} are in one layer and do not import each other"
    return None


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_every_package_has_its_layer() -> None:
    """Each package and top-level module of gridloom is placed in the layer table."""
    found = {_package(_module_name(path)[0]) for path in _modules()}
    assert found - set(RANK) == set(), "place these in LAYERS"


def test_no_module_imports_upward_or_along_a_forbidden_arrow() -> None:
    """No module imports from a layer above its own, nor along a forbidden arrow."""
    problems: list[str] = []
    for path in _modules():
        name, _ = _module_name(path)
        source = _package(name)
        for line, imported in _imports(path):
            target = _package(imported)
            if target not in RANK:  # reported by the test above
                continue
            why = _violation(source, target) if source in RANK else None
            if why is not None:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {imported}: {why}")
    assert problems == []


def test_the_checker_sees_the_imports_it_must() -> None:
    """The walk resolves relative imports, imports inside functions and ``from .. import
    module``, and the rules refuse what the design forbids."""
    # `from .. import plots`, inside the command's function
    assert "gridloom.plots" in {i for _, i in _imports(ROOT / "cli" / "_plot.py")}
    assert "gridloom.run" in {i for _, i in _imports(ROOT / "_api.py")}
    assert _violation("engine", "clients") is not None
    assert _violation("engine", "throttle") is not None
    assert _violation("engine", "trace") is None
    assert _violation("clients", "generators") is not None
    assert _violation("throttle", "trace") is not None
    assert _violation("storage", "config") is not None
    assert _violation("kinds", "generators") is None
    assert _violation("run", "cli") is not None
    assert _violation("cli", "run") is None
