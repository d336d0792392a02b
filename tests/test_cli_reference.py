"""docs/cli.md stays true to the command line: generated from click's help texts, the exit
codes and the --json output schemas, every one of which is documented."""

from __future__ import annotations

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
