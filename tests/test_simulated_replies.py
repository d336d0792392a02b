"""Deterministic replies of the simulated endpoint: text, code, and JSON valid for a schema."""

from __future__ import annotations

import ast
import json
import random
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.config import SimulatedModel
from gridloom.simulated._replies import (
    build_reply,
    code_language,
    embedding_vector,
    invalid_reply,
    schema_from_prompt,
    topic_words,
)
from gridloom.simulated._requests import GenerationRequest, PromptMessage, RequestError
from gridloom.simulated._schema_values import UnsatisfiableSchema, is_valid, value_for_schema

from .strategies import json_schemas

MODEL = SimulatedModel()


def request(*messages: tuple[str, str], schema: Any = None, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(
        model="m",
        messages=tuple(PromptMessage(role=role, text=text) for role, text in messages),
        schema=schema,
        **kwargs,
    )


def assert_valid(value: Any, schema: Any) -> None:
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(value)


def fenced_code(text: str, language: str) -> str:
    assert text.startswith(f"```{language}\n")
    assert text.endswith("\n```")
    return text[len(language) + 4 : -3]


# --------------------------------------------------------------------- JSON from schemas


@settings(max_examples=200, deadline=None)
@given(schema=json_schemas(), seed=st.integers(0, 2**32))
def test_generated_values_validate(schema: dict[str, Any], seed: int) -> None:
    """A value generated for any supported schema validates against it (formats included)."""
    jsonschema.Draft202012Validator.check_schema(schema)
    assert_valid(value_for_schema(schema, random.Random(seed)), schema)


@settings(max_examples=100, deadline=None)
@given(schema=json_schemas(), topic=st.text(max_size=40))
def test_structured_replies_validate(schema: dict[str, Any], topic: str) -> None:
    """A chat reply asked for through ``response_format`` is JSON valid for the schema."""
    reply = build_reply(request(("user", topic), schema=schema), MODEL)
    assert reply.kind == "json"
    assert_valid(json.loads(reply.text), schema)
    assert reply.output_tokens == len(reply.text.split())


@settings(max_examples=100, deadline=None)
@given(schema=json_schemas())
def test_schema_in_prompt_is_followed(schema: dict[str, Any]) -> None:
    """A schema in a ```json block after the words "JSON Schema" in the prompt is followed."""
    prompt = (
        "Three facts.\nAnswer with JSON valid for this json schema:\n"
        f"```json\n{json.dumps(schema)}\n```"
    )
    reply = build_reply(request(("system", "Be terse."), ("user", prompt)), MODEL)
    assert reply.kind == "json"
    assert_valid(json.loads(reply.text), schema)


@settings(max_examples=100, deadline=None)
@given(schema=json_schemas())
def test_invalid_replies_break_the_schema(schema: dict[str, Any]) -> None:
    """An invalid structured answer is either not JSON or JSON that fails the schema."""
    req = request(("user", "facts please"), schema=schema)
    bad = invalid_reply(build_reply(req, MODEL), req.digest())
    try:
        value = json.loads(bad.text)
    except json.JSONDecodeError:
        return
    assert not is_valid(value, schema)


@pytest.mark.parametrize(
    ("schema", "check"),
    [
        (
            {
                "$defs": {"score": {"type": "integer", "minimum": 1, "maximum": 5}},
                "type": "object",
                "properties": {"accuracy": {"$ref": "#/$defs/score"}},
                "required": ["accuracy"],
                "additionalProperties": False,
            },
            lambda v: set(v) == {"accuracy"} and 1 <= v["accuracy"] <= 5,
        ),
        (
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.001},
            lambda v: 0 < v < 0.001,
        ),
        ({"type": "integer", "minimum": 3, "exclusiveMinimum": True}, lambda v: v >= 4),
        ({"type": ["string", "null"], "minLength": 5}, lambda v: isinstance(v, str)),
        ({"anyOf": [{"type": "null"}, {"type": "string"}]}, lambda v: v is None),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, lambda v: not float(v).is_integer()),
        (
            {"type": "array", "minItems": 4, "maxItems": 4, "items": {"const": 7}},
            lambda v: v == [7] * 4,
        ),
        ({"type": "string", "format": "date"}, lambda v: len(v) == 10),
        ({"type": "string", "format": "email"}, lambda v: v.endswith("@example.com")),
        ({"type": "string", "format": "uri"}, lambda v: v.startswith("https://")),
        (
            {"allOf": [{"properties": {"a": {"type": "boolean"}}, "required": ["a"]}]},
            lambda v: isinstance(v["a"], bool),
        ),
        (
            {"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}},
            lambda v: len(v) == 2,
        ),
        (
            {"type": "array", "uniqueItems": True, "minItems": 3, "items": {"enum": [1, 2, 3]}},
            lambda v: sorted(v) == [1, 2, 3],
        ),
    ],
)
def test_schema_features(schema: dict[str, Any], check: Any) -> None:
    """Each supported keyword shapes the generated value as it should."""
    for seed in range(5):
        value = value_for_schema(schema, random.Random(seed))
        assert_valid(value, schema)
        assert check(value), value


