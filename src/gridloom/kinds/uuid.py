"""``uuid``: a random version-4 UUID as text."""

from __future__ import annotations

import random
import uuid
from typing import ClassVar

import attrs
import pyarrow as pa

from .._attrs import frozen
from ..config._columns import ColumnConfig
from ..config._kind import ColumnKind
from ..config._validators import text
from ..generators.sampling import Sampler

__all__ = ["KIND", "UUIDColumn", "UUIDSampler"]


@frozen(kw_only=True)
class UUIDColumn(ColumnConfig):
    """A random UUID4 as text (deterministic when ``run.seed`` is set).

    Attributes:
        prefix: text put before the UUID.
        short: keep only the first 8 hex digits.
        uppercase: upper-case hex digits.
    """

    kind: ClassVar[str] = "uuid"
    prefix: str = attrs.field(default="", validator=text)
    short: bool = False
    uppercase: bool = False


class UUIDSampler(Sampler):
    """Version-4 UUIDs built from the stream's bits: ``prefix`` + the canonical 36-character
    form, or its first 8 hex digits when ``short``; ``uppercase`` applies to the UUID part."""

    def __init__(self, config: UUIDColumn):
        super().__init__(name=config.name, outputs={config.name: pa.string()})
        self.config = config

    def _draw(self, rng: random.Random) -> str:
        value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if self.config.short:
            value = value[:8]
        if self.config.uppercase:
            value = value.upper()
        return self.config.prefix + value


KIND = ColumnKind(config=UUIDColumn, build=lambda column, _ctx: UUIDSampler(column))
