"""gridloom's version: the one place it is written (``pyproject.toml`` reads it from here).

Importing it costs nothing, where reading the installed distribution's metadata
(:mod:`importlib.metadata`) parses files and takes milliseconds before a run's first request.
"""

__version__ = "0.1.0"
