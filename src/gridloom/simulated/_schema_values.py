"""JSON values that satisfy a JSON Schema, drawn from a seeded ``random.Random``.

Supported: ``type`` (object, array, string, integer, number, boolean, null, and lists of
them), ``properties``, ``required``, ``additionalProperties``, ``min/maxProperties``,
``enum``, ``const``, ``items`` (and ``prefixItems`` / tuple ``items``), ``min/maxItems``,
``uniqueItems``, ``minimum`` / ``maximum`` / ``exclusiveMinimum`` / ``exclusiveMaximum``
(numbers, and draft-4 booleans), ``multipleOf`` (integers), ``min/maxLength``, ``anyOf`` /
``oneOf`` (the first branch whose value validates), ``allOf`` (merged), local ``$ref`` into
``$defs`` / ``definitions``, ``format`` date, date-time, time, email, uri, uuid, hostname,
ipv4 (roughly), and ``pattern`` (a string built from the expression's parse tree, see
:mod:`._pattern_values`; it wins over ``format``). Every value is checked with ``jsonschema``
(``pattern`` aside: no client regex runs here); :func:`value_for_schema` retries a few draws
and then returns its best effort.

Building is bounded, because schemas come from clients: a value is built within the
request's :class:`~._schema_checks.Budget` of work, its building and validating counted
together, with at most :data:`MAX_ARRAY_ITEMS` items per array, :data:`MAX_STRING_LENGTH`
characters per string and :data:`MAX_OBJECT_PROPERTIES` properties asked for with
``minProperties`` (a schema asking for more is refused with :class:`SchemaTooLarge`). The
schema itself is checked and counted by :mod:`._schema_checks`, whose names are re-exported
here.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ._pattern_values import Pattern, parse_pattern
from ._schema_checks import (
    MAX_SCHEMA_DEPTH,
    MAX_SCHEMA_OBJECTS,
    MAX_SCHEMA_STEPS,
    MAX_SCHEMA_VALUES,
    Budget,
    InvalidSchema,
    SchemaTally,
    SchemaTooLarge,
    UnsatisfiableSchema,
    check_schema,
    is_valid,
    schema_key,
    validate,
)

__all__ = [
    "MAX_ARRAY_ITEMS",
    "MAX_OBJECT_PROPERTIES",
    "MAX_SCHEMA_DEPTH",
    "MAX_SCHEMA_OBJECTS",
    "MAX_SCHEMA_STEPS",
    "MAX_SCHEMA_VALUES",
    "MAX_STRING_LENGTH",
    "Budget",
    "InvalidSchema",
    "SchemaTally",
    "SchemaTooLarge",
    "UnsatisfiableSchema",
    "check_schema",
    "is_valid",
    "value_for_schema",
]

#: Most items of a built array (a larger ``minItems`` is refused).
MAX_ARRAY_ITEMS = 256
#: Longest built string (a larger ``minLength`` is refused).
MAX_STRING_LENGTH = 4_096
#: Largest ``minProperties`` accepted.
MAX_OBJECT_PROPERTIES = 256

_ATTEMPTS = 4
#: How far each draw of a ``pattern``'s open repeats may go beyond their minimum, in turn,
#: until a draw fits ``min/maxLength`` (0: open repeats at their minimum).
_PATTERN_SPREADS = (3, 3, 8, 32, 128, 0, 0)
_MAX_DEPTH = 12
_SHALLOW_DEPTH = 5
_WORDS = tuple(
    """
    amber atlas bright cedar delta ember fable garnet harbor island juniper kestrel lantern
    meadow nimbus orchard pebble quartz river summit timber umber valley willow yonder zephyr
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def value_for_schema(
    schema: Any, rng: random.Random, *, words: Sequence[str] = (), budget: Budget | None = None
) -> Any:
    """A JSON value valid against ``schema`` (best effort for unsupported keywords).

    Args:
        schema: the JSON Schema (a dict or a boolean), counted by :class:`SchemaTally`.
        rng: source of every choice; the same state gives the same value.
        words: words to build strings from (e.g. taken from the prompt); a built-in list
            is used when empty.
        budget: the work allowed (:data:`MAX_SCHEMA_STEPS` when not given).

    Raises:
        UnsatisfiableSchema: the schema is ``false``, recurses without end, or has a
            ``$ref`` that does not resolve.
        SchemaTooLarge: the value asked for is beyond the limits (see the module doc).
    """
    budget = Budget() if budget is None else budget
    builder = _Builder(schema, rng, list(words) or list(_WORDS), budget)
    key = schema_key(schema)
    budget.spend(1 + len(key) // 64)
    value = builder.build(schema, 0)
    for _ in range(_ATTEMPTS - 1):
        if validate(value, schema, budget, key):
            break
        value = builder.build(schema, 0)
    return value


def _weight(value: Any, limit: int) -> int:
    """JSON values in ``value`` (counting stops past ``limit``)."""
    count = 0
    stack = [value]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


class _Builder:
    def __init__(self, root: Any, rng: random.Random, words: list[str], budget: Budget):
        self.root = root
        self.rng = rng
        self.words = words
        self.budget = budget

    # ----------------------------------------------------------------- schema handling

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise UnsatisfiableSchema(f"only local $ref is supported, got {ref!r}")
        node: Any = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise UnsatisfiableSchema(f"$ref {ref!r} does not resolve")
        return node

    def _flatten(self, schema: Any, depth: int) -> dict[str, Any]:
        """Follow ``$ref`` and merge ``allOf`` into one schema dict."""
        self.budget.spend()
        if schema is True or schema is None:
            return {}
        if schema is False:
            raise UnsatisfiableSchema("the schema 'false' accepts no value")
        if not isinstance(schema, Mapping):
            return {}
        result = dict(schema)
        for _ in range(_MAX_DEPTH):
            ref = result.pop("$ref", None)
            if not isinstance(ref, str):
                break
            target = self._resolve(ref)
            if target is False:
                raise UnsatisfiableSchema(f"$ref {ref!r} is 'false'")
            result = {**(target if isinstance(target, Mapping) else {}), **result}
        parts = result.pop("allOf", None)
        if isinstance(parts, list):
            for part in parts:
                result = _merge(result, self._flatten(part, depth))
        return result

    def build(self, schema: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise UnsatisfiableSchema("the schema recurses too deeply to build a value")
        self.budget.spend()
        flat = self._flatten(schema, depth)
        if "const" in flat:
            return self._constant(flat["const"])
        if isinstance(flat.get("enum"), list) and flat["enum"]:
            return self._constant(self.rng.choice(flat["enum"]))
        for key in ("anyOf", "oneOf"):
            branches = flat.get(key)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in flat.items() if k != key}
                return self._first_valid(rest, key, branches, depth)
        return self._typed(flat, self._pick_type(flat), depth)

    def _constant(self, value: Any) -> Any:
        """``value``, its size spent (a constant may be large, and repeated in an array)."""
        if isinstance(value, dict | list):
            self.budget.spend(_weight(value, self.budget.left))
        return value

    def _first_valid(self, rest: dict[str, Any], key: str, branches: list[Any], depth: int) -> Any:
        whole = self._standalone({**rest, key: branches})
        value: Any = None
        for branch in branches:
            try:
                value = self.build(_merge(rest, self._flatten(branch, depth)), depth + 1)
            except UnsatisfiableSchema:
                continue
            if validate(value, whole, self.budget):
                return value
        return value

    def _standalone(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema`` with the root's definitions, so local refs still resolve."""
        if isinstance(self.root, Mapping):
            for defs in ("$defs", "definitions"):
                if defs in self.root and defs not in schema:
                    schema = {**schema, defs: self.root[defs]}
        return schema

    def _pick_type(self, flat: Mapping[str, Any]) -> str:
        kind = flat.get("type")
        if isinstance(kind, str):
            return kind
        if isinstance(kind, list) and kind:
            concrete = [k for k in kind if k != "null"]
            return self.rng.choice(concrete) if concrete else "null"
        if {"properties", "required", "additionalProperties"} & flat.keys():
            return "object"
        if {"items", "prefixItems", "minItems", "maxItems"} & flat.keys():
            return "array"
        if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & flat.keys():
            return "number"
        return "string"

    def _typed(self, flat: dict[str, Any], kind: str, depth: int) -> Any:
        if kind == "object":
            return self._object(flat, depth)
        if kind == "array":
            return self._array(flat, depth)
        if kind == "integer":
            return self._integer(flat)
        if kind == "number":
            return self._number(flat)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(flat)

    # ----------------------------------------------------------------- containers

    def _object(self, flat: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = flat.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = [r for r in flat.get("required", []) if isinstance(r, str)]
        extra = flat.get("additionalProperties", True)
        shallow = depth >= _SHALLOW_DEPTH
        names = [n for n in properties if n in required or not shallow]
        names += [n for n in required if n not in properties]
        max_props = flat.get("maxProperties")
        if isinstance(max_props, int) and len(names) > max_props:
            optional = [n for n in names if n not in required]
            drop = set(optional[: len(names) - max_props])
            names = [n for n in names if n not in drop]
        result: dict[str, Any] = {}
        for name in names:
            sub = properties.get(name, extra if isinstance(extra, Mapping) else True)
            if sub is False:
                if name in required:
                    raise UnsatisfiableSchema(f"required property {name!r} is 'false'")
                continue
            try:
                result[name] = self.build(sub, depth + 1)
            except UnsatisfiableSchema:
                if name in required:
                    raise
        min_props = flat.get("minProperties")
        if isinstance(min_props, int) and min_props > MAX_OBJECT_PROPERTIES:
            raise SchemaTooLarge(f"minProperties above {MAX_OBJECT_PROPERTIES} is not supported")
        if isinstance(min_props, int) and extra is not False:
            index = 0
            while len(result) < min_props:
                name = f"field_{index}"
                index += 1
                if name not in result and name not in properties:
                    result[name] = self.build(
                        extra if isinstance(extra, Mapping) else {}, depth + 1
                    )
        return result

    def _array(self, flat: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = flat.get("prefixItems")
        items = flat.get("items", True)
        if isinstance(items, list):  # draft-4 tuple form
            prefix, items = items, flat.get("additionalItems", True)
        prefix = prefix if isinstance(prefix, list) else []
        low = max(_int(flat.get("minItems"), 0), 0)
        if low > MAX_ARRAY_ITEMS:
            raise SchemaTooLarge(f"minItems above {MAX_ARRAY_ITEMS} is not supported")
        high = _int(flat.get("maxItems"), low + 3)
        if items is False:
            high = min(high, len(prefix))
        lower = min(max(low, 1), high)
        upper = max(min(high, max(low + 2, 3)), lower)
        target = self.rng.randint(lower, upper) if lower >= 0 else 0
        if depth >= _SHALLOW_DEPTH:
            target = low
        unique = flat.get("uniqueItems") is True
        seen: set[str] = set()
        result: list[Any] = []
        attempts = 0
        while len(result) < target and attempts < target * 4 + 4:
            attempts += 1
            index = len(result)
            sub = prefix[index] if index < len(prefix) else items
            value = self.build(sub, depth + 1)
            if unique:
                key = schema_key(value)
                if key in seen:
                    continue
                seen.add(key)
            result.append(value)
        return result

    # ----------------------------------------------------------------- scalars

    def _integer(self, flat: Mapping[str, Any]) -> int:
        (low, low_ex), (high, high_ex) = _bounds(flat)
        lo = hi = 0
        if not math.isinf(low):
            lo = math.ceil(low) + (1 if low_ex and math.ceil(low) == low else 0)
        if not math.isinf(high):
            hi = math.floor(high) - (1 if high_ex and math.floor(high) == high else 0)
        lo, hi = _default_range(lo, hi, math.isinf(low), math.isinf(high), 100)
        step = flat.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            first, last = math.ceil(lo / step), math.floor(hi / step)
            if first <= last:
                return int(self.rng.randint(first, last) * step)
        return self.rng.randint(lo, hi) if lo <= hi else lo

    def _number(self, flat: Mapping[str, Any]) -> float | int:
        (lo, lo_ex), (hi, hi_ex) = _bounds(flat)
        lo, hi = _default_range(lo, hi, math.isinf(lo), math.isinf(hi), 100.0)
        step = flat.get("multipleOf")
        if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
            first, last = math.ceil(lo / step), math.floor(hi / step)
            candidates = [k for k in (first, first + 1, last - 1, last) if first <= k <= last]
            candidates = [k for k in candidates if _inside(k * step, lo, lo_ex, hi, hi_ex)]
            if candidates:
                return _tidy(self.rng.choice(candidates) * step)
        for _ in range(8):
            value = round(lo + (hi - lo) * self.rng.uniform(0.05, 0.95), 2)
            if _inside(value, lo, lo_ex, hi, hi_ex):
                return _tidy(value)
        mid = lo + (hi - lo) / 2
        return _tidy(mid) if _inside(mid, lo, lo_ex, hi, hi_ex) else lo

    def _string(self, flat: Mapping[str, Any]) -> str:
        rng = self.rng
        fmt = flat.get("format")
        pattern = parse_pattern(flat["pattern"]) if "pattern" in flat else None
        if pattern is not None:
            return self._patterned(pattern, flat)
        if fmt == "date":
            text = f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif fmt == "date-time":
            text = (
                f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
            )
        elif fmt == "time":
            text = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
        elif fmt == "email":
            text = f"{self._slug()}.{self._slug()}@example.com"
        elif fmt in ("uri", "url", "iri"):
            text = f"https://example.com/{self._slug()}/{self._slug()}"
        elif fmt == "uuid":
            text = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        elif fmt == "hostname":
            text = f"{self._slug()}.example.com"
        elif fmt == "ipv4":
            text = f"192.0.2.{rng.randint(1, 254)}"
        else:
            text = " ".join(rng.choice(self.words) for _ in range(rng.randint(1, 4)))
        min_len = max(_int(flat.get("minLength"), 0), 0)
        if min_len > MAX_STRING_LENGTH:
            raise SchemaTooLarge(f"minLength above {MAX_STRING_LENGTH} is not supported")
        max_len = _int(flat.get("maxLength"), -1)
        if len(text) < min_len:
            parts = [text] if text else []
            length = len(text)
            while length < min_len:
                word = rng.choice(self.words)
                length += len(word) + (1 if parts else 0)
                parts.append(word)
            text = " ".join(parts)
        self.budget.spend(len(text) // 64)
        if max_len >= 0 and len(text) > max_len:
            text = text[:max_len]
            if text.endswith(" "):
                text = text[:-1] + "x"
        return text

    def _patterned(self, pattern: Pattern, flat: Mapping[str, Any]) -> str:
        """A string matching ``pattern`` within ``min/maxLength`` where the draws allow: open
        repeats widen while the draws come out short; a short one is padded where the pattern
        is not anchored; else the last draw (best effort)."""
        min_len = max(_int(flat.get("minLength"), 0), 0)
        if min_len > MAX_STRING_LENGTH:
            raise SchemaTooLarge(f"minLength above {MAX_STRING_LENGTH} is not supported")
        max_len = _int(flat.get("maxLength"), -1)
        text = ""
        for spread in _PATTERN_SPREADS:
            text = pattern.build(self.rng, self.budget, limit=MAX_STRING_LENGTH, spread=spread)
            self.budget.spend(len(text) // 64)
            if len(text) >= min_len and (max_len < 0 or len(text) <= max_len):
                return text
        if len(text) < min_len and not (pattern.anchored_end and pattern.anchored_start):
            filler = "".join(self.rng.choice(self.words)[:1] or "x" for _ in range(min_len))
            filler = filler[: min_len - len(text)]
            return filler + text if pattern.anchored_end else text + filler
        return text

    def _slug(self) -> str:
        word = "".join(ch for ch in self.rng.choice(self.words).lower() if ch.isalnum())
        return word.encode("ascii", "ignore").decode() or "item"


# --------------------------------------------------------------------- helpers


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, float) and not math.isfinite(value):
        return default
    return int(value)


def _bounds(flat: Mapping[str, Any]) -> tuple[tuple[float, bool], tuple[float, bool]]:
    """``((low, exclusive), (high, exclusive))`` from draft-4 and 2020-12 keywords."""
    low, low_ex = -math.inf, False
    high, high_ex = math.inf, False
    minimum, maximum = _finite(flat.get("minimum")), _finite(flat.get("maximum"))
    ex_min, ex_max = flat.get("exclusiveMinimum"), flat.get("exclusiveMaximum")
    if minimum is not None:
        low, low_ex = minimum, ex_min is True
    if maximum is not None:
        high, high_ex = maximum, ex_max is True
    if (bound := _finite(ex_min)) is not None and bound >= low:
        low, low_ex = bound, True
    if (bound := _finite(ex_max)) is not None and bound <= high:
        high, high_ex = bound, True
    return (low, low_ex), (high, high_ex)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)  # an integer beyond floats overflows
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _default_range(lo: Any, hi: Any, open_low: bool, open_high: bool, span: Any) -> tuple[Any, Any]:
    if open_low and open_high:
        return 0 * span, span
    if open_low:
        return hi - span, hi
    if open_high:
        return lo, lo + span
    return lo, hi


def _inside(value: float, lo: float, lo_ex: bool, hi: float, hi_ex: bool) -> bool:
    above = value > lo if lo_ex else value >= lo
    below = value < hi if hi_ex else value <= hi
    return above and below


def _tidy(value: float) -> float | int:
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two flattened schemas (``properties`` and ``required`` combined)."""
    merged = {**base, **extra}
    if "properties" in base and "properties" in extra:
        merged["properties"] = {**base["properties"], **extra["properties"]}
    if "required" in base and "required" in extra:
        merged["required"] = list(dict.fromkeys([*base["required"], *extra["required"]]))
    return merged
