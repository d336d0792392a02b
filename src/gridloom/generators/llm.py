"""Generators that call models: text, code, structured JSON, judges, embeddings.

Each is a model-bound, asynchronous *cell* generator: the scheduler hands its task from the
submission limiter to the LLM-wait limiter, then the generator renders its prompts from the
row, calls its model alias (``ctx.models[alias]``) and turns the answer into the cell's value.
A :class:`~gridloom.errors.ModelError` from the call propagates; the scheduler decides what a
failure means for the row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import trio
from jsonschema import exceptions as schema_exceptions
from jsonschema import validators

from ..clients._types import ChatRequest, ChatResponse, EmbeddingRequest, Message, ResponseFormat
from ..config import (
    EmbeddingColumn,
    LLMCodeColumn,
    LLMColumn,
    LLMJudgeColumn,
    LLMStructuredColumn,
    ModelConfig,
    Rubric,
)
from ..config._llm import REASONING_SUFFIX
from ..errors import GenerationError, InvalidOutput, TemplateLimitExceeded
from ._jinja import CompiledTemplate, TemplateLimits, compile_template
from .base import CellContext, ColumnGenerator

__all__ = [
    "EmbeddingGenerator",
    "LLMCodeGenerator",
    "LLMJudgeGenerator",
    "LLMStructuredGenerator",
    "LLMTextGenerator",
    "extract_code",
    "judge_schema",
    "parse_json_answer",
]

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[ \t]*\n(.*?)```", re.DOTALL)
#: Where Jinja syntax starts: text without it renders as itself.
_JINJA_SYNTAX = re.compile(r"\{[{%#]")


def _compile(
    column: str, field: str, source: str, limits: TemplateLimits | None = None
) -> CompiledTemplate:
    return compile_template(source, column=column, field=field, limits=limits)


def _render(column: str, template: CompiledTemplate, row: Mapping[str, Any]) -> str:
    try:
        return template.render(row).strip()
    except TemplateLimitExceeded:
        raise
    except Exception as exc:
        raise GenerationError(
            f"column {column!r}: template failed to render: {type(exc).__name__}: {exc}"
        ) from exc


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=False)


class _ModelColumn(ColumnGenerator):
    """Shared machinery: prompt templates, request building, the reasoning side column."""

    granularity = "cell"
    model_bound = True
    inline = False

    def __init__(
        self,
        config: LLMColumn,
        model: ModelConfig,
        value_type: pa.DataType,
        limits: TemplateLimits | None = None,
    ):
        outputs = {config.name: value_type}
        if config.with_reasoning:
            outputs[config.name + REASONING_SUFFIX] = pa.string()
        super().__init__(name=config.name, outputs=outputs)
        self.config = config
        self.model_config = model
        self.model_lane = (model.alias, model.max_parallel_requests)
        self.limits = limits
        self._prompt = _compile(config.name, f"{config.kind}.prompt", config.prompt, limits)
        self._system = (
            _compile(config.name, f"{config.kind}.system_prompt", config.system_prompt, limits)
            if config.system_prompt is not None
            else None
        )
        #: Every template is simple: prompts render on the event loop (else in a thread).
        self.render_inline = self._prompt.simple and (self._system is None or self._system.simple)

    def system_text(self, row: Mapping[str, Any]) -> str | None:
        """The rendered system prompt (subclasses add their instructions)."""
        return _render(self.name, self._system, row) if self._system is not None else None

    async def render_messages(self, row: Mapping[str, Any]) -> list[Message]:
        """:meth:`messages`, rendered on the event loop when every template of the column is
        simple, else in a worker thread (abandoned if the cell is cancelled; the render's CPU
        budget ends it soon after)."""
        if self.render_inline:
            return self.messages(row)
        return await trio.to_thread.run_sync(self.messages, row, abandon_on_cancel=True)

    def messages(self, row: Mapping[str, Any]) -> list[Message]:
        system = self.system_text(row)
        user = _render(self.name, self._prompt, row)
        out = [Message(role="system", content=system)] if system else []
        out.append(Message(role="user", content=user))
        return out

    def request(
        self, messages: list[Message], response_format: ResponseFormat | None = None
    ) -> ChatRequest:
        cfg, model = self.config, self.model_config
        return ChatRequest(
            model=model.model,
            messages=messages,
            temperature=cfg.temperature if cfg.temperature is not None else model.temperature,
            top_p=cfg.top_p if cfg.top_p is not None else model.top_p,
            max_tokens=cfg.max_tokens if cfg.max_tokens is not None else model.max_tokens,
            timeout=cfg.timeout if cfg.timeout is not None else model.timeout,
            response_format=response_format,
            extra_body=dict(cfg.extra_body),
        )

    async def call(self, ctx: CellContext, request: ChatRequest) -> ChatResponse:
        handle = ctx.models.get(self.config.model)
        if handle is None:
            raise GenerationError(f"column {self.name!r}: model {self.config.model!r} is not open")
        response: ChatResponse = await handle.chat(request)
        return response

    def result(self, value: Any, response: ChatResponse) -> Any:
        if not self.config.with_reasoning:
            return value
        return {self.name: value, self.name + REASONING_SUFFIX: response.reasoning}


class LLMTextGenerator(_ModelColumn):
    """``llm_text``: the model's answer, stripped of surrounding whitespace."""

    def __init__(
        self, config: LLMColumn, model: ModelConfig, *, limits: TemplateLimits | None = None
    ):
        super().__init__(config, model, pa.string(), limits)

    async def agenerate(self, ctx: CellContext) -> Any:
        response = await self.call(ctx, self.request(await self.render_messages(ctx.row)))
        return self.result(response.text.strip(), response)


