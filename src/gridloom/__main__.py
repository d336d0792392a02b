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

Ctrl-C while the command line loads (a second or so on a slow machine) ends the process with
exit code 130 and one line, not an import traceback: nothing has started, so nothing is lost.
From then on each command handles the signals itself (:mod:`gridloom.run._signals`).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable

__all__ = ["main"]


def main() -> None:
    """Run the ``gridloom`` command line (:func:`gridloom.cli.main`)."""
    try:
        command = _load()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while starting; nothing was done\n")
        sys.stderr.flush()
        sys.exit(_INTERRUPTED)
    command()


#: Exit code of a command a SIGINT ended (128 + 2), as :func:`gridloom.run.signal_exit` gives.
_INTERRUPTED = 130


def _load() -> Callable[[], None]:
    """Import the command line (with the collector off, see the module docstring)."""
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
    return command


if __name__ == "__main__":
    main()
