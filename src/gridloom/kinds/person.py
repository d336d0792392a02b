"""``person``: a synthetic person with consistent attributes, drawn with Faker's locales."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs
import pyarrow as pa

from .._attrs import frozen
from ..config._columns import ColumnConfig
from ..config._issues import suggest
from ..config._kind import ColumnKind
from ..config._validators import as_finite, text_problem, to_tuple
from ..errors import ConfigError
from ..generators.base import BatchContext, derive_rng, derive_seed
from ..generators.sampling import Sampler

if TYPE_CHECKING:
    from faker import Generator as FakerGenerator

__all__ = ["FIELDS", "KIND", "PersonColumn", "PersonSampler", "ascii_name", "years_between"]

#: The oldest age ``age_range`` may ask for.
MAX_AGE = 120
#: Every field of a person and its Arrow type, in stored order.
FIELDS: dict[str, pa.DataType] = {
    "first_name": pa.string(),
    "last_name": pa.string(),
    "sex": pa.string(),
    "age": pa.int64(),
    "birth_date": pa.date32(),
    "email": pa.string(),
    "phone": pa.string(),
    "street": pa.string(),
    "city": pa.string(),
    "state": pa.string(),
    "postal_code": pa.string(),
    "country": pa.string(),
    "country_code": pa.string(),
    "locale": pa.string(),
    "occupation": pa.string(),
}
_EXTRA_HINT = "the person kind needs Faker: pip install 'gridloom[person]'"


def _locales(value: Any) -> str | dict[str, float]:
    """One locale (text) or locales by weight: a mapping, or a list drawn uniformly."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        if not all(isinstance(item, str) for item in value):
            raise TypeError("locale must be text, a mapping of locale to weight or a list of text")
        return dict.fromkeys(value, 1.0)
    raise TypeError(f"locale must be text, a mapping or a list, got {type(value).__name__}")


