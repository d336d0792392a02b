"""The ``python`` validator: the code parses (``ast``), then ``ruff`` lints it with the rules
the column chooses.

``ruff check`` runs in a subprocess started from the column's worker thread (never from the
event loop) with a wall-clock timeout — on each value through stdin, or with ``batch`` on a row
group's values written to a temporary folder, one process for all of them. At most one such
subprocess per CPU but one runs at once (the remaining CPU is the event loop's), and its report
is read up to a bound. Syntax errors are reported as ``line:col SyntaxError: message``,
findings as ``line:col CODE message``.
"""

from __future__ import annotations

import ast
import os
import re
from typing import Any, ClassVar

import attrs

from ..._attrs import frozen
from ...config._validator import ValidatorConfig
from ...config._validators import to_tuple
from ...generators._factory import BuildContext
from ._base import ValidatorKind, as_text, invalid, needs_extra, valid
from ._column import ValidateColumn
from ._subprocess import (
    LANE,
    MAX_LINT_OUTPUT,
    LintingChecker,
    snippet_index,
)

__all__ = ["DEFAULT_RULES", "VALIDATOR", "PythonCheck", "PythonChecker"]

#: ruff's own default selection: pyflakes, and the pycodestyle errors that are not style.
DEFAULT_RULES: tuple[str, ...] = ("E4", "E7", "E9", "F")
#: Most bytes of ruff's output read (its JSON report of one snippet).
_SELECTOR = re.compile(r"(ALL|[A-Z]{1,4}[0-9]{0,4})")


def _check_rules(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for rule in value:
        if not isinstance(rule, str) or not _SELECTOR.fullmatch(rule):
            raise ValueError(
                f"{attribute.name}: {rule!r} is not a ruff rule selector (like F, E9 or F401)"
            )


@frozen(kw_only=True)
class PythonCheck(ValidatorConfig):
    """Python code: it must parse, and `ruff` must find nothing under the chosen rules.

    Attributes:
        rules: ruff rule selectors to apply (`F`, `E9`, `F401`, `ALL`...).
        ignore: ruff rule selectors to leave out.
        lint: run ruff; when false only the parse is checked.
        batch: lint a row group's values with one ruff process (far less CPU than one
            process per value; the verdicts come when the row group's values are all there).
        timeout: longest one ruff process may take, in seconds (a slower one fails its cell,
            or its row group with `batch`).
    """

    kind: ClassVar[str] = "python"
    rules: tuple[str, ...] = attrs.field(
        default=DEFAULT_RULES,
        converter=to_tuple,
        validator=[attrs.validators.min_len(1), _check_rules],
    )
    ignore: tuple[str, ...] = attrs.field(default=(), converter=to_tuple, validator=_check_rules)
    lint: bool = True
    batch: bool = False
    timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))


def parse_problems(code: str) -> list[str]:
    """Why ``code`` does not parse as Python (empty when it does)."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        where = f"{exc.lineno or 0}:{exc.offset or 0}"
        return [f"{where} {type(exc).__name__}: {exc.msg}"]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [f"0:0 {type(exc).__name__}: {exc}"]
    return []


class PythonChecker(LintingChecker):
    """Parses each value, then lints it with ``ruff`` in a subprocess: one per value, or one
    per row group with ``batch``."""

    def __init__(self, check: PythonCheck, *, column: str, ruff: str | None):
        self.config = check
        self.column = column
        self.ruff = ruff
        self.granularity = "batch" if check.batch else "cell"
        self.tool = "ruff"
        self.timeout = check.timeout
        if check.lint:  # the checks wait on ruff processes: a scheduler lane of their own
            self.lane = LANE

    def command(self, *paths: str) -> list[str]:
        """The ruff command line: the files at ``paths``, else code on stdin; a JSON report
        on stdout."""
        assert self.ruff is not None
        command = [self.ruff, "check", "--isolated", "--no-cache", "--output-format", "json"]
        command += ["--select", ",".join(self.config.rules)]
        if self.config.ignore:
            command += ["--ignore", ",".join(self.config.ignore)]
        if paths:
            return [*command, "--", *paths]
        return [*command, "--stdin-filename", "snippet.py", "-"]

    def parsed(self, value: Any) -> dict[str, Any] | str:
        """The verdict when no lint is needed, else the code to lint."""
        code = as_text(value)
        if code is None:
            return invalid([f"expected Python code (text), got {type(value).__name__}"])
        problems = parse_problems(code)
        if problems:
            return invalid(problems)
        return code if self.config.lint else valid()

    def lint_one(self, code: str) -> list[str]:
        """ruff's findings on ``code``, as ``line:col CODE message``."""
        report = self.report(self.command(), stdin=code.encode("utf-8"), limit=MAX_LINT_OUTPUT)
        return [_finding(item) for item in report if isinstance(item, dict)]

    def lint_many(self, codes: dict[int, str]) -> dict[int, list[str]]:
        """ruff's findings on each of ``codes`` (by index), from one ruff process."""
        report = self.report_on_files(codes, ".py")
        found: dict[int, list[str]] = {}
        for item in report:
            index = snippet_index(item.get("filename")) if isinstance(item, dict) else None
            if index is not None and index in codes:
                found.setdefault(index, []).append(_finding(item))
        return found


def _finding(item: dict[str, Any]) -> str:
    location = item.get("location") or {}
    code = item.get("code") or "invalid-syntax"
    row, col = location.get("row", 0), location.get("column", 0)
    return f"{row}:{col} {code} {item.get('message', '')}".rstrip()


def find_ruff() -> str | None:
    """The ruff binary of the installed ``ruff`` package (``None`` when it is missing)."""
    try:
        from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]
    except ImportError:
        return None
    try:
        return os.fsdecode(find_ruff_bin())
    except FileNotFoundError:
        return None


def _build(check: PythonCheck, column: ValidateColumn, ctx: BuildContext) -> PythonChecker:
    if not check.lint:
        return PythonChecker(check, column=column.name, ruff=None)
    ruff = find_ruff()
    if ruff is None:
        raise needs_extra("ruff", column=column.name, kind="python")
    checker = PythonChecker(check, column=column.name, ruff=ruff)
    # A selector ruff does not know fails here, before any request.
    checker.probe(
        seconds=60, run_field="validate.kind", refused="the rules", refused_field="validate.rules"
    )
    return checker


VALIDATOR = ValidatorKind(config=PythonCheck, build=_build)
