"""Bounded templates (issue 14, classes 2, 6 and 8): a render never runs past its limits
(output size, loop iterations, integer size, CPU time), compiling never runs a template's
work, sandbox escapes are refused at compile time, and heavy templates render off the loop."""

from __future__ import annotations

import threading
from typing import Any

import jinja2
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import gridloom as gl
from gridloom.clients import ChatResponse, ModelHandle, Usage
from gridloom.config import (
    EmbeddingColumn,
    LLMJudgeColumn,
    LLMTextColumn,
    Rubric,
    RunConfig,
    structure_pipeline,
)
from gridloom.errors import ConfigError, GenerationError, TemplateError, TemplateLimitExceeded
from gridloom.generators import BuildContext, CellContext, build_generator
from gridloom.generators._jinja import (
    CompiledTemplate,
    TemplateLimits,
    compile_template,
    template_env,
)
from gridloom.kinds.expression import ExpressionColumn, ExpressionGenerator

from .test_llm_generators import MODEL, ScriptedClient

#: Small limits for the generated templates, so every example ends in a moment.
SMALL = TemplateLimits(max_output_chars=10_000, max_loop_iterations=2_000, time_budget_seconds=1.0)


def expression(template: str) -> ExpressionGenerator:
    """An expression column's generator, with the default limits."""
    return ExpressionGenerator(ExpressionColumn(name="out", template=template))


def cell(row: dict[str, Any]) -> CellContext:
    return CellContext(row=row, row_id=0, column="out", seed=1)


def render(template: str, row: dict[str, Any] | None = None, limits: TemplateLimits = SMALL) -> str:
    return compile_template(template, column="out", field="template", limits=limits).render(
        row or {}
    )


# ----------------------------------------------------------------------------- class 2 and 8

#: Templates that would run for hours or build gigabytes, and the limit each one meets.
ATTACKS = [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "loop"),
    (
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
        "loop",
    ),
    ("{% for c in big %}{% endfor %}", "loop"),
    ("{{ range(10**12)|length }}", "loop"),
    ("{{ [1]|slice(10**9)|list }}", "loop"),
    ("{{ (2 ** n) % 7 }}", "bits"),
    ("{{ (2 ** 10000000000) % 7 }}", "bits"),
    ("{{ (10**19000) * (10**19000) }}", "bits"),
    ("{{ 1.5|round(1000000000, 'floor') }}", "bits"),
    ("{{ 5|round(-1000000000) }}", "bits"),
    ("{{ 'x' * 10**10 }}", "chars"),
    ("{{ 'x' * n }}", "chars"),
    ("{{ ([1] * 1000) * 100000 }}", "chars"),
    ("{{ 'x'|center(9999999999) }}", "chars"),
    ("{{ 'ab'.ljust(10**10) }}", "chars"),
    ("{{ 'ab'.zfill(10**10) }}", "chars"),
    ("{{ (1).to_bytes(9999999999, 'big') }}", "chars"),
    ("{{ '%0999999999d' % 1 }}", "chars"),
    ("{{ '%0999999999d'|format(1) }}", "chars"),
    ("{{ '%*d' % (10**9, 1) }}", "'*'"),
    ("{{ range(100000)|join('x' * 1000000) }}", "chars"),
    ("{{ big|list|join('x' * 1000) }}", "chars"),
    ("{{ ', '.join(range(100000)|map('string')|map('center', 1000000)) }}", "chars"),
    ("{{ range(100000)|map('center', 1000000)|list|length }}", "in all"),
    ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "chars"),
    ("{{ big|replace('x', 'y' * 1000) }}", "chars"),
    ("{{ big.replace('x', 'y' * 1000) }}", "chars"),
    ("{{ big|wordwrap(1, wrapstring='y' * 1000) }}", "chars"),
    ("{{ big|indent(1000000) }}", "chars"),
    ("{{ [1]|batch(10**9, 'x')|list }}", "chars"),
    ("{{ lipsum(1000000) }}", "chars"),
    ("{{ ([[1]] * 100000)|sum(start=[]) }}", "in all"),
    ("{{ big|trim('y' * 100000 + 'x') }}", "steps"),
    ("{{ [1]|tojson(indent=100000000) }}", "indent"),
    (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "chars",
    ),
    (
        "{% set ns = namespace(a=[1]) %}{% for i in range(64) %}{% set ns.a = [ns.a, ns.a] %}"
        "{% endfor %}{{ ns.a }}",
        "chars",
    ),
    (
        "{% set ns = namespace(a=[1]) %}{% for i in range(64) %}{% set ns.a = ns.a + ns.a %}"
        "{% endfor %}{{ ns.a|length }}",
        "chars",
    ),
    (
        "{% macro m() %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endmacro %}"
        "{{ m()|length }}",
        "chars",
    ),
    (
        "{% set s %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endset %}{{ s|length }}",
        "chars",
    ),
    ("{{ dict.fromkeys(range(100000), big) }}", "chars"),
]

