"""Safe parsing of structured answers (YAML without alias bombs or tags, XML without DTDs
or entities), the XML→JSON mapping, XSD validation, and the simulated endpoint's YAML/XML
answers reading back as their values."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.generators._safe_yaml import load_yaml
from gridloom.generators._structured_formats import (
    AnswerFormat,
    Format,
    compile_xsd,
    extract_answer,
)
from gridloom.generators._xml_json import parse_xml, xml_to_json
from gridloom.simulated._schema_values import value_for_schema
from gridloom.simulated._structured_text import broken_text, structured_text
from tests.strategies import json_schemas
from tests.test_structured_formats import FORMATS, RECORD, XSD

# ---------------------------------------------------------------------- safe parsers


def test_yaml_aliases_are_refused_so_billion_laughs_cannot_expand() -> None:
    """A billion-laughs YAML document (nine levels of nine aliases) is refused at its first
    alias, quickly and in little memory."""
    lines = ['a0: &a0 "lol"']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    bomb = "\n".join(lines)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="aliases"):
            load_yaml(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['echo hi']",
        "value: !!binary aGk=",
        "when: !!timestamp 2024-01-01",
        "items: !!set {a, b}",
        "local: !custom x",
    ],
)
def test_yaml_tags_beyond_the_core_schema_are_refused(text: str) -> None:
    """Python, binary, timestamp, set and local tags are refused: YAML answers are plain
    data."""
    with pytest.raises(ValueError, match="tag"):
        load_yaml(text)


def test_yaml_reads_like_the_core_schema() -> None:
    """Only true/false are booleans, dates stay strings, and scalar keys become strings;
    an explicit core tag is honoured."""
    text = "a: yes\nb: no\nc: true\nd: 2024-01-31\ne: 0o17\n200: ok\nf: !!str 12\ng: ~\n"
    assert load_yaml(text) == {
        "a": "yes",
        "b": "no",
        "c": True,
        "d": "2024-01-31",
        "e": 15,
        "200": "ok",
        "f": "12",
        "g": None,
    }


def test_yaml_nesting_and_extra_documents_are_refused() -> None:
    """Nesting beyond the depth limit, a second document and non-finite numbers are
    refused with a reason."""
    with pytest.raises(ValueError, match="deeper"):
        load_yaml("[" * 200 + "]" * 200)
    with pytest.raises(ValueError, match="not valid YAML"):
        load_yaml("a: 1\n---\nb: 2\n")
    with pytest.raises(ValueError, match="finite"):
        load_yaml("x: .nan")


XML_BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<answer><title>&lol9;</title></answer>"""


def test_xml_entity_expansion_is_refused() -> None:
    """The billion-laughs XML document is refused for its DTD, quickly and in little
    memory."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="DTD, entities or external references"):
            parse_xml(XML_BOMB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


def test_xml_external_entities_are_refused(tmp_path: Path) -> None:
    """An external entity naming a local file (XXE) is refused, and the file's content
    appears nowhere in the problem sent back to the model."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    for document in (
        f'<!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]><answer>&x;</answer>',
        '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><answer>&x;</answer>',
        f'<!DOCTYPE a SYSTEM "file://{secret}"><answer/>',
    ):
        with pytest.raises(ValueError, match="uses a DTD") as info:
            AnswerFormat("xml", {"type": "object"}).parse(document)
        assert "TOP-SECRET-VALUE" not in str(info.value)


def test_xml_nesting_beyond_the_limit_is_refused() -> None:
    """A document nested deeper than the limit is refused before it is mapped."""
    with pytest.raises(ValueError, match="deeper"):
        parse_xml("<a>" * 500 + "</a>" * 500)


TEXT = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="<>/=\"'&;!?[]{}:-*&!# \nabcxyz01", max_size=300),
)


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(FORMATS), text=TEXT)
def test_arbitrary_text_gives_a_value_or_a_reason(fmt: Format, text: str) -> None:
    """Whatever the model writes, parsing gives a value valid for the schema or a
    ValueError with a reason; nothing else escapes."""
    answer = AnswerFormat(fmt, {"type": ["object", "array", "string", "number", "null"]})
    try:
        value = answer.parse(text)
    except ValueError as exc:
        reason = str(exc)
    else:
        json.dumps(value, allow_nan=False)
        return
    assert reason.startswith("the answer"), reason


