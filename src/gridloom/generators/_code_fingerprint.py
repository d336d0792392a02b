"""A fingerprint of the user code a pipeline's columns call, recorded when a run starts and
compared when it is resumed: the config names a function (``custom: {function:
"people_functions:loyalty_scores"}``) but not what its body does, so a resume after an edit of
that body would mix rows of the old code with rows of the new one without saying so.

**What is hashed.** Every field of a column typed like ``CustomColumn.function`` (a callable
or its import path ``"package.module:function"``: the ``custom`` kind's function, the
``callable`` validator's, an ``llm_agent``'s Python tools, and any plugin kind's field of that
type) is resolved to its callable, and the callable to the code a call runs: through
``functools.partial``, bound methods, decorators that keep ``__wrapped__`` (each layer counts),
and for a callable object, its class. Each of those is fingerprinted by, in this order:

1. **the whole source file of its module** (SHA-256 of the bytes on disk): a function that
   calls a helper of the same module, reads a constant or a prompt defined beside it, is
   covered, which hashing the function's own text would miss. The price: *any* edit of that
   file counts, a comment or a blank line elsewhere in it included (a resume then needs
   ``--accept-code-change``). Bytes rather than a normalised token stream: a rule "whitespace
   and comments do not count" would be Python-version dependent (3.12 tokenizes f-strings
   anew) and is wrong inside string literals (a prompt's blank line, a ``#`` heading), and
   a spurious refusal costs one flag where a missed change costs a mixed dataset;
2. when that file cannot be read (a function defined in a notebook cell, or by ``exec``),
   its own source text (:func:`inspect.getsource`): its helpers are then not covered;
3. without source (a module shipped as ``.pyc`` only), its code object: bytecode, names and
   constants, nested code objects included (whitespace and comments are not in it, so they do
   not count there; it depends on the Python version);
4. else (a builtin, a C function, a NumPy ufunc) ``"unknown"``: a change there cannot be
   seen, and a resume is not refused for it.

Code in *other* modules the function imports (a helpers module of your own, a library) is not
covered, nor data an object or a ``functools.partial`` carries: the config's hash covers the
import path, this fingerprint the code found there. The file is read as it is on disk when the
run starts, which is what a new process imports (a Python process that imported the module
before the edit still runs the old code; each ``gridloom`` command is a new process).

**The column's digest.** A column whose fields name one callable with one layer records that
layer's digest (for a function read from its file, ``sha256sum module.py`` shows the same
value); one naming several records the SHA-256 of their labelled digests, or ``"unknown"``
when all of them are. It is computed once per run, in a worker thread: the modules are
imported already (by the pipeline's compile), so it costs reading their files (0.25 ms for
``examples/people.yaml``; about 1 ms per MB of module).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from ..config._converter import _is_function_type  # TODO(lead): export it from gridloom.config
from ..config._models import PipelineConfig
from ..config._validators import function_path
from ..errors import ConfigError
from .custom import resolve_function

__all__ = ["UNKNOWN", "callable_digest", "code_fingerprint", "code_references"]

#: The digest of code whose source and bytecode are both out of reach.
UNKNOWN = "unknown"
#: Layers of ``__wrapped__`` / ``partial`` followed, at most (a cycle ends there too).
_MAX_LAYERS = 32
#: How deep attrs values are walked for function fields (a column's checks, tools...).
_MAX_DEPTH = 8


#: Per attrs class, its fields and whether each holds a user function (see :func:`_fields`).
_FIELDS: dict[type[Any], tuple[tuple[str, bool], ...]] = {}


def _fields(cls: type[Any]) -> tuple[tuple[str, bool], ...]:
    """The fields of the attrs class ``cls``, each with whether it holds a user function (its
    type is ``str | Callable[..., Any]``, or it is validated as one); worked out once per
    class (two threads may both do it: the same answer)."""
    found = _FIELDS.get(cls)
    if found is not None:
        return found
    try:
        attrs.resolve_types(cls)  # in place (the converter has done it for a loaded config)
        resolved = True
    except Exception:  # a type only a plugin's TYPE_CHECKING block names
        resolved = False
    found = _FIELDS[cls] = tuple(
        (
            field.name,
            field.validator is function_path or (resolved and _is_function_type(field.type)),
        )
        for field in attrs.fields(cls)
    )
    return found


def _walk(value: Any, path: str, depth: int) -> Iterator[tuple[str, Any]]:
    if depth > _MAX_DEPTH:
        return
    if attrs.has(type(value)):
        for name, is_function in _fields(type(value)):
            item = getattr(value, name, None)
            if is_function and item is not None:
                yield f"{path}.{name}", item
            elif not is_function and not isinstance(item, str | int | float | None):
                yield from _walk(item, f"{path}.{name}", depth + 1)
    elif isinstance(value, list | tuple) and value and attrs.has(type(value[0])):
        # A typed list of config values (tools); a list of data (values, params) is not
        # walked, nor a mapping (params, schemas): user data, of any size.
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]", depth + 1)


def code_references(cfg: PipelineConfig) -> dict[str, list[tuple[str, Any]]]:
    """The user functions each column names, by column: ``(field, function)`` pairs, the field
    as a ``ConfigError`` names it (``custom.function``, ``llm_agent.tools[0].function``) and
    the function as configured (an import path or a callable). Columns naming none are left
    out."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for column in cfg.columns:
        refs = [(f"{column.kind}{where}", fn) for where, fn in _walk(column, "", 0)]
        if refs:
            found[column.name] = refs
    return found