_MEETS = {
    "loop": "run.template_max_loop_iterations",
    "bits": "bits",
    "chars": "run.template_max_output_chars",
    "in all": "64 x run.template_max_output_chars",
    "'*'": "'*'",
    "steps": "steps",
    "indent": "indent",
}


@pytest.mark.parametrize(("template", "limit"), ATTACKS)
def test_a_render_that_would_run_away_fails_its_cell_naming_the_limit(
    template: str, limit: str
) -> None:
    """Loops, powers, repetitions and amplifying filters stop at their limit (default limits)
    with TemplateLimitExceeded naming the column, the field and the limit: the cell fails."""
    generator = expression(template)
    with pytest.raises(TemplateLimitExceeded) as info:
        generator.generate(cell({"n": 10**10, "big": "x" * 500_000}))
    message = str(info.value)
    assert message.startswith("column 'out', field 'template': "), message
    assert _MEETS[limit] in message


@pytest.mark.parametrize(
    "template",
    [
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{% set x = big|upper %}{% endfor %}",
    ],
)
def test_a_render_stops_when_its_cpu_budget_is_spent(template: str) -> None:
    """A render that the other limits allow still ends: a tiny CPU budget trips first."""
    limits = TemplateLimits(max_loop_iterations=10**12, time_budget_seconds=0.01)
    with pytest.raises(TemplateLimitExceeded, match=r"CPU time.*template_time_budget_seconds"):
        render(template, {"big": "x" * 100_000}, limits)


@st.composite
def heavy_templates(draw: st.DrawFn) -> str:
    """Loops, powers, repetitions and joins of random sizes, nested at random."""
    size = st.integers(0, 10**7) | st.sampled_from([0, 1, 2, 10, 1000, 10**5, 10**9, 10**12])
    leaf = st.one_of(
        st.builds(lambda n: f"'ab' * {n}", size),
        st.builds(lambda b, e: f"{b} ** {e}", st.integers(-3, 2**20), size),
        st.builds(lambda n, w: f"'x'|center({w})|replace('x', 'yy' * {n})", size, size),
        st.builds(lambda n, s: f"range({n})|join('{'s' * s}')", size, st.integers(0, 50)),
        st.builds(lambda n: f"[1, 2] * {n}", size),
        st.builds(lambda n: f"12345|round(-{n})", size),
        st.builds(lambda n: f"'%0{n}d'|format(7)", size),
        st.just("big ~ big"),
    )
    expr = draw(leaf)
    body = f"{{{{ {expr} }}}}"
    for _ in range(draw(st.integers(0, 3))):
        n = draw(size)
        body = draw(
            st.sampled_from(
                [
                    f"{{% for i in range({n}) %}}{body}{{% endfor %}}",
                    f"{{% macro m() %}}{body}{{% endmacro %}}{{{{ m() ~ m() }}}}",
                    f"{{% set s %}}{body}{{% endset %}}{{{{ s ~ s }}}}",
                    f"{{% filter upper %}}{body}{{% endfilter %}}",
                ]
            )
        )
    return body


@settings(max_examples=150, deadline=None)
@given(template=heavy_templates())
def test_every_render_ends_with_a_value_under_the_cap_or_a_limit(template: str) -> None:
    """Whatever the sizes, a render ends (within its budget) with text no longer than the
    output limit, or fails with TemplateLimitExceeded (or an ordinary template error)."""
    outcome: str | Exception
    try:
        outcome = render(template, {"big": "b" * 3000})
    except (TemplateLimitExceeded, jinja2.TemplateError, ValueError, OverflowError, TypeError) as e:
        outcome = e  # ordinary errors too: a float power overflowing, a str ** int ...
    if isinstance(outcome, str):
        assert len(outcome) <= SMALL.max_output_chars
    elif isinstance(outcome, TemplateLimitExceeded):
        assert str(outcome).startswith("column 'out', field 'template': ")


