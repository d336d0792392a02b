"""The agent skill (``gridloom skill``) cannot rot: every command it tells an agent to run is
run here, the JSON shapes it documents are compared with the real output, its starter
configs validate and preview, and its tables follow the kind registry and the exit codes.

How the skill is read (the convention its own text states):

- each line of a fenced ``bash`` block is one command, ``gridloom ARGS`` with no shell syntax;
  a trailing ``# exit K`` gives the exit code to expect (0 otherwise). The placeholders
  ``CONFIG``, ``DIR`` and ``N`` become an example config, a fresh output directory and a
  small number; the commands run in order, as ``python -m gridloom ARGS``, in one temporary
  working directory, on each example below;
- each fenced ``json`` block documents the output of the first backticked ``gridloom ...``
  command of the paragraph before it (``(exit K)`` there: its exit code). Every key shown must be in
  the real output, with a value of the same JSON type; a documented list of objects must be
  non-empty in the output, each element holding the keys of the documented first one. They
  run on the example with rows that fail (below); a command documented to exit 2 runs on a
  copy of it with a misspelled reference;
- each fenced ``yaml`` block with ``columns`` is a config that must validate and preview;
  one without is a providers/models fragment that must validate given one column.

The example with rows that fail is ``examples/quickstart.yaml`` (simulated endpoint, no key)
plus a column ``risky`` that divides by zero for the topic ``glaciers`` and
``run.allow_drops: 0.5``, so a run is complete and still has drop reasons to show.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gridloom.cli import EXIT_CODES, output_schema
from gridloom.cli._skill import front_matter, install_path, skill_text
from gridloom.kinds import installed

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: Seconds one command may take.
TIMEOUT = 120
#: Rows a documented ``-n N`` generates.
SMALL_N = "20"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")
_SHELL_SYNTAX = re.compile(r"[|&;<>`$]")
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")
#: Keys whose documented value must equal the real one (top level, or dotted paths).
_EXACT = frozenset({"ok", "command", "status", "valid", "error.type"})


# --------------------------------------------------------------------------- reading the skill


def blocks(text: str, language: str) -> list[tuple[int, str]]:
    """The fenced blocks of ``language``: where each starts, and its content."""
    return [(m.start(), m.group(2)) for m in _FENCE.finditer(text) if m.group(1) == language]


def bash_commands(text: str) -> list[tuple[list[str], int]]:
    """Every command of the skill's bash blocks: its arguments after ``gridloom``, and the exit
    code it is documented to give."""
    commands = []
    for _, block in blocks(text, "bash"):
        for line in block.splitlines():
            if not line.strip():
                continue
            match = _EXIT.search(line)
            code = int(match.group(1)) if match else 0
            command = line[: match.start()] if match else line
            assert "#" not in command, f"only '# exit K' may follow a command: {line!r}"
            assert not _SHELL_SYNTAX.search(command), f"no shell syntax in the skill: {line!r}"
            words = shlex.split(command)
            assert words[0] == "gridloom", f"a skill command runs gridloom: {line!r}"
            commands.append((words[1:], code))
    return commands


def json_shapes(text: str) -> list[tuple[list[str], int, Any]]:
    """Every documented JSON output: the command's arguments, its exit code and the shape."""
    shapes = []
    for start, block in blocks(text, "json"):
        before = text[:start].rstrip("\n").rsplit("\n\n", 1)[-1]
        commands = re.findall(r"`gridloom ([^`]+)`", before)
        assert commands, f"a json block follows a paragraph naming its command: {before!r}"
        match = re.search(r"\(exit (\d+)\)", before)
        shapes.append(
            (shlex.split(commands[0]), int(match.group(1)) if match else 0, json.loads(block))
        )
    return shapes


def substitute(args: list[str], places: dict[str, str]) -> list[str]:
    """``args`` with each placeholder replaced; an unknown placeholder fails the test."""
    out = []
    for arg in args:
        if _PLACEHOLDER.match(arg):
            assert arg in places, f"unknown placeholder {arg!r}: document it and add it here"
            arg = places[arg]
        out.append(arg)
    return out


