"""Anthropic's extended ``thinking`` in a config: the combinations the Messages API refuses,
found when the config is built instead of as a 400 on every request of the run.

Thinking comes from ``extra_body.thinking`` (the column's over its provider's, as the client
merges them; a column's ``null`` turns the provider's off for it) on a model of an
``anthropic`` provider. It must be an object whose ``type`` is a string and whose
``budget_tokens``, if any, is an integer (required with ``enabled``, and at least 1024): a
malformed one is a problem where it is set, once. A type other than ``enabled``,
``disabled`` and ``adaptive`` may be one the API added since: it is told about in a warning
and not checked further. While thinking is on, the API requires ``budget_tokens`` below
``max_tokens``, a ``temperature`` of 1 (if any), no ``top_k``, and a ``top_p`` from 0.95 to
1 (if any). Each parameter is found where the client takes it from (it merges the column's
``extra_body`` over the provider's over the body built from the column's and the model's
fields): the column's ``extra_body``, else the provider's, else the column's field, else the
model's (``max_tokens``: else the 1024 the Anthropic client sends). With interleaved
thinking (a provider header ``anthropic-beta`` naming :data:`INTERLEAVED_BETA`), Anthropic
lets ``budget_tokens`` exceed ``max_tokens`` (the context window bounds it): that rule is
then not checked. A distribution must keep every value it can draw within the rule; a value
in ``extra_body`` that is not a number is left to the API.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._attrs import frozen
from ..errors import ConfigIssue
from ._columns import ColumnConfig
from ._inference import InferenceDistribution
from ._llm import LLMColumn

if TYPE_CHECKING:
    from ._models import ModelConfig, ProviderConfig

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "INTERLEAVED_BETA",
    "MIN_BUDGET_TOKENS",
    "MIN_TOP_P",
    "THINKING_TYPES",
    "shown",
    "thinking_issues",
]

logger = logging.getLogger("gridloom.config")

#: The smallest ``budget_tokens`` the API accepts (here and on the simulated endpoint).
MIN_BUDGET_TOKENS = 1024
#: The lowest ``top_p`` the API accepts with thinking on.
MIN_TOP_P = 0.95
#: The ``max_tokens`` the Anthropic client sends when neither column nor model sets one
#: (``clients._types.ANTHROPIC_DEFAULT_MAX_TOKENS``; config may not import clients).
DEFAULT_MAX_TOKENS = 1024
#: The thinking types gridloom knows (the simulated endpoint serves exactly these).
THINKING_TYPES = ("enabled", "disabled", "adaptive")
_KNOWN = ", ".join(THINKING_TYPES)
_EXAMPLE = "{type: enabled, budget_tokens: 2048}"
#: Longest value shown in a message (see :func:`shown`).
SHOWN_CHARS = 40
#: (place, type) of each unknown thinking type already warned about.
_TOLD: set[tuple[str, str]] = set()
#: The ``anthropic-beta`` feature (its date after it) that turns interleaved thinking on.
INTERLEAVED_BETA = "interleaved-thinking-"


def shown(value: Any) -> str:
    """``value`` for a message, short whatever it is: the ``repr`` of a string, number,
    boolean or ``None`` (cut to :data:`SHOWN_CHARS`), else its type's name."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        # repr would be long, and beyond 4300 digits refused by Python itself
        sign = "a negative" if value < 0 else "an"
        return f"{sign} integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str | int | float | bool) or value is None:
        text = repr(value)
        return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 3]}..."
    return f"a {type(value).__name__}"


