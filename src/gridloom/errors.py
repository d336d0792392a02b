"""The one error tree of gridloom.

Every exception gridloom raises on purpose derives from :class:`GridloomError`.
Configuration problems also derive from :class:`ValueError`, so code that
already catches ``ValueError`` for bad input keeps working::

    GridloomError
    ├── ConfigError (ValueError)          the pipeline description is wrong
    │   ├── UnknownReferenceError         a template or depends_on names an unknown column
    │   ├── CycleError                    columns depend on each other in a loop
    │   └── TemplateError                 a Jinja template does not parse
    ├── GenerationError                   a generator failed on a cell or batch
    │   └── ValueTypeError                a generated value does not fit the column's dtype
    ├── StorageError                      the output directory cannot be used
    │   └── OutputExistsError             the directory already holds a run
    └── RunError                          a run could not complete

Messages name the column, model or file involved.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CycleError",
    "GenerationError",
    "GridloomError",
    "OutputExistsError",
    "RunError",
    "StorageError",
    "TemplateError",
    "UnknownReferenceError",
    "ValueTypeError",
]


class GridloomError(Exception):
    """Root of every error gridloom raises on purpose."""


class ConfigError(GridloomError, ValueError):
    """The pipeline configuration is invalid.

    Attributes:
        column: name of the column at fault, when there is one.
        field: dotted path of the field at fault inside the column or section.
    """

    def __init__(self, message: str, *, column: str | None = None, field: str | None = None):
        self.column = column
        self.field = field
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class UnknownReferenceError(ConfigError):
    """A template or ``depends_on`` names a column that does not exist."""


class CycleError(ConfigError):
    """Columns depend on each other in a loop; the message spells the loop out."""

    def __init__(self, cycle: list[str]):
        self.cycle = list(cycle)
        super().__init__("dependency cycle: " + " -> ".join(cycle), column=cycle[0])


class TemplateError(ConfigError):
    """A Jinja template in the configuration does not parse."""


class GenerationError(GridloomError):
    """A generator failed on a cell or a batch; the row (or rows) are dropped."""


class ValueTypeError(GenerationError, TypeError):
    """A generated value cannot be stored as the column's declared dtype."""


class StorageError(GridloomError):
    """The output directory cannot be read or written as a gridloom run."""


class OutputExistsError(StorageError):
    """The output directory already holds a run and neither resume nor overwrite was asked."""


class RunError(GridloomError):
    """A run could not complete."""
