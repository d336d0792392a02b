"""A model column's ``validate_with``: its validators as checks of each answer.

Each entry is a validator of the ``gridloom.validators`` registry, built into its
:class:`~._base.Checker` as for a ``validate`` column whose target is the model column itself.
The check of an answer value runs the checker like a ``validate`` cell does (a synchronous
checker in a worker thread, an asynchronous one on the trio loop; a batch checker gets a
one-item list) and returns the validator's messages when it finds the value invalid. A
validator that crashes fails that cell only, naming the column and the validator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import trio

from ...config._llm import LLMColumn
from ...config._validator import ValidatorConfig
from ...errors import ConfigError, GenerationError
from ...generators._corrections import AnswerCheck
from ...generators._factory import BuildContext
from ...generators.base import CellContext
from ._base import Checker, verdict
from ._column import ValidateColumn
from ._registry import validator_kinds, validator_problem

__all__ = ["answer_checks"]


def answer_checks(column: LLMColumn, ctx: BuildContext) -> list[AnswerCheck]:
    """The checks of ``column``'s ``validate_with`` validators, in order.

    Raises:
        ConfigError: a validator is not available or cannot be built (a missing optional
            package, an unresolvable function), naming ``<kind>.validate_with[i]``.
    """
    return [_check(column, index, spec, ctx) for index, spec in enumerate(column.validate_with)]


def _check(column: LLMColumn, index: int, spec: ValidatorConfig, ctx: BuildContext) -> AnswerCheck:
    where = f"{column.kind}.validate_with[{index}]"
    declared = validator_kinds().get(spec.kind)
    if declared is None or not isinstance(spec, declared.config):
        problem = validator_problem(spec.kind) or f"no validator kind {spec.kind!r} is registered"
        raise ConfigError(problem, column=column.name, field=f"{where}.kind")
    # The checker of a validate column aimed at the model column itself.
    target = ValidateColumn(name=column.name, target=column.name, check=spec)
    try:
        checker = declared.build(spec, target, ctx)
    except ConfigError as exc:
        field = (exc.field or "").removeprefix("validate.")
        raise ConfigError(
            exc.message, column=column.name, field=f"{where}.{field}" if field else where
        ) from None
    if not isinstance(checker, Checker):
        raise ConfigError(
            f"the {declared.name!r} validator made a {type(checker).__name__}, not a Checker",
            column=column.name,
            field=f"{where}.kind",
        )
    return _AnswerCheck(column.name, index, spec.kind, checker, target)


class _AnswerCheck:
    """One validator checking a model column's answer values."""

    def __init__(
        self, column: str, index: int, kind: str, checker: Checker, target: ValidateColumn
    ):
        self.column = column
        self.kind = kind
        self.label = f"validate_with[{index}] ({kind})"
        self.checker = checker
        self.max_chars = target.max_chars

    async def __call__(self, value: Any, ctx: CellContext) -> list[str]:
        if value is None:
            return [f"{self.kind}: the answer is empty"]
        if isinstance(value, str) and len(value) > self.max_chars:
            return [f"{self.kind}: the answer is longer than {self.max_chars} characters"]
        own = attrs.evolve(ctx, params={})  # a checker may set ctx.params: never the cell's
        batch = self.checker.granularity == "batch"
        question: Any = [value] if batch else value
        try:
            if self.checker.is_async:
                got = await self.checker.acheck(question, own)
            else:
                got = await trio.to_thread.run_sync(self.checker.check, question, own)
            if batch:
                got = _single(got)
        except GenerationError:
            raise
        except Exception as exc:
            raise GenerationError(
                f"column {self.column!r}: {self.label} failed: {type(exc).__name__}: {exc}"
            ) from exc
        found = verdict(got, column=self.column)
        if found["is_valid"]:
            return []
        messages: Sequence[str] = found["messages"] or ["the answer is invalid"]
        return [f"{self.kind}: {message}" for message in messages]


def _single(got: Any) -> Any:
    if not isinstance(got, list | tuple) or len(got) != 1:
        raise TypeError(f"a batch validator must return a list of 1 result, got {got!r:.80}")
    return got[0]