def test_numbers_beyond_the_limits_give_a_reason() -> None:
    """An integer of 5000 digits (beyond Python's conversion limit), or NaN in JSON, is a
    problem sent to the model, not a crash; in XML it stays text, which the schema judges."""
    digits = "9" * 5000
    with pytest.raises(ValueError, match="the answer is not usable JSON"):
        AnswerFormat("json", {"type": "object"}).parse(f'{{"n": {digits}}}')
    with pytest.raises(ValueError, match="the answer is not usable YAML"):
        AnswerFormat("yaml", {"type": "object"}).parse(f"n: {digits}")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    with pytest.raises(ValueError, match=r"at n: '9999.*' is not of type 'integer'"):
        AnswerFormat("xml", schema).parse(f"<a><n>{digits}</n></a>")
    with pytest.raises(ValueError, match="NaN, which JSON does not allow"):
        AnswerFormat("json", {"type": "object"}).parse('{"n": NaN}')


# ---------------------------------------------------------------------- the XML mapping


def test_xml_maps_to_json_led_by_the_schema() -> None:
    """Repeated children are arrays (one child too, for an array property), attributes are
    @-properties, text is coerced to the types the schema asks for, enum values are matched,
    an absent array property is empty, and namespaces are dropped."""
    schema = {
        "type": "object",
        "properties": {
            "@id": {"type": "integer"},
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "none": {"type": "array"},
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "ok": {"type": "boolean"},
            "maybe": {"type": ["integer", "null"]},
            "level": {"enum": [1, 2, "high"]},
            "grid": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
            "point": {"type": "object", "properties": {"x": {"type": "number"}}},
        },
    }
    document = """<answer id=" 7 " xmlns:n="urn:x">
      <name> 42 </name><tags>solo</tags><count>-3</count><ratio>2.50</ratio><ok>false</ok>
      <maybe/><level>2</level>
      <grid><item>1</item><item>2</item></grid><grid><i>3</i></grid>
      <n:point><x>1e2</x></n:point><extra>a</extra><extra>b</extra>
    </answer>"""
    assert xml_to_json(parse_xml(document), schema) == {
        "@id": 7,
        "name": "42",
        "tags": ["solo"],
        "none": [],
        "count": -3,
        "ratio": 2.5,
        "ok": False,
        "maybe": None,
        "level": 2,
        "grid": [[1, 2], [3]],
        "point": {"x": 100.0},
        "extra": ["a", "b"],
    }


def test_xml_text_that_does_not_coerce_stays_a_string_for_validation() -> None:
    """An integer written as a word stays text, so the schema check names the field."""
    answer = AnswerFormat("xml", RECORD)
    text = "<answer><title>t</title><year>soon</year><tags>x</tags><draft>true</draft>"
    text += "<score/><kind>a</kind></answer>"
    with pytest.raises(ValueError, match="at year: 'soon' is not of type 'integer'"):
        answer.parse(text)


def test_an_xsd_validates_and_decodes_the_answer() -> None:
    """With an XSD, an answer is checked against it (the problem names the place) and
    decoded by its types."""
    answer = AnswerFormat("xml", None, XSD)
    good = '<answer id="k"><count>3</count><word>a</word><word>b</word><ratio>0.5</ratio></answer>'
    assert answer.parse(good) == {"@id": "k", "count": 3, "word": ["a", "b"], "ratio": 0.5}
    with pytest.raises(ValueError, match="does not match the XSD"):
        answer.parse('<answer id="k"><count>many</count></answer>')


SIMPLE_SCHEMAS = st.sampled_from(
    [
        RECORD,
        {"type": "array", "items": {"type": "integer"}},
        {"type": "array", "items": RECORD, "minItems": 1, "maxItems": 3},
        {
            "type": "object",
            "properties": {
                "inner": RECORD,
                "grid": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            },
            "required": ["inner", "grid"],
        },
    ]
)


@settings(max_examples=60, deadline=None)
@given(schema=SIMPLE_SCHEMAS, seed=st.integers(0, 2**32))
def test_simulated_answers_read_back_as_their_values(schema: dict[str, Any], seed: int) -> None:
    """A value the simulated endpoint builds for a schema, written as YAML or XML, reads back
    as exactly that value; its broken form does not parse."""
    value = value_for_schema(schema, random.Random(seed), words=["river", "stone"])
    formats: tuple[Literal["yaml", "xml"], ...] = ("yaml", "xml")
    for fmt in formats:
        text = structured_text(value, fmt)
        assert AnswerFormat(fmt, schema).parse(text) == value
        with pytest.raises(ValueError, match="not"):
            AnswerFormat(fmt, schema).parse(broken_text(text, fmt))