def conforms(shape: Any, actual: Any, where: str = "") -> list[str]:
    """How ``actual`` differs from the documented ``shape`` (empty when it conforms)."""
    label = where or "<top>"
    if isinstance(shape, dict):
        if not isinstance(actual, dict):
            return [f"{label}: an object is documented, got {actual!r:.80}"]
        problems = []
        for key, value in shape.items():
            path = f"{where}.{key}" if where else key
            if key not in actual:
                problems.append(f"{path}: documented, missing from the output")
            elif path in _EXACT and value != actual[key]:
                problems.append(f"{path}: documented {value!r}, got {actual[key]!r}")
            else:
                problems += conforms(value, actual[key], path)
        return problems
    if isinstance(shape, list):
        if not isinstance(actual, list):
            return [f"{label}: a list is documented, got {actual!r:.80}"]
        if not shape:
            return []
        if isinstance(shape[0], dict) and not actual:
            return [f"{label}: documented with elements, the output's is empty"]
        return [
            p for i, item in enumerate(actual) for p in conforms(shape[0], item, f"{where}[{i}]")
        ]
    if _json_type(shape) != _json_type(actual):
        return [f"{label}: documented {_json_type(shape)}, got {_json_type(actual)} {actual!r:.80}"]
    return []


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


# --------------------------------------------------------------------------- running it


