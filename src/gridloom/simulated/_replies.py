"""Deterministic answers: the same request always gets the same text.

What is asked decides the kind of answer, in this order:

0. tools the model must or may call → ``tool_calls_per_turn`` calls of them, each's
   arguments valid for its tool's schema (see :mod:`._tools` for which tools, and when
   ``auto`` answers text);
1. a JSON Schema through the API (``response_format`` / ``output_format``) → JSON valid for it;
2. a JSON Schema in the prompt (a fenced ```` ```json ```` block after the words "JSON Schema")
   → JSON valid for it, or YAML or XML holding such a value when a message says
   ``Answer format: YAML.`` or ``Answer format: XML.`` (see :mod:`._structured_text`; with
   the XML marker and an XSD in the prompt instead, XML valid for the XSD);
3. ``response_format: {type: json_object}`` → a JSON object;
4. a fence marker ```` ```<lang> ```` or the phrase "code block" in a system or user message →
   a fenced code block in that language (``python`` by default; Python code parses);
5. otherwise sentence-like text of about ``output_tokens`` words that mentions a few words of
   the last user message.

Every choice comes from a ``random.Random`` seeded by the request's digest (and, for the
second and later of ``n`` choices, by the choice's index).

An answer is bounded whatever is asked: text is at most :data:`MAX_ANSWER_TOKENS` words (and
reasoning half that), and JSON values are built within the limits of :mod:`._schema_values`
(one budget of work for all the choices of a request). A schema in the prompt that is beyond
them, or unsatisfiable, is passed over like no schema.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import math
import random
import re
from collections.abc import Sequence
from typing import Any, Literal

import attrs

from .._attrs import frozen
from ..config import SimulatedModel
from ._requests import GenerationRequest, PromptMessage, RequestError, count_tokens
from ._schema_values import (
    Budget,
    InvalidSchema,
    SchemaTally,
    SchemaTooLarge,
    UnsatisfiableSchema,
    check_schema,
    is_valid,
    value_for_schema,
)
from ._structured_text import (
    StructuredFormat,
    broken_text,
    format_from_prompt,
    structured_text,
    xml_from_xsd,
    xsd_from_prompt,
)
from ._thinking import reasoning_length
from ._tools import Tool, choose_tools

__all__ = [
    "MAX_ANSWER_TOKENS",
    "Reply",
    "ToolCall",
    "build_reply",
    "code_language",
    "embedding_vector",
    "invalid_reply",
    "schema_from_prompt",
    "topic_words",
]

_VOCABULARY = tuple(
    """
    the a of and to in is it that for on with as this by from at an be are was or which
    model data record value sample pattern result detail example context signal measure
    shows suggests describes follows includes remains becomes reflects supports indicates
    often usually clearly mostly rarely typically notably broadly largely simply
    small large early recent common useful careful stable similar distinct general
    process change region period feature structure source method series level factor
    between across within around during after before under over through
    """.split()  # noqa: SIM905 - a word list reads better as text
)
_STOPWORDS = frozenset(
    """
    about above after again against also been before being below between both could does
    doing down during each from further have having here into itself just more most once
    only other over same should some such than that their them then there these they this
    those through under until very what when where which while with would your yours
    please write give make list return answer using based following tell explain describe
    generate create summarize short sentence sentences words paragraph brief
    """.split()  # noqa: SIM905
)
_WORD = re.compile(r"[^\W\d_][\w'-]{3,}")
_FENCE = re.compile(r"```([A-Za-z][\w+#-]*(?:\.[\w+#-]+)*)")
_SCHEMA_WORDS = re.compile(r"json schema", re.IGNORECASE)
_JSON_FENCE = re.compile(r"```json", re.IGNORECASE)
_FORMAT_WORDS = "Answer format: "

#: Most words of a text answer (whatever ``output_tokens`` the model is configured with).
MAX_ANSWER_TOKENS = 32_768
#: Characters of the last user message searched for topic words.
_TOPIC_SCAN = 65_536


@frozen(kw_only=True)
class ToolCall:
    """A call of a tool, as an answer.

    Attributes:
        key: hex digits that make its id (``call_<key>`` for OpenAI, ``toolu_<key>`` for
            Anthropic).
        name: the tool called.
        arguments: its arguments, a JSON value valid for the tool's schema.
    """

    key: str
    name: str
    arguments: Any

    def arguments_json(self) -> str:
        """The arguments as JSON text (OpenAI's ``function.arguments``)."""
        return json.dumps(self.arguments, ensure_ascii=False)


@frozen(kw_only=True)
class Reply:
    """One answer.

    Attributes:
        text: the answer (message content; empty for a tool call).
        reasoning: reasoning text, when the model "reasons".
        kind: ``text``, ``code``, ``json``, ``yaml``, ``xml`` or ``tool``.
        tool_calls: the calls, when the answer is some (distinct keys).
        schema: the JSON Schema the answer follows, if any.
        value: the structured answer's value (for ``yaml`` and ``xml`` answers).
        truncated: the answer was cut at ``max_tokens``.
        input_tokens: words in the prompt.
        output_tokens: words in the answer plus words of reasoning.
        reasoning_tokens: words of reasoning.
    """

    text: str
    reasoning: str | None = None
    kind: Literal["text", "code", "json", "yaml", "xml", "tool"] = "text"
    tool_calls: tuple[ToolCall, ...] = ()
    schema: Any = None
    value: Any = None
    truncated: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def tool_call(self) -> ToolCall | None:
        """The first call, or ``None`` when the answer calls no tool."""
        return self.tool_calls[0] if self.tool_calls else None


def _rng(digest: bytes, salt: bytes = b"") -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(digest + salt).digest()[:8], "big"))


