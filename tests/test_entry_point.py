"""The ``gridloom`` command's entry point (``gridloom/__main__.py``) imports the command line
with the cyclic garbage collector off, freezes what the imports left, and turns the collector
back on; ``GRIDLOOM_GC=default`` leaves it alone. A fresh interpreter each, as the command is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"

#: Runs the entry point as the ``gridloom`` script does (``gridloom validate`` of the quickstart,
#: whose config load collects), counting the collections made while ``gridloom.cli`` is being
#: imported (its module is in ``sys.modules`` from the start of its import; ``main`` is defined
#: at its end) and noting how many objects were frozen at the first collection after it.
_PROBE = """
import gc, json, sys

during = []
frozen = []

def count(phase, info):
    cli = sys.modules.get("gridloom.cli")
    if phase != "start" or cli is None:
        return
    if not hasattr(cli, "main"):
        during.append(info["generation"])
    elif not frozen:
        frozen.append(gc.get_freeze_count())

gc.callbacks.append(count)
sys.argv = ["gridloom", "validate", sys.argv[1]]
from gridloom.__main__ import main
try:
    main()
except SystemExit:
    pass
state = {"during": len(during), "enabled": gc.isenabled(), "frozen": frozen[0]}
print(json.dumps(state))
"""


def _probe(**env: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(QUICKSTART)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_command_line_is_imported_without_a_collection_then_frozen() -> None:
    state = _probe()
    assert state["during"] == 0
    assert state["enabled"]
    assert state["frozen"] > 10_000  # the modules, classes and functions the imports made


@pytest.mark.parametrize("value", ["default", " Default "])
def test_gridloom_gc_default_leaves_the_collector_alone(value: str) -> None:
    state = _probe(GRIDLOOM_GC=value)
    assert state["during"] > 0  # Python's own thresholds: it collects during the imports
    assert state["enabled"]
    assert state["frozen"] == 0
