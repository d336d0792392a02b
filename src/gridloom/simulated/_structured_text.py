"""YAML and XML answers of the simulated endpoint.

A system or user message that says ``Answer format: YAML.`` or ``Answer format: XML.`` (the
instruction gridloom's structured columns write) asks for that format. The value comes from
the JSON Schema in the prompt, as for JSON answers, and is written:

- as YAML: one plain YAML document in a ```` ```yaml ```` block;
- as XML: a root element ``<answer>`` in a ```` ```xml ```` block, following gridloom's
  mapping (an object's properties are child elements, ``@name`` ones attributes; an array
  property is its element repeated; an array inside an array, or at the root, holds
  ``<item>`` children; scalars are text, ``true``/``false`` for booleans, empty for null).

With no JSON Schema but an XML Schema (a ```` ```xml ```` block after the words "XML Schema")
the answer is built from the XSD's first global element, when the optional ``xmlschema``
package is installed: each element's declared children (the first branch of a choice, at
least once each) and required attributes, with values drawn from the simple types' enumerations,
else matching one of their patterns (built as for JSON Schema's ``pattern``, see
:mod:`._pattern_values`), else of their base type (string, integer, decimal, boolean, date);
length facets are not followed, and a target namespace becomes the default one (right for
``elementFormDefault="qualified"``). An answer that the XSD does not accept is not given (the
reply is then plain text).

:func:`broken_text` gives the invalid answers of ``invalid_output_rate``: syntax that does not
parse (an unclosed flow sequence in YAML, a missing end tag in XML).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from typing import Any, Literal

import yaml

from ._pattern_values import parse_pattern
from ._requests import PromptMessage
from ._schema_checks import Budget
from ._schema_values import MAX_STRING_LENGTH

__all__ = [
    "StructuredFormat",
    "broken_text",
    "format_from_prompt",
    "structured_text",
    "xml_from_xsd",
    "xsd_from_prompt",
]

StructuredFormat = Literal["yaml", "xml"]

_MARKER = re.compile(r"Answer format: (YAML|XML)\.")
_XSD_WORDS = re.compile(r"XML Schema")
_XML_FENCE = re.compile(r"```xml[ \t]*\n(.*?)```", re.DOTALL)
#: The longest XSD in a prompt the endpoint answers for, in characters.
_MAX_XSD_CHARS = 64 * 1024
#: Characters of a message searched for the marker.
_SCAN = 65_536


def format_from_prompt(messages: Sequence[PromptMessage]) -> StructuredFormat | None:
    """The format a system or user message asks for with the marker, or ``None``."""
    for message in messages:
        if message.role in ("system", "user"):
            found = _MARKER.search(message.text, 0, _SCAN)
            if found is not None:
                return "yaml" if found.group(1) == "YAML" else "xml"
    return None


def xsd_from_prompt(messages: Sequence[PromptMessage]) -> str | None:
    """The XSD text in the first ```` ```xml ```` block after "XML Schema", or ``None``."""
    for message in messages:
        if message.role not in ("system", "user"):
            continue
        words = _XSD_WORDS.search(message.text)
        if words is None:
            continue
        block = _XML_FENCE.search(message.text, words.end())
        if block is not None and len(block.group(1)) <= _MAX_XSD_CHARS:
            return block.group(1)
    return None


def _escape(text: str) -> str:
    """``text`` as XML character data (``xml.sax`` loads with the first XML answer)."""
    from xml.sax.saxutils import escape

    return escape(text)


def _quoteattr(text: str) -> str:
    """``text`` as a quoted XML attribute value."""
    from xml.sax.saxutils import quoteattr

    return quoteattr(text)


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _escape(str(value))


def _content(value: Any) -> tuple[str, str]:
    """The attributes and the inner XML of an element holding ``value``."""
    if isinstance(value, dict):
        attributes = "".join(
            f" {key[1:]}={_quoteattr(_scalar(item))}"
            for key, item in value.items()
            if key.startswith("@")
        )
        inner = [_scalar(value["#text"])] if "#text" in value else []
        for key, item in value.items():
            if key.startswith("@") or key == "#text":
                continue
            for one in item if isinstance(item, list) else [item]:
                inner.append(_element(key, one))
        return attributes, "".join(inner)
    if isinstance(value, list):
        return "", "".join(_element("item", item) for item in value)
    return "", _scalar(value)


def _element(name: str, value: Any) -> str:
    attributes, inner = _content(value)
    return f"<{name}{attributes}>{inner}</{name}>"


class _Dumper(yaml.SafeDumper):
    """A safe dumper that also quotes strings YAML 1.2's core schema reads as numbers
    (``0E0``, ``0o17``), since gridloom reads plain scalars that way."""


_Dumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)
_Dumper.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:0o[0-7]+|0x[0-9a-fA-F]+)$"), ["0"]
)


def structured_text(value: Any, fmt: StructuredFormat) -> str:
    """``value`` written in ``fmt``, in a fenced block."""
    if fmt == "yaml":
        # ASCII only: PyYAML writes some line breaks (U+0085, U+2028) raw with allow_unicode,
        # where they read back as spaces.
        body = yaml.dump(value, Dumper=_Dumper, sort_keys=False, width=1_000_000)
        return f"```yaml\n{body}```"
    return f"```xml\n{_element('answer', value)}\n```"


def broken_text(text: str, fmt: StructuredFormat) -> str:
    """``text`` (an answer in ``fmt``) made so that it does not parse."""
    if fmt == "yaml":
        return text.replace("\n```", "\nbroken: [unclosed, sequence\n```")
    return text.replace("</answer>", "")


# --------------------------------------------------------------------- XSD


@functools.lru_cache(maxsize=16)
def _compiled(xsd: str) -> Any:
    """The ``xmlschema`` schema of ``xsd``, or ``None`` (no package, or not a schema)."""
    try:
        import xmlschema
    except ImportError:
        return None
    try:
        return xmlschema.XMLSchema(xsd, allow="none", defuse="always")
    except Exception:  # xmlschema raises many kinds for a bad schema
        return None


_INTEGERS = frozenset(
    """integer int long short byte nonNegativeInteger positiveInteger nonPositiveInteger
    negativeInteger unsignedLong unsignedInt unsignedShort unsignedByte""".split()  # noqa: SIM905
)


def _simple(simple_type: Any, rng: random.Random, words: Sequence[str]) -> str:
    """A value of an XSD simple type (not escaped): one of its enumeration, one matching one of
    its patterns (as xmlschema translates them to Python's), else one of its base type."""
    enumeration = getattr(simple_type, "enumeration", None)
    if enumeration:
        return str(rng.choice(list(enumeration)))
    for regex in _shuffled(getattr(getattr(simple_type, "patterns", None), "patterns", ()), rng):
        pattern = parse_pattern(getattr(regex, "pattern", None))
        if pattern is not None:
            return pattern.build(rng, Budget(), limit=MAX_STRING_LENGTH)
    names: set[str] = set()
    current = simple_type
    for _ in range(32):
        if current is None:
            break
        if current.local_name:
            names.add(current.local_name)
        current = getattr(current, "base_type", None)
    primitive = getattr(getattr(simple_type, "primitive_type", None), "local_name", None)
    if names & _INTEGERS:
        return str(rng.randint(1, 99))
    if primitive in ("decimal", "float", "double"):
        return f"{rng.randint(1, 99)}.{rng.randint(0, 9)}"
    if primitive == "boolean":
        return rng.choice(("true", "false"))
    if primitive == "date":
        return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if primitive == "dateTime":
        return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00"
    return rng.choice(list(words)) if words else "value"


def _shuffled(items: Any, rng: random.Random) -> list[Any]:
    """``items`` (any iterable, or not one) in a drawn order."""
    try:
        listed = list(items)
    except TypeError:
        return []
    rng.shuffle(listed)
    return listed


def _group(group: Any, rng: random.Random, words: Sequence[str], depth: int) -> str:
    particles = list(group)
    if getattr(group, "model", "") == "choice" and particles:
        particles = particles[:1]
    out = []
    for particle in particles:
        if hasattr(particle, "model") and hasattr(particle, "iter_elements"):
            out.append(_group(particle, rng, words, depth))
        elif hasattr(particle, "type") and hasattr(particle, "local_name"):
            repeat = max(1, particle.min_occurs)
            if particle.max_occurs is None or particle.max_occurs > 1:
                repeat = max(repeat, rng.randint(1, 2))
            out.extend(_xsd_element(particle, rng, words, depth + 1) for _ in range(repeat))
    return "".join(out)


def _xsd_element(element: Any, rng: random.Random, words: Sequence[str], depth: int) -> str:
    if depth > 16:
        raise RecursionError("the XSD nests too deeply")
    name = element.local_name
    kind = element.type
    attributes = ""
    for attribute in getattr(kind, "attributes", {}).values():
        if getattr(attribute, "use", "") == "required" and getattr(attribute, "local_name", None):
            value = _simple(attribute.type, rng, words)
            attributes += f" {attribute.local_name}={_quoteattr(value)}"
    if kind.is_simple():
        inner = _escape(_simple(kind, rng, words))
    elif kind.has_simple_content():
        inner = _escape(_simple(kind.content, rng, words))
    elif kind.content is not None and hasattr(kind.content, "model"):
        inner = _group(kind.content, rng, words, depth)
    else:
        inner = ""
    return f"<{name}{attributes}>{inner}</{name}>"


def xml_from_xsd(xsd: str, rng: random.Random, words: Sequence[str]) -> str | None:
    """An XML answer valid for ``xsd``'s first global element, in a fenced block, or
    ``None`` (no ``xmlschema``, not a schema, or nothing valid was built)."""
    schema = _compiled(xsd)
    if schema is None or not schema.elements:
        return None
    root = next(iter(schema.elements.values()))
    try:
        document = _xsd_element(root, rng, words, 0)
        if schema.target_namespace:  # qualified elements: the namespace as the default one
            name = root.local_name
            document = document.replace(
                f"<{name}", f"<{name} xmlns={_quoteattr(schema.target_namespace)}", 1
            )
        valid = schema.is_valid(document)
    except Exception:  # an XSD feature this builder does not follow
        return None
    return f"```xml\n{document}\n```" if valid else None
