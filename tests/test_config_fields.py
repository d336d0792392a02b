"""Compile-time checks of what templates read from structured columns, and of the fields that
look templated: rubric texts render like prompts, structural fields refuse Jinja syntax."""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any

import pytest
import trio
from hypothesis import assume, given
from hypothesis import strategies as st

import gridloom as gl
from gridloom.config import structure_pipeline
from gridloom.engine import compile_pipeline
from gridloom.engine._fields import field_problems
from gridloom.errors import ConfigError, TemplateError, UnknownReferenceError
from gridloom.kinds.llm_judge import LLMJudgeGenerator

from .strategies import closed_object_schemas, jinja_reads, schema_paths

SIM = {
    "providers": [{"name": "sim", "type": "simulated"}],
    "models": [{"alias": "m", "provider": "sim", "model": "sim-1"}],
}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"reply": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["reply", "confidence"],
}


def _pipeline(*columns: dict[str, Any]) -> gl.PipelineConfig:
    return structure_pipeline({**SIM, "columns": list(columns)})


def _answer(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "answer",
        "llm_structured": {"model": "m", "prompt": "Answer.", "schema": schema or ANSWER_SCHEMA},
    }


def _judge(prompt: str, **rubric: Any) -> dict[str, Any]:
    rubric = {"name": "accuracy", "scores": {1: "wrong", 5: "exact"}, **rubric}
    return {"name": "judge", "llm_judge": {"model": "m", "prompt": prompt, "rubrics": [rubric]}}


def _compile_error(*columns: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        compile_pipeline(_pipeline(*columns))
    return info.value


# --------------------------------------------------------------------------- the reproducer


def test_a_misspelt_field_of_a_structured_column_fails_validate() -> None:
    """The issue's reproducer: a judge prompt reading ``answer.replyy`` (for ``reply``) fails
    at validate, naming the judge column, its prompt field, the known fields and the likely
    one, instead of dropping every row at run time."""
    err = _compile_error(_answer(), _judge("Rate: {{ answer.replyy }}"))
    assert isinstance(err, UnknownReferenceError)
    assert (err.column, err.field) == ("judge", "llm_judge.prompt")
    assert err.message.startswith(
        "'answer' has no field 'replyy' (its schema has: reply, confidence); did you mean 'reply'?"
    )


async def test_the_reproducer_sends_no_request(autojump_clock: trio.abc.Clock) -> None:
    """The error comes from preview before any row is generated (no request is sent)."""
    with pytest.raises(UnknownReferenceError):
        await gl.apreview(_pipeline(_answer(), _judge("Rate: {{ answer.replyy }}")), 3)


@pytest.mark.parametrize(
    "template",
    [
        "{{ answer.reply }} {{ answer['confidence'] }}",
        "{% for k, v in answer.items() %}{{ k }}={{ v }}{% endfor %}",
        "{{ answer.get('replyy') }} {{ answer.keys() | list }}",
        "{{ answer.replyy | default('none') }}",
        "{% if answer.replyy is defined %}{{ answer.replyy }}{% endif %}",
        "{% set answer = {'replyy': 1} %}{{ answer.replyy }}",
        "{% for answer in [{'replyy': 1}] %}{{ answer.replyy }}{% endfor %}",
        "{% set key = 'reply' %}{{ answer[key] }}",
        "{{ answer.reply.upper() }} {{ answer.reply[0] }}",
    ],
)
def test_reads_that_may_work_are_not_flagged(template: str) -> None:
    """Existing fields, dict methods, guarded reads, names the template binds itself and
    dynamic keys pass."""
    compile_pipeline(_pipeline(_answer(), _judge(template)))


@pytest.mark.parametrize(
    "schema",
    [
        {**ANSWER_SCHEMA, "additionalProperties": True},
        {**ANSWER_SCHEMA, "additionalProperties": {"type": "string"}},
        {**ANSWER_SCHEMA, "patternProperties": {"^x": {}}},
        {"type": "object"},
        {"anyOf": [ANSWER_SCHEMA, {"type": "object", "properties": {"replyy": {}}}]},
        {"$ref": "#answer", "$defs": {"a": {**ANSWER_SCHEMA, "$anchor": "answer"}}},
        {"type": ["object", "string"], "properties": ANSWER_SCHEMA["properties"]},
    ],
)
def test_open_or_unclear_schemas_are_not_flagged(schema: dict[str, Any]) -> None:
    """A schema that lets other fields in, declares none, or uses combinators or a ``$ref``
    the check does not follow (an anchor) is not judged. (A remote ``$ref`` was here too: it is
    now refused when the column is built, see tests/test_schema_refs.py.)"""
    compile_pipeline(_pipeline(_answer(schema), _judge("{{ answer.replyy }}")))


def test_nested_fields_arrays_local_refs_and_judge_values_are_followed() -> None:
    """Reads go through nested objects, array items and local ``$ref``; a judge's value is its
    rubrics, each ``{score, reasoning}``."""
    schema = {
        "type": "object",
        "properties": {"facts": {"type": "array", "items": {"$ref": "#/$defs/fact"}}},
        "$defs": {
            "fact": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "source": {"type": "string"}},
                "additionalProperties": False,
            }
        },
    }
    err = _compile_error(
        _answer(schema),
        _judge("{{ answer.facts[0].text }} {{ answer.facts[1].sorce }}"),
        {"name": "e", "expression": "{{ judge.accuracy.scor }} {{ judge.acuracy }}"},
    )
    assert [(issue.column, issue.field, issue.message) for issue in err.issues] == [
        (
            "judge",
            "llm_judge.prompt",
            "'answer.facts[1]' has no field 'sorce' (its schema has: text, source);"
            " did you mean 'source'?",
        ),
        (
            "e",
            "expression.template",
            "'judge.accuracy' has no field 'scor' (its schema has: score, reasoning);"
            " did you mean 'score'?",
        ),
        (
            "e",
            "expression.template",
            "'judge' has no field 'acuracy' (its schema has: accuracy); did you mean 'accuracy'?",
        ),
    ]