def thinking_issues(
    columns: Sequence[ColumnConfig],
    providers: Sequence[ProviderConfig],
    models: Sequence[ModelConfig],
) -> list[ConfigIssue]:
    """The problems Anthropic's API would refuse the requests for, by their ``thinking``
    (see the module doc): a malformed ``thinking`` once where it is set (a provider's
    ``extra_body``, or a column's), and each rule a column's requests would break with it;
    none for other providers."""
    problems: list[ConfigIssue] = []
    provider_on: dict[str, bool] = {}
    for index, provider in enumerate(providers):
        if provider.type != "anthropic" or provider.extra_body.get("thinking") is None:
            continue
        messages, on = _shape(provider.extra_body["thinking"], f"provider {provider.name!r}")
        field = f"providers[{index}].extra_body.thinking"
        problems.extend(ConfigIssue(message, None, field) for message in messages)
        provider_on[provider.name] = on
    by_name = {provider.name: (index, provider) for index, provider in enumerate(providers)}
    by_alias = {model.alias: model for model in models}
    for col in columns:
        if not isinstance(col, LLMColumn):
            continue
        model = by_alias.get(col.model)
        found = by_name.get(model.provider) if model is not None else None
        if model is None or found is None or found[1].type != "anthropic":
            continue
        index, provider = found
        request = _Request(col=col, model=model, provider=provider, index=index)
        if "thinking" in col.extra_body:
            thinking = col.extra_body["thinking"]
            if thinking is None:  # none for this column, whatever its provider sets
                continue
            messages, on = _shape(thinking, f"column {col.name!r}")
            field = request.field("extra_body.thinking")
            problems.extend(ConfigIssue(message, col.name, field) for message in messages)
            origin = "the column's extra_body.thinking"
        else:
            thinking = provider.extra_body.get("thinking")
            on = provider_on.get(provider.name, False)
            origin = f"the extra_body.thinking of provider {provider.name!r}"
        if on:
            for field, message in _rules(request, thinking, origin):
                problems.append(ConfigIssue(message, col.name, field))
    return problems


@frozen(kw_only=True)
class _Request:
    """Where a column's requests take their fields from: the column, its model, and its
    provider (at ``index`` in the config's providers)."""

    col: LLMColumn
    model: ModelConfig
    provider: ProviderConfig
    index: int

    def field(self, name: str) -> str:
        """The column's field ``name`` as a config path (its kind first)."""
        return f"{self.col.kind}.{name}" if self.col.kind else name

    def extra(self, name: str) -> tuple[str, str, Any] | None:
        """The field to name, where the value comes from, and the value of ``name`` in the
        column's ``extra_body``, else the provider's; ``None`` when in neither."""
        if name in self.col.extra_body:
            field = self.field(f"extra_body.{name}")
            return field, f"the column's extra_body.{name}", self.col.extra_body[name]
        if name in self.provider.extra_body:
            field = f"providers[{self.index}].extra_body.{name}"
            source = f"the extra_body.{name} of provider {self.provider.name!r}"
            return field, source, self.provider.extra_body[name]
        return None

    def sent(self, name: str) -> tuple[str, str, Any] | None:
        """As :meth:`extra`, for the value the client sends as ``name``: from ``extra_body``,
        else the column's field, else the model's; ``None`` when it sends none."""
        if (found := self.extra(name)) is not None:
            return found
        if (value := getattr(self.col, name, None)) is not None:
            return self.field(name), f"the column's {name}", value
        if (value := getattr(self.model, name, None)) is not None:
            return self.field(name), f"the {name} of model {self.model.alias!r}", value
        return None


def _shape(thinking: Any, where: str) -> tuple[list[str], bool]:
    """What is malformed in the ``thinking`` that ``where`` sets, and whether it turns
    thinking on (well-formed, ``enabled`` or ``adaptive``); an unknown type is told about
    (:func:`_tell_unknown`) and not checked further."""
    if not isinstance(thinking, Mapping):
        return [f"must be an object such as {_EXAMPLE}, got {shown(thinking)}"], False
    kind = thinking.get("type")
    if not isinstance(kind, str):
        return [f"type must be a string ({_KNOWN}), got {shown(kind)}"], False
    budget = thinking.get("budget_tokens")
    if kind == "enabled" and budget is None:
        return [
            f"type enabled needs budget_tokens, an integer of at least {MIN_BUDGET_TOKENS}"
        ], False
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        return [f"budget_tokens must be an integer, got {shown(budget)}"], False
    if kind == "enabled" and isinstance(budget, int) and budget < MIN_BUDGET_TOKENS:
        return [f"budget_tokens must be at least {MIN_BUDGET_TOKENS}, got {shown(budget)}"], False
    if kind not in THINKING_TYPES:
        _tell_unknown(kind, where)
        return [], False
    return [], kind != "disabled"


