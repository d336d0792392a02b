"""Templates of text and bare names render without Jinja's context, exactly as Jinja would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.errors import TemplateLimitExceeded
from gridloom.generators._jinja import compile_template, parse_template, plain_parts
from gridloom.generators._template_limits import TemplateLimits

NAMES = ("topic", "summary", "n")
values = st.one_of(
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    # not data: both paths refuse them (NotDataError), neither prints an address
    st.sampled_from([str.upper, "x".strip, dict, len, [len], {"k": dict}]),
)
texts = st.text(alphabet=st.characters(blacklist_characters="{}%#"), max_size=15)
parts = st.lists(st.one_of(texts, st.sampled_from(NAMES).map(lambda n: f"{{{{ {n} }}}}")))


@given(parts=parts, row=st.fixed_dictionaries({}, optional=dict.fromkeys(NAMES, values)))
def test_plain_render_equals_jinja(parts: list[str], row: dict[str, Any]) -> None:
    """For any text-and-names template and row, the plain render is Jinja's render, and a
    missing name or a value that is not data raises Jinja's error."""
    source = "".join(parts)
    fast = compile_template(source, column="c", field="prompt")
    assert plain_parts(parse_template(source)) is not None
    slow = compile_template(source, column="c", field="prompt")
    slow._plain = None  # the Jinja path of the same template
    try:
        expected: str | Exception = slow.render(row)
    except Exception as exc:  # an undefined name, a function
        expected = exc
    if isinstance(expected, Exception):
        with pytest.raises(type(expected)) as info:
            fast.render(row)
        assert str(info.value) == str(expected)
    else:
        assert fast.render(row) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{ topic | upper }}",
        "{{ topic.x }}",
        "{% if n %}x{% endif %}",
        "{{ n + 1 }}",
        "{{ 'a' }}",
        "{# c #}{{ topic }}",
    ],
)
def test_other_templates_are_not_plain(source: str) -> None:
    """Filters, attributes, tags, expressions and constants keep Jinja's path."""
    if source.startswith("{#"):
        assert plain_parts(parse_template(source)) is not None  # a comment leaves no node
    else:
        assert plain_parts(parse_template(source)) is None


def test_plain_render_keeps_the_output_limit() -> None:
    """A plain template's output beyond max_output_chars fails as Jinja's path does."""
    template = compile_template(
        "x{{ topic }}", column="c", field="prompt", limits=TemplateLimits(max_output_chars=10)
    )
    assert template.render({"topic": "abc"}) == "xabc"
    with pytest.raises(TemplateLimitExceeded, match="column 'c', field 'prompt'"):
        template.render({"topic": "y" * 50})