def test_compiling_never_folds_the_heavy_operations() -> None:
    """Jinja folds constant expressions at compile time; the intercepted operators and the
    checked filters are never folded, so validating ``{{ (2 ** 10000000000) % 7 }}`` does not
    compute it (it used to take minutes and gigabytes)."""
    env = template_env()
    for source, folded in [
        ("{{ 2 ** 100 }}", str(2**100)),
        ("{{ 'ab' * 40 }}", "ab" * 40),
        ("{{ 'x'|center(41) }}", "x".center(41)),
        ("{{ '%030d' % 1 }}", "0" * 29 + "1"),
        ("{{ [1, 2]|join('-' * 3) }}", "1---2"),
    ]:
        code = env.compile(source, raw=True)
        assert folded not in code, source
    compiled = compile_template("{{ (2 ** 10000000000) % 7 }}", column="c", field="template")
    with pytest.raises(TemplateLimitExceeded, match="bits"):
        compiled.render({})


def test_validate_reports_without_running_the_template(tmp_path: Any) -> None:
    """gl.validate compiles a template whose constants would take gigabytes, without running
    it: the pipeline is valid (its cells would fail at run time)."""
    config = structure_pipeline(
        {"columns": [{"name": "e", "expression": "{{ (2 ** 10000000000) % 7 }}"}]}
    )
    graph = gl.validate(config)
    assert [node.name for node in graph.nodes] == ["e"]


# ----------------------------------------------------------------------------- class 6


def test_a_rendered_value_over_the_cap_fails_its_cell() -> None:
    """The value an expression renders is capped: at the limit it passes, one more fails."""
    limits = TemplateLimits(max_output_chars=100)
    compiled = compile_template("{{ x }}", column="out", field="template", limits=limits)
    assert compiled.render({"x": "y" * 100}) == "y" * 100
    with pytest.raises(TemplateLimitExceeded, match=r"100 .*template_max_output_chars"):
        compiled.render({"x": "y" * 101})


def test_rows_whose_value_is_over_the_cap_are_dropped_with_the_reason() -> None:
    """In a run, a cell whose template renders more than the cap drops its row with
    TemplateLimitExceeded; the other rows are kept."""
    config = structure_pipeline(
        {
            "columns": [
                {"name": "n", "uniform": {"low": 1, "high": 6, "convert_to": "int"}},
                {"name": "text", "expression": "{{ 'x' * (n * 300000) }}"},
                {"name": "size", "expression": {"template": "{{ text|length }}", "dtype": "int"}},
            ],
            "run": {"seed": 3, "generator_first_rows": 0, "generator_error_rate": None},
        }
    )
    result = gl.preview(config, num_records=20)
    dropped = result.dropped.to_pylist()
    kept = result.table.column("n").to_pylist()
    assert dropped
    assert kept
    assert all(n * 300_000 <= 1_048_576 for n in kept)
    assert {d["error_type"] for d in dropped} == {"TemplateLimitExceeded"}
    assert all("template_max_output_chars" in d["message"] for d in dropped)
    assert result.table.column("size").to_pylist() == [n * 300_000 for n in kept]


async def test_a_prompt_over_the_cap_fails_before_any_request() -> None:
    """An LLM prompt longer than the cap fails the cell; no request is sent."""
    client = ScriptedClient(lambda r: ChatResponse(text="ok", usage=Usage()))
    column = LLMTextColumn(name="s", model="w", prompt="About {{ x }}")
    generator = build_generator(column, BuildContext(models={"w": MODEL}))
    handle = ModelHandle(MODEL, client, trio.CapacityLimiter(1))
    ctx = CellContext(
        row={"x": "y" * 2_000_000}, row_id=0, column="s", seed=1, models={"w": handle}
    )
    with pytest.raises(TemplateLimitExceeded, match=r"column 's', field 'llm_text\.prompt'"):
        await generator.agenerate(ctx)
    assert client.requests == []


# ----------------------------------------------------------------------------- escapes

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self }}",
    "{{ ''.mro() }}",
    "{{ dict.mro() }}",
    "{{ '{0.__class__}'.format(x) }}",
    "{{ '{x.__class__}'.format_map({'x': x}) }}",
    "{{ x|attr('__class__') }}",
    "{{ x|attr('mro') }}",
    "{{ x['__class__'] }}",
    "{{ x._private }}",
    "{% for c in ''.__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% include 'other' %}",
    "{% import 'other' as o %}",
    "{% from 'other' import m %}",
    "{% extends 'base' %}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_sandbox_escapes_are_refused_when_the_pipeline_is_compiled(template: str) -> None:
    """An escape attempt is a TemplateError naming the column and the field at compile time
    (validate), not a failure of every row at run time."""
    for column, field in [
        ({"name": "out", "expression": template}, "template"),
        ({"name": "out", "llm_text": {"model": "w", "prompt": template}}, "llm_text.prompt"),
    ]:
        config = structure_pipeline(
            {
                "providers": [{"name": "p", "type": "simulated"}],
                "models": [{"alias": "w", "provider": "p", "model": "m"}],
                "columns": [{"name": "x", "category": {"values": ["a"]}}, column],
            }
        )
        with pytest.raises(TemplateError) as info:
            gl.validate(config)
        assert (info.value.column, info.value.field) == ("out", field)


