"""Every column class by its kind key (the key that names a column's kind in YAML/JSON)."""

from __future__ import annotations

from ._columns import SAMPLER_KINDS, ColumnConfig, CustomColumn, ExpressionColumn
from ._llm import (
    EmbeddingColumn,
    LLMCodeColumn,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
)

__all__ = ["COLUMN_KINDS"]

#: In the order the kinds are documented. A new column kind must be added here to be loadable.
_ALL: tuple[type[ColumnConfig], ...] = (
    *SAMPLER_KINDS,
    ExpressionColumn,
    CustomColumn,
    LLMTextColumn,
    LLMCodeColumn,
    LLMStructuredColumn,
    LLMJudgeColumn,
    EmbeddingColumn,
)
COLUMN_KINDS: dict[str, type[ColumnConfig]] = {cls.kind: cls for cls in _ALL}
