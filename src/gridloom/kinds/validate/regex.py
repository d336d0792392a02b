"""The ``regex`` validator: the text matches a regular expression (compiled when the config is
loaded), wholly (``match: full``) or somewhere (``match: search``)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import attrs

from ..._attrs import frozen
from ...config._validator import ValidatorConfig
from ...generators._factory import BuildContext
from ...generators.base import Context
from ._base import Checker, ValidatorKind, invalid, valid
from ._column import ValidateColumn

__all__ = ["VALIDATOR", "RegexCheck", "RegexChecker"]


def _check_pattern(instance: Any, _attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"pattern is not a valid regular expression: {exc}") from None


@frozen(kw_only=True)
class RegexCheck(ValidatorConfig):
    """Text matching a regular expression (Python's `re` syntax).

    Attributes:
        pattern: the regular expression.
        match: `full` (the whole text matches) or `search` (a match anywhere).
        ignore_case: match letters in either case.
    """

    kind: ClassVar[str] = "regex"
    pattern: str = attrs.field(validator=_check_pattern)
    match: Literal["full", "search"] = "full"
    ignore_case: bool = False

    def compiled(self) -> re.Pattern[str]:
        """The compiled pattern."""
        return re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)


class RegexChecker(Checker):
    """Matches each value's text (``str()`` of a number or a bool) against the pattern."""

    def __init__(self, check: RegexCheck):
        self.config = check
        self.regex = check.compiled()

    def check(self, value: Any, ctx: Context) -> Any:
        if isinstance(value, bool | int | float):
            value = str(value)
        if not isinstance(value, str):
            return invalid([f"expected text, got {type(value).__name__}"])
        if self.config.match == "full":
            if self.regex.fullmatch(value) is None:
                return invalid([f"does not match {self.config.pattern!r}"])
            return valid()
        if self.regex.search(value) is None:
            return invalid([f"no match for {self.config.pattern!r}"])
        return valid()


def _build(check: RegexCheck, column: ValidateColumn, ctx: BuildContext) -> RegexChecker:
    return RegexChecker(check)


VALIDATOR = ValidatorKind(config=RegexCheck, build=_build)
