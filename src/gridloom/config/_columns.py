"""The base of every column configuration, and the value types columns declare.

In YAML/JSON a column is a mapping with ``name``, exactly one *kind key* whose value holds the
kind's parameters, and the optional common fields ``depends_on``, ``drop`` and
``skip_when``::

    - {name: topic, category: {values: [rivers, volcanoes], weights: [2, 1]}}
    - {name: title, expression: {template: "All about {{ topic }}", dtype: string}}
    - {name: note, llm_text: {model: m, prompt: "..."}, skip_when: "{{ topic == 'rivers' }}"}

In Python the same column is ``CategoryColumn(name="topic", values=("rivers", "volcanoes"),
weights=(2, 1))``. Each kind's class is a frozen attrs subclass of :class:`ColumnConfig` whose
``kind`` class variable is its kind key; the classes live with their kinds (``gridloom.kinds``,
or a plugin's package) and are found through the kind registry (:mod:`._kinds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs

from .._attrs import frozen
from ._validators import schema_keywords, to_tuple

__all__ = [
    "MAX_CONDITIONS",
    "TEMPLATE_RESERVED_NAMES",
    "ColumnConfig",
    "ConvertTo",
    "DType",
    "ModelEndpoint",
    "TimeUnit",
]

#: Value types a column can declare. ``json`` values are stored as JSON text, marked in the
#: field's metadata (``gridloom.json``).
DType = Literal["string", "int", "float", "bool", "datetime", "timedelta", "json"]
#: What a numeric sampler's value is converted to before it is stored.
ConvertTo = Literal["int", "float", "string"]
#: The units of datetime and timedelta samplers.
TimeUnit = Literal["days", "hours", "minutes", "seconds"]
#: Which API of its model a column calls.
ModelEndpoint = Literal["chat", "embedding"]

#: Names no template can read as a variable, with the reason: Jinja's parser turns its
#: literals into constants and refuses ``not`` as an operand, and ``self`` is the template's
#: own internals (which templates may not read). Every other identifier, including the
#: names of the template globals (``range``, ``dict`` ...) and the operators Jinja accepts as
#: names (``and``, ``in``, ``if`` ...), reads the column of that name when there is one.
TEMPLATE_RESERVED_NAMES: dict[str, str] = {
    **{
        name: f"templates read {name} as Jinja's literal {name.capitalize()}, never as a column"
        for name in ("true", "false", "none", "True", "False", "None")
    },
    "not": "templates read not as Jinja's operator, never as a column",
    "self": "self is the template's own internals in Jinja, which templates may not read",
}


def _optional_text(instance: object, attribute: attrs.Attribute[str | None], value: object) -> None:
    if value is not None and not (isinstance(value, str) and value.strip()):
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


#: Fields a ``conditional_params`` entry may not change: the column's identity and wiring.
_FIXED_FIELDS = frozenset({"name", "depends_on", "drop", "skip_when", "conditional_params"})
#: The most conditions one column's ``conditional_params`` may have.
MAX_CONDITIONS = 1_000


@schema_keywords(minProperties=1, maxProperties=MAX_CONDITIONS)
def _check_conditional_params(
    instance: object, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or not value:
        raise ValueError(
            "conditional_params must be a mapping of conditions to parameters, with at least"
            " one entry"
        )
    if len(value) > MAX_CONDITIONS:
        raise ValueError(
            f"conditional_params may have at most {MAX_CONDITIONS} conditions, got {len(value)}"
        )
    for condition, params in value.items():
        if not (isinstance(condition, str) and condition.strip()):
            raise ValueError(f"a condition must be a non-empty string, got {condition!r}")
        where = f"conditional_params[{condition!r}]"
        if not isinstance(params, Mapping) or not params:
            raise ValueError(f"{where} must be a non-empty mapping of the kind's parameters")
        fixed = sorted(set(params) & _FIXED_FIELDS)
        if fixed:
            raise ValueError(f"{where} may not set {fixed[0]!r}, only the kind's parameters")


@frozen(kw_only=True)
class ColumnConfig:
    """Fields every column has.

    Attributes:
        name: the column's name; other columns reference it as ``{{ name }}``.
        depends_on: extra columns this one must wait for, beyond those its templates name.
        drop: compute the column (others may use it) but leave it out of the output.
        skip_when: a Jinja expression over the row (``"topic == 'alpha'"``, or the same wrapped
            in ``{{ }}``). Where it is true (by Jinja's truthiness: ``false``, ``none``, ``0``,
            empty strings and empty lists are false; any other value, even the string
            ``"false"``, is true) the cell is null and its generator is not called (no model
            request); the row goes on. The columns it names are dependencies, like a
            template's. Downstream templates see ``None`` (rendered as the text ``None``).
        conditional_params: sampler columns only: conditions (Jinja expressions over the row,
            written like ``skip_when``) mapped to parameters of the column's kind that replace
            its own in the rows where the condition is true; the first true condition wins,
            rows where none is true use the column's parameters (at most 1,000 conditions).
            The columns the conditions (and the parameters, such as a ``subcategory``'s
            ``parent``) name are dependencies. For example, a ``category`` column with
            ``conditional_params: {"country == 'Japan'": {values: [Tokyo, Osaka]}}``.
            Every variant must store the same type as the column.
    """

    #: The kind key (``category``, ``llm_text``, ...): set by every kind's class.
    kind: ClassVar[str] = ""
    #: The API of the model this column's ``model_aliases()`` name: ``chat`` or ``embedding``.
    model_endpoint: ClassVar[ModelEndpoint] = "chat"
    name: str = attrs.field(validator=attrs.validators.min_len(1))
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    drop: bool = False
    skip_when: str | None = attrs.field(default=None, validator=_optional_text)
    conditional_params: dict[str, dict[str, Any]] | None = attrs.field(
        default=None, validator=_check_conditional_params
    )

    def templates(self) -> dict[str, str]:
        """Jinja templates of this column, by field name; their variables are references."""
        return {}

    def direct_references(self) -> dict[str, tuple[str, ...]]:
        """Columns named outright by fields (not templates), by field name."""
        return {"depends_on": self.depends_on} if self.depends_on else {}

    def model_aliases(self) -> dict[str, str]:
        """Model aliases this column uses, by field path (e.g. ``custom.model``)."""
        return {}

    def output_names(self) -> tuple[str, ...]:
        """The columns this one fills: its own, then any side columns."""
        return (self.name,)

    def value_schema(self) -> Mapping[str, Any] | None:
        """The JSON Schema of this column's value, when the kind declares one: templates that
        read fields of the value (``{{ facts.items[0] }}``) are checked against it."""
        return None