@st.composite
def escape_templates(draw: st.DrawFn) -> str:
    """A reach for internals, through any object a template can name."""
    root = draw(
        st.sampled_from(
            [
                "x",
                "''",
                "[]",
                "{}",
                "cycler",
                "joiner",
                "namespace",
                "lipsum",
                "range",
                "dict",
                "loop",
                "(1)",
                "x.y",
                "x['k']",
                "(x|first)",
            ]
        )
    )
    dunder = draw(st.from_regex(r"__[a-z]{1,10}__", fullmatch=True))
    private = draw(st.from_regex(r"_[A-Za-z0-9_]{0,12}", fullmatch=True))
    reach = draw(
        st.sampled_from(
            [
                f"{root}.{dunder}",
                f"{root}.{private}",
                f"{root}.{dunder}.{dunder}",
                f"{root}.mro()",
                f"{root}|attr('{dunder}')",
                f"{root}|attr('{private}')",
                f"{root}['{dunder}']",
                f"'{{0.{dunder}}}'.format({root})",
                f"'{{0}}'.format_map({root})",
                f"({root}).format(1)",
                "self",
                f"self.{private}",
            ]
        )
    )
    wrap = draw(
        st.sampled_from(
            [
                "{{{{ {} }}}}",
                "{{{{ ({})|string }}}}",
                "{{% set v = {} %}}{{{{ v }}}}",
                "{{% for v in [{}] %}}{{{{ v }}}}{{% endfor %}}",
                "{{% if {} %}}yes{{% endif %}}",
                "{{% macro m() %}}{{{{ {} }}}}{{% endmacro %}}{{{{ m() }}}}",
            ]
        )
    )
    return wrap.format(reach)


@settings(max_examples=300, deadline=None)
@given(template=escape_templates())
def test_every_escape_attempt_is_refused_at_compile_time(template: str) -> None:
    """Generated reaches for internals never compile: TemplateError naming column and field."""
    with pytest.raises(TemplateError) as info:
        compile_template(template, column="c", field="prompt")
    assert (info.value.column, info.value.field) == ("c", "prompt")


def test_format_reached_indirectly_is_refused_when_rendered() -> None:
    """str.format kept in a variable (no call to refuse statically) fails when called."""
    generator = expression("{% set f = 'x'.format %}{{ f('{0.__class__}', 1) }}")
    with pytest.raises(GenerationError, match=r"str\.format is not allowed"):
        generator.generate(cell({}))


@pytest.mark.parametrize(
    ("template", "row", "expected"),
    [
        ("{% for i in range(3) %}{{ loop.index }}{% endfor %}", {}, "123"),
        (
            "{{ x['_id'] }}/{{ x.format }}/{{ x.mro_count }}",
            {"x": {"_id": 7, "format": "csv", "mro_count": 1}},
            "7/csv/1",
        ),
        ("{{ '%s-%03d'|format('a', 7) }} {{ '%.2f' % 3.14159 }}", {}, "a-007 3.14"),
        (
            "{% set ns = namespace(t=0) %}{% for i in range(5) %}{% set ns.t = ns.t + i %}"
            "{% endfor %}{{ ns.t }}",
            {},
            "10",
        ),
        ("{% macro b(x) %}<{{ x }}>{% endmacro %}{{ b(1) ~ b(2) }}", {}, "<1><2>"),
        ("{{ (items|map('upper')|join(', ')) }}", {"items": ["a", "b"]}, "A, B"),
        ("{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ [0] * 2 }} {{ 7 % 3 }}", {}, "1024 ababab [0, 0] 1"),
        ("{{ {'a': x, 'b': [x, x]}|tojson }}", {"x": 1}, '{"a": 1, "b": [1, 1]}'),
        ("{{ 'a\nb'|indent(2, first=true) }}", {}, "  a\n  b"),
        ("{{ range(10)|sum }} {{ [[1], [2]]|sum(start=[]) }}", {}, "45 [1, 2]"),
        ("{{ lipsum(1, html=false)|wordcount > 5 }}", {}, "True"),
        ("{% set s %}{{ x }}!{% endset %}{{ s * 2 }}", {"x": "hi"}, "hi!hi!"),
        (
            "{{ x.upper() }} {{ x.center(6, '*') }} {{ '-'.join(['a', x]) }}",
            {"x": "ab"},
            "AB **ab** -".replace(" -", " a-ab"),
        ),
    ],
)
def test_legitimate_templates_render_as_before(
    template: str, row: dict[str, Any], expected: str
) -> None:
    """Loops, macros, namespaces, formatting and data keys that merely look internal
    (``x['_id']``, ``x.format`` on a dict) keep working under the limits."""
    assert render(template, row, TemplateLimits()) == expected