def test_false_schema_is_unsatisfiable() -> None:
    """The schema ``false`` accepts nothing and says so."""
    with pytest.raises(UnsatisfiableSchema):
        value_for_schema(False, random.Random(0))


def test_invalid_api_schema_is_a_bad_request() -> None:
    """An invalid JSON Schema given through the API is refused."""
    with pytest.raises(RequestError, match="invalid JSON Schema"):
        build_reply(request(("user", "x"), schema={"type": "frobnicate"}), MODEL)


def test_json_mode_gives_an_object() -> None:
    """``response_format: json_object`` gets a JSON object."""
    reply = build_reply(request(("user", "hello"), json_mode=True), MODEL)
    assert isinstance(json.loads(reply.text), dict)


def test_schema_from_prompt_needs_the_words() -> None:
    """Without the words "JSON Schema" before it, a ```json block is not taken as a schema."""
    block = '```json\n{"type": "integer"}\n```'
    assert schema_from_prompt([PromptMessage(role="user", text=block)]) is None
    found = [PromptMessage(role="user", text=f"Follow this JSON Schema: {block}")]
    assert schema_from_prompt(found) == {"type": "integer"}
    assistant = [PromptMessage(role="assistant", text=f"JSON Schema {block}")]
    assert schema_from_prompt(assistant) is None


# --------------------------------------------------------------------- code


@settings(max_examples=150, deadline=None)
@given(prompt=st.text(max_size=60))
def test_python_code_replies_parse(prompt: str) -> None:
    """Asked for a code block, the answer is a fenced Python block that ``ast.parse`` accepts."""
    reply = build_reply(request(("user", f"Write a code block: {prompt}")), MODEL)
    assert reply.kind == "code"
    ast.parse(fenced_code(reply.text, "python"))


@pytest.mark.parametrize("language", ["python", "sql", "javascript", "bash", "rust", "json"])
def test_code_fence_language(language: str) -> None:
    """A ```<lang> marker in the system prompt sets the fence language."""
    reply = build_reply(
        request(("system", f"Answer in a ```{language} fence."), ("user", "Sort the rivers")),
        MODEL,
    )
    body = fenced_code(reply.text, language)
    if language == "python":
        ast.parse(body)
    if language == "json":
        json.loads(body)


def test_code_language_detection() -> None:
    """The phrase "code block" (any case) means Python; a fence marker names the language."""
    assert code_language([PromptMessage(role="user", text="One CODE BLOCK please")]) == "python"
    assert code_language([PromptMessage(role="user", text="```TypeScript")]) == "typescript"
    assert code_language([PromptMessage(role="user", text="just prose")]) is None
    assert code_language([PromptMessage(role="assistant", text="```go")]) is None


# --------------------------------------------------------------------- text


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.from_regex(r"[a-z]{5,9}", fullmatch=True), min_size=1, max_size=5))
def test_text_mentions_the_prompt(words: list[str]) -> None:
    """Text answers are about ``output_tokens`` words long and mention words of the prompt."""
    prompt = "Summarize " + " ".join(words)
    reply = build_reply(request(("user", prompt)), MODEL)
    count = len(reply.text.split())
    assert 0.75 * MODEL.output_tokens - 1 <= count <= 1.25 * MODEL.output_tokens + 1
    assert reply.output_tokens == count
    assert reply.input_tokens == len(prompt.split())
    mentioned = {w.strip(".").lower() for w in reply.text.split()}
    assert mentioned & set(topic_words(prompt))


def test_max_tokens_truncates_text() -> None:
    """``max_tokens`` cuts a text answer, and the reply says it was cut."""
    reply = build_reply(request(("user", "rivers"), max_tokens=5), MODEL)
    assert reply.truncated
    assert len(reply.text.split()) == 5


def test_reasoning_is_separate_and_counted() -> None:
    """A reasoning model returns reasoning text apart from the answer and counts its tokens."""
    reply = build_reply(request(("user", "volcanoes")), SimulatedModel(reasoning=True))
    assert reply.reasoning is not None
    assert "volcanoes" in reply.reasoning
    assert reply.reasoning_tokens == len(reply.reasoning.split())
    assert reply.output_tokens == len(reply.text.split()) + reply.reasoning_tokens


def test_replies_depend_only_on_the_request() -> None:
    """The same request gets the same reply; a different one, a different reply."""
    first = build_reply(request(("user", "deserts")), MODEL)
    assert build_reply(request(("user", "deserts")), MODEL) == first
    assert build_reply(request(("user", "glaciers")), MODEL).text != first.text


def test_embedding_vectors() -> None:
    """Embeddings are unit vectors that depend only on model and text."""
    vector = embedding_vector("m", "hello", 16)
    assert len(vector) == 16
    assert sum(x * x for x in vector) == pytest.approx(1.0, abs=1e-4)
    assert embedding_vector("m", "hello", 16) == vector
    assert embedding_vector("m", "hullo", 16) != vector
