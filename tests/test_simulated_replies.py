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
from gridloom.simulated._streams import MAX_PIECES, split
from gridloom.simulated._tools import Tool, ToolChoice

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


# --------------------------------------------------------------------- tools, choices, streams


def tools(*schemas: Any) -> tuple[Tool, ...]:
    return tuple(Tool(name=f"tool_{i}", schema=schema) for i, schema in enumerate(schemas))


@settings(max_examples=100, deadline=None)
@given(schema=json_schemas(), topic=st.text(max_size=40))
def test_forced_tool_call_arguments_validate(schema: dict[str, Any], topic: str) -> None:
    """A forced tool call's arguments are valid for the tool's schema; it is the whole answer."""
    offered = tools({"type": "object"}, schema)
    choice = ToolChoice(mode="named", name="tool_1")
    reply = build_reply(request(("user", topic), tools=offered, tool_choice=choice), MODEL)
    assert reply.kind == "tool"
    assert reply.text == ""
    assert reply.tool_call is not None
    assert reply.tool_call.name == "tool_1"
    assert_valid(reply.tool_call.arguments, schema)
    assert reply.output_tokens == len(reply.tool_call.arguments_json().split())


def test_tool_choice_modes() -> None:
    """``none`` answers text; ``required`` calls some tool (seeded); ``auto`` calls one unless
    the conversation ends with a tool result."""
    offered = tools({"type": "object"}, {"type": "object"}, {"type": "object"})
    ask = ("user", "weather in Lyon")

    def called(*messages: tuple[str, str], mode: str, after: bool = False) -> str | None:
        choice = ToolChoice(mode=mode)  # type: ignore[arg-type]
        req = request(*messages, tools=offered, tool_choice=choice, after_tool_result=after)
        call = build_reply(req, MODEL).tool_call
        return None if call is None else call.name

    assert called(ask, mode="none") is None
    required = called(ask, mode="required")
    assert required in ("tool_0", "tool_1", "tool_2")
    assert called(ask, mode="auto") == required  # the same seeded pick
    assert called(ask, ("assistant", "x()"), ("tool", "21 C"), mode="auto", after=True) is None
    names = {called(("user", f"question {i}"), mode="required") for i in range(30)}
    assert names == {"tool_0", "tool_1", "tool_2"}


def test_choices_differ_and_the_first_is_the_single_answer() -> None:
    """Choice 0 is the ``n=1`` answer; later choices are other answers to the same request."""
    req = request(("user", "rivers and deltas"))
    answers = [build_reply(req, MODEL, choice=i).text for i in range(4)]
    assert answers[0] == build_reply(req, MODEL).text
    assert len(set(answers)) == 4


@given(text=st.text(max_size=400))
def test_stream_split_keeps_the_text_and_whole_words(text: str) -> None:
    """Deltas concatenate to the text, at most 32 of them, none splitting a word."""
    parts = split(text)
    assert "".join(parts) == text
    assert len(parts) <= MAX_PIECES
    assert sum(len(part.split()) for part in parts) == len(text.split())
