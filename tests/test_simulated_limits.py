"""The simulated app's documented limits (issue 14): every request is answered 200 or a 4xx
with a JSON error — never a crash — within bounded work and a bounded answer, whatever its
fields hold (hypothesis over JSON bodies of the three APIs); and each limit in turn."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.config import SimulatedModel, SimulationConfig
from gridloom.simulated import SimulatedApp
from gridloom.simulated._app import MAX_EMBEDDING_VALUES, MAX_MODELS
from gridloom.simulated._formats import embeddings
from gridloom.simulated._requests import (
    MAX_CONTENT_PARTS,
    MAX_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_INPUTS,
    MAX_MESSAGES,
    MAX_MODEL_NAME,
    MAX_PROMPT_CHARS,
    MAX_TOKENS,
    EmbeddingsRequest,
)
from gridloom.simulated._schema_values import (
    MAX_ARRAY_ITEMS,
    MAX_SCHEMA_DEPTH,
    MAX_SCHEMA_OBJECTS,
    MAX_STRING_LENGTH,
)

from .strategies import json_schemas

#: Largest answer any request may get (16 choices of bounded text, or a bounded embedding).
MAX_ANSWER_BYTES = 8 * 1024 * 1024
#: Real seconds one request may take here; generous, to catch only runaway work.
SLOW = 10.0


async def call(app: SimulatedApp, path: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` to the app directly (no HTTP): its status and whole body. An exception
    from the app — a crash — comes out of here."""
    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    messages: list[Any] = []
    delivered = False

    async def receive() -> Any:
        nonlocal delivered
        if delivered:  # the app waits for a disconnect that never comes
            await trio.sleep_forever()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        messages.append(message)

    await app(scope, receive, send)
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


