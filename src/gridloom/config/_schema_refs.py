"""The ``$ref`` rule for every JSON Schema gridloom validates data against (a structured
column's schema, a ``json_schema`` validator's, a tool's parameters, the simulated endpoint's
request schemas): only local references are followed, and nothing is ever fetched.

A local reference starts with ``#`` (``#``, ``#/$defs/item``, ``#anchor``) and points into the
same schema. Any other ``$ref`` (``http://...``, ``file:///...``, ``other.json``) is refused
when the schema is checked (:func:`ref_problem`), before any request; and the validators
gridloom builds (:func:`local_validator`) use a ``referencing`` registry whose retrieval always
fails, so even a reference that slipped past the check reads no file and opens no socket.

:func:`ref_problem` also refuses what can be told from the schema alone to fail every value:
a reference that points nowhere (a JSON pointer, or an anchor no subschema declares), and a
loop of ``$ref`` (with ``allOf``, ``anyOf``, ``oneOf``, ``not``, ``if``/``then``/``else``,
``dependentSchemas``) that comes back to where it started without descending into the value
(``{"$ref": "#"}``): validating would recurse without end. Recursion through ``properties``,
``items`` and the like is fine (a tree).

jsonschema and referencing load with the first schema that needs them, not with this module.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    import referencing
    from jsonschema.protocols import Validator

__all__ = [
    "REF_KEYWORDS",
    "Path",
    "local_registry",
    "local_validator",
    "pointer",
    "ref_problem",
    "remote_ref",
    "unresolved",
    "where",
]

#: Keywords whose value is a reference.
REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
#: Keywords whose values are data, not schemas.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})

#: Keywords that apply a subschema to the value itself (not to a part of it): one schema,
#: a list of schemas, a mapping of schemas.
_IN_PLACE_ONE = frozenset({"not", "if", "then", "else"})
_IN_PLACE_LIST = frozenset({"allOf", "anyOf", "oneOf"})
_IN_PLACE_MAP = frozenset({"dependentSchemas"})
#: Keywords that apply a subschema to a part of the value.
_INTO_ONE = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "contains",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_INTO_LIST = frozenset({"items", "prefixItems"})
_INTO_MAP = frozenset({"properties", "patternProperties", "dependencies"})

#: Most schema objects the loop check walks (a larger schema is only checked for remote
#: references: validation is bounded by the schema's size anyway).
_MAX_NODES = 10_000

Path = tuple[str | int, ...]


def where(path: Path) -> str:
    """``path`` as ``schema.properties.a.$ref``."""
    out = "schema"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _references(schema: Any) -> Iterator[tuple[Path, str, Any]]:
    """Every reference keyword in ``schema`` with its path and value (data keywords'
    values are not looked into). Iterative: a deep schema cannot exhaust the stack."""
    stack: list[tuple[Any, Path]] = [(schema, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in REF_KEYWORDS and isinstance(value, str):
                    yield (*path, key), key, value
                elif key not in _DATA_KEYWORDS and isinstance(value, dict | list):
                    stack.append((value, (*path, key)))
        elif isinstance(node, list):
            stack.extend((item, (*path, index)) for index, item in enumerate(node))


def remote_ref(schema: Any) -> str | None:
    """Why ``schema`` holds a reference that is not local (one starting with ``#``), naming
    where; ``None`` when every reference is local."""
    for path, _key, value in _references(schema):
        if not value.startswith("#"):
            return (
                f"{where(path)} is {value!r}, but only a local $ref (one starting with '#',"
                " into the same schema, e.g. '#/$defs/item') is supported: nothing is fetched"
            )
    return None


def pointer(root: Any, fragment: str) -> tuple[Path, Any] | None:
    """The path and value the JSON pointer ``fragment`` (``/$defs/a``) names in ``root``,
    or ``None`` if it names nothing."""
    node = root
    path: list[str | int] = []
    for raw in fragment.split("/")[1:] if fragment else []:
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            path.append(int(part))
        else:
            return None
    return tuple(path), node


def _edges(node: dict[str, Any], path: Path) -> Iterator[tuple[bool, Path, Any]]:
    """The subschemas of the schema ``node`` at ``path``: ``(in place, path, subschema)``."""
    for key, value in node.items():
        if isinstance(value, dict) and (key in _IN_PLACE_ONE or key in _INTO_ONE):
            yield key in _IN_PLACE_ONE, (*path, key), value
        elif isinstance(value, list) and (key in _IN_PLACE_LIST or key in _INTO_LIST):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    yield key in _IN_PLACE_LIST, (*path, key, index), item
        elif isinstance(value, dict) and (key in _IN_PLACE_MAP or key in _INTO_MAP):
            for name, item in value.items():
                if isinstance(item, dict):
                    yield key in _IN_PLACE_MAP, (*path, key, name), item


def _has_inner_id(schema: dict[str, Any]) -> bool:
    """Whether a subschema sets its own base URI (``$id``, or draft 4's ``id``): then ``#``
    in it means that subschema, and the pointer check here does not apply."""
    for path, node in _schemas(schema):
        if path and isinstance(node.get("$id", node.get("id")), str):
            return True
    return False


def _schemas(schema: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
    stack: list[tuple[Path, dict[str, Any]]] = [((), schema)]
    seen = 0
    while stack and seen < _MAX_NODES:
        path, node = stack.pop()
        seen += 1
        yield path, node
        stack.extend((sub_path, sub) for _, sub_path, sub in _edges(node, path))
        for key in ("$defs", "definitions"):
            defs = node.get(key)
            if isinstance(defs, dict):
                stack.extend(
                    ((*path, key, name), sub) for name, sub in defs.items() if isinstance(sub, dict)
                )


def _local_problem(schema: dict[str, Any]) -> str | None:
    """A ``$ref`` that points nowhere (a pointer, or an anchor no subschema has), or a loop of
    in-place references, among the schemas reached from the root."""
    if _has_inner_id(schema):
        return None
    anchors = {
        name
        for _, node in _schemas(schema)
        for key in ("$anchor", "$dynamicAnchor")
        if isinstance(name := node.get(key), str)
    }
    # Walk from the root along every subschema and every pointer reference; record, for
    # each schema reached, the schemas it applies in place.
    in_place: dict[Path, list[Path]] = {}
    stack: list[tuple[Path, Any]] = [((), schema)]
    while stack and len(in_place) < _MAX_NODES:
        path, node = stack.pop()
        if path in in_place or not isinstance(node, dict):
            continue
        targets: list[Path] = []
        in_place[path] = targets
        ref = node.get("$ref")
        if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
            found = pointer(schema, ref[1:])
            if found is None:
                return f"{where((*path, '$ref'))} is {ref!r}, which points to nothing"
            target_path, target = found
            if not isinstance(target, dict | bool):
                return f"{where((*path, '$ref'))} is {ref!r}, which is not a schema"
            targets.append(target_path)
            stack.append((target_path, target))
        elif isinstance(ref, str) and ref.startswith("#") and unquote(ref[1:]) not in anchors:
            return f"{where((*path, '$ref'))} is {ref!r}, but no $anchor has that name"
        for is_in_place, sub_path, sub in _edges(node, path):
            if is_in_place:
                targets.append(sub_path)
            stack.append((sub_path, sub))
    loop = _loop(in_place)
    if loop is not None:
        return (
            f"{where((*loop, '$ref'))} leads back to itself without descending into the"
            " value (a loop of $ref that no value can end)"
            if "$ref" in _get(schema, loop)
            else f"{where(loop)} applies itself to the same value again through $ref"
            " (a loop that no value can end)"
        )
    return None


def _get(schema: Any, path: Path) -> Any:
    for part in path:
        schema = schema[part]
    return schema


def _loop(graph: dict[Path, list[Path]]) -> Path | None:
    """A schema on a cycle of ``graph`` (iterative depth-first search), or ``None``."""
    state: dict[Path, int] = {}  # 1: on the current path, 2: done
    for start in graph:
        if start in state:
            continue
        state[start] = 1
        stack: list[tuple[Path, Iterator[Path]]] = [(start, iter(graph[start]))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                return child
            elif child not in state and child in graph:
                state[child] = 1
                stack.append((child, iter(graph[child])))
    return None


def ref_problem(schema: Any) -> str | None:
    """Why ``schema``'s references cannot be used (one is not local; a pointer names
    nothing; a loop of them never ends), naming where; ``None`` when they can."""
    problem = remote_ref(schema)
    if problem is None and isinstance(schema, dict):
        problem = _local_problem(schema)
    return problem


def _refuse(uri: str) -> referencing.Resource[Any]:
    """The registry's retrieval: nothing is fetched, from a network or a file."""
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


@functools.cache
def local_registry() -> referencing.Registry[Any]:
    """A ``referencing`` registry that resolves only what a schema holds itself (and the
    JSON Schema meta-schemas jsonschema adds): any other reference is unresolvable."""
    import referencing

    return referencing.Registry(retrieve=_refuse)  # type: ignore[call-arg]


def local_validator(schema: Any, cls: Any = None) -> Validator:
    """A jsonschema validator of ``schema`` (of ``cls``, else of the schema's draft) that
    never fetches a reference."""
    if cls is None:
        from jsonschema import validators

        cls = validators.validator_for(schema)
    validator: Validator = cls(schema, registry=local_registry())
    return validator


def unresolved(exc: BaseException) -> str:
    """What a ``referencing`` ``Unresolvable`` error could not resolve, in one short line
    (its text may quote the whole schema)."""
    ref = getattr(exc, "ref", None)
    return (
        f"a $ref does not resolve: {ref!r}" if isinstance(ref, str) else "a $ref does not resolve"
    )
