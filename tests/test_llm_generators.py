"""LLM generators against a scripted client: prompts, parsing, corrections, usage counting."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import pyarrow as pa
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.clients import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelHandle,
    Usage,
)
from gridloom.config import (
    EmbeddingColumn,
    LLMCodeColumn,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
    ModelConfig,
    Rubric,
)
from gridloom.errors import GenerationError, InvalidOutput, RateLimited
from gridloom.generators import BuildContext, CellContext, build_generator
from gridloom.kinds.llm_code import extract_code
from gridloom.kinds.llm_judge import judge_schema

MODEL = ModelConfig(
    alias="w", provider="p", model="writer-8b", temperature=0.7, max_tokens=200, timeout=30
)


@attrs.define
class ScriptedClient:
    """Answers chat requests from a script (a function of the request) and records them."""

    answer: Callable[[ChatRequest], ChatResponse | Exception]
    requests: list[Any] = attrs.Factory(list)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        await trio.sleep(0)
        outcome = self.answer(request)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        self.requests.append(request)
        return EmbeddingResponse(
            vectors=tuple((float(len(t)), 0.5) for t in request.inputs),
            usage=Usage(input_tokens=len(request.inputs)),
        )


def reply(text: str, reasoning: str | None = None, tokens: int = 5) -> ChatResponse:
    return ChatResponse(
        text=text, reasoning=reasoning, usage=Usage(input_tokens=10, output_tokens=tokens)
    )


def setup(column: Any, client: ScriptedClient, model: ModelConfig = MODEL) -> tuple[Any, Any]:
    generator = build_generator(column, BuildContext(models={model.alias: model}))
    handle = ModelHandle(model, client, trio.CapacityLimiter(4))

    def ctx(row: dict[str, Any]) -> CellContext:
        return CellContext(row=row, row_id=0, column=column.name, seed=1, models={"w": handle})

    return generator, ctx


async def test_text_renders_prompts_and_applies_defaults_and_overrides() -> None:
    """llm_text renders system and user templates; column params override model defaults."""
    client = ScriptedClient(lambda r: reply("  A river.  "))
    column = LLMTextColumn(
        name="s", model="w", prompt="About {{ topic }}", system_prompt="For {{ who }}", top_p=0.5
    )
    generator, ctx = setup(column, client)
    assert generator.model_bound
    assert generator.is_async
    assert await generator.agenerate(ctx({"topic": "rivers", "who": "kids"})) == "A river."
    (request,) = client.requests
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "For kids"),
        ("user", "About rivers"),
    ]
    assert (request.model, request.temperature, request.top_p, request.max_tokens) == (
        "writer-8b",
        0.7,
        0.5,
        200,
    )
    assert request.timeout == 30
    assert request.response_format is None


async def test_reasoning_goes_to_a_side_column() -> None:
    """with_reasoning adds <name>__reasoning holding the model's reasoning text."""
    client = ScriptedClient(lambda r: reply("Yes.", reasoning="Because."))
    column = LLMTextColumn(name="s", model="w", prompt="Q", with_reasoning=True)
    generator, ctx = setup(column, client)
    assert list(generator.outputs) == ["s", "s__reasoning"]
    assert await generator.agenerate(ctx({})) == {"s": "Yes.", "s__reasoning": "Because."}


async def test_code_asks_for_a_fence_and_keeps_its_content() -> None:
    """llm_code tells the model the language and extracts the fenced block."""
    client = ScriptedClient(lambda r: reply("Sure:\n```python\nprint('hi')\n```\nDone."))
    generator, ctx = setup(LLMCodeColumn(name="c", model="w", prompt="Say hi"), client)
    assert await generator.agenerate(ctx({})) == "print('hi')"
    system = client.requests[0].messages[0]
    assert system.role == "system"
    assert "```python" in system.content


def test_extract_code_prefers_the_language_and_falls_back_to_text() -> None:
    """extract_code picks the block tagged with the language, else the first, else the text."""
    text = "```bash\nls\n```\n```sql\nSELECT 1;\n```"
    assert extract_code(text, "sql") == "SELECT 1;"
    assert extract_code(text, "rust") == "ls"
    assert extract_code("  x = 1  ") == "x = 1"


SCHEMA = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}, "minItems": 2}},
    "required": ["facts"],
    "additionalProperties": False,
}


async def test_structured_uses_the_providers_schema_mode_and_stores_a_struct() -> None:
    """With json_schema_mode the schema goes as response_format; the value is the object,
    stored as the struct its closed schema derives."""
    client = ScriptedClient(lambda r: reply(json.dumps({"facts": ["a", "b"]})))
    column = LLMStructuredColumn(name="f", model="w", prompt="Facts", schema=SCHEMA)
    generator, ctx = setup(column, client)
    assert await generator.agenerate(ctx({})) == {"facts": ["a", "b"]}
    request = client.requests[0]
    assert request.response_format is not None
    assert request.response_format.schema == SCHEMA
    assert "JSON Schema" not in request.messages[-1].content
    assert generator.encoders["f"]({"facts": ["a", "b"]}) == {"facts": ["a", "b"]}
    assert generator.outputs["f"] == pa.struct(
        [pa.field("facts", pa.list_(pa.field("item", pa.string(), nullable=False)), False)]
    )
    assert generator.field_metadata == {}


async def test_structured_puts_the_schema_in_the_prompt_without_schema_mode() -> None:
    """Without json_schema_mode the schema is in the prompt and a fenced answer is accepted."""
    model = attrs.evolve(MODEL, json_schema_mode=False)
    client = ScriptedClient(lambda r: reply('```json\n{"facts": ["x", "y", "z"]}\n```'))
    column = LLMStructuredColumn(name="f", model="w", prompt="Facts", schema=SCHEMA)
    generator, ctx = setup(column, client, model)
    assert await generator.agenerate(ctx({})) == {"facts": ["x", "y", "z"]}
    request = client.requests[0]
    assert request.response_format is None
    assert "JSON Schema" in request.messages[-1].content
    assert '"minItems": 2' in request.messages[-1].content