def post(path: str, body: Any, *, app: SimulatedApp | None = None) -> tuple[int, Any]:
    """POST ``body`` (JSON, or bytes as they are) on virtual time; the status and the decoded
    answer (server-sent events as text)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    started = time.perf_counter()
    status, answer = trio.run(
        call,
        app or SimulatedApp(SimulationConfig()),
        path,
        data,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    assert time.perf_counter() - started < SLOW
    assert len(answer) <= MAX_ANSWER_BYTES
    if answer.startswith((b"data: ", b"event: ")):
        return status, answer.decode()
    return status, json.loads(answer)


def refused(path: str, body: Any, *, param: str | None = None) -> str:
    """Assert ``body`` gets a 400 in the API's error shape (naming ``param``, if given);
    return its message."""
    status, answer = post(path, body)
    assert status == 400, answer
    error = answer["error"]
    if param is not None and path != "/v1/messages":
        assert error["param"] == param
    message: str = error["message"]
    return message


def chat(content: Any = "Tell me about rivers", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


def schema_chat(schema: Any) -> dict[str, Any]:
    return chat(response_format={"type": "json_schema", "json_schema": {"schema": schema}})


def anthropic(content: Any = "Tell me about rivers", **extra: Any) -> dict[str, Any]:
    return {"model": "c", "max_tokens": 100, "messages": [{"role": "user", "content": content}]} | (
        extra
    )


CHAT, MESSAGES, EMBEDDINGS = "/v1/chat/completions", "/v1/messages", "/v1/embeddings"


# --------------------------------------------------------------------- each limit


def test_embeddings_are_bounded() -> None:
    """``dimensions`` above 8,192 (the attacker's 1,000,000,000 among them), more than 2,048
    inputs, or more than 262,144 numbers in all are refused at once; within them, answered."""
    assert "from 1 to 8192" in refused(
        EMBEDDINGS, {"model": "e", "input": "a", "dimensions": 1_000_000_000}, param="dimensions"
    )
    refused(EMBEDDINGS, {"model": "e", "input": "a", "dimensions": MAX_EMBEDDING_DIMENSIONS + 1})
    many = ["word"] * (MAX_EMBEDDING_INPUTS + 1)
    refused(EMBEDDINGS, {"model": "e", "input": many}, param="input")
    body = {"model": "e", "input": ["a"] * 64, "dimensions": MAX_EMBEDDING_DIMENSIONS}
    assert "262144 numbers" in refused(EMBEDDINGS, body, param="input")
    body = {"model": "e", "input": ["a"] * 32, "dimensions": MAX_EMBEDDING_DIMENSIONS}
    status, answer = post(EMBEDDINGS, body)
    assert status == 200
    assert len(answer["data"]) * len(answer["data"][0]["embedding"]) == MAX_EMBEDDING_VALUES
    # Encoded a slice at a time, it is the same answer as encoded whole.
    model, inputs = 'a "data":[] model', ["a b", "c"] * 600
    status, answer = post(EMBEDDINGS, {"model": model, "input": inputs})
    request = EmbeddingsRequest(model=model, inputs=tuple(inputs))
    assert answer == embeddings(request, SimulatedModel().embedding_dimensions)


def test_an_embeddings_answer_lets_the_loop_breathe(autojump_clock: trio.testing.MockClock) -> None:
    """A large embeddings answer is computed in slices with checkpoints between them, so the
    event loop serves other tasks meanwhile."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            body = {"model": "e", "input": ["a"] * 32, "dimensions": 8192}
            app = SimulatedApp(SimulationConfig())
            status, _ = await call(app, EMBEDDINGS, json.dumps(body).encode())
            nursery.cancel_scope.cancel()
        assert status == 200

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert ticks >= 16


def test_a_long_timeline_is_sent_in_slices() -> None:
    """``GET /timeline`` sends its entries a slice at a time (the event loop runs other tasks
    between them), and they add up to the whole timeline as one JSON array."""
    app = SimulatedApp(SimulationConfig())
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    async def main() -> list[Any]:
        for _ in range(5000):
            await call(app, CHAT, b"{}")  # each a 400, each an entry
        scope = {"type": "http", "method": "GET", "path": "/timeline", "headers": []}
        parts: list[bytes] = []

        async def send(message: Any) -> None:
            parts.append(message.get("body", b""))
            await trio.sleep(0)  # as a server's write does

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await app(scope, None, send)  # type: ignore[arg-type]  # GET: nothing to receive
            nursery.cancel_scope.cancel()
        assert len(parts) > 3
        timeline: list[Any] = json.loads(b"".join(parts))
        return timeline

    timeline = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(timeline) == 5000
    assert timeline[0]["status"] == 400
    assert ticks >= 3


def test_generation_requests_are_bounded() -> None:
    """``max_tokens`` above 131,072, more than 2,048 messages or 4,096 content parts, more
    than 1 MiB of prompt text, a model name over 256 characters: each a 400."""
    assert "at most 131072" in refused(CHAT, chat(max_tokens=MAX_TOKENS + 1), param="max_tokens")
    refused(CHAT, chat(max_completion_tokens=10**30), param="max_completion_tokens")
    refused(MESSAGES, anthropic() | {"max_tokens": MAX_TOKENS + 1})
    messages = [{"role": "user", "content": "hi"}] * (MAX_MESSAGES + 1)
    refused(CHAT, {"model": "m", "messages": messages}, param="messages")
    refused(MESSAGES, {"model": "c", "max_tokens": 5, "messages": messages})
    parts = [{"type": "text", "text": "a"}] * (MAX_CONTENT_PARTS + 1)
    refused(CHAT, chat(parts), param="messages[0]")
    refused(MESSAGES, anthropic(parts))
    refused(CHAT, chat("word " * (MAX_PROMPT_CHARS // 5 + 1)), param="messages[0]")
    refused(MESSAGES, anthropic("a") | {"system": "b" * (MAX_PROMPT_CHARS + 1)})
    refused(CHAT, chat() | {"model": "m" * (MAX_MODEL_NAME + 1)}, param="model")
    status, _ = post(CHAT, chat(max_tokens=MAX_TOKENS))
    assert status == 200


def test_model_names_are_bounded() -> None:
    """The app keeps state for at most 1,024 model names: one more is refused, the known
    ones are still served."""
    app = SimulatedApp(SimulationConfig())
    for index in range(MAX_MODELS):
        status, _ = post(CHAT, chat() | {"model": f"m{index}"}, app=app)
        assert status == 200
    status, answer = post(CHAT, chat() | {"model": "one-more"}, app=app)
    assert status == 400
    assert "1024 distinct model names" in answer["error"]["message"]
    assert post(CHAT, chat() | {"model": "m7"}, app=app)[0] == 200
    assert len(app.statistics().models) <= MAX_MODELS + 1  # "" counts the refused ones


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"model": "m", "messages": [], "n": NaN}', id="nan"),
        pytest.param(b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep"),
        pytest.param(b'{"model": "m", "x": "\xff\xfe"}', id="bad-utf8"),
        pytest.param(b'{"model": "m", "x": 1e999}', id="infinity"),
    ],
)
def test_bodies_that_are_not_strict_json_get_400(body: bytes) -> None:
    """``NaN``, ``Infinity`` (as 1e999), invalid UTF-8 and nesting deeper than the decoder's
    recursion limit are not JSON: 400 (the last was an exception out of the app)."""
    for path in (CHAT, MESSAGES, EMBEDDINGS):
        assert "not valid JSON" in refused(path, body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(chat() | {"messages": [{"role": ["user"], "content": "x"}]}, id="role-list"),
        pytest.param(chat() | {"messages": [{"role": {"a": 1}, "content": "x"}]}, id="role-dict"),
        pytest.param(chat(response_format={"type": ["json_object"]}), id="format-type-list"),
    ],
)
def test_fields_of_a_wrong_type_get_400(body: Any) -> None:
    """A role or format type that is a list or an object is refused (it was a TypeError)."""
    refused(CHAT, body)


def test_deeply_nested_tool_input_gets_400() -> None:
    """A tool call's input nested deeper than 32 levels is refused (turning it into prompt
    text recursed without bound)."""
    deep: Any = "x"
    for _ in range(900):
        deep = [deep]
    tool_use = {"type": "tool_use", "id": "t", "name": "f", "input": deep}
    body = {
        "model": "c",
        "max_tokens": 5,
        "messages": [
            {"role": "assistant", "content": [tool_use]},
            {"role": "user", "content": "x"},
        ],
    }
    assert "nests more than 32 deep" in refused(MESSAGES, json.dumps(body).encode())
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": deep}}
    messages: list[Any] = [{"role": "assistant", "content": None, "tool_calls": [call]}]
    text = json.dumps({"model": "m", "messages": [*messages, {"role": "user", "content": "x"}]})
    refused(CHAT, text.encode())


# --------------------------------------------------------------------- schemas


def _deep_schema(levels: int) -> Any:
    schema: Any = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema}
    return schema


