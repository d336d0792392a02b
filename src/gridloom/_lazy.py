"""A package's public names, imported on first use (PEP 562).

A package lists each name it exports with the module that defines it; ``lazy_exports`` gives
it the module-level ``__getattr__`` and ``__dir__`` that import that module the first time
the name is asked for, and keep the value so the next lookup is an ordinary one. Importing
the package then costs only its own file: ``import gridloom`` does not load pyarrow, and
loading one column kind (``gridloom.kinds.llm_text``) does not load the twenty others.
The names stay importable as before (``from gridloom.kinds import LLMTextColumn``); type
checkers read them from the package's ``if TYPE_CHECKING:`` imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Mapping[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` (its ``__name__``), which exports
    ``names`` (public name → the module defining it, relative to the package: ``".config"``)
    and has the parts ``submodules`` (reachable as attributes, like any package's)."""
    parts = frozenset(submodules)
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module, package), name)
        elif name in parts:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names, *parts})

    return __getattr__, __dir__
