"""``llm_agent``: a multi-turn trajectory in which a model calls tools until it answers."""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs
import pyarrow as pa
import trio

from .._attrs import frozen
from ..clients._post import utf8_clean
from ..clients._types import ChatResponse, Message, ToolCall, ToolSpec
from ..config._kind import ColumnKind
from ..config._llm import LLMColumn
from ..config._models import ModelConfig
from ..config._tools import McpTool, PythonTool, SearchTool, ToolConfig, check_tool_name
from ..config._validators import int64, positive, to_tuple
from ..errors import ConfigError, GenerationError, ValidationFailed
from ..generators._corrections import TRUNCATED_REASONS
from ..generators._factory import BuildContext
from ..generators._jinja import TemplateLimits
from ..generators._structured_formats import validation_correction
from ..generators.base import CellContext
from ..generators.custom import resolve_function
from ..generators.llm import ModelColumnGenerator, think_moved
from ..tools import Toolbox, ToolSource
from ..tools._base import argument_validator
from ..tools._python import FunctionSource, FunctionTool, function_spec
from ..tools._search import SearchSource

__all__ = [
    "KIND",
    "MESSAGE_TYPE",
    "LLMAgentColumn",
    "LLMAgentGenerator",
    "TrajectoryIncomplete",
]

#: One tool call in a stored trajectory (OpenAI's format).
TOOL_CALL_TYPE = pa.struct(
    [
        pa.field("id", pa.string()),
        pa.field("type", pa.string()),
        pa.field(
            "function",
            pa.struct([pa.field("name", pa.string()), pa.field("arguments", pa.string())]),
        ),
    ]
)
#: One message of a stored trajectory (OpenAI's chat format).
MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        pa.field("tool_calls", pa.list_(TOOL_CALL_TYPE)),
        pa.field("tool_call_id", pa.string()),
        pa.field("name", pa.string()),
    ]
)
#: The side columns an agent column adds, after its trajectory, and their types.
SIDE_COLUMNS: dict[str, pa.DataType] = {
    "__answer": pa.string(),
    "__turns": pa.int64(),
    "__tool_calls": pa.int64(),
    "__end": pa.string(),
}
#: Tool calls one turn may make; more are answered with an error result.
MAX_CALLS_PER_TURN = 32


class TrajectoryIncomplete(GenerationError):
    """A trajectory ended without an answer: it reached ``max_turns``, or looped (the same
    tool call repeated); its row is dropped unless ``on_incomplete: keep``."""