def _rules(
    request: _Request, thinking: Mapping[str, Any], origin: str
) -> Iterator[tuple[str, str]]:
    """(field, message) of each rule the column's requests break with ``thinking`` on (a
    well-formed one, from ``origin``)."""
    on = f"with extended thinking on ({origin}), Anthropic's API"
    budget = thinking.get("budget_tokens")
    interleaved = _interleaved(request.provider)
    if thinking.get("type") == "enabled" and isinstance(budget, int) and not interleaved:
        sent = request.sent("max_tokens")
        if sent is None:
            field = request.field("max_tokens")
            given = f"the {DEFAULT_MAX_TOKENS} sent by default"
            points: tuple[float, ...] | None = (DEFAULT_MAX_TOKENS,)
        else:
            field, source, value = sent
            given, points = f"{source} {_shown(value)}", _numbers(value)
        if points is not None and min(points) <= budget:
            yield (
                field,
                f"{on} needs max_tokens above budget_tokens ({shown(budget)}), which covers"
                f" the thinking and the answer; got {given}",
            )
    sent = request.sent("temperature")
    if sent is not None and any(point != 1 for point in _numbers(sent[2]) or ()):
        field, source, value = sent
        yield field, f"{on} allows only temperature 1; got {source} {_shown(value)}"
    sent = request.sent("top_p")
    if sent is not None and any(not MIN_TOP_P <= p <= 1 for p in _numbers(sent[2]) or ()):
        field, source, value = sent
        yield field, f"{on} needs top_p from {MIN_TOP_P:g} to 1; got {source} {_shown(value)}"
    sent = request.extra("top_k")
    if sent is not None and sent[2] is not None:
        field, source, value = sent
        yield field, f"{on} refuses top_k; got {source} {shown(value)}"


def _tell_unknown(kind: str, where: str) -> None:
    """Warn, once per process for each place it is set in, that ``kind`` is a thinking type
    gridloom does not know: the API may have added it, so it is sent unchecked."""
    key = (where, shown(kind))
    if key in _TOLD:
        return
    _TOLD.add(key)
    logger.warning(
        "%s: thinking type %s is not one gridloom knows (%s); requests carry it unchecked,"
        " and Anthropic's API decides (told once)",
        where,
        shown(kind),
        _KNOWN,
    )


def _interleaved(provider: ProviderConfig) -> bool:
    """Whether ``provider``'s headers ask for interleaved thinking (``anthropic-beta``, a
    comma-separated list of features, names :data:`INTERLEAVED_BETA`)."""
    return any(
        name.lower() == "anthropic-beta" and INTERLEAVED_BETA in value.lower()
        for name, value in provider.headers.items()
    )


def _numbers(value: Any) -> tuple[float, ...] | None:
    """The values ``value`` can take at their bounds (a distribution's values of weight
    above 0, or its ``uniform`` ends; a number itself), or ``None`` when it is no number
    (a value of ``extra_body`` the API judges itself)."""
    if isinstance(value, InferenceDistribution):
        if value.values is not None and value.weights is not None:
            return tuple(v for v, w in zip(value.values, value.weights, strict=False) if w > 0)
        return value.points
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (value,)
    return None


def _shown(value: Any) -> str:
    """A sampling parameter's value for a message: a distribution as written, a float as
    ``:g`` writes it, anything else by :func:`shown`."""
    if isinstance(value, InferenceDistribution):
        return value.describe()
    return f"{value:g}" if isinstance(value, float) else shown(value)
