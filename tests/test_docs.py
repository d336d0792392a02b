"""Documentation stays true to the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_generated_from_the_models() -> None:
    """docs/configuration.md matches what docs/gen_reference.py renders from the attrs models."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs exactly the test command the README's quickstart gives."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m .*$", readme, flags=re.MULTILINE)
    test_command = next(c for c in commands if "nox -s tests" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()
