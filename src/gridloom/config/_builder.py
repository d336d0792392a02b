"""A fluent builder for writing pipelines in Python.

::

    cfg = (PipelineBuilder(seed=7)
           .category("topic", ["rivers", "volcanoes"], weights=[2, 1])
           .uniform("age", 18, 90, convert_to="int")
           .expression("title", "{{ topic }} ({{ age }})")
           .custom("score", my_fn, depends_on=["title"], dtype="float")
           .run(row_group_size=100)
           .build())

The column methods come from the registered column kinds (see :mod:`._building`); their
types, for the built-in kinds, from ``_builder.pyi``.
"""

from __future__ import annotations

from ._building import BuilderBase

__all__ = ["PipelineBuilder"]


class PipelineBuilder(BuilderBase):
    """Collects columns, providers, models and run settings, then builds a PipelineConfig.

    Each column kind has a method named after its kind key — ``.category(...)``,
    ``.llm_text(...)``, a plugin's kind's too — that takes the column's name, the kind's
    main fields by position, its other fields, ``depends_on`` and ``drop`` by keyword;
    ``.add(kind, name, ...)`` does the same for a kind named in a variable. Every method
    except :meth:`build` returns the builder. Invalid arguments raise
    :class:`~gridloom.errors.ConfigError` naming the column and the field, as loading a file
    would.

    Args:
        seed: shorthand for ``.run(seed=...)``.
    """
