"""What generators that call models share: prompt templates, requests, structured answers.

A model-calling generator is a model-bound, asynchronous *cell* generator: the scheduler hands
its task from the submission limiter to the LLM-wait limiter, then the generator renders its
prompts from the row, calls its model alias (``ctx.models[alias]``) and turns the answer into
the cell's value. A :class:`~gridloom.errors.ModelError` from the call propagates; the
scheduler decides what a failure means for the row. An answer that fails the column's checks
(its ``validate_with`` validators; a structured answer's parse and schema check) is sent back
as a follow-up turn quoting the problems, up to ``max_correction_attempts`` times
(:meth:`ModelColumnGenerator.answer`); each cell's rounds go to the generator's
:class:`~._corrections.CorrectionLog`. Inference parameters given as distributions are drawn
once per cell (:mod:`._inference`) and sent with each of its requests.
:class:`ModelColumnGenerator` is the base of the ``llm_*`` kinds' generators
(:mod:`gridloom.kinds`) and of a plugin's own; :class:`LLMStructuredGenerator` adds JSON,
YAML or XML answers valid against a schema, with correction rounds (the formats:
:mod:`._structured_formats`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..clients._types import (
    ANTHROPIC_DEFAULT_MAX_TOKENS,
    CONTEXT_FULL_REASONS,
    ChatRequest,
    ChatResponse,
    Message,
    ResponseFormat,
)
from ..config import LLMColumn, ModelConfig
from ..config._llm import INFERENCE_SUFFIX, REASONING_SUFFIX
from ..errors import (
    AnswerTruncated,
    GenerationError,
    InvalidOutput,
    TemplateLimitExceeded,
    ValidationFailed,
)
from ._corrections import REJECTED, TRUNCATED_REASONS, AnswerCheck, CorrectionLog, TruncationLog
from ._dtypes import arrow_type
from ._inference import InferencePlan, Params, trace_drawn
from ._jinja import CompiledTemplate, TemplateLimits, compile_template
from ._json_arrow import JsonArrowError, storage_for_schema
from ._structured_formats import AnswerFormat, Format, validation_correction
from ._think import split_think
from .base import CellContext, ColumnGenerator, DeferredOutputs

if TYPE_CHECKING:
    import pyarrow as pa


def string_type() -> pa.DataType:
    """Arrow's string type (imports pyarrow when first called)."""
    return arrow_type("string")


class _FieldMetadata(Mapping[str, Mapping[bytes, bytes]]):
    """``{column: metadata}`` (empty when the metadata is), the metadata read when first
    asked for."""

    def __init__(self, column: str, metadata: Callable[[], Mapping[bytes, bytes]]):
        self._column = column
        self._metadata = metadata

    def _items(self) -> dict[str, Mapping[bytes, bytes]]:
        metadata = self._metadata()
        return {self._column: metadata} if metadata else {}

    def __getitem__(self, column: str) -> Mapping[bytes, bytes]:
        return self._items()[column]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


__all__ = [
    "FENCE",
    "JINJA_SYNTAX",
    "RAW_SUFFIX",
    "LLMStructuredGenerator",
    "ModelColumnGenerator",
    "compile_field",
    "cut_remedy",
    "cut_words",
    "parse_json_answer",
    "render",
    "think_moved",
]

