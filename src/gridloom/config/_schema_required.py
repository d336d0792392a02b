"""Names a closed object schema requires but does not declare.

gridloom reads an object schema that does not mention ``additionalProperties`` as closed
(``docs/structured-formats.md``, "How values are stored"): its value is stored as a struct of
the declared ``properties``, and templates may read only those. A name in ``required`` (or in
a ``dependentRequired`` list) that ``properties`` does not declare then contradicts itself:
JSON Schema lets the model's answer carry it (for JSON Schema an unmentioned
``additionalProperties`` is open), but gridloom would drop it from the stored struct without a
word, and usually it is a typo (``required: [fact]`` beside ``properties: {facts: ...}``).
:func:`required_problem` finds such a name before anything runs.

An object counts as closed where gridloom reads it as closed: ``type: object`` (or
``[object, "null"]``) with ``properties``, ``additionalProperties`` false or not mentioned,
and none of the keywords that may let other names in (``patternProperties``, ``allOf``,
``anyOf``, ``oneOf``, ``if``/``then``/``else``, ``not``, ``dependentSchemas``,
``unevaluatedProperties``, a ``$ref`` beside the properties). Every schema gridloom reads a
value through is checked: ``properties``, an ``items`` schema, ``anyOf``/``oneOf`` branches,
``$defs``/``definitions`` and the places a local ``$ref`` points to. ``additionalProperties:
true`` (or a schema) opens an object, and then nothing is checked in it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from ._schema_refs import Path, pointer, where

__all__ = ["required_problem"]

#: Keywords beside ``properties`` that may let other names into an object.
_OPENING = frozenset(
    {
        "patternProperties",
        "allOf",
        "anyOf",
        "oneOf",
        "if",
        "then",
        "else",
        "not",
        "dependentSchemas",
        "dependencies",
        "unevaluatedProperties",
        "$ref",
        "$dynamicRef",
        "$recursiveRef",
    }
)
#: Most schema objects one check visits (validation is bounded by the schema's size anyway).
_MAX_NODES = 10_000


def _closed_object(node: Mapping[str, Any]) -> bool:
    """Whether gridloom reads ``node`` as an object that holds its ``properties`` only."""
    declared = node.get("type")
    kinds = [declared] if isinstance(declared, str) else declared
    if not isinstance(kinds, list) or {k for k in kinds if k != "null"} != {"object"}:
        return False
    return (
        isinstance(node.get("properties"), Mapping)
        and node.get("additionalProperties", False) is False
        and not _OPENING & node.keys()
    )


def _read_through(node: Mapping[str, Any], path: Path) -> Iterator[tuple[Path, Any]]:
    """The subschemas of ``node`` that gridloom reads values (or definitions) through."""
    properties = node.get("properties")
    if isinstance(properties, Mapping):
        for name, sub in properties.items():
            yield (*path, "properties", name), sub
    items = node.get("items")
    if isinstance(items, Mapping):
        yield (*path, "items"), items
    for key in ("anyOf", "oneOf"):
        branches = node.get(key)
        if isinstance(branches, list):
            for index, branch in enumerate(branches):
                yield (*path, key, index), branch
    for key in ("$defs", "definitions"):
        defs = node.get(key)
        if isinstance(defs, Mapping):
            for name, sub in defs.items():
                yield (*path, key, name), sub


def _missing(
    names: Any, declared: Mapping[str, Any], path: Path, key: str | int
) -> tuple[Path, str] | None:
    """The first of ``names`` (a ``required`` list) that ``declared`` lacks, with its path."""
    if not isinstance(names, list):
        return None
    for name in names:
        if isinstance(name, str) and name not in declared:
            return (*path, key), name
    return None


def _message(path: Path, name: str, node: Mapping[str, Any]) -> str:
    known = [str(known) for known in node["properties"]]
    listed = ", ".join(known) if known else "none"
    text = f"{where(path)} names {name!r}, which the object's properties ({listed}) do not declare"
    if "additionalProperties" in node:  # false: JSON Schema itself rules every answer out
        text += ", and additionalProperties: false rules it out, so no answer can be valid"
    else:
        text += (
            ": an object schema that does not mention additionalProperties is read as closed,"
            " so that field would never be stored"
        )
    close = difflib.get_close_matches(name, known, n=1)
    text += f"; did you mean {close[0]!r}?" if close else f"; declare {name!r} in properties"
    if "additionalProperties" not in node:
        text += " (if other fields may appear, set additionalProperties: true)"
    return text


def required_problem(schema: Any) -> str | None:
    """Why ``schema`` requires a name that a closed object of it does not declare (naming
    where, the name, and the close declared name if there is one); ``None`` when it does
    not."""
    if not isinstance(schema, Mapping):
        return None
    seen: set[Path] = set()
    stack: list[tuple[Path, Any]] = [((), schema)]
    while stack and len(seen) < _MAX_NODES:
        path, node = stack.pop()
        if path in seen or not isinstance(node, Mapping):
            continue
        seen.add(path)
        if _closed_object(node):
            declared: Mapping[str, Any] = node["properties"]
            found = _missing(node.get("required"), declared, path, "required")
            dependent = node.get("dependentRequired")
            if found is None and isinstance(dependent, Mapping):
                for trigger, names in dependent.items():
                    if trigger in declared:
                        found = _missing(names, declared, (*path, "dependentRequired"), trigger)
                        if found is not None:
                            break
            if found is not None:
                return _message(*found, node)
        ref = node.get("$ref")
        if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
            target = pointer(schema, ref[1:])
            if target is not None:
                stack.append(target)
        # Reversed: the first subschema in the document is checked (and reported) first.
        stack.extend(reversed(list(_read_through(node, path))))
    return None
