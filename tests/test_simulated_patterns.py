"""The simulated endpoint answers a schema's ``pattern`` with strings that match it (was: words,
so a structured column with a pattern spent its corrections and dropped its rows)."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import SimulatedModel, SimulationConfig
from gridloom.simulated import serve_simulated
from gridloom.simulated._pattern_values import parse_pattern
from gridloom.simulated._schema_checks import Budget, SchemaTooLarge
from gridloom.simulated._schema_values import MAX_STRING_LENGTH, value_for_schema

#: Patterns as users write them in structured-output schemas.
REALISTIC = [
    r"^[A-Z]{3}-\d{4}$",
    r"^\d{4}-\d{2}-\d{2}$",
    r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$",
    r"^\+?[1-9]\d{1,14}$",
    r"^(low|medium|high)$",
    r"^#[0-9a-fA-F]{6}$",
    r"^[A-Z][a-z]+(?: [A-Z][a-z]+)*$",
    r"^v\d+\.\d+\.\d+(-(alpha|beta|rc)\.\d+)?$",
    r"^https?://[\w.-]+(/[\w-]+)*/?$",
    r"\bISBN\b",
    r"^(?P<word>\w+) (?P=word)$",
    r"^[^\s@]+@[^\s@]+$",
    r"^\S{8,16}$",
    r"(?i)^[a-f]{4}$",
    r"(?=.*\d)(?=.*[a-z])^.{8,}$",
    r"^[\u4e00-\u9fff]{2,4}$",
    r"^(a+)+b$",
]


def draws(pattern: str, count: int = 20, seed: int = 0) -> list[str]:
    parsed = parse_pattern(pattern)
    assert parsed is not None
    rng = random.Random(seed)
    return [parsed.build(rng, Budget(), limit=MAX_STRING_LENGTH) for _ in range(count)]


@pytest.mark.parametrize("pattern", [p for p in REALISTIC if "(?=" not in p and "\\b" not in p])
def test_realistic_patterns_are_matched(pattern: str) -> None:
    values = draws(pattern)
    assert all(re.search(pattern, value) for value in values), values
    assert len(set(values)) > 1 or "low|medium" in pattern or "(a+)+" in pattern


# Patterns from a small grammar of what can be built exactly: literals, escapes, classes
# (negated too), categories, groups (named, non-capturing), alternation, greedy and lazy
# repeats, back-references and anchors. (Best effort, so not drawn: possessive repeats and
# atomic groups, since ``a?+a`` cannot match what the repeat gave up, and a back-reference
# to a group a match may leave out, since each draw that leaves it out is drawn again, a
# bounded number of times.)
_ATOMS = st.sampled_from(
    [
        "a",
        "Z",
        "7",
        r"\.",
        r"\-",
        "-",
        r"\d",
        r"\D",
        r"\w",
        r"\W",
        r"\s",
        r"\S",
        ".",
        "é",
        "[a-z]",
        "[A-F0-9]",
        "[^a-z]",
        r"[^\d\s]",
        "[_x-]",
        r"[\w.]",
        r"[^\W_]",
        "[é-ï]",
    ]
)
_QUANTIFIERS = st.sampled_from(["", "", "?", "*", "+", "{2}", "{1,3}", "{2,}", "*?", "+?", "{,2}?"])
#: A group's repeats are bounded: ``(\w+)+`` would make the test's own ``re.search`` backtrack
#: exponentially (the builder never runs the expression; the test must).
_GROUP_QUANTIFIERS = st.sampled_from(["", "", "?", "{2}", "{1,2}", "??"])


@st.composite
def _regex(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            alternatives = draw(st.lists(_regex(depth + 1), min_size=1, max_size=3))
            opener = draw(st.sampled_from(["(", "(?:", f"(?P<g{depth}>"]))
            parts.append(opener + "|".join(alternatives) + ")" + draw(_GROUP_QUANTIFIERS))
        else:
            parts.append(draw(_ATOMS) + draw(_QUANTIFIERS))
    body = "".join(parts)
    if depth == 0 and draw(st.booleans()):  # a group every match sets, referred back to
        group = "(" + "|".join(draw(st.lists(_regex(1), min_size=1, max_size=3))) + ")"
        body = group + draw(st.sampled_from(["", "{2}"])) + body + r"\1"
    if depth:
        return body
    # more open repeats in a row would make the test's search backtrack for minutes
    assume(sum(body.count(q) for q in ("*", "+", ",}")) <= 3)
    return draw(st.sampled_from(["", "^"])) + body + draw(st.sampled_from(["", "$", r"\Z"]))


@settings(max_examples=300, deadline=None)
@given(pattern=_regex(), seed=st.integers(0, 2**32))
def test_every_built_string_matches_its_pattern(pattern: str, seed: int) -> None:
    try:
        re.compile(pattern)
    except re.error:  # e.g. a back-reference to a group not yet closed
        assert parse_pattern(pattern) is None
        return
    for value in draws(pattern, count=5, seed=seed):
        assert re.search(pattern, value), (pattern, value)
        assert len(value) <= MAX_STRING_LENGTH


@pytest.mark.parametrize(
    ("schema", "low", "high"),
    [
        ({"pattern": "^[a-z]+$", "minLength": 20}, 20, None),
        ({"pattern": "^[a-z]+$", "maxLength": 2}, 1, 2),
        ({"pattern": "[0-9]", "minLength": 30}, 30, None),  # padded: not anchored
        ({"pattern": "^[0-9]", "minLength": 30, "maxLength": 30}, 30, 30),
        ({"pattern": "[0-9]$", "minLength": 12}, 12, None),  # padded in front
    ],
)
def test_lengths_are_kept_with_a_pattern(
    schema: dict[str, Any], low: int, high: int | None
) -> None:
    schema = {"type": "string", **schema}
    rng = random.Random(3)
    for _ in range(20):
        value = value_for_schema(schema, rng)
        assert re.search(schema["pattern"], value), value
        assert low <= len(value) <= (high if high is not None else MAX_STRING_LENGTH), value


def test_a_pattern_beyond_the_length_limit_is_refused_and_junk_is_ignored() -> None:
    with pytest.raises(SchemaTooLarge):
        value_for_schema({"type": "string", "pattern": "^a{5000}$"}, random.Random(1))
    # work is bounded even when a node emits nothing, many times over
    with pytest.raises(SchemaTooLarge):
        value_for_schema({"type": "string", "pattern": "(?:){4000000000}"}, random.Random(1))
    for junk in ("(", "[z-a]", 7, None):
        assert parse_pattern(junk) is None
        assert isinstance(
            value_for_schema({"type": "string", "pattern": junk}, random.Random(1)), str
        )


def test_a_pattern_wins_over_a_format() -> None:
    schema = {"type": "string", "format": "email", "pattern": "^ID-[0-9]{3}$"}
    assert re.fullmatch("ID-[0-9]{3}", value_for_schema(schema, random.Random(2)))


async def test_a_structured_column_with_patterns_needs_no_correction() -> None:
    """Over real sockets: every row's fields match their patterns at the first answer, with
    the model's whole answer checked by gridloom's own validation."""
    schema = {
        "type": "object",
        "properties": {
            "sku": {"type": "string", "pattern": r"^[A-Z]{3}-\d{4}$"},
            "colour": {"type": "string", "pattern": r"^#[0-9a-f]{6}$"},
            "tags": {"type": "array", "items": {"type": "string", "pattern": r"^[a-z]{3,8}$"}},
        },
        "required": ["sku", "colour", "tags"],
        "additionalProperties": False,
    }
    async with serve_simulated(SimulationConfig(seed=4, default=SimulatedModel())) as server:
        doc = {
            "providers": [{"name": "sim", "endpoint": server.url}],
            "models": [{"alias": "m", "provider": "sim", "model": "x"}],
            "columns": [
                {"name": "n", "uniform": {"low": 0, "high": 100}},
                {
                    "name": "item",
                    "llm_structured": {"model": "m", "prompt": "Item {{ n }}", "schema": schema},
                },
            ],
            "run": {"seed": 1},
        }
        result = await gl.apreview(doc, 30)
        requests = len(server.app.timeline())
    assert result.num_rows == 30
    assert requests == 30  # no correction turn
    for row in result.table.to_pylist():
        item = row["item"]
        assert re.fullmatch(r"[A-Z]{3}-\d{4}", item["sku"])
        assert re.fullmatch(r"#[0-9a-f]{6}", item["colour"])
        assert all(re.fullmatch("[a-z]{3,8}", tag) for tag in item["tags"])


def test_an_xsd_pattern_facet_is_matched_and_attributes_stay_quoted() -> None:
    """An XSD's pattern facets (any one of them) are followed, in element text and in a
    required attribute, and a drawn quote or ampersand is escaped (the document parses)."""
    pytest.importorskip("xmlschema")
    import xmlschema

    from gridloom.simulated._structured_text import xml_from_xsd

    xsd = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
      <xs:simpleType name="code"><xs:restriction base="xs:string">
        <xs:pattern value="[A-Z]{3}-\\d{4}"/><xs:pattern value="Q\\d{2}"/>
      </xs:restriction></xs:simpleType>
      <xs:simpleType name="any"><xs:restriction base="xs:string">
        <xs:pattern value="[&quot;&amp;&lt;']{3}.{2}"/>
      </xs:restriction></xs:simpleType>
      <xs:element name="item"><xs:complexType><xs:sequence>
        <xs:element name="sku" type="code" maxOccurs="3"/>
        <xs:element name="odd" type="any"/>
      </xs:sequence><xs:attribute name="tag" type="any" use="required"/>
      </xs:complexType></xs:element>
    </xs:schema>"""
    schema = xmlschema.XMLSchema(xsd)
    rng = random.Random(5)
    for _ in range(30):
        answer = xml_from_xsd(xsd, rng, ["word"])
        assert answer is not None  # built and accepted by the XSD
        document = answer.split("```xml\n", 1)[1].rsplit("\n```", 1)[0]
        assert schema.is_valid(document), document
        data = schema.to_dict(document)
        assert all(re.fullmatch(r"[A-Z]{3}-\d{4}|Q\d{2}", sku) for sku in data["sku"])
        assert re.fullmatch("[\"&<']{3}.{2}", data["@tag"])