#: A fenced block of a model's answer: its language tag, then its content.
FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[ \t]*\n(.*?)```", re.DOTALL)
#: Where Jinja syntax starts: text without it renders as itself.
JINJA_SYNTAX = re.compile(r"\{[{%#]")
#: Suffix of a structured column's side column holding the answer's raw text.
RAW_SUFFIX = "__raw"


def compile_field(
    column: str, field: str, source: str, limits: TemplateLimits | None = None
) -> CompiledTemplate:
    """The compiled template of ``column``'s ``field`` (errors name both)."""
    return compile_template(source, column=column, field=field, limits=limits)


def render(column: str, template: CompiledTemplate, row: Mapping[str, Any]) -> str:
    """``template`` rendered over ``row`` and stripped; a failure fails the cell naming the
    column (a render over the template limits stays a ``TemplateLimitExceeded``)."""
    try:
        return template.render(row).strip()
    except TemplateLimitExceeded:
        raise
    except Exception as exc:
        raise GenerationError(
            f"column {column!r}: template failed to render: {type(exc).__name__}: {exc}"
        ) from exc


class ModelColumnGenerator(ColumnGenerator[CellContext]):
    """The base of generators for :class:`~gridloom.config.LLMColumn` kinds: prompt
    templates (rendered inline when simple, else in a thread), the request from the column's
    and its model's settings (inference parameters drawn per cell where they are
    distributions, :attr:`inference`), the call through the run's model handle, and the
    reasoning and inference side columns. A subclass implements ``agenerate``: typically
    ``value, response = await self.answer(ctx, await self.render_messages(ctx.row))`` then
    ``self.result(value, response)``; it turns an answer's text into its value in
    :meth:`accept`.

    Args:
        config: the column.
        model: its model alias's configuration.
        value_type: the Arrow type of the column's value.
        limits: what one render of its templates may use.
    """

    granularity = "cell"
    model_bound = True
    inline = False
    #: The checks every answer value must pass (:meth:`check_answers`).
    checks: tuple[AnswerCheck, ...] = ()
    #: How many follow-up turns a cell may send for correction.
    max_corrections = 0
    #: The rounds each cell took, when the column's answers are checked (else ``None``).
    corrections: CorrectionLog | None = None

    def __init__(
        self,
        config: LLMColumn,
        model: ModelConfig,
        value_type: pa.DataType | Callable[[], pa.DataType],
        limits: TemplateLimits | None = None,
    ):
        #: The inference parameters the column sends, and those it draws per cell.
        self.inference = InferencePlan(config, model)
        #: The cell's drawn parameters go to ``<name>__inference`` (the column or its model
        #: sets a distribution: see ``LLMColumn.output_names``).
        self.records_inference = bool(self.inference.distributions)
        # The Arrow types are built when first read, not here: compiling the pipeline and
        # sending the first request need no pyarrow (see DeferredOutputs).
        value_of = value_type if callable(value_type) else lambda: value_type
        types: dict[str, Callable[[], pa.DataType]] = {config.name: value_of}
        if config.with_reasoning:
            types[config.name + REASONING_SUFFIX] = string_type
        if self.records_inference:
            types[config.name + INFERENCE_SUFFIX] = self.inference.arrow_type
        super().__init__(
            name=config.name,
            outputs=DeferredOutputs(
                tuple(types), lambda: {name: type_of() for name, type_of in types.items()}
            ),
        )
        self.config = config
        self.model_config = model
        #: The cells whose kept answer was cut at ``max_tokens`` (counted per row group).
        self.truncations = TruncationLog()
        self.model_lane = (model.alias, model.max_parallel_requests)
        self.limits = limits
        self._prompt = compile_field(config.name, f"{config.kind}.prompt", config.prompt, limits)
        self._system = (
            compile_field(config.name, f"{config.kind}.system_prompt", config.system_prompt, limits)
            if config.system_prompt is not None
            else None
        )
        #: Every template is simple: prompts render on the event loop (else in a thread).
        self.render_inline = self._prompt.simple and (self._system is None or self._system.simple)

    def check_answers(self, checks: Sequence[AnswerCheck], max_corrections: int) -> None:
        """Check every answer value with ``checks`` (the column's ``validate_with``), sending a
        rejected answer back up to ``max_corrections`` times."""
        self.checks = tuple(checks)
        self.max_corrections = max_corrections
        if self.checks or self.corrections is not None:
            self.corrections = CorrectionLog(max_corrections)

    async def accept(self, text: str) -> Any:
        """The value of an answer's ``text`` (here: the text stripped).

        Raises:
            ValueError: the text is not usable (a short, model-readable reason, sent back
                for correction).
        """
        return text.strip()

    async def answer(
        self,
        ctx: CellContext,
        messages: list[Message],
        response_format: ResponseFormat | None = None,
    ) -> tuple[Any, ChatResponse]:
        """The accepted value of the model's answer to ``messages``, and that response.

        An answer :meth:`accept` refuses, or whose value one of :attr:`checks` rejects, is sent
        back: the conversation so far, the answer as the assistant's turn, and a user turn
        quoting the problems (one more request through the model handle, throttled like any).
        After :attr:`max_corrections` follow-ups the cell fails: :class:`InvalidOutput` when
        the last answer was unusable, :class:`ValidationFailed` when validators rejected it.

        Every request of the cell is sent with the inference parameters the cell drew
        (:meth:`draw_inference`); the response returned carries them (``inference``).
        A ``<think>…</think>`` block leading an answer's text (:func:`._think.split_think`)
        is moved to the response's reasoning (stored with ``with_reasoning``) when the
        provider sent none apart; the value is made from the rest.
        """
        problems: list[str] = []
        unusable = False
        drawn = self.draw_inference(ctx)
        for attempt in range(self.max_corrections + 1):
            request = self.request(messages, response_format, drawn)
            response = think_moved(await self.call(ctx, request))
            if drawn:
                response = attrs.evolve(response, inference=drawn)
            cut = response.finish_reason in TRUNCATED_REASONS
            if cut:
                self.refuse_truncated(ctx, request, response)
            try:
                value = await self.accept(response.text)
            except ValueError as exc:
                reason = str(exc)
                if cut:  # a cut answer rarely parses: say why it broke off
                    reason += (
                        f" ({cut_words(request, response)}: finish_reason {response.finish_reason})"
                    )
                unusable, problems = True, [reason]
                follow_up = self.correction_text(str(exc))
            else:
                unusable, problems = False, await self._run_checks(value, ctx)
                if not problems:
                    if self.corrections is not None:
                        self.corrections.record(ctx.row_id, attempt)
                    self.truncations.record(ctx.row_id, cut)
                    return value, response
                follow_up = validation_correction(problems)
            messages = [
                *messages,
                Message(role="assistant", content=response.text),
                Message(role="user", content=follow_up),
            ]
        if self.corrections is not None:
            self.corrections.record(ctx.row_id, REJECTED)
        shown = "; ".join(problems[:5])
        if unusable:
            hint = f"; {cut_remedy(response)}" if cut else ""
            raise InvalidOutput(
                f"column {self.name!r}: no valid answer after {self.max_corrections} correction"
                f" attempt(s); last problem: {shown}{hint}"
            )
        raise ValidationFailed(
            f"column {self.name!r}: the validators still rejected the answer after"
            f" {self.max_corrections} correction attempt(s): {shown}"
        )

    def refuse_truncated(
        self, ctx: CellContext, request: ChatRequest, response: ChatResponse
    ) -> None:
        """Fail the cell of an answer cut at ``max_tokens`` unless the column keeps such
        answers (``on_truncated``): :class:`AnswerTruncated`, final with ``drop``, one that
        may pass with ``retry`` (counted in :attr:`truncations`)."""
        policy = getattr(self.config, "on_truncated", "keep")
        if policy == "keep":
            return
        retry = policy == "retry"
        if retry:
            self.truncations.asked_again(ctx.row_id)
        again = ", on_truncated: retry" if retry else ""
        raise AnswerTruncated(
            f"column {self.name!r}: {cut_words(request, response)}{again};"
            f" {cut_remedy(response)} or set on_truncated: keep",
            max_tokens=request.max_tokens,
            retryable=retry,
        )

    def draw_inference(self, ctx: CellContext) -> dict[str, float | int]:
        """The inference parameters this cell draws from its distributions (the same on
        every attempt of the cell), also put on the cell's trace span when tracing."""
        drawn = self.inference.draw(ctx.seed, ctx.row_id)
        trace_drawn(drawn)
        return drawn

    def correction_text(self, reason: str) -> str:
        """The follow-up turn for an answer :meth:`accept` refused (``reason``)."""
        return f"That answer is not usable: {reason}. Reply again with a corrected answer."

    async def _run_checks(self, value: Any, ctx: CellContext) -> list[str]:
        problems: list[str] = []
        for check in self.checks:
            problems += await check(value, ctx)
        return problems

    def system_text(self, row: Mapping[str, Any]) -> str | None:
        """The rendered system prompt (subclasses add their instructions)."""
        return render(self.name, self._system, row) if self._system is not None else None

    async def render_messages(self, row: Mapping[str, Any]) -> list[Message]:
        """:meth:`messages`, rendered on the event loop when every template of the column is
        simple, else in a worker thread (abandoned if the cell is cancelled; the render's CPU
        budget ends it soon after)."""
        if self.render_inline:
            return self.messages(row)
        return await trio.to_thread.run_sync(self.messages, row, abandon_on_cancel=True)

    def messages(self, row: Mapping[str, Any]) -> list[Message]:
        system = self.system_text(row)
        user = render(self.name, self._prompt, row)
        out = [Message(role="system", content=system)] if system else []
        out.append(Message(role="user", content=user))
        return out

    def request(
        self,
        messages: list[Message],
        response_format: ResponseFormat | None = None,
        drawn: Params | None = None,
    ) -> ChatRequest:
        """The request for ``messages``; ``drawn``: the cell's drawn inference parameters
        (:meth:`draw_inference`), needed when the column or its model has distributions."""
        cfg, model, plan = self.config, self.model_config, self.inference
        drawn = drawn or {}
        max_tokens = plan.value("max_tokens", drawn)
        return ChatRequest(
            model=model.model,
            messages=messages,
            temperature=plan.value("temperature", drawn),
            top_p=plan.value("top_p", drawn),
            max_tokens=None if max_tokens is None else int(max_tokens),
            timeout=cfg.timeout if cfg.timeout is not None else model.timeout,
            response_format=response_format,
            extra_body=dict(cfg.extra_body),
            max_tokens_param=model.max_tokens_param,
        )

    async def call(self, ctx: CellContext, request: ChatRequest) -> ChatResponse:
        handle = ctx.models.get(self.config.model)
        if handle is None:
            raise GenerationError(f"column {self.name!r}: model {self.config.model!r} is not open")
        # Asking again for a whole answer: a cut one is not taken from the cache, nor kept.
        whole = {"whole_only": True} if self.config.on_truncated == "retry" else {}
        response: ChatResponse = await handle.chat(
            request, cache=getattr(self.config, "cache", None), cell=ctx.cell_key, **whole
        )
        return response

    def result(self, value: Any, response: ChatResponse) -> Any:
        """The cell's result: ``value``, with the side columns the column has (reasoning,
        drawn inference parameters) as a mapping by output column."""
        extra: dict[str, Any] = {}
        if self.config.with_reasoning:
            extra[self.name + REASONING_SUFFIX] = response.reasoning
        if self.records_inference:
            extra[self.name + INFERENCE_SUFFIX] = dict(response.inference)
        if not extra:
            return value
        return {self.name: value, **extra}


def cut_words(request: ChatRequest, response: ChatResponse) -> str:
    """How an answer to ``request`` was cut: by a full context window, at its ``max_tokens``
    (for Anthropic with none set, at the default its client sends), else (none sent) at the
    server's own limit, with the tokens it spent."""
    if response.finish_reason in CONTEXT_FULL_REASONS:
        return (
            f"answer cut when the context window was full ({response.usage.output_tokens} tokens)"
        )
    if request.max_tokens is not None:
        return f"answer cut at max_tokens ({request.max_tokens} tokens)"
    if response.finish_reason == "max_tokens":  # Anthropic's: its client sent its default
        return (
            f"answer cut at max_tokens ({ANTHROPIC_DEFAULT_MAX_TOKENS} tokens, the Anthropic"
            " client's default when the column sets none)"
        )
    return (
        "answer cut at the server's output limit"
        f" ({response.usage.output_tokens} tokens; no max_tokens sent)"
    )


def cut_remedy(response: ChatResponse) -> str:
    """What gives whole answers where ``response`` was cut short."""
    if response.finish_reason in CONTEXT_FULL_REASONS:
        return "shorten the prompt"
    return "raise max_tokens"


def think_moved(response: ChatResponse) -> ChatResponse:
    """``response`` with a ``<think>`` block leading its text (a reasoning model served without
    a reasoning parser) moved to its reasoning, unless the provider sent reasoning apart."""
    text, thoughts = split_think(response.text)
    if thoughts is None:
        return response
    return attrs.evolve(response, text=text, reasoning=response.reasoning or thoughts or None)


def parse_json_answer(text: str, check: Callable[[Any], None]) -> Any:
    """Parse a model's JSON answer (a fenced ```json block or bare JSON) and validate it.

    Raises:
        ValueError: with a short, model-readable reason.
    """
    stripped = text.strip()
    blocks = FENCE.findall(stripped)
    candidate = str(blocks[0][1]) if blocks else stripped
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"the answer is not valid JSON ({exc.msg} at position {exc.pos})"
        ) from None
    check(value)
    return value


class LLMStructuredGenerator(ModelColumnGenerator):
    """``llm_structured``: an answer in JSON, YAML or XML, valid against the column's schema,
    with correction rounds.

    The cell's value is the parsed object (so templates can index into it); it is stored as
    the Arrow type its schema derives (:mod:`._json_arrow`), else as JSON text. With
    ``keep_raw``, the answer's text as the model wrote it (the accepted one) goes to the side
    column ``<name>__raw``.
    """

    def __init__(
        self,
        config: LLMColumn,
        model: ModelConfig,
        *,
        schema: Mapping[str, Any] | None,
        max_corrections: int,
        limits: TemplateLimits | None = None,
        answer_format: Format = "json",
        xsd: str | None = None,
        keep_raw: bool = False,
    ):
        # Stored natively when the schema pins the value's type down, else as marked JSON
        # text; a subclass keeping a part of the answer gets a plain string column.
        whole = type(self).answer_value is LLMStructuredGenerator.answer_value
        # Derived on first use (the types when the schema is built, the encoder at the first
        # answer): compiling the pipeline and sending the first request need no pyarrow.
        given = dict(schema) if whole and schema is not None else None
        storage = functools.cache(lambda: storage_for_schema(given, config.name, whole))
        super().__init__(config, model, lambda: storage()[0], limits)
        self.schema = dict(schema) if schema is not None else None
        self.max_corrections = max_corrections
        # The format and schema check always runs: its rounds are counted too.
        self.corrections = CorrectionLog(max_corrections)
        self.encoders = {config.name: lambda value: storage()[1](value)}
        self.field_metadata = _FieldMetadata(config.name, lambda: storage()[2])
        self.format = AnswerFormat(answer_format, schema, xsd)
        self.keep_raw = keep_raw
        if keep_raw:
            self.add_output(config.name + RAW_SUFFIX, string_type)

    def answer_value(self, answer: Any) -> Any:
        """The cell's value for a valid answer (parsed JSON): the answer itself, checked
        against its stored type. A misfit the schema allows (an integer beyond 64 bits) is an
        unusable answer: :class:`ValueError` naming the field, sent back to the model like a
        schema error, and after the correction attempts the cell fails with
        :class:`~gridloom.errors.InvalidOutput`. A subclass may keep a part of it: its column
        is then a string column holding JSON text, unmarked (set ``outputs``, ``encoders``
        and ``field_metadata`` to match)."""
        try:
            self.encoders[self.name](answer)
        except JsonArrowError as exc:
            raise ValueError(str(exc)) from None
        return answer

    def enforced(self) -> bool:
        """Whether the provider enforces the schema (JSON with ``json_schema_mode``)."""
        return self.format.fmt == "json" and self.model_config.json_schema_mode

    def messages(self, row: Mapping[str, Any]) -> list[Message]:
        messages = super().messages(row)
        instruction = self.format.instruction(self.enforced())
        if instruction is None:
            return messages
        last = messages[-1]
        return [*messages[:-1], Message(role="user", content=f"{last.content}\n\n{instruction}")]

    def response_format(self) -> ResponseFormat | None:
        if not self.enforced() or self.schema is None:
            return None
        return ResponseFormat(name=re.sub(r"\W", "_", self.name)[:64], schema=self.schema)

    async def accept(self, text: str) -> Any:
        """The cell's value of the answer ``text``: parsed, schema-checked, then
        :meth:`answer_value` (what ``validate_with`` validators see)."""
        return self.answer_value(await self.parse(text))

    def correction_text(self, reason: str) -> str:
        return self.format.correction(reason)

    async def parse(self, text: str) -> Any:
        """The value of the answer ``text`` (see :class:`AnswerFormat`), parsed in a worker
        thread unless it is short enough for the format (:attr:`AnswerFormat.inline`).

        Raises:
            ValueError: with a short, model-readable reason.
        """
        if len(text) <= self.format.inline:
            return self.format.parse(text)
        return await trio.to_thread.run_sync(self.format.parse, text, abandon_on_cancel=True)

    async def agenerate(self, ctx: CellContext) -> Any:
        messages = await self.render_messages(ctx.row)
        value, response = await self.answer(ctx, messages, self.response_format())
        out = self.result(value, response)
        if not self.keep_raw:
            return out
        if not self.config.with_reasoning and not self.records_inference:
            out = {self.name: out}
        return {**out, self.name + RAW_SUFFIX: response.text}