async def test_invalid_answers_are_sent_back_until_one_is_valid() -> None:
    """An invalid answer is returned to the model with the error; a valid one ends it."""
    answers = iter(['{"facts": ["only one"]}', "not json", '{"facts": ["a", "b"]}'])
    client = ScriptedClient(lambda r: reply(next(answers)))
    column = LLMStructuredColumn(name="f", model="w", prompt="Facts", schema=SCHEMA)
    generator, ctx = setup(column, client)
    assert await generator.agenerate(ctx({})) == {"facts": ["a", "b"]}
    assert len(client.requests) == 3
    second = client.requests[1].messages
    assert [m.role for m in second[-2:]] == ["assistant", "user"]
    assert "facts" in second[-1].content
    assert "not usable" in second[-1].content
    assert "not valid JSON" in client.requests[2].messages[-1].content


async def test_answers_still_invalid_after_corrections_fail_the_cell() -> None:
    """After max_correction_attempts invalid answers the cell fails with InvalidOutput."""
    client = ScriptedClient(lambda r: reply("{}"))
    column = LLMStructuredColumn(
        name="f", model="w", prompt="Facts", schema=SCHEMA, max_correction_attempts=1
    )
    generator, ctx = setup(column, client)
    with pytest.raises(InvalidOutput, match=r"'f'.*1 correction.*facts"):
        await generator.agenerate(ctx({}))
    assert len(client.requests) == 2


@given(big=st.integers(min_value=2**63) | st.integers(max_value=-(2**63) - 1))
@settings(max_examples=25, deadline=None)
async def test_an_integer_beyond_64_bits_is_sent_back_for_correction(big: int) -> None:
    """A structured answer valid against its schema but holding an integer that 64 bits
    cannot store is sent back to the model naming the field, and a corrected answer is kept
    (was: the cell failed at once, GenerationError, with no correction turn)."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    answers = iter([json.dumps({"n": big}), '{"n": 42}'])
    client = ScriptedClient(lambda r: reply(next(answers)))
    column = LLMStructuredColumn(name="f", model="w", prompt="A number", schema=schema)
    generator, ctx = setup(column, client)
    assert await generator.agenerate(ctx({})) == {"n": 42}
    assert len(client.requests) == 2
    assert "f.n: cannot store" in client.requests[1].messages[-1].content


async def test_judge_scores_every_rubric() -> None:
    """llm_judge asks for each rubric's score and reason and returns them."""
    rubrics = (
        Rubric(name="accuracy", description="Right?", scores={1: "wrong", 5: "exact"}),
        Rubric(name="style", scores={"low": "dull", "high": "vivid"}),
    )
    answer = {
        "accuracy": {"score": 5, "reasoning": "ok"},
        "style": {"score": "high", "reasoning": "nice"},
    }
    client = ScriptedClient(lambda r: reply(json.dumps(answer)))
    column = LLMJudgeColumn(name="q", model="w", prompt="Judge {{ s }}", rubrics=rubrics)
    generator, ctx = setup(column, client)
    assert await generator.agenerate(ctx({"s": "text"})) == answer
    request = client.requests[0]
    assert request.response_format.schema == judge_schema(rubrics)
    system = request.messages[0].content
    assert "accuracy" in system
    assert "5: exact" in system
    assert "high: vivid" in system


async def test_embedding_returns_the_vector() -> None:
    """embedding renders its input and returns one vector as a list of floats."""
    client = ScriptedClient(lambda r: reply(""))
    column = EmbeddingColumn(name="v", model="w", input="{{ a }}!")
    generator, ctx = setup(column, client)
    assert await generator.agenerate(ctx({"a": "abc"})) == [4.0, 0.5]
    assert client.requests[0].inputs == ("abc!",)


async def test_model_errors_propagate_and_are_counted() -> None:
    """A ModelError from the client reaches the caller and shows in the alias's usage."""
    client = ScriptedClient(lambda r: RateLimited("slow down", retry_after=2.0))
    generator, ctx = setup(LLMTextColumn(name="s", model="w", prompt="Q"), client)
    context = ctx({})
    with pytest.raises(RateLimited):
        await generator.agenerate(context)
    usage = context.models["w"].usage()
    assert (usage.requests, usage.succeeded, usage.failed, usage.rate_limited) == (1, 0, 1, 1)


async def test_render_errors_fail_the_cell_with_the_column_named() -> None:
    """A template that fails on a row's values raises GenerationError naming the column."""
    client = ScriptedClient(lambda r: reply("x"))
    generator, ctx = setup(LLMTextColumn(name="s", model="w", prompt="{{ 1 // n }}"), client)
    with pytest.raises(GenerationError, match="'s'"):
        await generator.agenerate(ctx({"n": 0}))
    assert client.requests == []


async def test_usage_sums_tokens_and_latency(autojump_clock: Any) -> None:
    """ModelHandle counts requests, tokens and latency per alias."""

    @attrs.define
    class SlowClient(ScriptedClient):
        async def chat(self, request: ChatRequest) -> ChatResponse:
            await trio.sleep(2.0)
            return reply("ok", tokens=7)

    handle = ModelHandle(MODEL, SlowClient(lambda r: reply("ok")), trio.CapacityLimiter(1))
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(handle.chat, ChatRequest(model="m", messages=()))
    usage = handle.usage()
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (3, 30, 21)
    assert usage.mean_latency == 2.0  # the limiter of 1 serialises them; wait is not counted
    assert trio.current_time() == 6.0