def extract_code(text: str, language: str | None = None) -> str:
    """The content of the first fenced code block (preferring one tagged ``language``), or the
    whole text stripped when there is no fence."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return text.strip()
    if language is not None:
        for tag, body in blocks:
            if tag.lower() == language.lower():
                return str(body).rstrip()
    return str(blocks[0][1]).rstrip()


class LLMCodeGenerator(_ModelColumn):
    """``llm_code``: asks for one fenced code block in ``language``; keeps its content."""

    config: LLMCodeColumn

    def __init__(
        self, config: LLMCodeColumn, model: ModelConfig, *, limits: TemplateLimits | None = None
    ):
        super().__init__(config, model, pa.string(), limits)

    def system_text(self, row: Mapping[str, Any]) -> str | None:
        own = super().system_text(row)
        tag = self.config.language.lower()
        rule = (
            f"Answer with a single fenced code block in {self.config.language}: "
            f"```{tag} on the first line, the code, then ``` on the last line."
        )
        return f"{own}\n\n{rule}" if own else rule

    async def agenerate(self, ctx: CellContext) -> Any:
        response = await self.call(ctx, self.request(await self.render_messages(ctx.row)))
        return self.result(extract_code(response.text, self.config.language), response)


def parse_json_answer(text: str, check: Callable[[Any], None]) -> Any:
    """Parse a model's JSON answer (a fenced ```json block or bare JSON) and validate it.

    Raises:
        ValueError: with a short, model-readable reason.
    """
    stripped = text.strip()
    blocks = _FENCE.findall(stripped)
    candidate = str(blocks[0][1]) if blocks else stripped
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"the answer is not valid JSON ({exc.msg} at position {exc.pos})"
        ) from None
    check(value)
    return value


class LLMStructuredGenerator(_ModelColumn):
    """``llm_structured``: JSON valid against the column's schema, with correction rounds.

    The cell's value is the parsed object (so templates can index into it); it is stored as
    JSON text.
    """

    def __init__(
        self,
        config: LLMColumn,
        model: ModelConfig,
        *,
        schema: Mapping[str, Any],
        max_corrections: int,
        limits: TemplateLimits | None = None,
    ):
        super().__init__(config, model, pa.string(), limits)
        self.schema = dict(schema)
        self.max_corrections = max_corrections
        self.encoders = {config.name: _json_text}
        self._validator = validators.validator_for(self.schema)(self.schema)
        self._schema_text = json.dumps(self.schema, indent=2, ensure_ascii=False)

    def _check(self, value: Any) -> None:
        error = schema_exceptions.best_match(self._validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the top level"
            raise ValueError(f"the answer does not match the schema at {where}: {error.message}")

    def messages(self, row: Mapping[str, Any]) -> list[Message]:
        messages = super().messages(row)
        if self.model_config.json_schema_mode:
            return messages
        last = messages[-1]
        instruction = (
            "\n\nRespond with JSON only, valid against this JSON Schema:\n"
            f"```json\n{self._schema_text}\n```"
        )
        return [*messages[:-1], Message(role="user", content=last.content + instruction)]

    def response_format(self) -> ResponseFormat | None:
        if not self.model_config.json_schema_mode:
            return None
        return ResponseFormat(name=re.sub(r"\W", "_", self.name)[:64], schema=self.schema)

    async def agenerate(self, ctx: CellContext) -> Any:
        messages = await self.render_messages(ctx.row)
        response_format = self.response_format()
        reason = ""
        for _attempt in range(self.max_corrections + 1):
            response = await self.call(ctx, self.request(messages, response_format))
            try:
                value = parse_json_answer(response.text, self._check)
            except ValueError as exc:
                reason = str(exc)
                messages = [
                    *messages,
                    Message(role="assistant", content=response.text),
                    Message(
                        role="user",
                        content=f"That answer is not usable: {reason}. Reply again with JSON"
                        " only, valid against the schema.",
                    ),
                ]
                continue
            return self.result(value, response)
        raise InvalidOutput(
            f"column {self.name!r}: no valid answer after {self.max_corrections} correction"
            f" attempt(s); last problem: {reason}"
        )


def judge_schema(rubrics: tuple[Rubric, ...]) -> dict[str, Any]:
    """The JSON Schema of a judge's answer: per rubric, an allowed score and a reason."""
    return {
        "type": "object",
        "properties": {
            rubric.name: {
                "type": "object",
                "properties": {
                    "score": {"enum": list(rubric.scores)},
                    "reasoning": {"type": "string"},
                },
                "required": ["score", "reasoning"],
                "additionalProperties": False,
            }
            for rubric in rubrics
        },
        "required": [rubric.name for rubric in rubrics],
        "additionalProperties": False,
    }


