"""``gridloom skill``: the agent skill (``SKILL.md``) that teaches a coding agent to drive
gridloom, printed or installed into an agents' skills folder.

The text ships next to this module (``SKILL.md``, package data). Two of its sections are
filled in when it is rendered, so they cannot go stale: the column kinds (from the kind
registry, plugins included) and the exit codes (from :data:`~._output.EXIT_CODES`). Every
command the skill shows is executed by ``tests/test_skill.py``, and the JSON shapes it
documents are compared there with the commands' real output.
"""

from __future__ import annotations

import importlib.resources
import os
import tempfile
from pathlib import Path
from typing import Any

import click
import yaml

from ..kinds import installed
from ._output import EXIT_CODES, EXIT_CONFIG, EXIT_EXISTS, EXIT_FAILED, Out

__all__ = ["SKILL_FILE", "front_matter", "install_path", "skill", "skill_text"]

#: The file a skill is, inside its own folder.
SKILL_FILE = "SKILL.md"
#: The skill's folder name under ``--install DIR``.
_SKILL_DIR = "gridloom"
#: Markers of the sections filled in when the skill is rendered.
_KINDS_MARKER = "<!-- gridloom:kinds -->"
_EXIT_CODES_MARKER = "<!-- gridloom:exit-codes -->"
#: The longest front matter accepted, in characters.
_MAX_FRONT_MATTER = 4096


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _kinds_table() -> str:
    rows = ["| kind | what each cell holds | from |", "|---|---|---|"]
    for info in installed():
        if not info.available:
            continue
        origin = "built in" if info.builtin else (info.distribution or "a plugin")
        rows.append(f"| `{info.name}` | {_cell(info.summary)} | {_cell(origin)} |")
    return "\n".join(rows)


def _exit_codes_table() -> str:
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| {code} | {_cell(meaning)} |" for code, meaning in EXIT_CODES.items()]
    return "\n".join(rows)


def skill_text() -> str:
    """The whole ``SKILL.md``: the shipped text with its kinds and exit-code tables filled in."""
    template = importlib.resources.files("gridloom.cli").joinpath(SKILL_FILE).read_text("utf-8")
    for marker in (_KINDS_MARKER, _EXIT_CODES_MARKER):
        if template.count(marker) != 1:  # pragma: no cover - a packaging mistake
            raise RuntimeError(f"{SKILL_FILE} must hold {marker} exactly once")
    return template.replace(_KINDS_MARKER, _kinds_table()).replace(
        _EXIT_CODES_MARKER, _exit_codes_table()
    )


def front_matter(text: str) -> dict[str, Any]:
    """The YAML front matter of a skill (between the first two ``---`` lines).

    Raises:
        ValueError: the text has no front matter, or it is not a YAML mapping.
    """
    head, sep, rest = text.partition("\n")
    if head.strip() != "---" or not sep:
        raise ValueError("a skill starts with a '---' line")
    block, sep, _ = rest.partition("\n---\n")
    if not sep or len(block) > _MAX_FRONT_MATTER:
        raise ValueError("the front matter ends with a '---' line within 4096 characters")
    doc = yaml.safe_load(block)
    if not isinstance(doc, dict):
        raise ValueError("the front matter is not a YAML mapping")
    return doc


def install_path(directory: Path) -> Path:
    """Where ``--install DIR`` writes the skill: ``DIR/gridloom/SKILL.md``."""
    return directory / _SKILL_DIR / SKILL_FILE


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file at ``path`` holds exactly ``data`` (reading at most one byte more)."""
    with path.open("rb") as fh:
        return fh.read(len(data) + 1) == data


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.command(short_help="Print or install the agent skill (SKILL.md) for coding agents.")
@click.option(
    "--install",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Write the skill to DIR/gridloom/SKILL.md (folders are created) instead of stdout.",
)
@click.option(
    "--force", is_flag=True, help="With --install: replace a different SKILL.md already there."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"ok", "command": "skill", "name", "description", "path", "written", "text"}.',
)
def skill(directory: Path | None, force: bool, as_json: bool) -> None:
    """Print the gridloom agent skill: a SKILL.md that teaches a coding agent to design,
    validate, preview, run and inspect gridloom pipelines.

    The skill has YAML front matter (name, description) and then the workflow
    (schema, validate --json, check-models, preview --json, create, inspect --json),
    the column kinds installed here, the JSON shapes of those outputs, the exit
    codes, drop reasons with their fixes, and providers with keys read from the
    environment. Every command it shows is run by gridloom's tests.

    With --install DIR it is written to DIR/gridloom/SKILL.md (for instance
    DIR = .claude/skills in a project) and the path is printed. A different
    file already there is refused (exit 3) unless --force; the same text is
    left as it is.

    \b
    Example:
      gridloom skill
      gridloom skill --install .claude/skills
      gridloom skill --install ~/.claude/skills --force --json
    """
    out = Out("skill", as_json)
    if force and directory is None:
        out.fail(EXIT_CONFIG, "--force applies only with --install DIR", kind="UsageError")
    text = skill_text()
    meta = front_matter(text)
    doc: dict[str, Any] = {
        "name": str(meta["name"]),
        "description": str(meta["description"]),
        "path": None,
        "written": False,
        "text": text,
    }
    if directory is None:
        if as_json:
            out.emit(doc)
        else:
            click.echo(text, nl=False)
        return
    path = install_path(directory.expanduser())
    data = text.encode("utf-8")
    try:
        same = path.is_file() and _holds(path, data)
        if not same:
            if path.exists() and not path.is_file():
                out.fail(
                    EXIT_EXISTS, "exists and is not a file", kind="OutputExistsError", file=path
                )
            if path.exists() and not force:
                out.fail(
                    EXIT_EXISTS,
                    "holds a different SKILL.md; pass --force to replace it",
                    kind="OutputExistsError",
                    file=path,
                )
            _write(path, data)
    except OSError as exc:
        out.fail(
            EXIT_FAILED,
            f"cannot write: {exc.strerror or exc}",
            kind=type(exc).__name__,
            file=path,
        )
    doc.update(path=str(path), written=not same)
    if as_json:
        out.emit(doc)
    else:
        click.echo(f"wrote {path}" if not same else f"{path} is up to date")
