"""Anthropic's extended ``thinking`` in a config: the combinations the Messages API refuses,
found when the config is built instead of as a 400 on every request of the run.

Thinking comes from ``extra_body.thinking`` (the column's over its provider's, as the client
merges them) on a model of an ``anthropic`` provider. The API then requires an object with
``type`` ``enabled``, ``disabled`` or ``adaptive``; with ``enabled``, an integer
``budget_tokens`` of at least 1024 and below ``max_tokens``; and while thinking is on, a
``temperature`` of 1 (if any), no ``top_k``, and a ``top_p`` from 0.95 to 1 (if any). Each
parameter is the column's, else its model's (``max_tokens``: else the 1024 the Anthropic
client sends); a distribution must keep every value it can draw within the rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigIssue
from ._columns import ColumnConfig
from ._inference import InferenceDistribution
from ._llm import LLMColumn

if TYPE_CHECKING:
    from ._models import ModelConfig, ProviderConfig

__all__ = ["thinking_issues"]

#: The smallest ``budget_tokens`` the API accepts.
MIN_BUDGET_TOKENS = 1024
#: The lowest ``top_p`` the API accepts with thinking on.
MIN_TOP_P = 0.95
#: The ``max_tokens`` the Anthropic client sends when neither column nor model sets one
#: (``clients._types.ANTHROPIC_DEFAULT_MAX_TOKENS``; config may not import clients).
DEFAULT_MAX_TOKENS = 1024
_TYPES = ("enabled", "disabled", "adaptive")


def thinking_issues(
    columns: Sequence[ColumnConfig],
    providers: Sequence[ProviderConfig],
    models: Sequence[ModelConfig],
) -> list[ConfigIssue]:
    """A problem per model-calling column whose requests the Anthropic API would refuse
    for their ``thinking`` (see the module doc); none for other providers."""
    by_name = {provider.name: provider for provider in providers}
    by_alias = {model.alias: model for model in models}
    problems: list[ConfigIssue] = []
    for col in columns:
        if not isinstance(col, LLMColumn):
            continue
        model = by_alias.get(col.model)
        provider = by_name.get(model.provider) if model is not None else None
        if model is None or provider is None or provider.type != "anthropic":
            continue
        if "thinking" in col.extra_body:
            thinking, origin = col.extra_body["thinking"], "extra_body.thinking"
        elif "thinking" in provider.extra_body:
            thinking = provider.extra_body["thinking"]
            origin = f"extra_body.thinking of provider {provider.name!r}"
        else:
            continue
        prefix = f"{col.kind}." if col.kind else ""
        for field, message in _problems(col, model, provider, thinking, origin):
            problems.append(ConfigIssue(message, col.name, prefix + field))
    return problems


def _problems(
    col: LLMColumn,
    model: ModelConfig,
    provider: ProviderConfig,
    thinking: Any,
    origin: str,
) -> Iterator[tuple[str, str]]:
    """(field, message) of each rule ``col``'s requests would break."""
    if not isinstance(thinking, Mapping):
        example = "{type: enabled, budget_tokens: 2048}"
        yield "extra_body", f"{origin} must be an object such as {example}"
        return
    kind = thinking.get("type")
    if kind not in _TYPES:
        yield "extra_body", f"{origin}: type must be enabled, disabled or adaptive, got {kind!r}"
        return
    if kind == "disabled":
        return
    on = f"with extended thinking on ({origin}), Anthropic's API"
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int):
            yield "extra_body", f"{origin}: budget_tokens must be an integer, got {budget!r}"
        elif budget < MIN_BUDGET_TOKENS:
            yield "extra_body", f"{origin}: budget_tokens must be at least 1024, got {budget}"
        else:
            field, source, value = _param(col, model, "max_tokens")
            lowest = DEFAULT_MAX_TOKENS if value is None else min(_points(value))
            if lowest <= budget:
                given = "the 1024 sent by default" if value is None else f"{source} {_shown(value)}"
                yield (
                    field,
                    f"{on} needs max_tokens above budget_tokens ({budget}), which covers the"
                    f" thinking and the answer; got {given}",
                )
    field, source, value = _param(col, model, "temperature")
    if value is not None and any(point != 1 for point in _points(value)):
        yield field, f"{on} allows only temperature 1; got {source} {_shown(value)}"
    field, source, value = _param(col, model, "top_p")
    if value is not None and any(not MIN_TOP_P <= p <= 1 for p in _points(value)):
        yield field, f"{on} needs top_p from 0.95 to 1; got {source} {_shown(value)}"
    top_k = col.extra_body.get("top_k", provider.extra_body.get("top_k"))
    if top_k is not None:
        yield "extra_body", f"{on} refuses top_k (extra_body.top_k is {top_k!r})"


def _param(col: LLMColumn, model: ModelConfig, name: str) -> tuple[str, str, Any]:
    """The field to name, where the value comes from, and the value (column's, else the
    model's, else ``None``)."""
    value = getattr(col, name)
    if value is not None:
        return name, f"the column's {name}", value
    return name, f"the {name} of model {model.alias!r}", getattr(model, name)


def _points(value: float | InferenceDistribution) -> tuple[float, ...]:
    """The values ``value`` can take at their bounds (a distribution's values of weight
    above 0, or its ``uniform`` ends)."""
    if not isinstance(value, InferenceDistribution):
        return (value,)
    if value.values is not None and value.weights is not None:
        return tuple(v for v, w in zip(value.values, value.weights, strict=False) if w > 0)
    return value.points


def _shown(value: float | InferenceDistribution) -> str:
    return value.describe() if isinstance(value, InferenceDistribution) else f"{value:g}"