def _chain(length: int, keyword: str) -> Any:
    """Definitions that each refer twice to the next: 2 ** length paths."""
    defs: dict[str, Any] = {
        f"d{i}": {keyword: [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(length)
    }
    defs[f"d{length}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        pytest.param({"type": "array", "minItems": 10**9}, "minItems above 256", id="minItems"),
        pytest.param({"type": "array", "minItems": MAX_ARRAY_ITEMS + 1}, "256", id="minItems+1"),
        pytest.param({"type": "string", "minLength": 10**9}, "minLength above", id="minLength"),
        pytest.param(
            {"type": "string", "minLength": MAX_STRING_LENGTH + 1}, "4096", id="minLength+1"
        ),
        pytest.param({"type": "object", "minProperties": 10**9}, "minProperties", id="minProps"),
        pytest.param(_deep_schema(MAX_SCHEMA_DEPTH), "nest at most 32", id="deep"),
        pytest.param(
            {"properties": {f"p{i}": {} for i in range(MAX_SCHEMA_OBJECTS)}},
            "at most 1024 objects",
            id="objects",
        ),
        pytest.param({"enum": list(range(20_000))}, "at most 16384 values", id="values"),
        pytest.param(_chain(40, "oneOf"), "more work", id="oneOf-chain"),
        pytest.param(_chain(40, "allOf"), "more work", id="allOf-chain"),
        pytest.param(
            {"type": "array", "minItems": 200, "items": {"const": list(range(5000))}},
            "more work",
            id="large-constants",
        ),
        pytest.param(
            {"type": "array", "minItems": 256, "items": {"type": "array", "minItems": 256}},
            "more work",
            id="many-items",
        ),
        pytest.param({"$schema": "urn:unknown", "type": "string"}, "'$schema' may", id="draft"),
        pytest.param(
            {"$schema": "http://json-schema.org/draft-04/schema#", "enum": [1, "a", [], {}] * 40},
            "'$schema' may",
            id="draft-04",
        ),
        pytest.param({"type": [1, "a", [], {}] * 100}, "'type' arrays", id="type-array"),
        pytest.param({"type": "string", "pattern": "a{99999999999}"}, "cannot be checked", id="re"),
        pytest.param(
            {"anyOf": [{"$ref": "#/nowhere"}, {"type": "string"}]}, "", id="unresolvable-ref"
        ),
        pytest.param({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "", id="loop"),
    ],
)
def test_schemas_beyond_the_limits_get_400_quickly(schema: Any, words: str) -> None:
    """Schemas asking for huge values, nesting deep, holding many objects, referring to
    themselves exponentially or without end, naming an unknown or quadratic draft, or a
    regular expression Python cannot compile are refused within bounded work — through
    ``response_format``, Anthropic's ``output_format`` and a tool alike."""
    assert words in refused(CHAT, schema_chat(schema))
    output_format = {"type": "json_schema", "schema": schema}
    assert words in refused(MESSAGES, anthropic(output_format=output_format))
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    body = chat(tools=[tool], tool_choice={"type": "function", "function": {"name": "f"}})
    assert words in refused(CHAT, body)


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"type": "string", "pattern": "^(a+)+b$", "minLength": 30}, id="redos"),
        pytest.param({"type": "integer", "minimum": 10**400}, id="huge-minimum"),
        pytest.param({"type": "number", "maximum": -(10**400)}, id="huge-maximum"),
        pytest.param(
            {"type": "array", "minItems": 250, "uniqueItems": True, "items": {"type": "integer"}},
            id="unique-items",
        ),
        pytest.param(
            {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(300)}},
            id="wide-object",
        ),
    ],
)
def test_hard_but_bounded_schemas_are_answered(schema: Any) -> None:
    """A pattern that backtracks exponentially (no client regex runs), bounds beyond floats
    (they overflowed), many unique items (compared in linear time) and wide objects are
    answered 200 with a JSON value."""
    prompt = "a" * 60 + "!"
    status, answer = post(
        CHAT, schema_chat(schema) | {"messages": [{"role": "user", "content": prompt}]}
    )
    assert status == 200, answer
    json.loads(answer["choices"][0]["message"]["content"])