def _layers(function: Any) -> list[Any]:
    """The objects whose code a call of ``function`` runs, outermost first."""
    layers: list[Any] = []
    obj = function
    for _ in range(_MAX_LAYERS):
        while isinstance(obj, functools.partial):
            obj = obj.func
        if not (inspect.isroutine(obj) or inspect.isclass(obj)):
            # A callable object: the __call__ its class has (a C type's: no source, unknown).
            obj = inspect.getattr_static(type(obj), "__call__", type(obj))
        if isinstance(obj, staticmethod | classmethod) or inspect.ismethod(obj):
            obj = obj.__func__
        if any(obj is seen for seen in layers):
            break
        layers.append(obj)
        try:
            wrapped = inspect.getattr_static(obj, "__wrapped__", None)
        except Exception:  # a hostile class
            wrapped = None
        if wrapped is None:
            break
        obj = wrapped
    return layers


def _file_digest(obj: Any) -> str | None:
    if inspect.isclass(obj) and not _codes(obj):
        return None  # a C type: its module's file (an __init__.py) is not its code
    try:
        source = inspect.getsourcefile(obj)
    except TypeError:  # a builtin, or a class of the builtins
        return None
    if source is None:
        return None
    try:
        with Path(source).open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _source_digest(obj: Any) -> str | None:
    try:
        text = inspect.getsource(obj)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(b"source\0" + text.encode("utf-8", "surrogatepass")).hexdigest()


def _constant(value: Any) -> str:
    """A constant of a code object as text that does not depend on the process (a frozenset's
    members in sorted order: their order follows string hashing, which is salted)."""
    if isinstance(value, frozenset):
        return "frozenset({" + ", ".join(sorted(_constant(v) for v in value)) + "})"
    if isinstance(value, tuple):
        return "(" + ", ".join(_constant(v) for v in value) + ",)"
    return f"{type(value).__name__}:{value!r}"


def _hash_code(code: types.CodeType, digest: hashlib._Hash, depth: int = 0) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for value in code.co_consts:
        if isinstance(value, types.CodeType) and depth < _MAX_LAYERS:
            digest.update(b"code{")
            _hash_code(value, digest, depth + 1)
            digest.update(b"}")
        else:
            digest.update(_constant(value).encode("utf-8", "surrogatepass") + b"\0")


def _codes(obj: Any) -> list[types.CodeType]:
    code = getattr(obj, "__code__", None)
    if isinstance(code, types.CodeType):
        return [code]
    if not inspect.isclass(obj):
        return []
    found: list[types.CodeType] = []
    for _name, member in sorted(vars(obj).items()):
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        code = getattr(member, "__code__", None)
        if isinstance(code, types.CodeType):
            found.append(code)
    return found


def _bytecode_digest(obj: Any) -> str | None:
    codes = _codes(obj)
    if not codes:
        return None
    digest = hashlib.sha256(b"code\0")
    for code in codes:
        _hash_code(code, digest)
    return digest.hexdigest()


def _layer_digest(obj: Any) -> str:
    """One layer's digest: its module's file, else its source, else its code, else
    ``"unknown"`` (see the module docstring)."""
    for how in (_file_digest, _source_digest, _bytecode_digest):
        try:
            found = how(obj)
        except Exception:  # a hostile object's attribute; the next way, or unknown
            found = None
        if found is not None:
            return found
    return UNKNOWN


def _combined(parts: list[tuple[str, str]]) -> str:
    """One part: its digest; several: the SHA-256 of them, labelled; all unknown: unknown."""
    if len(parts) == 1:
        return parts[0][1]
    if all(digest == UNKNOWN for _, digest in parts):
        return UNKNOWN
    text = "".join(f"{label}\0{digest}\n" for label, digest in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def callable_digest(function: Callable[..., Any]) -> str:
    """The fingerprint of the code a call of ``function`` runs (the module docstring says
    what counts): a hex SHA-256, or ``"unknown"``."""
    layers: list[tuple[str, str]] = []
    for i, layer in enumerate(_layers(function)):
        digest = _layer_digest(layer)
        if all(digest != seen for _, seen in layers):  # a decorator in the same file: once
            layers.append((str(i), digest))
    return _combined(layers)


def code_fingerprint(cfg: PipelineConfig, base_dir: Path | None) -> dict[str, str]:
    """Column name to the fingerprint of the user code it calls, for the columns that call
    some (in column order; see the module docstring). Blocking: it reads files.

    Args:
        base_dir: the folder the config's import paths may resolve against (the config
            file's); the pipeline is compiled already, so its modules are imported.
    """
    found: dict[str, str] = {}
    for column, refs in code_references(cfg).items():
        parts: list[tuple[str, str]] = []
        for field, function in refs:
            try:
                resolved = resolve_function(function, column=column, search_path=base_dir)
            except ConfigError:  # compiled already: a plugin resolving it its own way
                parts.append((field, UNKNOWN))
                continue
            parts.append((field, callable_digest(resolved)))
        found[column] = _combined(parts)
    return found