def test_the_fenced_block_of_the_format_is_preferred() -> None:
    """The block tagged for the format is read, else the first block, else the whole text."""
    text = "Here:\n```json\n{}\n```\nand\n```yaml\na: 1\n```\n"
    assert extract_answer(text, "yaml") == "a: 1"
    assert extract_answer(text, "xml") == "{}"
    assert extract_answer("  <a/>  ", "xml") == "<a/>"


def test_the_prompt_asks_for_the_format_and_carries_the_schema() -> None:
    """YAML and XML instructions start with the format marker and hold the schema; JSON with
    an enforcing provider needs none."""
    assert AnswerFormat("json", RECORD).instruction(True) is None
    assert "JSON Schema" in (AnswerFormat("json", RECORD).instruction(False) or "")
    markers: dict[Format, str] = {"yaml": "Answer format: YAML.", "xml": "Answer format: XML."}
    for fmt, marker in markers.items():
        text = AnswerFormat(fmt, RECORD).instruction(True) or ""
        assert text.startswith(marker)
        assert '"additionalProperties": false' in text
    assert "XML Schema (XSD)" in (AnswerFormat("xml", None, XSD).instruction(False) or "")


@pytest.mark.parametrize(
    ("xsd", "problem"),
    [
        (
            '<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
            '<xs:element name="x" type="xs:string"/></xs:schema>',
            "Entities are forbidden",
        ),
        (
            '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
            '<xs:include schemaLocation="file:///etc/passwd"/>'
            '<xs:element name="x" type="xs:string"/></xs:schema>',
            "block access to resource file:///etc/passwd",
        ),
        (
            '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
            '<xs:import namespace="urn:x" schemaLocation="http://127.0.0.1:9/x.xsd"/>'
            '<xs:element name="x" type="xs:string"/></xs:schema>',
            "block access to resource http://127.0.0.1:9/x.xsd",
        ),
    ],
)
def test_an_xsd_fetches_nothing_and_expands_no_entities(xsd: str, problem: str) -> None:
    """An XSD with entities, or one that includes a local file or imports a remote schema, is
    refused as invalid: nothing is read or fetched."""
    with pytest.raises(ValueError, match="xsd is not a valid XML Schema") as info:
        compile_xsd(xsd)
    assert problem in str(info.value)


def _reply_for(fmt: Format, schema: dict[str, Any], user: str) -> Any:
    """The simulated endpoint's reply to a prompt a structured column of ``fmt`` writes."""
    from gridloom.config import SimulatedModel
    from gridloom.simulated._replies import build_reply
    from gridloom.simulated._requests import GenerationRequest, PromptMessage

    prompt = f"{user}\n\n{AnswerFormat(fmt, schema).instruction(False)}"
    message = PromptMessage(role="user", text=prompt)
    request = GenerationRequest(model="m", messages=(message,))
    return request, build_reply(request, SimulatedModel())


@settings(max_examples=150, deadline=None)
@given(schema=json_schemas(), user=st.sampled_from(["rivers", "stone walls", "a b c"]))
def test_simulated_yaml_answers_are_valid_and_invalid_ones_are_not(
    schema: dict[str, Any], user: str
) -> None:
    """For any schema, the simulated endpoint's YAML answer to the column's prompt parses to
    its value, valid for the schema; its invalid answer does not parse or breaks the schema."""
    from gridloom.simulated._replies import invalid_reply

    request, reply = _reply_for("yaml", schema, user)
    if reply.kind != "yaml":  # a schema the endpoint cannot answer for: passed over
        return
    assert AnswerFormat("yaml", schema).parse(reply.text) == reply.value
    with pytest.raises(ValueError, match="the answer"):
        AnswerFormat("yaml", schema).parse(invalid_reply(reply, request.digest()).text)


@settings(max_examples=60, deadline=None)
@given(schema=SIMPLE_SCHEMAS, user=st.sampled_from(["rivers", "stone walls"]))
def test_simulated_xml_answers_are_valid_and_invalid_ones_are_not(
    schema: dict[str, Any], user: str
) -> None:
    """The same for XML, over schemas XML can carry."""
    from gridloom.simulated._replies import invalid_reply

    request, reply = _reply_for("xml", schema, user)
    assert reply.kind == "xml"
    assert AnswerFormat("xml", schema).parse(reply.text) == reply.value
    with pytest.raises(ValueError, match="the answer"):
        AnswerFormat("xml", schema).parse(invalid_reply(reply, request.digest()).text)