def test_choices_share_one_budget() -> None:
    """16 choices of a schema that needs much work cost what one does: the work budget is
    the request's, so a schema that fits once may not fit sixteen times."""
    schema = {
        "type": "array",
        "minItems": 256,
        "maxItems": 256,
        "items": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
    }
    status, _ = post(CHAT, schema_chat(schema))
    assert status == 200
    assert "more work" in refused(CHAT, schema_chat(schema) | {"n": 16})


def test_prompt_schemas_are_bounded_too() -> None:
    """A schema in the prompt that is unsatisfiable or beyond the limits is passed over (it
    was a 500), and a prompt full of fences is read in one pass (it backtracked for hours)."""
    schemas: list[Any] = [{"not": {}}, False, {"type": "array", "minItems": 10**9}]
    for schema in [*schemas, _deep_schema(40)]:
        prompt = f"Answer with this JSON Schema:\n```json\n{json.dumps(schema)}\n```"
        status, answer = post(CHAT, chat(prompt))
        assert status == 200, answer
    fences = "json schema " + "```json" * 140_000
    status, answer = post(CHAT, chat(fences))
    assert status == 200
    prompt = "JSON Schema: " + "```json\nnot json```" * 1000 + '```json\n{"type": "integer"}\n```'
    status, answer = post(CHAT, chat(prompt))
    assert isinstance(json.loads(answer["choices"][0]["message"]["content"]), int)


# --------------------------------------------------------------------- fuzz

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, -1, 16, 17, 2**31, 2**63, 10**9, 10**100, 1e308, -1e308, 0.5]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
#: Stands for a deeply nested value, put in as raw JSON text after encoding.
_DEEP = "\x00deep\x00"

