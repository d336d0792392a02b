"""``python -m gridloom`` is the ``gridloom`` command."""

from .cli import main

main()