def test_the_simulated_endpoint_answers_an_xsd_with_a_namespace_and_a_choice() -> None:
    """For an XSD with a target namespace, an enumeration, a choice and a required attribute,
    the simulated XML answer passes the column's XSD check, decoded by the XSD's types."""
    import random as stdlib_random

    from gridloom.simulated._structured_text import xml_from_xsd

    xsd = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t"
      xmlns="urn:t" elementFormDefault="qualified">
      <xs:element name="rec"><xs:complexType><xs:sequence>
        <xs:element name="n" type="xs:int"/>
        <xs:element name="colour"><xs:simpleType><xs:restriction base="xs:string">
          <xs:enumeration value="red"/><xs:enumeration value="blue"/>
        </xs:restriction></xs:simpleType></xs:element>
        <xs:choice><xs:element name="a" type="xs:boolean"/><xs:element name="b" type="xs:date"/>
        </xs:choice>
      </xs:sequence><xs:attribute name="id" type="xs:string" use="required"/>
      </xs:complexType></xs:element></xs:schema>"""
    answer = AnswerFormat("xml", None, xsd)
    for seed in range(5):
        text = xml_from_xsd(xsd, stdlib_random.Random(seed), ["river"])
        assert text is not None
        value = answer.parse(text)
        assert isinstance(value["n"], int)
        assert value["colour"] in ("red", "blue")
        assert value["@id"] == "river"


# ---------------------------------------------------------------------- keys given twice

_KEYS = st.text(alphabet="abxyz_", min_size=1, max_size=4)
_LEAVES = st.one_of(
    st.integers(-5, 5), st.booleans(), st.none(), st.text(alphabet="abc ", max_size=4)
)
_TREES = st.recursive(
    _LEAVES,
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(_KEYS, kids, max_size=3)),
    max_leaves=12,
)


def _objects(value: Any) -> int:
    """How many objects (dicts) ``value`` holds, itself included."""
    if isinstance(value, dict):
        return 1 + sum(_objects(v) for v in value.values())
    if isinstance(value, list):
        return sum(_objects(v) for v in value)
    return 0


def _render(value: Any, target: int, counter: list[int], again: Any) -> str:
    """``value`` as JSON text (which is YAML too), with the first key of the ``target``-th
    non-empty object (in document order) given a second time, with the value ``again``."""
    if isinstance(value, list):
        return "[" + ", ".join(_render(v, target, counter, again) for v in value) + "]"
    if not isinstance(value, dict):
        return json.dumps(value)
    index = counter[0]
    counter[0] += 1
    pairs = [f"{json.dumps(k)}: {_render(v, target, counter, again)}" for k, v in value.items()]
    if index == target and value:
        pairs.append(f"{json.dumps(next(iter(value)))}: {json.dumps(again)}")
    return "{" + ", ".join(pairs) + "}"


@settings(max_examples=200, deadline=None)
@given(
    fmt=st.sampled_from(["json", "yaml"]),
    top=st.dictionaries(_KEYS, _TREES, min_size=1, max_size=4),
    data=st.data(),
    again=_LEAVES,
)
def test_a_key_given_twice_in_an_answer_is_a_reason_not_a_silent_choice(
    fmt: Format, top: dict[str, Any], data: st.DataObject, again: Any
) -> None:
    """An answer (JSON, or YAML in flow style) that gives a key twice in any of its objects,
    at any depth, is sent back to the model with a reason naming the key: a reader would keep
    the later value and drop the earlier without a word. The same answer with each key once
    parses to its value."""
    answer = AnswerFormat(fmt, {})
    assert answer.parse(_render(top, -1, [0], again)) == top
    candidates = [
        i for i in range(_objects(top)) if _nonempty_object(top, i)
    ]  # objects that have a key to repeat
    target = data.draw(st.sampled_from(candidates))
    text = _render(top, target, [0], again)
    with pytest.raises(ValueError, match="twice") as caught:
        answer.parse(text)
    assert str(caught.value).startswith("the answer")


def _nonempty_object(value: Any, target: int) -> bool:
    """Whether the ``target``-th object of ``value`` (in document order) has a key."""
    found: list[dict[str, Any]] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            found.append(v)
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(value)
    return bool(found[target])


def test_a_yaml_block_answer_with_a_key_given_twice_names_it_and_its_line() -> None:
    """In block style too, the reason names the key and the line of its second appearance;
    ``1`` and ``0x1`` are the same key, ``<<`` is a plain one (YAML 1.2 has no merges)."""
    with pytest.raises(ValueError, match=r"the key 'city' is given twice .*line 4"):
        load_yaml("name: Ada\naddress:\n  city: London\n  city: Paris\n")
    with pytest.raises(ValueError, match="the key 1 is given twice"):
        load_yaml("1: a\n0x1: b\n")
    assert load_yaml("<<: {a: 1}\na: 2\n") == {"<<": {"a": 1}, "a": 2}
