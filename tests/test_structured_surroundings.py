"""Structured answers with text around them, and ``<think>`` blocks leading an answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.config import LLMStructuredColumn, LLMTextColumn
from gridloom.generators._structured_formats import MAX_JSON_STARTS, AnswerFormat
from gridloom.generators._think import split_think
from tests.test_llm_generators import ScriptedClient, reply, setup

FACTS = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
}
VALUE = {"facts": ["a", "b"]}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(VALUE) + "\n\nLet me know if you need anything else.",
        "Sure! " + json.dumps(VALUE),
        "<think>\nLet me think about {this}.\n</think>\n\n" + json.dumps(VALUE),
        "<thinking>[1, 2]</thinking>Here you are: " + json.dumps(VALUE) + " {not json}",
        "Sure: {not json} and [3] then " + json.dumps(VALUE) + ". Done.",
        'Example: {"facts": 3}. The answer: ' + json.dumps(VALUE),
    ],
)
def test_json_with_text_around_it_is_read(text: str) -> None:
    """Prose after the JSON (was 'Extra data'), before it (was 'Expecting value'), a leading
    think block, or earlier values that are not JSON or not valid: the first valid JSON value
    is the answer."""
    assert AnswerFormat("json", FACTS).parse(text) == VALUE


@pytest.mark.parametrize(
    ("schema", "text", "problem"),
    [
        (FACTS, "Sure! I cannot answer that.", "not valid JSON (Expecting value at position 0)"),
        (FACTS, 'Sure! {"facts": 3} is it.', "does not match the schema at facts"),
        ({}, 'Here: {"facts": ["a", "b"]', "not valid JSON"),
        ({}, 'Here: {"a": [], "a": 1} [1]', "gives the key 'a' twice"),
        (FACTS, "x " + "{" * (MAX_JSON_STARTS + 1) + json.dumps(VALUE), "not valid JSON"),
    ],
)
def test_json_that_is_not_there_is_still_refused(
    schema: dict[str, Any], text: str, problem: str
) -> None:
    """No JSON, a first value that breaks the schema, a cut-off value (its nested values are
    not taken instead, even when the schema takes anything), a key given twice, or a valid
    value past MAX_JSON_STARTS places: a reason for the model."""
    with pytest.raises(ValueError, match=r"^the answer") as info:
        AnswerFormat("json", schema).parse(text)
    assert problem in str(info.value)


@pytest.mark.parametrize("fmt", ["yaml", "xml"])
def test_yaml_and_xml_answers_lose_a_leading_think_block(fmt: str) -> None:
    """A think block before a YAML or XML answer (fenced or not) is not parsed."""
    body = (
        "facts:\n  - a\n  - b\n"
        if fmt == "yaml"
        else "<answer><facts>a</facts><facts>b</facts></answer>"
    )
    for answer in (body, f"```{fmt}\n{body}```"):
        text = f"<think>\n```json\n[1]\n``` hmm: <x>\n</think>\n{answer}"
        assert AnswerFormat(fmt, FACTS).parse(text) == VALUE  # type: ignore[arg-type]


_prose = st.text(
    st.characters(blacklist_characters="{[`", blacklist_categories=("Cs",)), max_size=40
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(st.characters(blacklist_characters="`", blacklist_categories=("Cs",)), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_values = st.one_of(
    st.lists(_json, max_size=3), st.dictionaries(st.text(max_size=5), _json, max_size=3)
)
_thoughts = st.none() | st.text(
    st.characters(blacklist_characters="`", blacklist_categories=("Cs",)), max_size=40
).filter(lambda t: "</think>" not in t.lower())


@given(
    _values,
    _prose,
    st.text(st.characters(blacklist_characters="`", blacklist_categories=("Cs",)), max_size=40),
    _thoughts,
)
def test_embedded_json_values_round_trip(
    value: Any, prefix: str, suffix: str, thoughts: str | None
) -> None:
    """Any JSON object or array, after a think block and prose without brackets and before
    any text, is read back as itself; cut off at its end, it is refused."""
    text = json.dumps(value, indent=None)
    think = "" if thoughts is None else f"<think>{thoughts}</think>"
    answer = AnswerFormat("json", {"const": value})
    assert answer.parse(f"{think}{prefix} {text} {suffix}") == value
    with pytest.raises(ValueError, match=r"^the answer"):
        AnswerFormat("json", {}).parse(f"{think}{prefix} {text[:-1]}")


def test_split_think_takes_only_a_leading_closed_block() -> None:
    """Only a block at the start (after whitespace) that is closed is taken off."""
    assert split_think("  <THINK> a </think>\n\nB") == ("B", "a")
    assert split_think("<thinking>a</thinking>B") == ("B", "a")
    assert split_think("B <think>a</think>") == ("B <think>a</think>", None)
    assert split_think("<think>never closed") == ("<think>never closed", None)
    assert split_think("<think>a</thinking>B") == ("<think>a</thinking>B", None)


async def test_text_answers_keep_the_think_block_as_reasoning() -> None:
    """llm_text stores the answer without its leading think block, which goes to
    <name>__reasoning (was: kept in the value); reasoning the provider sent apart wins."""
    client = ScriptedClient(lambda r: reply("<think>\nreasoning here\n</think>\n\nThe answer."))
    column = LLMTextColumn(name="s", model="w", prompt="Q", with_reasoning=True)
    generator, ctx = setup(column, client)
    assert await generator.agenerate(ctx({})) == {
        "s": "The answer.",
        "s__reasoning": "reasoning here",
    }
    client.answer = lambda r: reply("<think>x</think>Yes.", reasoning="apart")
    assert await generator.agenerate(ctx({})) == {"s": "Yes.", "s__reasoning": "apart"}
    plain = LLMTextColumn(name="t", model="w", prompt="Q")
    generator, ctx = setup(plain, client)
    assert await generator.agenerate(ctx({})) == "Yes."


async def test_structured_answer_after_a_think_block_keeps_the_rest_raw() -> None:
    """A structured column reads the JSON after the think block; its raw side column holds
    the answer without the block."""
    text = "<think>{hmm}</think>\n" + json.dumps(VALUE) + "\nAnything else?"
    client = ScriptedClient(lambda r: reply(text))
    column = LLMStructuredColumn(name="f", model="w", prompt="F", schema=FACTS, keep_raw=True)
    generator, ctx = setup(column, client)
    out = await generator.agenerate(ctx({}))
    assert out == {"f": VALUE, "f__raw": json.dumps(VALUE) + "\nAnything else?"}
