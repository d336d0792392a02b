"""Reading a model's XML answer safely, and its JSON form for a JSON Schema.

:func:`parse_xml` parses with ``defusedxml`` (over the standard library's expat parser): a
document type declaration (``<!DOCTYPE``), entity declarations and external references are
refused outright, so neither entity expansion ("billion laughs") nor external entities (XXE)
can happen; a document of more than :data:`MAX_ELEMENTS` elements or nested deeper than
:data:`MAX_DEPTH` is refused too.

:func:`xml_to_json` maps the element tree to the JSON value a JSON Schema validates, led by
the schema where it says what it wants (``type``, ``properties``, ``items``, ``enum``,
``const``; ``anyOf``/``oneOf`` branches' ``type``; ``$ref`` is not followed):

- the root element's name is free (``<answer>`` is suggested); its content is the value;
- an element whose schema is an ``object`` (or that has child elements or attributes, when the
  schema does not say) becomes an object: each attribute is a property ``@name``, each child
  element a property named by its tag (namespaces dropped); a tag repeated becomes an array,
  and so does a tag once when the property's schema is an ``array``; a property whose schema is
  only ``array`` and that has no element is ``[]``; text beside child elements is ``#text``;
- an element whose schema is an ``array`` holds its items as child elements of any tag
  (``<tags><item>a</item><item>b</item></tags>``): the form of a root or of an array in an
  array (an array property is usually written as repeated elements instead);
- other elements are scalars: their text with surrounding whitespace stripped, matched
  against ``enum``/``const`` values, else coerced as the schema's ``type`` asks (``integer``,
  ``number``, ``boolean`` from ``true``/``false``/``1``/``0``, ``null`` from empty text); text
  that does not coerce stays a string, so validation names the problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

__all__ = ["MAX_DEPTH", "MAX_ELEMENTS", "local_name", "parse_xml", "xml_to_json"]

#: Most elements one answer may hold.
MAX_ELEMENTS = 200_000
#: Deepest nesting of elements in one answer.
MAX_DEPTH = 64

_INTEGER = re.compile(r"[-+]?[0-9]+")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
#: The longest number text coerced (Python's own limit on converting digits is 4300).
_MAX_DIGITS = 4000
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def parse_xml(text: str) -> Element:
    """The root element of the XML document ``text``.

    Raises:
        ValueError: with a short, model-readable reason (not well-formed; a DTD, an entity or
            an external reference; over the limits).
    """
    try:
        root: Element = fromstring(
            text.encode("utf-8"), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise ValueError(
            f"the answer's XML uses a DTD, entities or external references, which are not"
            f" accepted ({type(exc).__name__})"
        ) from None
    except ParseError as exc:
        raise ValueError(f"the answer is not well-formed XML: {exc}") from None
    count = 0
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        count += 1
        if count > MAX_ELEMENTS:
            raise ValueError(f"the answer's XML has more than {MAX_ELEMENTS} elements")
        if depth > MAX_DEPTH:
            raise ValueError(f"the answer's XML is nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in element)
    return root


def local_name(tag: str) -> str:
    """``tag`` without its namespace (``{uri}name`` → ``name``)."""
    return tag.rsplit("}", 1)[-1]


def _types(schema: Any) -> set[str]:
    """The JSON types ``schema`` allows, as far as its ``type`` (or its ``anyOf``/``oneOf``
    branches', or ``properties``/``items``) says; empty when it does not say."""
    if not isinstance(schema, Mapping):
        return set()
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    out: set[str] = set()
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list):
            for branch in branches:
                out |= _types(branch)
    if not out and "properties" in schema:
        out.add("object")
    if not out and "items" in schema:
        out.add("array")
    return out


def _property(schema: Any, name: str) -> Any:
    """The schema of property ``name`` of an object ``schema`` (``None`` when unknown)."""
    if not isinstance(schema, Mapping):
        return None
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and name in properties:
        return properties[name]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


def _item(schema: Any, index: int) -> Any:
    """The schema of item ``index`` of an array ``schema`` (``None`` when unknown)."""
    if not isinstance(schema, Mapping):
        return None
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list) and index < len(prefix):
        return prefix[index]
    items = schema.get("items")
    return items if isinstance(items, Mapping) else None


def _only_array(schema: Any) -> bool:
    return _types(schema) == {"array"}


def _scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def coerce(text: str, schema: Any) -> Any:
    """The JSON scalar for ``text`` under ``schema`` (see the module's rules)."""
    if isinstance(schema, Mapping):
        choices = list(schema.get("enum", []) if isinstance(schema.get("enum"), list) else [])
        if "const" in schema:
            choices.append(schema["const"])
        for choice in choices:
            if not isinstance(choice, dict | list) and _scalar_text(choice) == text:
                return choice
    types = _types(schema)
    if text == "" and "null" in types:
        return None
    if not types or "string" in types:
        return text
    if "integer" in types and _INTEGER.fullmatch(text) and len(text) <= _MAX_DIGITS:
        return int(text)
    if "number" in types and _NUMBER.fullmatch(text) and len(text) <= _MAX_DIGITS:
        number = float(text)
        if math.isfinite(number):
            return int(text) if _INTEGER.fullmatch(text) else number
    if "boolean" in types and text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    if text == "" and types & {"object", "array"}:
        return {} if "object" in types else []
    return text


def xml_to_json(element: Element, schema: Any) -> Any:
    """The JSON form of ``element`` under the JSON Schema ``schema`` (see the module)."""
    types = _types(schema)
    children = list(element)
    text = (element.text or "").strip()
    if "array" in types and "object" not in types and (children or not text):
        return [xml_to_json(child, _item(schema, i)) for i, child in enumerate(children)]
    structured = bool(children) or bool(element.attrib)
    if not ("object" in types or (structured and not types & {"array"})):
        return coerce(text, schema)
    out: dict[str, Any] = {}
    for name, value in element.attrib.items():
        key = "@" + local_name(name)
        out[key] = coerce(value.strip(), _property(schema, key))
    groups: dict[str, list[Element]] = {}
    for child in children:
        groups.setdefault(local_name(child.tag), []).append(child)
    for name, group in groups.items():
        sub = _property(schema, name)
        if _only_array(sub):
            out[name] = [xml_to_json(child, _item(sub, i)) for i, child in enumerate(group)]
        elif len(group) > 1:
            out[name] = [xml_to_json(child, sub) for child in group]
        else:
            out[name] = xml_to_json(group[0], sub)
    if text:
        out["#text"] = text
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if isinstance(properties, Mapping):
        for name, sub in properties.items():
            if name not in out and _only_array(sub):
                out[name] = []
    return out
