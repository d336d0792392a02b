"""Client schemas, checked within bounds: their size, their meta-schema, and validation that
counts its work.

Schemas come from clients, so nothing here is unbounded: :class:`SchemaTally` holds the
schemas of one request to :data:`MAX_SCHEMA_DEPTH`, :data:`MAX_SCHEMA_VALUES` and
:data:`MAX_SCHEMA_OBJECTS` (checking a schema against its meta-schema costs about 0.2 ms per
object, and is then cached) and to the drafts 6 and later; validation spends a
:class:`Budget` of :data:`MAX_SCHEMA_STEPS` steps, one per keyword checked (ten for one that
validates against another schema), and never runs a client's regular expression (``pattern``
and ``patternProperties`` are not checked, so a pattern cannot make it backtrack for ever;
properties matched only by a pattern count as additional), nor checks
``unevaluatedProperties``. Only a local ``$ref`` (``#...``) is followed: any other is refused
by :func:`check_schema`, and the validators' registry fetches nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..config._schema_refs import local_registry, remote_ref

if TYPE_CHECKING:
    import jsonschema.protocols

__all__ = [
    "MAX_SCHEMA_DEPTH",
    "MAX_SCHEMA_OBJECTS",
    "MAX_SCHEMA_STEPS",
    "MAX_SCHEMA_VALUES",
    "Budget",
    "InvalidSchema",
    "SchemaTally",
    "SchemaTooLarge",
    "UnsatisfiableSchema",
    "check_schema",
    "is_valid",
    "schema_key",
    "validate",
]

#: Deepest nesting of JSON objects and arrays in a schema.
MAX_SCHEMA_DEPTH = 32
#: Most JSON values (objects, arrays, strings, numbers, ...) in the schemas of one request.
MAX_SCHEMA_VALUES = 16_384
#: Most JSON objects (subschemas, mostly) in the schemas of one request.
MAX_SCHEMA_OBJECTS = 1_024
#: Steps of work for the values of one request: one per subschema built or keyword
#: validated, more for long strings and large constants.
MAX_SCHEMA_STEPS = 20_000

#: Keywords whose values are data, not schemas.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
#: Keywords whose arrays the meta-schemas want unique; jsonschema compares items that do not
#: sort pairwise, so they must be strings (as the meta-schemas say anyway).
_STRING_ARRAYS = frozenset({"type", "required"})
_STRING_ARRAY_MAPS = frozenset({"dependentRequired", "dependencies"})


@functools.cache
def _drafts() -> tuple[Any, ...]:
    """The drafts accepted in ``$schema`` (drafts 3 and 4 want ``enum`` items unique, which
    jsonschema checks in quadratic time). jsonschema, like every use of it here, loads with
    the first schema a request brings: a text-only endpoint never needs it."""
    import jsonschema

    return (
        jsonschema.Draft6Validator,
        jsonschema.Draft7Validator,
        jsonschema.Draft201909Validator,
        jsonschema.Draft202012Validator,
    )


class InvalidSchema(Exception):
    """The schema is not a valid JSON Schema, or not one the simulated endpoint takes.

    Attributes:
        message: why, in one line (what the endpoint's 400 answer says).
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnsatisfiableSchema(ValueError):
    """No value can satisfy the schema (``false``, or an impossible recursion)."""


class SchemaTooLarge(UnsatisfiableSchema):
    """The schema, or the value it asks for, is beyond the simulated endpoint's limits."""


class Budget:
    """Steps of work left for building and validating values (one per request)."""

    __slots__ = ("left",)

    def __init__(self, steps: int = MAX_SCHEMA_STEPS):
        self.left = steps

    def spend(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise SchemaTooLarge(
                "the schema asks for more work than the simulated endpoint does for one"
                f" answer ({MAX_SCHEMA_STEPS} steps: subschemas built and keywords checked)"
            )


class _Running(threading.local):
    """The budget of the validation running on this thread, if any."""

    budget: Budget | None = None


_RUNNING = _Running()


# --------------------------------------------------------------------- sizes


class SchemaTally:
    """The schemas of one request, counted against :data:`MAX_SCHEMA_VALUES` and
    :data:`MAX_SCHEMA_OBJECTS`; each also checked for depth and ``$schema``."""

    def __init__(self) -> None:
        self.values = 0
        self.objects = 0

    def add(self, schema: Any) -> None:
        """Count ``schema`` (walking at most what the limits leave).

        Raises:
            SchemaTooLarge: the schemas so far are over a limit.
            InvalidSchema: ``schema`` names an unsupported ``$schema`` draft, or
                has a ``type`` / ``required`` array of other than strings.
        """
        stack: list[tuple[Any, int, bool]] = [(schema, 1, True)]
        while stack:
            node, depth, is_schema = stack.pop()
            self.values += 1
            if self.values > MAX_SCHEMA_VALUES:
                raise SchemaTooLarge(
                    f"the schemas of one request may hold at most {MAX_SCHEMA_VALUES} values"
                )
            if depth > MAX_SCHEMA_DEPTH:
                raise SchemaTooLarge(f"a schema may nest at most {MAX_SCHEMA_DEPTH} levels deep")
            if isinstance(node, dict):
                self.objects += 1
                if self.objects > MAX_SCHEMA_OBJECTS:
                    raise SchemaTooLarge(
                        f"the schemas of one request may hold at most {MAX_SCHEMA_OBJECTS} objects"
                    )
                for key, child in node.items():
                    if is_schema:
                        _check_keyword(key, child, root=depth == 1)
                    stack.append((child, depth + 1, is_schema and key not in _DATA_KEYWORDS))
            elif isinstance(node, list):
                stack.extend((child, depth + 1, is_schema) for child in node)


def _strings(value: Any) -> bool:
    return not isinstance(value, list) or all(isinstance(item, str) for item in value)


def _check_keyword(key: str, value: Any, *, root: bool) -> None:
    if key == "$schema" and (root or isinstance(value, str)):
        draft = None
        if isinstance(value, str):
            from jsonschema.validators import validator_for

            with contextlib.suppress(ValueError):  # not even a URL
                draft = validator_for({key: value}, default=None)  # type: ignore[arg-type]
        if not root or draft not in _drafts():
            raise InvalidSchema(
                "'$schema' may only name JSON Schema draft-06, draft-07, 2019-09 or 2020-12,"
                " at the root of a schema"
            )
    elif (key in _STRING_ARRAYS and not _strings(value)) or (
        key in _STRING_ARRAY_MAPS
        and isinstance(value, dict)
        and not all(_strings(item) for item in value.values())
    ):
        raise InvalidSchema(f"'{key}' arrays must hold strings")


# --------------------------------------------------------------------- validation


def _ignored(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
    return iter(())


def _additional_properties(
    validator: Any, extra: Any, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    """``additionalProperties`` with ``patternProperties`` ignored (no client regex runs)."""
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    extras = [name for name in instance if name not in properties]
    if validator.is_type(extra, "object"):
        for name in extras:
            yield from validator.descend(instance[name], extra, path=name)
    elif not extra and extras:
        from jsonschema import ValidationError  # loaded: this runs inside a validator

        names = ", ".join(repr(name) for name in sorted(extras)[:8])
        yield ValidationError(f"Additional properties are not allowed ({names})")


#: Keywords that validate the instance against another schema (each such step costs about
#: as much as ten plain keywords: jsonschema resolves and sets up the subschema).
_DESCENDING = frozenset(
    {"$ref", "$dynamicRef", "$recursiveRef", "allOf", "anyOf", "oneOf", "not", "if"}
    | {"then", "else", "dependentSchemas", "dependencies", "prefixItems", "contains"}
)
_DESCENT_STEPS = 10


def _counted(name: str, keyword: Callable[..., Any]) -> Callable[..., Any]:
    cost = _DESCENT_STEPS if name in _DESCENDING else 1

    def counted(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        budget = _RUNNING.budget
        if budget is not None:
            budget.spend(cost * len(value) if isinstance(value, list) else cost)
        return keyword(validator, value, instance, schema)

    return counted


_OVERRIDES: dict[str, Callable[..., Any]] = {
    "pattern": _ignored,
    "patternProperties": _ignored,
    "unevaluatedProperties": _ignored,
    "additionalProperties": _additional_properties,
}


@functools.cache
def _bounded_class(cls: type[jsonschema.protocols.Validator]) -> Any:
    """``cls`` with every keyword counted against the running budget, and no client regex."""
    from jsonschema.validators import extend

    keywords: dict[str, Callable[..., Any]] = {}
    for name, keyword in cls.VALIDATORS.items():
        keywords[name] = _counted(name, _OVERRIDES.get(name) or keyword)
    return extend(cls, keywords)  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    from jsonschema.validators import Draft202012Validator, validator_for

    schema = json.loads(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    if isinstance(schema, dict):
        # Without "$schema", a $ref back to the root keeps the bounded class (jsonschema
        # switches to the stock class of a subschema that names its draft).
        schema = {key: value for key, value in schema.items() if key != "$schema"}
    validator: jsonschema.protocols.Validator = _bounded_class(cls)(
        schema, registry=local_registry()
    )
    return validator


def schema_key(schema: Any) -> str:
    """The canonical JSON text of ``schema`` (what validators and verdicts are cached by)."""
    return json.dumps(schema, sort_keys=True)


def check_schema(schema: Any) -> None:
    """Check that ``schema`` is a valid JSON Schema (the verdict is cached per schema).

    Call it on schemas that :class:`SchemaTally` has counted: checking costs about 0.2 ms
    per object.

    Raises:
        InvalidSchema: it is not.
    """
    problem = _schema_problem(schema_key(schema))
    if problem is not None:
        raise InvalidSchema(problem)


@functools.lru_cache(maxsize=256)
def _schema_problem(schema_json: str) -> str | None:
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import Draft202012Validator, validator_for

    schema = json.loads(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        return exc.message
    except (OverflowError, RecursionError, ValueError) as exc:  # e.g. a pattern's "a{99999999999}"
        return f"the schema cannot be checked: {exc}"
    return remote_ref(schema)  # only local $ref, as gridloom's own columns: nothing is fetched


def validate(value: Any, schema: Any, budget: Budget, key: str | None = None) -> bool:
    """Whether ``value`` is valid against ``schema`` (whose :func:`schema_key` is ``key``, if
    known), within ``budget``.

    Raises:
        SchemaTooLarge: the budget ran out.
        UnsatisfiableSchema: the schema has a ``$ref`` that does not resolve (or resolves
            to itself without end).
    """
    if key is None:
        key = schema_key(schema)
        budget.spend(1 + len(key) // 64)
    validator = _validator(key)
    from referencing.exceptions import Unresolvable  # loaded with the validator

    _RUNNING.budget = budget
    try:
        return bool(validator.is_valid(value))
    except Unresolvable as exc:
        raise UnsatisfiableSchema(f"a $ref does not resolve: {exc}") from None
    except RecursionError:
        raise UnsatisfiableSchema("the schema refers to itself without end") from None
    finally:
        _RUNNING.budget = None


def is_valid(value: Any, schema: Any, *, budget: Budget | None = None) -> bool:
    """Whether ``value`` is valid against ``schema`` (validators are cached per schema);
    ``False`` also when that cannot be told within ``budget`` (a fresh one when not given)
    or the schema does not resolve."""
    try:
        return validate(value, schema, Budget() if budget is None else budget)
    except UnsatisfiableSchema:
        return False
