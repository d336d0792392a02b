"""The fingerprint of the user code a column calls: the whole file of the function's module
(any byte counts, so a helper's edit does too), else its own source, else its bytecode, else
"unknown"; and which of a config's fields name user code."""

from __future__ import annotations

import functools
import hashlib
import json
import linecache
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gridloom.config import load_config
from gridloom.generators._code_fingerprint import (
    UNKNOWN,
    callable_digest,
    code_fingerprint,
    code_references,
)


@pytest.fixture
def imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``sys.path`` as it was, and the test's own modules (``fp_*``) forgotten, after the test
    (resolving a config's import paths adds its folder to ``sys.path`` and imports them)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [name for name in sys.modules if name.startswith("fp_")]:
        del sys.modules[name]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def function_in(path: Path, source: str, name: str = "f") -> Callable[..., Any]:
    """``name`` from ``source`` written to ``path``, compiled with that file name (as an import
    would: the function's code points at the file)."""
    path.write_text(source)
    namespace: dict[str, Any] = {"__name__": path.stem}
    exec(compile(source, str(path), "exec"), namespace)
    function: Callable[..., Any] = namespace[name]
    return function


def function_without_file(source: str, name: str = "f") -> Callable[..., Any]:
    """``name`` from ``source`` compiled under a file name that neither exists nor is in the
    line cache: only its bytecode is left to fingerprint."""
    namespace: dict[str, Any] = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    function: Callable[..., Any] = namespace[name]
    return function


MODULE = textwrap.dedent(
    """\
    SUFFIX = "!"

    def helper(text):
        return text.upper() + SUFFIX

    def shout(row, ctx):
        return helper(row["word"])

    def other(row, ctx):
        return 0
    """
)


def test_a_function_read_from_its_file_is_that_files_sha256(tmp_path: Path) -> None:
    """The digest of a function defined in a file is the file's SHA-256 (what ``sha256sum``
    shows), the same for every function of the module."""
    path = tmp_path / "fns.py"
    shout = function_in(path, MODULE, "shout")
    other = function_in(path, MODULE, "other")
    assert callable_digest(shout) == sha256(path) == callable_digest(other)


@pytest.mark.parametrize(
    "edit",
    [
        ('SUFFIX = "!"', 'SUFFIX = "?"'),  # a constant beside the function
        ("return text.upper()", "return text.lower()"),  # a helper's body
        ("    return 0", "    # no longer used\n    return 0"),  # a comment elsewhere
        ("def other", "\n\ndef other"),  # blank lines
    ],
)
def test_any_edit_of_the_module_changes_the_digest(tmp_path: Path, edit: tuple[str, str]) -> None:
    """A function calling a helper of its module is fingerprinted with the helper: an edit of
    the helper, of a constant it reads, but also of a comment or blank lines elsewhere in the
    file changes the digest (documented: the whole file counts, byte for byte)."""
    path = tmp_path / "fns.py"
    before = callable_digest(function_in(path, MODULE, "shout"))
    assert edit[0] in MODULE
    after = callable_digest(function_in(path, MODULE.replace(*edit), "shout"))
    assert after != before
    assert callable_digest(function_in(path, MODULE, "shout")) == before  # reverted


def test_without_its_file_a_function_is_fingerprinted_by_its_source(tmp_path: Path) -> None:
    """A function whose file is gone but whose source the line cache holds (a notebook cell)
    is fingerprinted by its own source text: another body, another digest."""
    name = str(tmp_path / "cell-1.py")  # never written
    digests = []
    for body in ("return 1", "return 2", "return 1"):
        source = f"def f(row, ctx):\n    {body}\n"
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        try:
            digests.append(callable_digest(function_in_memory(source, name)))
        finally:
            linecache.cache.pop(name, None)
    assert digests[0] != digests[1]
    assert digests[0] == digests[2]
    assert UNKNOWN not in digests


def function_in_memory(source: str, filename: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)
    function: Callable[..., Any] = namespace["f"]
    return function


def test_builtins_and_c_functions_are_unknown() -> None:
    """Code with neither source nor bytecode (a builtin, a C type's __call__) is "unknown"."""
    assert callable_digest(len) == UNKNOWN
    assert callable_digest(hashlib.sha256) == UNKNOWN
    assert callable_digest(functools.partial(len)) == UNKNOWN


WRAPPERS = textwrap.dedent(
    """\
    import functools

    def logged(function):
        @functools.wraps(function)
        def wrapper(*args):
            return function(*args)
        return wrapper
    """
)


def test_decorators_partials_methods_and_callable_objects_reach_the_code(tmp_path: Path) -> None:
    """A decorator kept as ``__wrapped__`` counts with the function it wraps (an edit of
    either file changes the digest); a ``functools.partial``, a bound method and a callable
    object are fingerprinted by the code they run."""
    wrappers = tmp_path / "wrappers.py"
    namespace: dict[str, Any] = {}
    wrappers.write_text(WRAPPERS)
    exec(compile(WRAPPERS, str(wrappers), "exec"), namespace)
    path = tmp_path / "fns.py"
    plain = function_in(path, "def f(row, ctx):\n    return 1\n")
    decorated = namespace["logged"](plain)
    both = callable_digest(decorated)
    assert both not in (sha256(path), sha256(wrappers), UNKNOWN)
    wrappers.write_text(WRAPPERS + "# edited\n")
    assert callable_digest(decorated) != both
    assert callable_digest(functools.partial(plain, {"word": "x"})) == sha256(path)

    source = "class Scorer:\n    def __call__(self, row, ctx):\n        return 1\n"
    scorer_class = function_in(path, source, "Scorer")
    scorer = scorer_class()
    assert callable_digest(scorer) == sha256(path)
    assert callable_digest(scorer.__call__) == sha256(path)


def test_the_fields_naming_user_code_are_found_in_every_kind() -> None:
    """A custom column's function, a callable validator's and an agent's Python tools are
    found, each with the field a ConfigError would name; other columns name none."""
    cfg = load_config(
        {
            "providers": [{"name": "sim", "type": "simulated"}],
            "models": [{"alias": "m", "provider": "sim", "model": "x"}],
            "columns": [
                {"name": "word", "category": {"values": ["a", "b"]}},
                {"name": "loud", "custom": {"function": "fns:shout"}, "depends_on": ["word"]},
                {
                    "name": "ok",
                    "validate": {"kind": "callable", "target": "word", "function": "fns:check"},
                },
                {
                    "name": "agent",
                    "llm_agent": {
                        "model": "m",
                        "prompt": "{{ word }}",
                        "tools": [{"python": "fns:lookup"}, {"python": "fns:other"}],
                    },
                },
            ],
        }
    )
    assert code_references(cfg) == {
        "loud": [("custom.function", "fns:shout")],
        "ok": [("validate.check.function", "fns:check")],
        "agent": [
            ("llm_agent.tools[0].function", "fns:lookup"),
            ("llm_agent.tools[1].function", "fns:other"),
        ],
    }


@pytest.mark.usefixtures("imports")
def test_a_configs_fingerprint_maps_each_column_to_its_code(tmp_path: Path) -> None:
    """Import paths resolve against the config's folder; a column naming one function records
    its module file's digest, one naming several the digest of them all (changed by an edit
    of any), a column calling a builtin "unknown"."""
    module = f"fp_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(MODULE)
    other = f"{module}_b"
    (tmp_path / f"{other}.py").write_text("def f(value, ctx):\n    return True\n")
    cfg = load_config(
        {
            "columns": [
                {"name": "word", "category": {"values": ["a", "b"]}},
                {"name": "loud", "custom": {"function": f"{module}:shout"}},
                {"name": "n", "custom": {"function": "builtins:len"}},
                {
                    "name": "ok",
                    "validate": {"kind": "callable", "target": "loud", "function": f"{other}:f"},
                },
            ]
        }
    )
    found = code_fingerprint(cfg, tmp_path)
    assert found == {
        "loud": sha256(tmp_path / f"{module}.py"),
        "n": UNKNOWN,
        "ok": sha256(tmp_path / f"{other}.py"),
    }
    assert json.dumps(found)  # what metadata.json records


# --------------------------------------------------------------------------- hypothesis

NAMES = st.sampled_from(["a", "b", "c"])
CONSTANTS = st.integers(0, 10**6) | st.text("xyz ", max_size=4)


@st.composite
def statements(draw: st.DrawFn) -> str:
    """One statement of a function body: an assignment of a constant, or of another local
    plus a constant (nothing the compiler folds or drops)."""
    target = draw(NAMES)
    if draw(st.booleans()):
        return f"{target} = {draw(CONSTANTS)!r}"
    return f"{target} = {draw(NAMES)} + {draw(st.integers(0, 99))!r}"


@st.composite
def bodies(draw: st.DrawFn) -> list[str]:
    return [*draw(st.lists(statements(), min_size=1, max_size=5)), f"return {draw(NAMES)}"]


def source_of(body: list[str]) -> str:
    return "def f(row, ctx):\n" + "".join(f"    {line}\n" for line in body)


@st.composite
def reformatted(draw: st.DrawFn, body: list[str]) -> str:
    """``body``'s function with whitespace and comments added (nothing else): blank lines,
    trailing spaces, comment lines."""
    lines = ["def f(row, ctx):"]
    for line in body:
        if draw(st.booleans()):
            lines.append("")
        if draw(st.booleans()):
            lines.append("    # " + draw(st.text("abc ", max_size=8)))
        lines.append(f"    {line}" + " " * draw(st.integers(0, 3)))
    return "\n".join(lines) + "\n" * draw(st.integers(1, 3))


@settings(max_examples=150, deadline=None)
@given(bodies(), bodies())
def test_from_its_file_another_body_is_another_fingerprint(a: list[str], b: list[str]) -> None:
    """Functions read from their file: identical sources give identical fingerprints, sources
    differing in a constant or a statement give different ones."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.py"
        first = callable_digest(function_in(path, source_of(a)))
        again = callable_digest(function_in(path, source_of(a)))
        second = callable_digest(function_in(path, source_of(b)))
    assert first == again
    assert (first == second) == (a == b)


@settings(max_examples=150, deadline=None)
@given(bodies(), bodies())
def test_from_bytecode_another_body_is_another_fingerprint(a: list[str], b: list[str]) -> None:
    """Functions without source (bytecode, names and constants fingerprinted): identical
    sources give identical fingerprints, sources differing in a constant or a statement give
    different ones."""
    first = callable_digest(function_without_file(source_of(a)))
    assert first != UNKNOWN
    assert callable_digest(function_without_file(source_of(a))) == first
    assert (callable_digest(function_without_file(source_of(b))) == first) == (a == b)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_whitespace_and_comments_count_in_a_file_not_in_bytecode(data: st.DataObject) -> None:
    """As documented: an edit adding only whitespace or comments changes the fingerprint of
    a function read from its file (every byte counts), not that of one fingerprinted by its
    bytecode (which has no whitespace or comments)."""
    body = data.draw(bodies())
    plain = source_of(body)
    edited = data.draw(reformatted(body))
    assume(edited != plain)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.py"
        before = callable_digest(function_in(path, plain))
        after = callable_digest(function_in(path, edited))
    assert before != after
    assert callable_digest(function_without_file(edited)) == callable_digest(
        function_without_file(plain)
    )