# --------------------------------------------------------------------------- properties


def _steps(path: list[str | int]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path)


@given(st.data(), closed_object_schemas)
def test_a_path_that_exists_is_never_flagged(data: st.DataObject, schema: dict[str, Any]) -> None:
    """Any read of a path the schema declares, however spelt, passes."""
    path = data.draw(schema_paths(schema))
    read = data.draw(jinja_reads("answer", path))
    assert field_problems("{{ " + read + " }}", {"answer": schema}) == []


def _object_at(schema: dict[str, Any], path: list[str | int]) -> dict[str, Any] | None:
    node = schema
    for step in path:
        node = node["items"] if isinstance(step, int) else node["properties"][step]
    return node if node.get("type") == "object" else None


@given(st.data(), closed_object_schemas)
def test_a_misspelt_field_is_always_flagged_with_the_closest_name(
    data: st.DataObject, schema: dict[str, Any]
) -> None:
    """A field name one letter off a declared one (doubled) is always reported, naming the
    object read and suggesting a declared name at least as close as the one misspelt; once
    the object lets other fields in, the same read passes."""
    path = data.draw(schema_paths(schema))
    cut = data.draw(st.integers(0, len(path) - 1))
    parent, node = path[:cut], _object_at(schema, path[:cut])
    assume(node is not None)
    assert node is not None
    known = sorted(node["properties"])
    name = data.draw(st.sampled_from(known))
    at = data.draw(st.integers(0, len(name) - 1))
    typo = name[: at + 1] + name[at:]
    assume(typo not in known)
    read = data.draw(jinja_reads("answer", [*parent, typo]))
    problems = field_problems("{{ " + read + " }}", {"answer": schema})
    assert len(problems) == 1
    message = problems[0].message()
    assert message.startswith(f"{'answer' + _steps(parent)!r} has no field {typo!r}")
    suggested = re.search(r"did you mean '([^']*)'\?", message)
    assert suggested is not None, message
    ratio = difflib.SequenceMatcher(None, typo, suggested[1]).ratio()
    assert suggested[1] in known
    assert ratio >= difflib.SequenceMatcher(None, typo, name).ratio()

    opened = copy.deepcopy(schema)
    target = _object_at(opened, parent)
    assert target is not None
    target["additionalProperties"] = True
    assert field_problems("{{ " + read + " }}", {"answer": opened}) == []


# --------------------------------------------------------------------------- rubric texts