# ----------------------------------------------------------------------------- on or off the loop


@pytest.mark.parametrize(
    ("template", "simple"),
    [
        ("Summarize {{ topic }} in two sentences.", True),
        (
            "{{ a|default('x')|upper }} {{ b.title() }} {{ c ~ d }} {% if e %}{{ f.g }}{% endif %}",
            True,
        ),
        ("{{ items|join(', ') }} {{ '%s'|format(a) }} {{ a + b }}", True),
        ("{% for i in items %}{{ i }}{% endfor %}", False),
        ("{% macro m() %}x{% endmacro %}{{ m() }}", False),
        ("{{ a * 2 }}", False),
        ("{{ a ** 2 }}", False),
        ("{{ '%d' % a }}", False),
        ("{{ range(3)|list }}", False),
        ("{{ a|center(80) }}", False),
    ],
)
def test_simple_templates_render_inline_and_the_others_in_a_thread(
    template: str, simple: bool
) -> None:
    """Templates without loops, macros, calls (beyond a few string methods) or heavy
    operators render on the event loop; an expression with any of those runs in a thread."""
    assert compile_template(template, column="c", field="f").simple is simple
    assert expression(template).inline is simple


class _Where:
    """A row value that records the thread it is rendered in."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def __str__(self) -> str:
        self.threads.append(threading.current_thread())
        return "here"


@pytest.mark.parametrize(
    ("prompt", "on_loop"),
    [("About {{ x }}", True), ("{% for i in range(2) %}{{ x }}{% endfor %}", False)],
)
async def test_heavy_prompts_render_in_a_worker_thread(prompt: str, on_loop: bool) -> None:
    """An LLM column's simple prompt renders on the event loop's thread; one with a loop in a
    worker thread, for text, judge and embedding columns alike."""
    client = ScriptedClient(
        lambda r: ChatResponse(
            text='{"a": {"score": 1, "reasoning": "r"}}', usage=Usage(input_tokens=1)
        )
    )
    handle = ModelHandle(MODEL, client, trio.CapacityLimiter(2))
    columns = [
        LLMTextColumn(name="s", model="w", prompt=prompt),
        LLMJudgeColumn(
            name="s",
            model="w",
            prompt="Judge",
            rubrics=(Rubric(name="a", description=prompt, scores={1: "bad", 2: "good"}),),
        ),
        EmbeddingColumn(name="s", model="w", input=prompt),
    ]
    for column in columns:
        generator = build_generator(column, BuildContext(models={"w": MODEL}))
        where = _Where()
        ctx = CellContext(row={"x": where}, row_id=0, column="s", seed=1, models={"w": handle})
        await generator.agenerate(ctx)
        assert where.threads
        assert all((t is threading.main_thread()) is on_loop for t in where.threads), column


def test_limits_come_from_the_run_settings() -> None:
    """The run's template_* settings are the limits; non-positive values are refused."""
    run = RunConfig(
        template_max_output_chars=10,
        template_max_loop_iterations=3,
        template_time_budget_seconds=0.5,
    )
    assert TemplateLimits.from_run(run) == TemplateLimits(
        max_output_chars=10, max_loop_iterations=3, time_budget_seconds=0.5
    )
    assert TemplateLimits.from_run(RunConfig()) == TemplateLimits()
    for bad in [
        {"template_max_output_chars": 0},
        {"template_max_loop_iterations": 0},
        {"template_time_budget_seconds": 0.0},
    ]:
        with pytest.raises(ValueError, match="template_"):
            RunConfig(**bad)  # type: ignore[arg-type]
    limits = TemplateLimits.from_run(run)
    compiled = compile_template(
        "{% for i in range(3) %}{{ i }}{% endfor %}", column="c", field="f", limits=limits
    )
    assert isinstance(compiled, CompiledTemplate)
    assert compiled.render({}) == "012"
    with pytest.raises(TemplateLimitExceeded, match="more than 3 iterations"):
        compile_template(
            "{% for i in 'abcd' %}{% endfor %}", column="c", field="f", limits=limits
        ).render({})
    with pytest.raises(ConfigError):
        structure_pipeline(
            {
                "columns": [{"name": "a", "expression": "x"}],
                "run": {"template_max_output_chars": -1},
            }
        )