def topic_words(text: str, limit: int = 6) -> list[str]:
    """Distinct content words of ``text``, in order of appearance (lowercased), from its
    first :data:`_TOPIC_SCAN` characters."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(text, 0, _TOPIC_SCAN):
        word = match.group().strip("'-").lower()
        if len(word) >= 4 and word not in _STOPWORDS:
            seen.setdefault(word, None)
        if len(seen) >= limit:
            break
    return list(seen)


def schema_from_prompt(messages: Sequence[PromptMessage]) -> Any:
    """The JSON Schema in the first ```` ```json ```` block after "JSON Schema" in a system or
    user message that holds one, or ``None`` (one pass over each message)."""
    for message in messages:
        if message.role not in ("system", "user"):
            continue
        text = message.text
        words = _SCHEMA_WORDS.search(text)
        if words is None:
            continue
        position = words.end()
        while (fence := _JSON_FENCE.search(text, position)) is not None:
            start = text.find("\n", fence.end())
            end = text.find("```", start + 1) if start >= 0 else -1
            if end < 0:
                break
            try:
                schema = json.loads(text[start + 1 : end])
            except (ValueError, RecursionError):
                schema = None
            if isinstance(schema, dict | bool):
                return schema
            position = end + 3
    return None


def code_language(messages: Sequence[PromptMessage]) -> str | None:
    """The language asked for (from a ```` ```<lang> ```` marker), ``python`` when only
    "code block" is said, or ``None`` when no code is asked for."""
    asked = False
    for message in messages:
        if message.role not in ("system", "user"):
            continue
        fence = _FENCE.search(message.text)
        if fence is not None:
            return fence.group(1).lower()
        asked = asked or "code block" in message.text.lower()
    return "python" if asked else None