_KEYWORDS = [
    "type",
    "properties",
    "required",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "additionalProperties",
    "uniqueItems",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "$ref",
    "$defs",
    "$schema",
    "pattern",
    "patternProperties",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "multipleOf",
    "format",
    "if",
    "then",
    "unevaluatedProperties",
]
_keyword_values = st.one_of(
    _values,
    st.sampled_from(["object", "array", "string", "integer", "number", "boolean", "null"]),
    st.sampled_from(["#", "#/$defs/a", "#/nowhere", "https://example.com/s", "urn:x"]),
    st.sampled_from(["^(a+)+$", "a{99999999999}", "(", "[a-z]+"]),
    st.sampled_from(["http://json-schema.org/draft-04/schema#", "urn:unknown"]),
)
_schemas = st.recursive(
    st.one_of(
        st.booleans(), st.dictionaries(st.sampled_from(_KEYWORDS), _keyword_values, max_size=4)
    ),
    lambda children: st.one_of(
        st.dictionaries(st.sampled_from(_KEYWORDS), children | _keyword_values, max_size=5),
        st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.text(max_size=5), children, max_size=4),
            }
        ),
        st.fixed_dictionaries(
            {
                "$defs": st.fixed_dictionaries({"a": children}),
                "anyOf": st.lists(children, max_size=3),
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("array"),
                "items": children,
                "minItems": st.sampled_from([0, 3, 300, 10**9]),
            }
        ),
    ),
    max_leaves=10,
)
_schema_or_valid = st.one_of(_schemas, json_schemas())
_texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["Write a ```python code block", 'JSON Schema:\n```json\n{"type": "integer"}\n```']
    ),
    _schema_or_valid.map(
        lambda schema: f"Use this JSON Schema:\n```json\n{json.dumps(schema)}\n```"
    ),
)
#: Hostile values for any field: wrong types, huge numbers, deep nesting.
_hostile = st.one_of(
    _values,
    st.sampled_from([0, -1, 17, 10**9, 10**30, 131_073, 1.5, True, "", [], {}]),
    st.just(_DEEP),
)