def test_rubric_texts_are_templates_checked_like_the_prompt() -> None:
    """A rubric's description and score meanings reference columns (edges in the graph) and
    are checked like the prompt: unknown names, bad syntax, missing fields."""
    graph = compile_pipeline(
        _pipeline(
            {"name": "topic", "category": {"values": ["rivers"]}},
            {"name": "level", "category": {"values": ["expert"]}},
            _judge(
                "Rate this.",
                description="Accurate about {{ topic }}?",
                scores={1: "wrong for an {{ level }}", 5: "exact"},
            ),
        )
    )
    judge = graph.nodes[graph.producer["judge"]]
    assert {graph.nodes[u].name for u in judge.upstream} == {"topic", "level"}

    err = _compile_error(
        _answer(),
        _judge(
            "Rate this.",
            description="About {{ topik }} and {{ answer.replyy }}",
            scores={1: "wrong {{ answer. }}", 5: "exact"},
        ),
    )
    assert [issue.field for issue in err.issues] == [
        "llm_judge.rubrics[0].scores.1",
        "llm_judge.rubrics[0].description",
        "llm_judge.rubrics[0].description",
    ]
    assert isinstance(err, TemplateError)
    assert "references unknown column 'topik'" in err.issues[1].message
    assert "'answer' has no field 'replyy'" in err.issues[2].message


def test_rubric_texts_are_rendered_over_the_row() -> None:
    """What the judge sees is the rubric's description and meanings rendered over the row."""
    config = _pipeline(
        {"name": "topic", "category": {"values": ["rivers"]}},
        _judge(
            "Rate {{ topic }}.",
            description="Accurate about {{ topic }}?",
            scores={1: "wrong about {{ topic | upper }}", 5: "exact"},
        ),
    )
    column = config.column("judge")
    assert isinstance(column, gl.config.LLMJudgeColumn)
    generator = LLMJudgeGenerator(column, config.models[0])
    system = generator.system_text({"topic": "deserts"})
    assert system is not None
    assert "Rubric 'accuracy': Accurate about deserts?" in system
    assert "  1: wrong about DESERTS" in system
    assert "{{" not in system


def test_plain_rubric_texts_are_unchanged() -> None:
    """Rubric texts without Jinja syntax read as before."""
    config = _pipeline(_judge("Rate.", description="Is it right?", scores={1: "no", 5: "yes"}))
    column = config.column("judge")
    assert isinstance(column, gl.config.LLMJudgeColumn)
    system = LLMJudgeGenerator(column, config.models[0]).system_text({})
    assert system is not None
    assert system.endswith("\nRubric 'accuracy': Is it right?\n  1: no\n  5: yes")


# --------------------------------------------------------------------------- structural fields


@pytest.mark.parametrize(
    ("column", "field"),
    [
        (
            {"name": "c", "llm_code": {"model": "m", "prompt": "Code.", "language": "{{ lang }}"}},
            "llm_code.language",
        ),
        (
            {
                "name": "c",
                "llm_code": {"model": "m", "prompt": "Code.", "language": "py{% if x %}"},
            },
            "llm_code.language",
        ),
        (_judge("Rate.", name="acc_{{ topic }}"), "llm_judge.rubrics[0].name"),
        (_judge("Rate.", scores={"{{ best }}": "best", 1: "worst"}), "llm_judge.rubrics[0].scores"),
        (
            _answer(
                {
                    "type": "object",
                    "properties": {"x": {"type": "string", "description": "about {{ topic }}"}},
                }
            ),
            "llm_structured.schema",
        ),
    ],
)
def test_structural_fields_refuse_template_syntax(column: dict[str, Any], field: str) -> None:
    """A field used as written (a code language, a rubric's name or scores, a schema's
    descriptions) with Jinja syntax in it is refused when the config is loaded, naming the
    column and the field."""
    with pytest.raises(ConfigError) as info:
        _pipeline(column)
    err = info.value
    assert (err.column, err.field) == (column["name"], field)
    assert "'{{' or '{%'" in err.message


def test_a_code_language_without_template_syntax_is_accepted() -> None:
    """Ordinary languages (with braces of other kinds) still load."""
    _pipeline({"name": "c", "llm_code": {"model": "m", "prompt": "Code.", "language": "c++"}})
