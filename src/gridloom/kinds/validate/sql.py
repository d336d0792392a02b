"""The ``sql`` validator: the text parses as SQL of the chosen dialect (``sqlglot``), and with
``lint: true`` ``sqlfluff`` finds nothing under the chosen rules. Both come from the
``validators`` extra and are imported (or started) only when a column uses them.

Parse errors are reported as ``line:col message``, lint findings as ``line:col CODE message``.
sqlfluff runs as a subprocess (``python -m sqlfluff lint``, local config files ignored) from the
column's worker thread, bounded like ``ruff`` (:mod:`._subprocess`); it starts slowly, so
``batch: true`` — one process per row group — is the mode to use at scale.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from typing import Any, ClassVar

import attrs

from ..._attrs import frozen
from ...config._validator import ValidatorConfig
from ...config._validators import to_tuple
from ...errors import ConfigError
from ...generators._factory import BuildContext
from ._base import ValidatorKind, as_text, invalid, needs_extra, valid
from ._column import ValidateColumn
from ._subprocess import (
    LANE,
    LintingChecker,
    snippet_index,
)

__all__ = ["VALIDATOR", "SqlCheck", "SqlChecker"]

#: Most bytes of sqlfluff's report read per value.
_RULE = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")


def _check_rules(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for rule in value:
        if not isinstance(rule, str) or not _RULE.fullmatch(rule):
            raise ValueError(f"{rule!r} is not a sqlfluff rule (like LT01, CP or layout.spacing)")


@frozen(kw_only=True)
class SqlCheck(ValidatorConfig):
    """SQL: every statement must parse in the chosen dialect (`sqlglot`); optionally `sqlfluff`
    must find nothing under the chosen rules.

    Attributes:
        dialect: the dialect (`postgres`, `mysql`, `sqlite`, `duckdb`, `bigquery`...; empty for
            sqlglot's generic SQL and sqlfluff's `ansi`).
        allow_empty: text with no statement is valid.
        lint: also lint with sqlfluff (parsed statements only).
        lint_rules: sqlfluff rules or groups to apply (`LT01`, `CP`, `layout`...); empty for
            sqlfluff's defaults.
        batch: lint a row group's values with one sqlfluff process (it starts slowly).
        timeout: longest one sqlfluff process may take, in seconds.
    """

    kind: ClassVar[str] = "sql"
    dialect: str = ""
    allow_empty: bool = False
    lint: bool = False
    lint_rules: tuple[str, ...] = attrs.field(
        default=(), converter=to_tuple, validator=_check_rules
    )
    batch: bool = False
    timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))


class SqlChecker(LintingChecker):
    """Parses each value with sqlglot, then lints it with sqlfluff when asked."""

    def __init__(self, check: SqlCheck, sqlglot: Any, *, column: str):
        self.config = check
        self.sqlglot = sqlglot
        self.column = column
        self.granularity = "batch" if check.batch else "cell"
        self.tool = "sqlfluff"
        self.timeout = check.timeout
        if check.lint:
            self.lane = LANE

    def command(self, *paths: str) -> list[str]:
        """The sqlfluff command line: the files at ``paths``, else SQL on stdin."""
        command = [sys.executable, "-m", "sqlfluff", "lint", "--format", "json"]
        command += ["--dialect", self.config.dialect or "ansi", "--ignore-local-config"]
        if self.config.lint_rules:
            command += ["--rules", ",".join(self.config.lint_rules)]
        return [*command, *(paths or ("-",))]

    def parsed(self, value: Any) -> dict[str, Any] | str:
        """The verdict when no lint is needed, else the SQL to lint."""
        text = as_text(value)
        if text is None:
            return invalid([f"expected SQL (text), got {type(value).__name__}"])
        errors = self.sqlglot.errors
        try:
            statements = self.sqlglot.parse(text, read=self.config.dialect or None)
        except errors.ParseError as exc:
            found = [
                f"{error.get('line', 0)}:{error.get('col', 0)} {error.get('description', '')}"
                for error in exc.errors
            ]
            return invalid(found or [str(exc)])
        except (errors.TokenError, errors.SqlglotError, RecursionError) as exc:
            return invalid([f"{type(exc).__name__}: {exc}"])
        if not self.config.allow_empty and not any(s is not None for s in statements):
            return invalid(["no SQL statement"])
        return text if self.config.lint else valid()

    def lint_many(self, codes: dict[int, str]) -> dict[int, list[str]]:
        """sqlfluff's findings on each of ``codes`` (by index), from one process."""
        report = self.report_on_files(codes, ".sql")
        found: dict[int, list[str]] = {}
        for item in report:
            index = snippet_index(item.get("filepath")) if isinstance(item, dict) else None
            if index is None or index not in codes:
                continue
            for violation in item.get("violations") or []:
                where = f"{violation.get('start_line_no', 0)}:{violation.get('start_line_pos', 0)}"
                text = f"{where} {violation.get('code', '')} {violation.get('description', '')}"
                found.setdefault(index, []).append(text.rstrip())
        return found


def _build(check: SqlCheck, column: ValidateColumn, ctx: BuildContext) -> SqlChecker:
    try:
        import sqlglot
        import sqlglot.errors
    except ImportError:
        raise needs_extra("sqlglot", column=column.name, kind="sql") from None
    if check.dialect:
        try:
            sqlglot.Dialect.get_or_raise(check.dialect)
        except (ValueError, KeyError) as exc:
            raise ConfigError(
                str(exc).rstrip("."),
                column=column.name,
                field="validate.dialect",
            ) from None
    checker = SqlChecker(check, sqlglot, column=column.name)
    if check.lint:
        if importlib.util.find_spec("sqlfluff") is None:
            raise needs_extra("sqlfluff", column=column.name, kind="sql")
        # A dialect sqlfluff does not know fails here, before any request.
        checker.probe(
            seconds=120,
            run_field="validate.lint",
            refused="the settings",
            refused_field="validate.dialect",
        )
    return checker


VALIDATOR = ValidatorKind(config=SqlCheck, build=_build)
