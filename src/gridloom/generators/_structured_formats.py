"""The answer formats of structured columns: JSON, YAML and XML.

An :class:`AnswerFormat` knows, for one column, how to ask for an answer in its format (the
instruction added to the prompt) and how to turn the model's text into the cell's value: it
takes the fenced block of the format (or the first fenced block, or the whole body), parses
it safely (:mod:`._safe_yaml`, :mod:`._xml_json`) and validates it (the JSON Schema against
the parsed value, or XML's JSON form; an XSD against the XML document with ``xmlschema``).
Every failure of the answer is a ``ValueError`` whose text is fed back to the model (one of
the schema, a ``$ref`` that does not resolve, a :class:`~gridloom.errors.GenerationError`).

The instruction for YAML and XML starts with :data:`FORMAT_MARKER` (``Answer format: YAML.``
or ``Answer format: XML.``); the simulated endpoint reads it to answer in that format.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..clients._post import utf8_clean
from ..errors import GenerationError
from ._think import split_think

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = [
    "FORMATS",
    "FORMAT_MARKER",
    "INLINE_PARSE_CHARS",
    "MAX_JSON_STARTS",
    "MAX_XSD_CHARS",
    "AnswerFormat",
    "Format",
    "compile_xsd",
    "extract_answer",
    "validation_correction",
]

Format = Literal["json", "yaml", "xml"]
#: The answer formats a structured column can ask for.
FORMATS: tuple[Format, ...] = ("json", "yaml", "xml")
#: How the prompt instruction for YAML and XML begins (``{}`` is ``YAML`` or ``XML``).
FORMAT_MARKER = "Answer format: {}."
#: The longest inline XSD accepted, in characters.
MAX_XSD_CHARS = 256 * 1024
#: The longest answer parsed on the event loop, per format (about a millisecond of work; a
#: longer one goes to a worker thread): JSON parses in C, XML in expat and a short walk, YAML
#: in pure Python (about 5 ms per KiB), so YAML always goes to a thread.
INLINE_PARSE_CHARS: dict[str, int] = {"json": 65_536, "xml": 4_096, "yaml": 0}

#: The most places a JSON answer with text around it is tried from (each ``{`` or ``[``).
MAX_JSON_STARTS = 64

_JSON_START = re.compile(r"[{\[]")
_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[ \t]*\n(.*?)```", re.DOTALL)
_TAGS: dict[str, tuple[str, ...]] = {"json": ("json",), "yaml": ("yaml", "yml"), "xml": ("xml",)}
_XML_RULES = (
    "Write the answer as a root element <answer> whose content follows the schema this way:"
    " each object property is a child element named after it (a property named @name is an"
    " attribute), an array property is its element repeated once per item, an array inside an"
    " array holds its items as <item> child elements, and a scalar is the element's text"
    " (true/false for booleans, an empty element for null). No DTD, entities or namespaces."
)


def extract_answer(text: str, fmt: str) -> str:
    """The part of a model's answer to parse: without a leading ``<think>`` block
    (:func:`._think.split_think`), the first fenced block tagged for ``fmt``, else the first
    fenced block, else the whole text (stripped)."""
    stripped = split_think(text)[0].strip()
    blocks = _FENCE.findall(stripped)
    for tag, body in blocks:
        if tag.lower() in _TAGS[fmt]:
            return str(body).strip()
    return str(blocks[0][1]).strip() if blocks else stripped


class _NotJson(ValueError):
    """The text at a place is not JSON: ``pos`` is where its syntax breaks."""

    def __init__(self, msg: str, pos: int) -> None:
        super().__init__(f"the answer is not valid JSON ({msg} at position {pos})")
        self.pos = pos


def _load_json(text: str) -> Any:
    """The JSON value that is the whole ``text``.

    Raises:
        ValueError: with a short, model-readable reason.
    """
    value, end = _decoded(_DECODER, text, 0)
    if text[end:].strip():
        raise _NotJson("Extra data", end)
    return value


def _decoded(decoder: json.JSONDecoder, text: str, start: int) -> tuple[Any, int]:
    """The JSON value that begins at ``start`` in ``text`` and where it ends.

    Raises:
        ValueError: with a short, model-readable reason.
    """
    try:
        value, end = decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise _NotJson(exc.msg, exc.pos) from None
    except RecursionError:
        raise ValueError("the answer's JSON is nested too deeply") from None
    except ValueError as exc:  # NaN, or an integer beyond Python's digit limit
        reason = str(exc)
        if not reason.startswith("the answer"):
            reason = f"the answer is not usable JSON: {reason}"
        raise ValueError(reason) from None
    return utf8_clean(value), end  # a "\\ud800" escape decodes to text no file can hold


def compile_xsd(xsd: str) -> Any:
    """The ``xmlschema`` schema of the XSD text ``xsd``: no resource it names is fetched (an
    XSD that imports or includes one is refused), and a DTD's entities are refused.

    Raises:
        ValueError: the ``xmlschema`` package is missing, or ``xsd`` is not a valid schema.
    """
    if len(xsd) > MAX_XSD_CHARS:
        raise ValueError(f"xsd is longer than {MAX_XSD_CHARS} characters")
    try:
        import xmlschema
    except ImportError:
        raise ValueError(
            "xsd needs the optional dependency 'xmlschema': pip install 'gridloom[xml]'"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. an import it may not fetch: refused
            return xmlschema.XMLSchema(xsd, allow="none", defuse="always")
    except Exception as exc:  # xmlschema raises many kinds for a bad schema
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"xsd is not a valid XML Schema: {first.rstrip(' :')}") from None


def _schema_validator(schema: dict[str, Any]) -> Validator:
    """The ``jsonschema`` validator of ``schema``'s draft, which follows only local ``$ref``
    (nothing is fetched). jsonschema is imported there, not with this module, so a run
    without a JSON Schema does not load it."""
    from ..config._schema_refs import local_validator

    return local_validator(schema)


def _no_constant(name: str) -> Any:
    raise ValueError(f"the answer holds {name}, which JSON does not allow")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object of the answer; a key given twice is refused (a reader would keep the
    last value and drop the first without a word, so the answer is ambiguous)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise ValueError(
                    f"the answer gives the key {key!r} twice in one object; give each key once"
                )
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_unique_object)


def _local_keys(value: Any) -> Any:
    """``value`` with namespaces dropped from its keys (``{urn:x}name`` → ``name``,
    ``@{urn:x}id`` → ``@id``)."""
    from ._xml_json import local_name

    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            prefix = "@" if key.startswith("@") else ""
            out[prefix + local_name(key[len(prefix) :])] = _local_keys(item)
        return out
    if isinstance(value, list):
        return [_local_keys(item) for item in value]
    return value


def _json_value(value: Any) -> Any:
    """``value`` (decoded by ``xmlschema``) as plain JSON data, namespaces dropped from keys."""
    return _local_keys(json.loads(json.dumps(value, default=str, ensure_ascii=False)))


def _decode_xsd(xsd: Any, root: Any) -> Any:
    """The JSON form of ``root`` as ``xsd`` decodes it, once it is valid."""
    error = next(iter(xsd.iter_errors(root)), None)
    if error is not None:
        from ._xml_json import local_name

        where = error.path or local_name(str(root.tag))
        raise ValueError(f"the answer does not match the XSD at {where}: {error.reason}")
    return _json_value(xsd.to_dict(root, decimal_type=float))


def validation_correction(messages: Sequence[str]) -> str:
    """The follow-up turn that sends an answer its column's validators rejected back, quoting
    their messages."""
    listed = "\n".join(f"- {message}" for message in messages)
    return (
        f"That answer did not pass validation:\n{listed}\n\nReply again with the whole"
        " corrected answer, in the same form as before, fixing every problem listed."
    )


class AnswerFormat:
    """How one structured column asks for and reads answers in ``fmt``.

    Args:
        fmt: ``json``, ``yaml`` or ``xml``.
        schema: the JSON Schema of the value (``None`` for XML with an XSD).
        xsd: the XML Schema (XSD) text, for XML only.
    """

    def __init__(
        self,
        fmt: Format = "json",
        schema: Mapping[str, Any] | None = None,
        xsd: str | None = None,
    ):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if (schema is None) == (xsd is None) or (xsd is not None and fmt != "xml"):
            raise ValueError("give a JSON Schema, or (for XML only) an XSD")
        self.fmt: Format = fmt
        self.schema = dict(schema) if schema is not None else None
        self.xsd = xsd
        self._validator = _schema_validator(self.schema) if self.schema is not None else None
        self._xsd = compile_xsd(xsd) if xsd is not None else None
        self._schema_text = (
            json.dumps(self.schema, indent=2, ensure_ascii=False) if self.schema else ""
        )

    @property
    def inline(self) -> int:
        """The longest answer :meth:`parse` should take on the event loop, in characters
        (``-1``: none, as with an XSD)."""
        return -1 if self.xsd is not None else INLINE_PARSE_CHARS[self.fmt]

    @property
    def name(self) -> str:
        """The format's name as the model reads it (``JSON``, ``YAML``, ``XML``)."""
        return self.fmt.upper()

    def instruction(self, enforced: bool) -> str | None:
        """The text added to the prompt, or ``None`` when the provider enforces the schema
        (``enforced``: JSON with ``json_schema_mode``)."""
        if self.fmt == "json":
            if enforced:
                return None
            return (
                "Respond with JSON only, valid against this JSON Schema:\n"
                f"```json\n{self._schema_text}\n```"
            )
        marker = FORMAT_MARKER.format(self.name)
        if self.fmt == "yaml":
            return (
                f"{marker} Respond with one YAML document in a ```yaml fenced block, plain data"
                " (no anchors, aliases or tags), valid against this JSON Schema:\n"
                f"```json\n{self._schema_text}\n```"
            )
        if self.xsd is not None:
            return (
                f"{marker} Respond with one XML document in a ```xml fenced block, valid"
                " against this XML Schema (XSD); no DTD or entities:\n"
                f"```xml\n{self.xsd.strip()}\n```"
            )
        return (
            f"{marker} Respond with one XML document in a ```xml fenced block. {_XML_RULES}"
            f" The content must be valid against this JSON Schema:\n"
            f"```json\n{self._schema_text}\n```"
        )

    def correction(self, reason: str) -> str:
        """The follow-up turn that sends an invalid answer back."""
        how = {
            "json": "JSON only",
            "yaml": "one YAML document in a ```yaml block",
            "xml": "one XML document in a ```xml block",
        }[self.fmt]
        return (
            f"That answer is not usable: {reason}. Reply again with {how}, valid against"
            " the schema."
        )

    def parse(self, text: str) -> Any:
        """The value of the answer ``text``, parsed and validated.

        Raises:
            ValueError: with a short, model-readable reason.
        """
        candidate = extract_answer(text, self.fmt)
        if self.fmt == "json":
            try:
                value = _load_json(candidate)
            except _NotJson as whole:
                # Prose around the JSON (servers that ignore response_format, or no
                # json_schema_mode): the first JSON value in the text that is valid.
                return self._embedded_json(candidate, whole)
        elif self.fmt == "yaml":
            from ._safe_yaml import load_yaml  # YAML and XML load with their first answer

            value = load_yaml(candidate)
        else:
            from ._xml_json import parse_xml, xml_to_json

            root = parse_xml(candidate)
            if self._xsd is not None:
                return _decode_xsd(self._xsd, root)
            value = xml_to_json(root, self.schema)
        self._validate(value)
        return value

    def _embedded_json(self, text: str, whole: ValueError) -> Any:
        """The first JSON object or array in ``text`` that parses and is valid against the
        schema; values nested in an earlier one (valid or not, or broken before its break)
        are not tried, and at most :data:`MAX_JSON_STARTS` places are.

        Raises:
            ValueError: no such value: the problem of the text's first value when it parses
                but is invalid, or of a value that is JSON but unusable (a key given twice,
                ``NaN``, nested too deeply), else ``whole`` (why the whole text is not JSON).
        """
        first_problem: ValueError | None = None
        position, tries = 0, 0
        while tries < MAX_JSON_STARTS:
            match = _JSON_START.search(text, position)
            if match is None:
                break
            tries += 1
            try:
                value, end = _decoded(_DECODER, text, match.start())
            except _NotJson as exc:
                # Values nested in the broken one, before where it breaks, are not answers
                # (a cut-off answer breaks at the end: nothing after it is tried).
                position = max(match.start() + 1, exc.pos)
                continue
            try:
                self._validate(value)
            except ValueError as exc:
                if tries == 1:  # the text's first value is the answer it meant to give
                    first_problem = exc
                position = end
                continue
            return value
        raise first_problem or whole

    def _validate(self, value: Any) -> None:
        if self._validator is not None:
            from jsonschema.exceptions import best_match  # loaded with the validator
            from referencing.exceptions import Unresolvable

            try:
                error = best_match(self._validator.iter_errors(value))
            except Unresolvable as exc:  # the schema's fault, not the answer's: no correction
                from ..config._schema_refs import unresolved

                raise GenerationError(f"the schema cannot be used: {unresolved(exc)}") from None
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "the top level"
                raise ValueError(
                    f"the answer does not match the schema at {where}: {error.message}"
                )