def _iso_date(value: Any) -> Any:
    """A date (or datetime) as its ISO text; anything else as given, for the validator."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@frozen(kw_only=True)
class PersonColumn(ColumnConfig):
    """A synthetic person with consistent fields, stored as a struct.

    Fields: ``first_name``, ``last_name``, ``sex``, ``age``, ``birth_date``, ``email``,
    ``phone``, ``street``, ``city``, ``state``, ``postal_code``, ``country``,
    ``country_code``, ``locale`` and ``occupation``; templates read them as
    ``{{ customer.first_name }}``. The email is built from the name (romanized where Faker
    knows how, else transliterated to ASCII), the age is the age on ``reference_date`` of
    someone born on ``birth_date``, and the address parts come from the same locale. Each
    row's person depends only on the run seed, the column and the row. Needs Faker
    (``pip install 'gridloom[person]'``). For example:

        - {name: customer, person: {locale: {en_US: 0.7, ja_JP: 0.3}, age_range: [20, 60]}}

    Attributes:
        locale: a Faker locale (``en_US``, ``de_DE``, ``ja_JP``...), or several: a mapping of
            locale to weight, or a list (equally weighted), one drawn per row.
        age_range: ``[min, max]`` ages in whole years, ``0 <= min <= max <= 120``.
        sex: ``male``, ``female`` or ``any`` (either, evenly); first names follow it.
        reference_date: the date ages are counted on, ``YYYY-MM-DD`` (fixed, so output does
            not depend on today's date).
    """

    kind: ClassVar[str] = "person"
    locale: Any = attrs.field(default="en_US", converter=_locales)
    age_range: tuple[int, ...] = attrs.field(default=(18, 80), converter=to_tuple)
    sex: Literal["male", "female", "any"] = attrs.field(default="any")
    reference_date: Any = attrs.field(default="2025-01-01", converter=_iso_date)

    @locale.validator
    def _check_locale(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        names = [value] if isinstance(value, str) else list(value)
        if not names:
            raise ValueError("locale must name at least one locale")
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"locale names must be non-empty text, got {name!r}")
            problem = text_problem(name)
            if problem is not None:
                raise ValueError(f"locale {name!r} {problem}")
        if isinstance(value, dict):
            weights = [as_finite(f"locale weight of {k!r}", w) for k, w in value.items()]
            if (
                any(w < 0 for w in weights)
                or not sum(weights) > 0
                or not math.isfinite(sum(weights))
            ):
                raise ValueError("locale weights must be >= 0, finite and not all zero")

    @age_range.validator
    def _check_age_range(self, _attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
        if len(value) != 2 or not all(type(v) is int for v in value):
            raise ValueError(f"age_range must be two whole numbers [min, max], got {list(value)}")
        low, high = value
        if not 0 <= low <= high <= MAX_AGE:
            raise ValueError(
                f"age_range must satisfy 0 <= min <= max <= {MAX_AGE}, got {list(value)}"
            )

    @sex.validator
    def _check_sex(self, _attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in ("male", "female", "any"):
            raise ValueError(f"sex must be male, female or any, got {value!r}")

    @reference_date.validator
    def _check_reference(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str):
            raise TypeError(f"reference_date must be a date, got {type(value).__name__}")
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"reference_date {value!r} is not a date (YYYY-MM-DD)") from None
        if day.year <= MAX_AGE + 1:
            raise ValueError(f"reference_date must be after year {MAX_AGE + 1}, got {value}")

    @property
    def reference(self) -> dt.date:
        """``reference_date`` as a date."""
        return dt.date.fromisoformat(self.reference_date)

    def weighted_locales(self) -> dict[str, float]:
        """Each locale with its weight (one locale: weight 1)."""
        locale = self.locale
        return (
            {locale: 1.0} if isinstance(locale, str) else {k: float(w) for k, w in locale.items()}
        )

    def value_schema(self) -> Mapping[str, Any] | None:
        properties: dict[str, Any] = {name: {"type": "string"} for name in FIELDS}
        properties["age"] = {"type": "integer"}
        properties["birth_date"] = {"type": "string", "format": "date"}
        return {
            "type": "object",
            "properties": properties,
            "required": list(FIELDS),
            "additionalProperties": False,
        }


# --------------------------------------------------------------------------- helpers


def ascii_name(name: str) -> str:
    """``name`` transliterated to lower-case ASCII letters and digits (the email's parts)."""
    from faker.decode import unidecode

    return re.sub(r"[^a-z0-9]+", "", unidecode(name).lower())


def _years_before(day: dt.date, years: int) -> dt.date:
    """The same calendar day ``years`` earlier (29 February becomes the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def years_between(born: dt.date, on: dt.date) -> int:
    """Whole years of age on ``on`` of someone born on ``born``."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _first(generator: FakerGenerator, *methods: str) -> str:
    """The first of ``methods`` the locale provides, called; empty when none works."""
    for method in methods:
        function: Callable[[], Any] | None = getattr(generator, method, None)
        if function is None:
            continue
        try:
            return str(function())
        except (AttributeError, KeyError, IndexError, ValueError, TypeError):
            continue
    return ""


_NameTable = tuple[list[str], list[float] | None]


def _name_table(generator: FakerGenerator, part: str, sex: str) -> _NameTable | None:
    """The names Faker's ``<part>_name_<sex>`` draws from (values, cumulative weights or
    ``None`` for equal weights), when that method is Faker's generic one over a plain list or
    mapping; ``None`` when the locale draws its names some other way."""
    from faker.providers.person import Provider as Base

    provider = next((p for p in generator.providers if isinstance(p, Base)), None)
    if provider is None:
        return None
    gendered, plain = f"{part}_name_{sex}", f"{part}_name"
    if getattr(type(provider), gendered) is not getattr(Base, gendered):
        return None
    data = getattr(provider, f"{part}_names_{sex}", None)
    if data is None:
        if getattr(type(provider), plain) is not getattr(Base, plain):
            return None
        data = getattr(provider, f"{part}_names", None)
    if isinstance(data, Mapping):
        values = [str(v) for v in data]
        weights = [float(w) for w in data.values()]
        if not values or any(not w >= 0 for w in weights) or not sum(weights) > 0:
            return None
        return values, list(itertools.accumulate(weights))
    if isinstance(data, list | tuple) and data and all(isinstance(v, str) for v in data):
        return list(data), None
    return None


# --------------------------------------------------------------------------- the sampler


class PersonSampler(Sampler):
    """Draws one person per row from a Faker generator seeded with ``(seed, column, row)``.

    Faker generators are cached per thread (they are not safe to share between threads), and
    each row reseeds its locale's generator, so a row's person depends on nothing else.
    """

    #: A person takes tens of microseconds (Faker): batches always go to a worker thread.
    inline = False

    def __init__(self, config: PersonColumn):
        super().__init__(
            name=config.name,
            outputs={config.name: pa.struct([pa.field(k, t) for k, t in FIELDS.items()])},
        )
        self.config = config
        self._reference = config.reference
        weighted = config.weighted_locales()
        self._locales = list(weighted)
        self._cum_weights: list[float] = []
        total = 0.0
        for weight in weighted.values():
            total += weight
            self._cum_weights.append(total)
        self._local = threading.local()
        # Immutable once computed (a race computes the same table twice, harmlessly).
        self._names: dict[tuple[str, str, str], _NameTable | None] = {}

    def generate(self, ctx: BatchContext) -> list[Any]:
        """One person per live row, each from its own row's stream."""
        return [self.person(ctx.seed, row_id) for row_id in ctx.row_ids]

    def _generator(self, locale: str) -> FakerGenerator:
        cache: dict[str, FakerGenerator] | None = getattr(self._local, "generators", None)
        if cache is None:
            cache = self._local.generators = {}
        generator = cache.get(locale)
        if generator is None:
            from faker import Factory

            generator = cache[locale] = Factory.create(locale)
        return generator

    def _name(
        self, rng: random.Random, fake: FakerGenerator, locale: str, part: str, sex: str
    ) -> tuple[str, str]:
        """A first or last name of ``sex`` and its Latin spelling (for the email).

        Drawn from the locale's list directly when Faker keeps a plain one (several times
        faster than Faker's weighted draw); locales with (name, reading, romanization) pairs
        (``ja_JP``) give their romanization; others are transliterated."""
        key = (locale, part, sex)
        if key not in self._names:
            self._names[key] = _name_table(self._generator(locale), part, sex)
        table = self._names[key]
        if table is not None:
            values, cum_weights = table
            name = rng.choices(values, cum_weights=cum_weights)[0]
            return name, name
        pair = getattr(fake, f"{part}_name_{sex}_pair", None) or getattr(
            fake, f"{part}_name_pair", None
        )
        if pair is not None:
            try:
                drawn = pair()
                return str(drawn[0]), str(drawn[-1])
            except (AttributeError, KeyError, IndexError, ValueError, TypeError):
                pass
        name = _first(fake, f"{part}_name_{sex}", f"{part}_name")
        return name, name

    def person(self, seed: int, row_id: int) -> dict[str, Any]:
        """The person of row ``row_id`` for run seed ``seed``."""
        rng = derive_rng(seed, self.name, "row", row_id)
        locale = (
            self._locales[0]
            if len(self._locales) == 1
            else rng.choices(self._locales, cum_weights=self._cum_weights)[0]
        )
        fake = self._generator(locale)
        fake.seed_instance(derive_seed(seed, self.name, "faker", row_id))
        sex = self.config.sex if self.config.sex != "any" else rng.choice(("male", "female"))
        first, first_latin = self._name(rng, fake, locale, "first", sex)
        last, last_latin = self._name(rng, fake, locale, "last", sex)
        low, high = self.config.age_range
        age = rng.randint(low, high)
        born = self._birth_date(rng, age)
        return {
            "first_name": first,
            "last_name": last,
            "sex": sex,
            "age": age,
            "birth_date": born,
            "email": self._email(rng, fake, first_latin, last_latin),
            "phone": _first(fake, "phone_number"),
            "street": _first(fake, "street_address"),
            "city": _first(fake, "city"),
            "state": _first(fake, "administrative_unit", "state", "region", "province"),
            "postal_code": _first(fake, "postcode"),
            "country": _first(fake, "current_country"),
            "country_code": _first(fake, "current_country_code"),
            "locale": locale,
            "occupation": _first(fake, "job"),
        }

    def _birth_date(self, rng: random.Random, age: int) -> dt.date:
        """A birth date uniformly among those giving ``age`` on the reference date."""
        reference = self._reference
        latest = _years_before(reference, age)
        earliest = _years_before(reference, age + 1) + dt.timedelta(days=1)
        return earliest + dt.timedelta(days=rng.randint(0, (latest - earliest).days))

    @staticmethod
    def _email(rng: random.Random, fake: FakerGenerator, first: str, last: str) -> str:
        parts = [part for part in (ascii_name(first), ascii_name(last)) if part]
        local = ".".join(parts) or "user"
        if rng.random() < 0.5:
            local += str(rng.randint(1, 99))
        domain = _first(fake, "free_email_domain") or "example.com"
        return f"{local}@{domain}"


def _build(column: PersonColumn, _ctx: object) -> PersonSampler:
    try:
        from faker.config import AVAILABLE_LOCALES
    except ImportError:
        raise ConfigError(_EXTRA_HINT, column=column.name, field="person") from None
    for locale in column.weighted_locales():
        if locale not in AVAILABLE_LOCALES:
            guess = suggest(locale, AVAILABLE_LOCALES)
            hint = f"did you mean {guess!r}?" if guess else "Faker's locales are like en_US, ja_JP"
            raise ConfigError(
                f"unknown locale {locale!r}; {hint}", column=column.name, field="person.locale"
            )
    return PersonSampler(column)


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``locale`` is text, a mapping of locale to weight, or a list of locales;
    ``reference_date`` an ISO date."""
    properties = schema.get("properties", {})
    properties["locale"] = {
        "anyOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "object",
                "additionalProperties": {"type": "number", "minimum": 0},
                "minProperties": 1,
            },
            {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        ],
        "default": "en_US",
    }
    properties["age_range"] = {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": MAX_AGE},
        "minItems": 2,
        "maxItems": 2,
        "default": [18, 80],
    }
    properties["reference_date"] = {"type": "string", "format": "date", "default": "2025-01-01"}
    return schema


KIND = ColumnKind(
    config=PersonColumn, build=_build, positional=("locale",), shorthand="locale", schema=_schema
)