def build_reply(
    request: GenerationRequest,
    model: SimulatedModel,
    *,
    choice: int = 0,
    budget: Budget | None = None,
) -> Reply:
    """The answer to ``request`` from a model behaving like ``model``.

    Args:
        request: the request.
        model: how the model behaves.
        choice: which of the request's ``n`` choices (0 is the answer to ``n=1``).
        budget: the work left for building JSON values (share one among the choices of a
            request); a fresh one when not given.

    Raises:
        RequestError: the schema given through the API, or the called tool's, is not
            satisfiable (or not a valid schema), or asks for more than the limits.
    """
    budget = Budget() if budget is None else budget
    digest = request.digest()
    if choice:
        digest = hashlib.sha256(digest + f"choice {choice}".encode()).digest()
    rng = _rng(digest)
    facts = _facts(request)
    topics = facts.topics
    kind: Literal["text", "code", "json", "yaml", "xml", "tool"] = "text"
    schema: Any = None
    value: Any = None
    truncated = False
    called = choose_tools(
        request.tools,
        request.tool_choice,
        rounds=max(request.tool_rounds, int(request.after_tool_result)),
        turns=model.tool_turns,
        calls=model.tool_calls_per_turn,
        rng=rng,
    )
    calls: list[ToolCall] = []
    for index, tool in enumerate(called):  # each pick drawn just before its arguments
        calls.append(_tool_call(tool, index, digest, rng, topics, budget))
        schema = schema if index else tool.schema  # the first call's
    if calls:
        text, kind = "", "tool"
    elif request.schema is not None:
        try:
            check_schema(request.schema)
            text = _json_text(value_for_schema(request.schema, rng, words=topics, budget=budget))
        except (InvalidSchema, UnsatisfiableSchema) as exc:
            raise RequestError(f"invalid JSON Schema: {_first_line(exc)}", param="schema") from None
        kind, schema = "json", request.schema
    elif (prompted := _prompted_value(facts.prompt_schema, rng, topics, budget)) is not None:
        schema, value = facts.prompt_schema, prompted[0]
        if facts.answer_format is None:
            text, kind = _json_text(value), "json"
        else:
            text, kind = structured_text(value, facts.answer_format), facts.answer_format
    elif (
        facts.answer_format == "xml"
        and facts.xsd is not None
        and (document := xml_from_xsd(facts.xsd, rng, topics)) is not None
    ):
        text, kind = document, "xml"
    elif request.json_mode:
        text = _json_text({"answer": _sentences(rng, 8, topics)})
        kind = "json"
    elif facts.language is not None:
        text = _code_block(facts.language, rng, topics)
        kind = "code"
    else:
        wanted = min(
            max(1, round(model.output_tokens * rng.uniform(0.75, 1.25))), MAX_ANSWER_TOKENS
        )
        if request.max_tokens is not None and wanted > request.max_tokens:
            wanted, truncated = request.max_tokens, True
        text = _sentences(rng, wanted, topics)
    reasoning = None
    if (length := reasoning_length(request.thinking, model, request.max_tokens)) is not None:
        reasoning = _reasoning(_rng(digest, b"reasoning"), min(length, MAX_ANSWER_TOKENS), topics)
    reasoning_tokens = count_tokens(reasoning) if reasoning else 0
    answer_tokens = sum(count_tokens(call.arguments_json()) for call in calls)
    answer_tokens = answer_tokens if calls else count_tokens(text)
    return Reply(
        text=text,
        reasoning=reasoning,
        kind=kind,
        tool_calls=tuple(calls),
        schema=schema,
        value=value,
        truncated=truncated,
        input_tokens=request.input_tokens(),
        output_tokens=answer_tokens + reasoning_tokens,
        reasoning_tokens=reasoning_tokens,
    )


def _tool_call(
    tool: Tool,
    index: int,
    digest: bytes,
    rng: random.Random,
    topics: Sequence[str],
    budget: Budget,
) -> ToolCall:
    """Call ``index`` of an answer: of ``tool``, with arguments valid for its schema (its key
    from the request, the tool and the index, so the calls of an answer are distinct)."""
    try:
        arguments = value_for_schema(tool.schema, rng, words=topics, budget=budget)
    except UnsatisfiableSchema as exc:
        raise RequestError(
            f"the schema of tool {tool.name!r} is unsatisfiable: {_first_line(exc)}",
            param="tools",
        ) from None
    salt = tool.name if index == 0 else f"{tool.name}\x00{index}"
    key = hashlib.sha256(digest + salt.encode()).hexdigest()[:24]
    return ToolCall(key=key, name=tool.name, arguments=arguments)


def invalid_reply(reply: Reply, digest: bytes, *, budget: Budget | None = None) -> Reply:
    """A structured answer gone wrong: not JSON (YAML, XML), or a value that breaks the
    schema (checked within ``budget``, a fresh one when not given).

    Text, code and tool answers are returned unchanged.
    """
    if reply.kind in ("yaml", "xml"):
        return _invalid_structured(reply, digest, budget)
    if reply.kind != "json":
        return reply
    rng = _rng(digest, b"invalid")
    text = f"Here is the JSON you asked for: {reply.text[:-1]}"
    if reply.schema is not None and rng.random() < 0.5:
        value = json.loads(reply.text)
        for candidate in _violations(value, reply.schema):
            if not is_valid(candidate, reply.schema, budget=budget):
                text = _json_text(candidate)
                break
    reasoning_tokens = reply.reasoning_tokens
    return attrs.evolve(reply, text=text, output_tokens=count_tokens(text) + reasoning_tokens)


