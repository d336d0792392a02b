"""The ``gridloom`` command's entry point: ``python -m gridloom`` and the ``gridloom`` script.

The program owns its process, so it also decides how Python's cyclic garbage collector treats
its start-up. Importing the command line loads tens of thousands of objects that live as long as
the process (the modules, classes and functions of gridloom, trio, pyarrow, httpx, jinja2 ...).
With the collector on, it runs about two hundred times during those imports, each young
collection traversing objects that will never be garbage, and the older ones traversing them
again: 4 % of all the instructions of a ``gridloom preview`` of the quickstart (callgrind),
before its first request is sent. So :func:`main`
imports the command line with the collector off, then freezes what the imports left
(:func:`gc.freeze`: never traversed again) and turns the collector back on, as it was. The few
reference cycles the imports threw away are frozen with the rest rather than collected; that is
a few hundred kilobytes, once. A run tunes the collector for itself on top of this
(:mod:`gridloom.run._gc`); ``GRIDLOOM_GC=default`` leaves the collector alone here too.
``import gridloom`` in a program of its own changes nothing: only this entry point does it.
"""

from __future__ import annotations

import gc
import os

__all__ = ["main"]


def main() -> None:
    """Run the ``gridloom`` command line (:func:`gridloom.cli.main`)."""
    if os.environ.get("GRIDLOOM_GC", "").strip().lower() == "default":
        from .cli import main as command
    else:
        enabled = gc.isenabled()
        gc.disable()
        try:
            from .cli import main as command
        finally:
            gc.freeze()
            if enabled:
                gc.enable()
    command()


if __name__ == "__main__":
    main()