def _or_hostile(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``valid`` (nine times in ten), sometimes hostile."""
    return st.one_of(*[valid] * 9, _hostile)


_parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _or_hostile(_texts)}),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_use"),
            "id": st.just("t"),
            "name": _or_hostile(st.just("f")),
            "input": _values | st.just(_DEEP),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_result"),
            "tool_use_id": st.just("t"),
            "content": _or_hostile(_texts | st.lists(_values, max_size=2)),
        }
    ),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": _values}),
)
_contents = _or_hostile(_texts | st.lists(_parts, min_size=1, max_size=3))
_tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.just("c"),
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": _or_hostile(st.just("f")), "arguments": _or_hostile(st.just("{}"))}
            ),
        }
    ),
    max_size=2,
)


def _spoil_one(messages: st.SearchStrategy[list[Any]], fields: list[str]) -> st.SearchStrategy[Any]:
    """Valid ``messages``, one of whose ``fields`` is sometimes made hostile."""

    def spoil(valid: list[Any], change: tuple[int, str, Any] | None) -> list[Any]:
        if change is None:
            return valid
        index, field, value = change
        valid[index % len(valid)] = valid[index % len(valid)] | {field: value}
        return valid

    changes = st.none() | st.tuples(st.integers(0, 3), st.sampled_from(fields), _hostile)
    return st.builds(spoil, messages, changes)


_openai_messages = _spoil_one(
    st.lists(
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]),
                "content": _contents,
            },
            optional={"tool_calls": _tool_calls},
        ),
        min_size=1,
        max_size=4,
    ),
    ["role", "content", "tool_calls"],
)
_anthropic_messages = _spoil_one(
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant"]), "content": _contents}
        ),
        min_size=1,
        max_size=4,
    ),
    ["role", "content"],
)
_openai_tools = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": st.sampled_from(["f", "g", "h"])},
                optional={"parameters": _or_hostile(_schema_or_valid)},
            ),
        }
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda tool: tool["function"]["name"],  # type: ignore[index]
)
_anthropic_tools = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["f", "g", "h"]),
            "input_schema": _or_hostile(
                _schema_or_valid.map(
                    lambda s: (
                        s
                        if isinstance(s, dict) and s.get("type") == "object"
                        else {"type": "object", "properties": {"x": s}}
                    )
                )
            ),
        }
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda tool: tool["name"],
)
_models = st.sampled_from(["m", "gpt-x", "claude-y", "m" * 256])
_small = st.integers(min_value=1, max_value=300)
_response_formats = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "json_schema": st.fixed_dictionaries(
                {"name": st.just("x"), "schema": _or_hostile(_schema_or_valid)}
            ),
        }
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["json_object", "text"])}),
)


def _with_hostile(
    valid: st.SearchStrategy[dict[str, Any]], fields: list[str]
) -> st.SearchStrategy[Any]:
    """A valid body, with up to two of its documented ``fields`` (set or not) made hostile."""
    overlay = st.one_of(st.just({}), st.dictionaries(st.sampled_from(fields), _hostile, max_size=2))
    return st.builds(lambda body, changes: body | changes, valid, overlay)


_CHAT_FIELDS = ["model", "messages", "n", "max_tokens", "max_completion_tokens", "stream"]
_CHAT_FIELDS += [
    "stream_options",
    "tools",
    "tool_choice",
    "response_format",
    "logprobs",
    "modalities",
]
_chat_bodies = _with_hostile(
    st.fixed_dictionaries(
        {"model": _models, "messages": _openai_messages},
        optional={
            "n": st.integers(min_value=1, max_value=16),
            "max_tokens": _small,
            "max_completion_tokens": _small,
            "stream": st.booleans(),
            "tools": _openai_tools,
            "tool_choice": st.sampled_from(
                ["auto", "required", {"type": "function", "function": {"name": "f"}}]
            ),
            "response_format": _response_formats,
        },
    ),
    _CHAT_FIELDS,
)
_MESSAGE_FIELDS = ["model", "messages", "max_tokens", "system", "stream", "tools", "tool_choice"]
_MESSAGE_FIELDS += ["output_format", "thinking"]
_message_bodies = _with_hostile(
    st.fixed_dictionaries(
        {"model": _models, "max_tokens": _small, "messages": _anthropic_messages},
        optional={
            "system": _contents,
            "stream": st.booleans(),
            "tools": _anthropic_tools,
            "tool_choice": st.sampled_from(
                [{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "f"}]
            ),
            "output_format": st.fixed_dictionaries(
                {"type": st.just("json_schema"), "schema": _or_hostile(_schema_or_valid)}
            ),
        },
    ),
    _MESSAGE_FIELDS,
)
_embedding_bodies = _with_hostile(
    st.fixed_dictionaries(
        {
            "model": _models,
            "input": st.one_of(
                st.text(max_size=30), st.lists(st.text(max_size=10), min_size=1, max_size=5)
            ),
        },
        optional={"dimensions": st.integers(min_value=1, max_value=MAX_EMBEDDING_DIMENSIONS)},
    ),
    ["model", "input", "dimensions", "encoding_format"],
)


def _encode(body: Any, depth: int) -> bytes:
    """``body`` as JSON, each deep stand-in replaced by ``depth`` nested arrays."""
    deep = b"[" * depth + b"]" * depth
    return json.dumps(body).encode().replace(json.dumps(_DEEP).encode(), deep)


_FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


def _check(path: str, body: Any, depth: int) -> None:
    status, answer = post(path, _encode(body, depth))
    if status == 200:
        return
    assert 400 <= status < 500, answer
    assert isinstance(answer["error"]["message"], str)


@_FUZZ
@given(body=_chat_bodies, depth=st.sampled_from([2, 40, 2000]))
def test_fuzzed_chat_completions_get_200_or_4xx(body: Any, depth: int) -> None:
    """Any chat completion body — every field drawn from valid values, wrong types, huge
    numbers, deep nesting, hostile schemas — gets 200 or a 4xx with a JSON error, a bounded
    answer, in bounded time."""
    _check(CHAT, body, depth)


@_FUZZ
@given(body=_message_bodies, depth=st.sampled_from([2, 40, 2000]))
def test_fuzzed_messages_get_200_or_4xx(body: Any, depth: int) -> None:
    """The same for Anthropic Messages bodies."""
    _check(MESSAGES, body, depth)


@settings(_FUZZ, max_examples=60)
@given(body=_embedding_bodies, depth=st.sampled_from([2, 40, 2000]))
def test_fuzzed_embeddings_get_200_or_4xx(body: Any, depth: int) -> None:
    """The same for embeddings bodies."""
    _check(EMBEDDINGS, body, depth)


@settings(_FUZZ, max_examples=60)
@given(data=st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_fuzzed_raw_bodies_get_400(data: bytes) -> None:
    """Bodies that are not a JSON object get a 400 in each API."""
    for path in (CHAT, MESSAGES, EMBEDDINGS):
        status, _ = post(path, data)
        assert status in (200, 400)


def test_default_model_config_is_the_fuzz_target() -> None:
    """The fuzz runs without injected faults (a 5xx there would be one of ours)."""
    model = SimulationConfig().default
    assert model == SimulatedModel()
    assert model.error_500_rate == model.error_503_rate == model.malformed_rate == 0.0
