"""The ``validate`` column kind and its validators.

A ``validate`` column checks another column's value with one validator and holds the verdict
``{is_valid, messages, details}``. Validators are pluggable like column kinds: each is one
module declaring a :class:`ValidatorKind`, named by an entry point in the
``gridloom.validators`` group (gridloom's own — ``python``, ``sql``, ``json_schema``,
``regex``, ``callable``, ``http`` — are declared the same way). The validator modules are
imported through that registry, when a config first names a validator, so their optional
packages (``ruff``, ``sqlglot``) are needed only then.
"""

from ...config._validator import ValidatorConfig
from ._base import Checker, ValidationFailed, ValidatorKind, verdict
from ._column import KIND, VERDICT_TYPE, ValidateColumn
from ._registry import VALIDATOR_GROUP, validator_kinds

__all__ = [
    "KIND",
    "VALIDATOR_GROUP",
    "VERDICT_TYPE",
    "Checker",
    "ValidateColumn",
    "ValidationFailed",
    "ValidatorConfig",
    "ValidatorKind",
    "validator_kinds",
    "verdict",
]