@frozen(kw_only=True)
class LLMAgentColumn(LLMColumn):
    """A multi-turn trajectory: the model answers the prompt calling tools, turn after turn.

    Each turn is one request through the model's throttle (retries and traces as any model
    cell) offering the tools; the tool calls of one answer run concurrently (at most
    ``max_concurrent_tool_calls`` of the column at once) and their results go back as tool
    messages. The trajectory ends with an answer that calls no tool, with a call of
    ``final_tool``, or — without an answer — at ``max_turns`` or when the model repeats the
    same call (``max_repeated_calls``). A tool's error, an unknown tool or arguments that do
    not match the tool's schema go back to the model as the tool's result; they never fail
    the run. For example:

        - name: traj
          llm_agent:
            model: m
            prompt: "Answer with the tools: {{ question }}"
            tools:
              - {python: "mytools:lookup"}
              - {mcp: {command: [python, server.py]}}
              - {search: {seed: corpus.parquet, field: text}}
            max_turns: 6

    The column holds the trajectory, a list of chat messages in OpenAI's format (``role``,
    ``content``, ``tool_calls`` of ``{id, type, function: {name, arguments}}``,
    ``tool_call_id``, ``name``), stored as native Arrow lists and structs; beside it
    ``<name>__answer`` (the final answer), ``<name>__turns`` (model requests),
    ``<name>__tool_calls`` and ``<name>__end`` (``answer``, ``final_tool``, ``max_turns`` or
    ``loop``). ``validate_with`` checks the final answer (a rejected one is sent back as a
    user turn, within ``max_turns``). A ``<think>`` block leading a turn's content is moved
    to its reasoning (the last turn's is kept ``with_reasoning``), as ``llm_text`` does. A
    trajectory with a turn cut at ``max_tokens`` counts once in the column's ``truncated``;
    ``on_truncated`` applies to the turn giving the final answer.

    Attributes:
        tools: where the tools come from: ``{python: "module:function"}``,
            ``{mcp: {command: [...]}}`` / ``{mcp: {url: ...}}``, ``{search: {seed, field}}``.
        max_turns: the most model requests one trajectory makes (1 to 100).
        final_tool: the name of a tool gridloom adds, taking ``{answer: string}``: calling it
            ends the trajectory with that answer.
        on_incomplete: ``drop`` (the row, with the reason) or ``keep`` a trajectory that
            ended without an answer (its ``__answer`` is null).
        max_concurrent_tool_calls: the column's tool calls running at once, over all cells.
        tool_timeout: seconds one tool call may take before the model is told it timed out.
        max_repeated_calls: how often the same call (tool and arguments) may be made in one
            trajectory; one more ends it as a ``loop``.
        tool_choice: ``auto`` (the model decides) or ``required`` (each turn must call a
            tool: use with ``final_tool``).
    """

    kind: ClassVar[str] = "llm_agent"
    tools: tuple[ToolConfig, ...] = attrs.field(
        converter=to_tuple,
        validator=attrs.validators.deep_iterable(attrs.validators.instance_of(ToolConfig)),
    )
    max_turns: int = attrs.field(
        default=8, validator=[int64, attrs.validators.ge(1), attrs.validators.le(100)]
    )
    final_tool: str | None = attrs.field(default=None)
    on_incomplete: Literal["drop", "keep"] = "drop"
    max_concurrent_tool_calls: int = attrs.field(
        default=8, validator=[int64, attrs.validators.ge(1), attrs.validators.le(1024)]
    )
    tool_timeout: float = attrs.field(default=60.0, validator=positive)
    max_repeated_calls: int = attrs.field(
        default=3, validator=[int64, attrs.validators.ge(1), attrs.validators.le(100)]
    )
    tool_choice: Literal["auto", "required"] = "auto"

    @tools.validator
    def _check_tools(self, _attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
        if not value:
            raise ValueError("an agent needs at least one tool")

    @final_tool.validator
    def _check_final_tool(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is not None:
            check_tool_name(value)
        elif self.tool_choice == "required":
            raise ValueError("tool_choice: required needs a final_tool to end the trajectory")

    def output_names(self, models: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        return (*super().output_names(models), *(self.name + s for s in SIDE_COLUMNS))


class LLMAgentGenerator(ModelColumnGenerator):
    """Runs one trajectory per cell (see :class:`LLMAgentColumn`).

    Attributes:
        tool_sources: the column's tool sources; the run opens them (once per distinct
            source) and hands the cells their :class:`~gridloom.tools.Toolbox`.
    """

    def __init__(
        self,
        config: LLMAgentColumn,
        model: ModelConfig,
        sources: Sequence[ToolSource],
        *,
        limits: TemplateLimits | None = None,
    ):
        super().__init__(config, model, pa.list_(MESSAGE_TYPE), limits)
        for suffix, kind in SIDE_COLUMNS.items():
            self.outputs[config.name + suffix] = kind
        self.agent = config
        self.tool_sources = tuple(sources)

    def toolbox(self, tools: Sequence[Any]) -> Toolbox:
        """The column's toolbox over the opened ``tools`` (plus its ``final_tool``).

        Raises:
            ValueError: two tools have one name, or one is named as the ``final_tool`` (an
                MCP server's tools are known only now).
        """
        final = self.agent.final_tool
        if any(tool.spec.name == final for tool in tools):
            raise ValueError(f"two tools are named {final!r} (the final_tool and a tool)")
        return Toolbox(
            tools,
            max_concurrent_calls=self.agent.max_concurrent_tool_calls,
            call_timeout=self.agent.tool_timeout,
        )

    def _specs(self, toolbox: Toolbox) -> tuple[ToolSpec, ...]:
        specs = toolbox.specs
        final = self.agent.final_tool
        if final is not None:
            specs += (
                ToolSpec(
                    name=final,
                    description="Give the final answer; this ends the task.",
                    parameters={
                        "type": "object",
                        "properties": {"answer": {"type": "string"}},
                        "required": ["answer"],
                    },
                ),
            )
        return specs

    async def agenerate(self, ctx: CellContext) -> Any:
        toolbox = ctx.tools
        if toolbox is None or toolbox.failure is not None:
            why = "the run opened no tools for it" if toolbox is None else toolbox.failure
            raise GenerationError(f"column {self.name!r}: its tools are unavailable: {why}")
        agent = self.agent
        specs = self._specs(toolbox)
        drawn = self.draw_inference(ctx)
        messages = await self.render_messages(ctx.row)
        seen: collections.Counter[tuple[str, str]] = collections.Counter()
        turns = calls = corrections = 0
        answer: str | None = None
        end = "max_turns"
        response = ChatResponse(text="")
        cut_turns = 0
        while turns < agent.max_turns:
            request = attrs.evolve(
                self.request(messages, None, drawn), tools=specs, tool_choice=agent.tool_choice
            )
            # A leading <think> block is reasoning, as for llm_text: not part of the turn.
            response = think_moved(await self.call(ctx, request))
            if drawn:
                response = attrs.evolve(response, inference=drawn)
            turns += 1
            messages.append(
                Message(role="assistant", content=response.text, tool_calls=response.tool_calls)
            )
            final = next((c for c in response.tool_calls if c.name == agent.final_tool), None)
            if response.finish_reason in TRUNCATED_REASONS:
                cut_turns += 1
                if not response.tool_calls or final is not None:
                    self.refuse_truncated(ctx, request, response)  # the final answer's
            if not response.tool_calls or final is not None:
                text = _final_answer(final) if final is not None else response.text.strip()
                problems = await self._run_checks(text, ctx) if self.checks else []
                if problems and corrections < self.max_corrections and turns < agent.max_turns:
                    corrections += 1
                    messages.append(Message(role="user", content=validation_correction(problems)))
                    continue
                if problems:
                    raise ValidationFailed(
                        f"column {self.name!r}: the validators rejected the final answer:"
                        f" {'; '.join(problems[:5])}"
                    )
                answer, end = text, "final_tool" if final is not None else "answer"
                break
            # A call repeated across turns (not parallel copies within one) is a loop.
            seen.update({(c.name, c.arguments) for c in response.tool_calls})
            if any(count > agent.max_repeated_calls for count in seen.values()):
                end = "loop"
                break
            results = await self._run_tools(toolbox, response.tool_calls)
            calls += len(response.tool_calls)
            messages.extend(results)
        if answer is None and agent.on_incomplete == "drop":
            what = (
                f"reached max_turns ({agent.max_turns}) without an answer"
                if end == "max_turns"
                else f"repeated a tool call more than {agent.max_repeated_calls} times"
            )
            raise TrajectoryIncomplete(f"column {self.name!r}: the trajectory {what}")
        # The cell counts once among the column's truncated however many turns were cut.
        self.truncations.record(ctx.row_id, cut_turns > 0)
        out = self.result(_trajectory(messages), response)
        values = out if isinstance(out, dict) else {self.name: out}
        values.update(
            {
                self.name + "__answer": answer,
                self.name + "__turns": turns,
                self.name + "__tool_calls": calls,
                self.name + "__end": end,
            }
        )
        return values

    async def _run_tools(self, toolbox: Toolbox, calls: Sequence[ToolCall]) -> list[Message]:
        """The tool messages answering ``calls``, run concurrently, in the calls' order."""
        results: list[Message | None] = [None] * len(calls)

        async def run(index: int, call: ToolCall) -> None:
            if index >= MAX_CALLS_PER_TURN:
                text = f"error: more than {MAX_CALLS_PER_TURN} tool calls in one turn"
            else:
                text, _ok = await toolbox.call(call)
            results[index] = Message(
                role="tool", content=text, tool_call_id=call.id, name=call.name
            )

        async with trio.open_nursery() as nursery:
            for index, call in enumerate(calls):
                nursery.start_soon(run, index, call)
        return [message for message in results if message is not None]


def _final_answer(call: ToolCall) -> str:
    """The ``answer`` argument of a ``final_tool`` call (its raw arguments if it has none)."""
    try:
        value = json.loads(call.arguments or "{}")
    except (ValueError, RecursionError):
        return call.arguments
    if isinstance(value, dict) and isinstance(value.get("answer"), str):
        # A "\\ud800" escape decodes to a lone surrogate, which could not be stored.
        return str(utf8_clean(value["answer"]))
    return call.arguments


def _trajectory(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """``messages`` as stored: OpenAI's chat format, every field present."""
    return [
        {
            "role": m.role,
            "content": m.content,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in m.tool_calls
            ],
            "tool_call_id": m.tool_call_id,
            "name": m.name,
        }
        for m in messages
    ]


# --------------------------------------------------------------------------- building


def _sources(column: LLMAgentColumn, base_dir: Path | None) -> list[ToolSource]:
    sources: list[ToolSource] = []
    names: dict[str, str] = {}
    for index, tool in enumerate(column.tools):
        field = f"llm_agent.tools[{index}].{tool.kind}"
        source = _source(column, tool, field, base_dir)
        for name in _known_names(source):
            if name in names or name == column.final_tool:
                other = names.get(name, "final_tool")
                raise ConfigError(
                    f"two tools are named {name!r} ({other} and this one)",
                    column=column.name,
                    field=field,
                )
            names[name] = field
        sources.append(source)
    return sources


def _known_names(source: ToolSource) -> list[str]:
    """The tool names a source is known to give before it is opened."""
    if isinstance(source, FunctionSource):
        return [source.tool.spec.name]
    if isinstance(source, SearchSource):
        return [source.name, f"{source.name}_read"]
    return []


def _source(
    column: LLMAgentColumn, tool: ToolConfig, field: str, base_dir: Path | None
) -> ToolSource:
    """The tool source a ``tools`` entry names (``field`` locates it in messages)."""
    if isinstance(tool, PythonTool):
        return _python_source(column, tool, field, base_dir)
    if isinstance(tool, SearchTool):
        return _search_source(column, tool, field, base_dir)
    if isinstance(tool, McpTool):
        return _mcp_source(column, tool, field, base_dir)
    raise ConfigError(f"unknown tool kind {tool.kind!r}", column=column.name, field=field)


def _python_source(
    column: LLMAgentColumn, tool: PythonTool, field: str, base_dir: Path | None
) -> ToolSource:
    try:
        function = resolve_function(tool.function, column=column.name, search_path=base_dir)
    except ConfigError as exc:  # named by the tool's own field, as every other problem
        raise ConfigError(exc.message, column=column.name, field=field) from None
    except SystemExit as exc:  # the module calls sys.exit() on import
        raise ConfigError(
            f"importing {tool.function!r} called sys.exit({exc.code!r})",
            column=column.name,
            field=field,
        ) from None
    try:
        spec = function_spec(
            function, name=tool.name, description=tool.description, parameters=tool.parameters
        )
    except TypeError as exc:
        raise ConfigError(
            f"{exc}; give the tool's parameters (a JSON Schema) explicitly",
            column=column.name,
            field=field,
        ) from None
    try:
        check_tool_name(spec.name)
        argument_validator(spec)
    except ValueError as exc:
        raise ConfigError(str(exc), column=column.name, field=field) from None
    return FunctionSource(FunctionTool(function, spec))


def _search_source(
    column: LLMAgentColumn, tool: SearchTool, field: str, base_dir: Path | None
) -> ToolSource:
    path = Path(tool.seed).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(f"no file at {str(path)!r}", column=column.name, field=f"{field}.seed")
    return SearchSource(
        path,
        tool.field,
        id_field=tool.id_field,
        title_field=tool.title_field,
        name=tool.name,
        max_results=tool.max_results,
    )


def _mcp_source(
    column: LLMAgentColumn, tool: McpTool, field: str, base_dir: Path | None
) -> ToolSource:
    try:
        from ..tools._mcp import McpSource
    except ImportError as exc:
        raise ConfigError(
            f"MCP tools need the mcp package: pip install 'gridloom[mcp]' ({exc})",
            column=column.name,
            field=field,
        ) from None
    source: ToolSource = McpSource(tool, base_dir=base_dir)
    return source


def _build(column: LLMAgentColumn, ctx: BuildContext) -> LLMAgentGenerator:
    model = ctx.model_config(column, column.model)
    return LLMAgentGenerator(
        column, model, _sources(column, ctx.base_dir), limits=ctx.template_limits
    )


KIND = ColumnKind(config=LLMAgentColumn, build=_build, positional=("model", "prompt"))