class LLMJudgeGenerator(LLMStructuredGenerator):
    """``llm_judge``: for each rubric, a score from its scale and a short reason."""

    config: LLMJudgeColumn

    def __init__(
        self, config: LLMJudgeColumn, model: ModelConfig, *, limits: TemplateLimits | None = None
    ):
        super().__init__(
            config,
            model,
            schema=judge_schema(config.rubrics),
            max_corrections=config.max_correction_attempts,
            limits=limits,
        )
        # A rubric's description and its scores' meanings are templates over the row, like
        # the prompt; text without Jinja syntax is kept as is (and rendered once, below).
        self._rubrics = [
            (
                rubric,
                self._rubric_text(f"rubrics[{i}].description", rubric.description),
                [
                    (score, self._rubric_text(f"rubrics[{i}].scores.{score}", meaning))
                    for score, meaning in rubric.scores.items()
                ],
            )
            for i, rubric in enumerate(config.rubrics)
        ]
        templates = [
            text
            for _, description, meanings in self._rubrics
            for text in (description, *(meaning for _, meaning in meanings))
            if not isinstance(text, str)
        ]
        self.render_inline = self.render_inline and all(t.simple for t in templates)
        self._instructions = None if templates else self.instructions({})

    def _rubric_text(self, field: str, text: str) -> str | CompiledTemplate:
        if _JINJA_SYNTAX.search(text) is None:
            return text
        return _compile(self.name, f"{self.config.kind}.{field}", text, self.limits)

    def instructions(self, row: Mapping[str, Any]) -> str:
        """The judging instructions, with each rubric's texts rendered over ``row``."""

        def text(piece: str | CompiledTemplate) -> str:
            return piece if isinstance(piece, str) else _render(self.name, piece, row)

        lines = [
            "You are a careful judge. Score the user's material on each rubric below, choosing"
            " one of the listed scores, and give a one-sentence reason for each."
        ]
        for rubric, description, meanings in self._rubrics:
            lines.append(f"\nRubric {rubric.name!r}: {text(description)}".rstrip(": "))
            lines.extend(f"  {score}: {text(meaning)}" for score, meaning in meanings)
        return "\n".join(lines)

    def system_text(self, row: Mapping[str, Any]) -> str | None:
        own = super().system_text(row)
        rules = self._instructions if self._instructions is not None else self.instructions(row)
        return f"{own}\n\n{rules}" if own else rules


class EmbeddingGenerator(ColumnGenerator):
    """``embedding``: the vector of the rendered ``input`` text (stored as list<float32>)."""

    granularity = "cell"
    model_bound = True
    inline = False

    def __init__(
        self, config: EmbeddingColumn, model: ModelConfig, *, limits: TemplateLimits | None = None
    ):
        super().__init__(name=config.name, outputs={config.name: pa.list_(pa.float32())})
        self.config = config
        self.model_config = model
        self.model_lane = (model.alias, model.max_parallel_requests)
        self._input = _compile(config.name, "embedding.input", config.input, limits)

    async def agenerate(self, ctx: CellContext) -> Any:
        handle = ctx.models.get(self.config.model)
        if handle is None:
            raise GenerationError(f"column {self.name!r}: model {self.config.model!r} is not open")
        if self._input.simple:
            text = _render(self.name, self._input, ctx.row)
        else:
            text = await trio.to_thread.run_sync(
                _render, self.name, self._input, ctx.row, abandon_on_cancel=True
            )
        timeout = self.config.timeout or self.model_config.timeout
        response = await handle.embed(
            EmbeddingRequest(model=self.model_config.model, inputs=(text,), timeout=timeout)
        )
        if len(response.vectors) != 1:
            raise GenerationError(
                f"column {self.name!r}: expected one vector, got {len(response.vectors)}"
            )
        return list(response.vectors[0])


def build_llm_generator(
    column: LLMColumn | EmbeddingColumn,
    model: ModelConfig,
    *,
    limits: TemplateLimits | None = None,
) -> ColumnGenerator:
    """The generator for an LLM column kind; ``limits`` bound each render of its templates."""
    if isinstance(column, EmbeddingColumn):
        return EmbeddingGenerator(column, model, limits=limits)
    if isinstance(column, LLMJudgeColumn):
        return LLMJudgeGenerator(column, model, limits=limits)
    if isinstance(column, LLMStructuredColumn):
        return LLMStructuredGenerator(
            column,
            model,
            schema=column.schema,
            max_corrections=column.max_correction_attempts,
            limits=limits,
        )
    if isinstance(column, LLMCodeColumn):
        return LLMCodeGenerator(column, model, limits=limits)
    return LLMTextGenerator(column, model, limits=limits)