def gridloom(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m gridloom ARGS`` in a subprocess: no terminal, no progress bar."""
    env = {**os.environ, "GRIDLOOM_PROGRESS": "off", "NO_COLOR": "1"}
    env.pop("GRIDLOOM_TRACE", None)
    return subprocess.run(
        [sys.executable, "-m", "gridloom", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def failing_rows_config(directory: Path) -> Path:
    """examples/quickstart.yaml plus a column that fails for one topic, drops allowed."""
    doc = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    doc["columns"].append(
        {"name": "risky", "expression": "{{ 'fine' if topic != 'glaciers' else (1 / 0) }}"}
    )
    doc["run"]["allow_drops"] = 0.5
    path = directory / "example.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def misspelled_config(config: Path) -> Path:
    """A copy of ``config`` whose ``summary`` prompt references ``topc``."""
    text = config.read_text()
    assert "{{ topic }} interesting" in text
    path = config.with_name("misspelled.yaml")
    path.write_text(text.replace("{{ topic }} interesting", "{{ topc }} interesting"))
    return path


def ran(proc: subprocess.CompletedProcess[str], args: list[str], code: int) -> Any:
    """Check the exit code; return the JSON document printed with ``--json`` (else None)."""
    shown = f"gridloom {shlex.join(args)}"
    assert proc.returncode == code, f"{shown}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    if "--json" not in args:
        return None
    doc = json.loads(proc.stdout)
    assert doc["ok"] is (code == 0), shown
    assert doc["command"] == args[0], shown
    jsonschema.validate(doc, output_schema(args[0]))
    return doc


@pytest.fixture(scope="module")
def text() -> str:
    return skill_text()


@pytest.mark.slow
@pytest.mark.parametrize("example", ["failing_rows", "people"])
def test_every_command_of_the_skill_runs(text: str, example: str, tmp_path: Path) -> None:
    """Each bash command of the skill, placeholders filled, exits with its documented code on
    the example, and with --json prints a document of its command that follows its schema."""
    config = (
        failing_rows_config(tmp_path) if example == "failing_rows" else EXAMPLES / "people.yaml"
    )
    places = {"CONFIG": str(config), "DIR": str(tmp_path / "run"), "N": SMALL_N}
    commands = bash_commands(text)
    run = [args for args, _ in commands]
    assert ["validate", "CONFIG", "--json"] in run
    assert ["preview", "CONFIG", "-n", "5", "--json"] in run
    assert ["create", "CONFIG", "-n", "N", "-o", "DIR"] in run
    assert ["inspect", "DIR", "--json"] in run
    for args, code in commands:
        args = substitute(args, places)
        ran(gridloom(*args, cwd=tmp_path), args, code)
    assert (tmp_path / "run" / "export" / "data.jsonl").is_file()


@pytest.mark.slow
def test_the_documented_json_shapes_are_the_real_ones(text: str, tmp_path: Path) -> None:
    """Each JSON block of the skill matches the real output of the command it documents: the
    keys it shows are there, with values of the same type (exact for ok, command, status,
    valid and error.type), and documented lists of objects are non-empty."""
    config = failing_rows_config(tmp_path)
    shapes = json_shapes(text)
    documented = {(args[0], code) for args, code, _ in shapes}
    assert {("validate", 2), ("validate", 0), ("preview", 0), ("inspect", 0)} <= documented
    for args, code, shape in shapes:
        target = misspelled_config(config) if code == 2 else config
        places = {"CONFIG": str(target), "DIR": str(tmp_path / "run"), "N": SMALL_N}
        args = substitute(args, places)
        doc = ran(gridloom(*args, cwd=tmp_path), args, code)
        assert doc is not None, f"{args}: a documented JSON output needs --json"
        assert conforms(shape, doc) == [], shlex.join(args)


def test_conforms_finds_what_differs() -> None:
    """The shape check reports a missing key, a type change, a changed exact value and an
    empty list documented with elements, and accepts extra keys and extra elements."""
    shape = {"ok": True, "n": 1, "items": [{"a": "x"}], "tags": [], "m": None}
    good = {
        "ok": True,
        "n": 2.5,
        "items": [{"a": "y", "b": 1}, {"a": "z"}],
        "tags": [1],
        "m": None,
        "x": 0,
    }
    assert conforms(shape, good) == []
    assert conforms(shape, {**good, "ok": False}) == ["ok: documented True, got False"]
    assert conforms(shape, {k: v for k, v in good.items() if k != "n"}) == [
        "n: documented, missing from the output"
    ]
    assert conforms(shape, {**good, "m": "text"})[0].startswith("m: documented null, got str")
    assert conforms(shape, {**good, "items": []}) == [
        "items: documented with elements, the output's is empty"
    ]
    assert conforms(shape, {**good, "items": [{"a": "y"}, {"b": 1}]}) == [
        "items[1].a: documented, missing from the output"
    ]


def test_the_skill_starter_configs_validate_and_preview(text: str, tmp_path: Path) -> None:
    """Each yaml block of the skill is valid: a config validates and previews a few rows; a
    providers/models fragment validates once given one column of its first model."""
    yamls = [yaml.safe_load(block) for _, block in blocks(text, "yaml")]
    assert any("columns" in doc for doc in yamls)
    for index, doc in enumerate(yamls):
        path = tmp_path / f"block{index}.yaml"
        if "columns" in doc:
            path.write_text(yaml.safe_dump(doc))
            ran(
                gridloom("preview", str(path), "-n", "3", "--json", cwd=tmp_path),
                ["preview", "--json"],
                0,
            )
        else:
            alias = doc["models"][0]["alias"]
            column = {"name": "probe", "llm_text": {"model": alias, "prompt": "Hello."}}
            path.write_text(yaml.safe_dump({**doc, "columns": [column]}))
        ran(gridloom("validate", str(path), "--json", cwd=tmp_path), ["validate", "--json"], 0)


# --------------------------------------------------------------------------- its content


def test_the_front_matter_names_the_skill(text: str) -> None:
    """The skill opens with YAML front matter: name gridloom and a description an agent can
    match on (within the 64 and 1024 character limits of agent skills)."""
    meta = front_matter(text)
    assert meta["name"] == "gridloom"
    assert re.fullmatch(r"[a-z0-9-]{1,64}", meta["name"])
    assert isinstance(meta["description"], str)
    assert 20 < len(meta["description"]) <= 1024
    assert "Use it when" in meta["description"]


@given(
    name=st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True),
    description=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=200),
)
def test_front_matter_reads_what_yaml_writes(name: str, description: str) -> None:
    """Any name and description dumped as YAML front matter are read back unchanged."""
    head = yaml.safe_dump({"name": name, "description": description}, allow_unicode=True)
    assert front_matter(f"---\n{head}---\n# body\n") == {"name": name, "description": description}


@pytest.mark.parametrize(
    "bad",
    [
        "# no front matter\n",
        "---\nname: x\n",
        "---\n- a list\n---\n",
        "---\n" + "a: b\n" * 2000 + "---\n",
    ],
)
def test_front_matter_refuses_what_is_not_one(bad: str) -> None:
    """Text without a closed, bounded YAML mapping between '---' lines is refused."""
    with pytest.raises(ValueError, match=r"front matter|starts with"):
        front_matter(bad)


def test_the_kinds_table_is_the_registry(text: str) -> None:
    """The column kinds table lists every available kind installed, in registry order, each
    with the first sentence of its documentation."""
    section = text.split("## Column kinds", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.*?) \| (.*?) \|$", section, flags=re.MULTILINE)
    kinds = [info for info in installed() if info.available]
    assert [name for name, _, _ in rows] == [info.name for info in kinds]
    for (_, summary, _), info in zip(rows, kinds, strict=True):
        assert summary == info.summary.replace("|", "\\|")
    assert {"llm_text", "llm_structured", "expression", "category"} <= {name for name, _, _ in rows}


def test_the_exit_codes_table_is_the_cli_s(text: str) -> None:
    """The exit codes table holds every documented exit code with its meaning, and each code
    a bash command expects is one of them."""
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.*) \|$", section, flags=re.MULTILINE)
    assert {int(code): meaning for code, meaning in rows} == EXIT_CODES
    assert {code for _, code in bash_commands(text)} <= set(EXIT_CODES)


def test_the_skill_keeps_keys_out_of_configs(text: str) -> None:
    """Providers take keys from environment variables, and the skill says never to write one."""
    assert "api_key_env" in text
    assert "Never write a key into a config" in text
    assert not re.search(r"api_key:\s", text)


# --------------------------------------------------------------------------- the command


def test_skill_prints_the_skill(text: str, tmp_path: Path) -> None:
    """`gridloom skill` prints the rendered SKILL.md; with --json, the same text with its
    name and description, following its schema."""
    proc = gridloom("skill", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == text
    doc = ran(gridloom("skill", "--json", cwd=tmp_path), ["skill", "--json"], 0)
    assert doc["text"] == text
    assert (doc["name"], doc["path"], doc["written"]) == ("gridloom", None, False)
    assert doc["description"] == front_matter(text)["description"]


def test_skill_install_writes_and_refuses_to_overwrite(text: str, tmp_path: Path) -> None:
    """--install DIR writes DIR/gridloom/SKILL.md (folders created) and prints the path; the
    same text again is left alone; a different file is refused (exit 3) and kept, until
    --force replaces it."""
    skills = tmp_path / "agent" / "skills"
    target = skills / "gridloom" / "SKILL.md"
    assert install_path(skills) == target

    proc = gridloom("skill", "--install", str(skills), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote {target}\n"
    assert target.read_text(encoding="utf-8") == text

    args = ["skill", "--install", str(skills), "--json"]
    doc = ran(gridloom(*args, cwd=tmp_path), args, 0)
    assert (doc["path"], doc["written"]) == (str(target), False)

    target.write_text("my own notes\n")
    proc = gridloom("skill", "--install", str(skills), cwd=tmp_path)
    assert proc.returncode == 3
    assert (
        proc.stderr == f"error: {target}: holds a different SKILL.md; pass --force to replace it\n"
    )
    assert target.read_text() == "my own notes\n"
    doc = ran(gridloom(*args, cwd=tmp_path), args, 3)
    assert doc["error"]["type"] == "OutputExistsError"
    assert doc["error"]["file"] == str(target)

    doc = ran(gridloom(*args, "--force", cwd=tmp_path), [*args, "--force"], 0)
    assert (doc["path"], doc["written"]) == (str(target), True)
    assert target.read_text(encoding="utf-8") == text
    assert [p.name for p in target.parent.iterdir()] == ["SKILL.md"]


def test_skill_install_refuses_a_folder_in_the_way(tmp_path: Path) -> None:
    """A folder where SKILL.md would go is refused (exit 3), --force or not."""
    (tmp_path / "gridloom" / "SKILL.md").mkdir(parents=True)
    args = ["skill", "--install", str(tmp_path), "--force", "--json"]
    doc = ran(gridloom(*args, cwd=tmp_path), args, 3)
    assert doc["error"]["message"] == "exists and is not a file"


def test_skill_force_needs_install(tmp_path: Path) -> None:
    """--force without --install is a usage error (exit 2) and writes nothing."""
    args = ["skill", "--force", "--json"]
    doc = ran(gridloom(*args, cwd=tmp_path), args, 2)
    assert doc["error"]["type"] == "UsageError"
    assert list(tmp_path.iterdir()) == []
