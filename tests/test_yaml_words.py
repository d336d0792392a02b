"""Words YAML reads as booleans (`off`, `no`, `on`, `yes`) still mean the choice they spell."""

from __future__ import annotations

from typing import Any, Literal

import attrs
import pytest
import yaml

from gridloom.config import RunConfig, load_config
from gridloom.config._converter import converter
from gridloom.errors import ConfigError


@pytest.mark.parametrize("word", ["off", "Off", "OFF", "no", "false"])
def test_progress_off_unquoted_as_documented(tmp_path: Any, word: str) -> None:
    """`run: {progress: off}`, as documented, loads (YAML reads the word as false); it was
    refused with "must be one of ... got False"."""
    assert yaml.safe_load(f"x: {word}") == {"x": False}
    path = tmp_path / "p.yaml"
    path.write_text(f"columns:\n  - {{name: a, expression: hi}}\nrun: {{progress: {word}}}\n")
    assert load_config(path).run.progress == "off"


def _literal_fields() -> list[tuple[type, attrs.Attribute[Any]]]:
    """Every Literal-typed field of the config classes reachable from RunConfig and the
    other top-level sections."""
    from gridloom.config import PipelineConfig

    seen: set[type] = set()
    found: list[tuple[type, attrs.Attribute[Any]]] = []
    todo: list[Any] = [PipelineConfig, RunConfig]
    while todo:
        cls = todo.pop()
        if not (isinstance(cls, type) and attrs.has(cls)) or cls in seen:
            continue
        seen.add(cls)
        for field in attrs.fields(cls):
            tp = field.type
            if getattr(tp, "__origin__", None) is Literal:
                found.append((cls, field))
            for arg in getattr(tp, "__args__", ()) or ():
                todo.append(arg)
            todo.append(tp)
    return found


@pytest.mark.parametrize("flag", [True, False])
def test_every_choice_spelt_as_a_yaml_boolean_is_reachable_unquoted(flag: bool) -> None:
    """For every Literal field of the config, a choice spelt like a YAML boolean word is what
    that boolean structures to; a boolean no choice spells is refused with a hint to quote."""
    words = {True: ("on", "yes", "true", "y"), False: ("off", "no", "false", "n")}
    fields = _literal_fields()
    assert any(f.name == "progress" for _, f in fields)
    for _cls, field in fields:
        choices = field.type.__args__
        spelt = [c for c in choices if isinstance(c, str) and c.lower() in words[flag]]
        if spelt:
            assert converter.structure(flag, field.type) == spelt[0]
        else:
            with pytest.raises(ValueError, match="quote the word"):
                converter.structure(flag, field.type)


def test_a_boolean_for_a_choice_that_is_no_word_says_to_quote() -> None:
    """`scheduling: yes` is not a scheduling mode: the error says YAML made it true."""
    from gridloom.config import structure_pipeline

    doc = {"columns": [{"name": "a", "expression": "hi"}], "run": {"scheduling": True}}
    with pytest.raises(ConfigError, match=r"got True.*quote the word"):
        structure_pipeline(doc)