def _invalid_structured(reply: Reply, digest: bytes, budget: Budget | None) -> Reply:
    """:func:`invalid_reply` for a YAML or XML answer: half the time (when there is a JSON
    Schema and a value breaking it) that value, else text that does not parse."""
    fmt: StructuredFormat = "yaml" if reply.kind == "yaml" else "xml"
    rng = _rng(digest, b"invalid")
    text = broken_text(reply.text, fmt)
    if reply.schema is not None and rng.random() < 0.5:
        for candidate in _violations(reply.value, reply.schema):
            if fmt == "xml" and not _xml_faithful(candidate, reply.schema):
                continue
            if not is_valid(candidate, reply.schema, budget=budget):
                text = structured_text(candidate, fmt)
                break
    reasoning_tokens = reply.reasoning_tokens
    return attrs.evolve(reply, text=text, output_tokens=count_tokens(text) + reasoning_tokens)


def _xml_faithful(candidate: Any, schema: Any) -> bool:
    """Whether ``candidate`` reads back from XML as itself: an object missing a property that
    is not an array (a missing array property reads back as ``[]``)."""
    if not isinstance(candidate, dict) or not isinstance(schema, dict):
        return False
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    missing = [name for name in schema.get("required", []) if name not in candidate]
    return bool(missing) and all(
        not (isinstance(properties.get(n), dict) and properties[n].get("type") == "array")
        for n in missing
    )


