"""docs/cli.md stays true to the command line: generated from click's help texts, the exit
codes and the --json output schemas, every one of which is documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import jsonschema
import pytest

from gridloom.cli import EXIT_CODES, cli, output_schema

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = list(cli.commands) if isinstance(cli, click.Group) else []


def test_cli_reference_is_generated_from_the_commands() -> None:
    """docs/cli.md matches what docs/gen_cli.py renders (run it after changing the CLI)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_cli.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_output_schemas_are_valid_json_schemas() -> None:
    doc = output_schema()
    jsonschema.Draft202012Validator.check_schema(doc)
    assert doc["commands"] == [name for name in COMMANDS if name in doc["commands"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_documented(command: str) -> None:
    """Each command has an Example in its help, a --json option, a schema for that output,
    and a section in docs/cli.md."""
    cmd = cli.commands[command]
    assert "Example:" in (cmd.help or "")
    assert any("--json" in param.opts for param in cmd.params)
    jsonschema.Draft202012Validator.check_schema(output_schema(command))
    text = (ROOT / "docs" / "cli.md").read_text()
    assert f"## `gridloom {command}`" in text
    assert f"### JSON output of {command}" in text


def test_the_exit_codes_are_in_the_reference() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in text


def _listed_exit_codes(help_text: str) -> list[int] | None:
    """The codes of a help text's ``Exit codes:`` block (``None``: it has none)."""
    match = re.search(r"^\s*Exit codes:\n((?:\s+\S.*\n?)+)", help_text, re.MULTILINE)
    if match is None:
        return None
    return [int(code) for code in re.findall(r"^\s{1,8}(\d+)\s", match[1], re.MULTILINE)]


#: What each command whose help lists its exit codes can return. create returns every one:
#: 0 complete, 1 failed, 2 usage/config, 3 the run exists, 4 stopped early, 5 rows missing
#: (run_failure), 130/143 the stop signals.
RETURNS = {"create": set(EXIT_CODES)}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_commands_help_lists_exactly_the_exit_codes_it_returns(command: str) -> None:
    """An `Exit codes:` block lists every code the command can return, once, each one of
    EXIT_CODES; every exit code the help mentions elsewhere is one of them too."""
    text = cli.commands[command].help or ""
    listed = _listed_exit_codes(text)
    if command in RETURNS:
        assert listed is not None, f"{command} --help lists no exit codes"
    if listed is not None:
        assert len(listed) == len(set(listed))
        assert set(listed) == RETURNS.get(command), f"{command}: lists {listed}"
    mentioned = re.findall(r"\b[Ee]xits? (?:code )?(\d+)", text)
    mentioned += re.findall(r"\(exit (\d+)\)", text)
    assert {int(code) for code in mentioned} <= set(EXIT_CODES)


def test_the_exit_codes_block_parses() -> None:
    """The parser of the test above reads a block."""
    text = (
        "Intro.\n\n\b\nExit codes:\n  0    fine\n  5    short,\n       still short\n"
        "  130  int\n\nMore"
    )
    assert _listed_exit_codes(text) == [0, 5, 130]
    assert _listed_exit_codes("no block") is None