def embedding_vector(model: str, text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on ``model`` and ``text``."""
    rng = _rng(json.dumps([model, text]).encode(), b"embedding")
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 6) for x in vector]


# --------------------------------------------------------------------- JSON


@frozen
class _Facts:
    """What the answers to a request draw on that does not depend on the choice."""

    topics: list[str]
    prompt_schema: Any
    language: str | None
    answer_format: StructuredFormat | None
    xsd: str | None


#: The facts of the last request asked about (its ``n`` choices are built one after another).
_LAST_FACTS: list[tuple[GenerationRequest, _Facts]] = []


def _facts(request: GenerationRequest) -> _Facts:
    """The facts of ``request``, worked out once for all its choices."""
    if _LAST_FACTS and _LAST_FACTS[0][0] is request:
        return _LAST_FACTS[0][1]
    last_user = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
    answer_format = format_from_prompt(request.messages)
    if answer_format is not None and (cut := last_user.find(_FORMAT_WORDS)) > 0:
        last_user = last_user[:cut]  # topics from the row's prompt, not the instruction
    facts = _Facts(
        topics=topic_words(last_user),
        prompt_schema=_checked(schema_from_prompt(request.messages)),
        language=code_language(request.messages),
        answer_format=answer_format,
        xsd=xsd_from_prompt(request.messages) if answer_format == "xml" else None,
    )
    _LAST_FACTS[:] = [(request, facts)]
    return facts


def _checked(schema: Any) -> Any:
    """``schema`` if it is one the simulated endpoint can answer for, else ``None``."""
    if schema is None:
        return None
    try:
        SchemaTally().add(schema)
        check_schema(schema)
    except (InvalidSchema, SchemaTooLarge):
        return None
    return schema


def _prompted_value(
    schema: Any, rng: random.Random, topics: Sequence[str], budget: Budget
) -> tuple[Any] | None:
    """A value (in a 1-tuple) for the (checked) schema in the prompt; ``None`` when there is
    none, or none can be built (unsatisfiable, over the limits)."""
    if schema is None:
        return None
    try:
        return (value_for_schema(schema, rng, words=topics, budget=budget),)
    except UnsatisfiableSchema:
        return None


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _violations(value: Any, schema: Any) -> list[Any]:
    candidates: list[Any] = []
    if isinstance(value, dict) and isinstance(schema, dict):
        for name in schema.get("required", []):
            candidates.append({k: v for k, v in value.items() if k != name})
        candidates.append([value])
    else:
        candidates.append({"value": value})
    candidates.append("not the requested structure")
    return candidates


# --------------------------------------------------------------------- text


def _sentences(rng: random.Random, words: int, topics: Sequence[str]) -> str:
    """Sentence-like text of exactly ``words`` words, mentioning some ``topics``."""
    chosen = rng.sample(list(topics), min(len(topics), 3)) if topics else []
    out: list[str] = []
    remaining = words
    while remaining > 0:
        length = min(remaining, rng.randint(6, 14))
        if 0 < remaining - length < 3:
            length = remaining
        sentence = [rng.choice(_VOCABULARY) for _ in range(length)]
        if chosen and (not out or rng.random() < 0.8):
            sentence[rng.randrange(length)] = rng.choice(chosen)
        sentence[0] = sentence[0].capitalize()
        sentence[-1] += "."
        out.extend(sentence)
        remaining -= length
    return " ".join(out)


def _reasoning(rng: random.Random, output_tokens: int, topics: Sequence[str]) -> str:
    about = ", ".join(topics[:3]) or "the request"
    opening = f"The question is about {about}."
    rest = max(4, output_tokens // 2 - count_tokens(opening))
    return f"{opening} {_sentences(rng, rest, topics)}"


# --------------------------------------------------------------------- code


def _identifier(word: str) -> str:
    cleaned = "".join(ch for ch in word.lower() if "a" <= ch <= "z")
    if not cleaned or keyword.iskeyword(cleaned):
        return "items"
    return cleaned


def _code_block(language: str, rng: random.Random, topics: Sequence[str]) -> str:
    nouns = [_identifier(t) for t in topics] or ["records"]
    noun = rng.choice(nouns)
    verb = rng.choice(("count", "collect", "summarize", "rank", "group"))
    doc = " ".join(_identifier(w) for w in rng.sample(_VOCABULARY[20:], 5)).capitalize()
    number = rng.randint(2, 99)
    if language in ("python", "py", "python3"):
        body = _python(rng, verb, noun, doc, number)
    elif language in ("javascript", "js", "typescript", "ts"):
        body = (
            f"// {doc}.\n"
            f"function {verb}{noun.capitalize()}(items) {{\n"
            "  const counts = {};\n"
            "  for (const item of items) {\n"
            "    const key = item.trim().toLowerCase();\n"
            "    counts[key] = (counts[key] || 0) + 1;\n"
            "  }\n"
            "  return counts;\n"
            "}\n"
        )
    elif language == "sql":
        body = (
            f"-- {doc}.\n"
            f"SELECT {noun}, COUNT(*) AS total\n"
            f"FROM {noun}_table\n"
            f"WHERE score > {number}\n"
            f"GROUP BY {noun}\n"
            "ORDER BY total DESC;\n"
        )
    elif language in ("bash", "sh", "shell", "zsh"):
        body = (
            "#!/usr/bin/env bash\n"
            "set -euo pipefail\n"
            f"# {doc}.\n"
            f"for item in {' '.join(nouns[:3])}; do\n"
            f'  echo "{verb}: $item"\n'
            "done\n"
        )
    elif language == "json":
        body = json.dumps({"topic": noun, "count": number, "tags": nouns[:3]}, indent=2) + "\n"
    else:
        body = f"// {doc}.\nint {verb}_{noun}(int count) {{\n    return count * {number};\n}}\n"
    return f"```{language}\n{body}```"


def _python(rng: random.Random, verb: str, noun: str, doc: str, number: int) -> str:
    name = f"{verb}_{noun}"
    choice = rng.randrange(3)
    if choice == 0:
        return (
            f"def {name}(items: list[str]) -> dict[str, int]:\n"
            f'    """{doc}."""\n'
            "    counts: dict[str, int] = {}\n"
            "    for item in items:\n"
            "        key = item.strip().lower()\n"
            "        counts[key] = counts.get(key, 0) + 1\n"
            "    return counts\n"
        )
    if choice == 1:
        return (
            f"def {name}(values: list[float], threshold: float = {number / 10}) -> list[float]:\n"
            f'    """{doc}."""\n'
            "    kept = [value for value in values if value >= threshold]\n"
            "    return sorted(kept, reverse=True)\n"
        )
    return (
        "from dataclasses import dataclass\n"
        "\n\n"
        "@dataclass\n"
        f"class {noun.capitalize()}Record:\n"
        f'    """{doc}."""\n'
        "\n"
        "    name: str\n"
        f"    weight: float = {number / 10}\n"
        "\n"
        "    def score(self) -> float:\n"
        f"        return round(self.weight * {number}, 2)\n"
    )
