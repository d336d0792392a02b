"""What touches pyarrow before a preview's first model request (issue 21, item 4).

pyarrow (with numpy) is ~0.09 s of a preview's start-up, and nothing needs it to *send* a
model request: only to type, assemble and store the rows. This probe lists what stands in the
way of importing it only once the first request is out (in a helper thread, while the process
waits on the model). It runs ``gridloom preview CONFIG -n 5`` in a fresh interpreter with:

* a stand-in for the ``pyarrow`` module (it forwards every attribute to the real one) that
  records each ``pa.<name>`` looked up from gridloom's code until the first request, with
  the call site: *import time* (module-level code: a constant built of Arrow types, an
  exception tuple, ``import pyarrow.parquet``) or *run time* (a function: compiling the
  pipeline, building a generator);
* the gridloom modules loaded when the first request went out (``WireTransport.post`` is
  wrapped) that import pyarrow at module level (outside ``if TYPE_CHECKING:``): each would
  need its import moved into the functions that use it;
* which ``pyarrow.*`` modules were loaded at that moment.

Uses of Arrow objects already built (``schema.names``, ``type.equals``) are not lookups on the
module and are not seen: they disappear with the lookups that built them.

    PYTHONPATH=src python bench/arrow_first_use.py [CONFIG]

Prints a Markdown report; nothing is saved.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "quickstart.yaml"

#: Run in the child: the stand-in pyarrow, the wrapped first request, the preview.
CHILD = """
import json, sys, types
import pyarrow as real

uses = {}
state = {"before": True, "modules": None}


class Recorder(types.ModuleType):
    def __getattribute__(self, name):
        if state["before"] and not name.startswith("__"):
            frame = sys._getframe(1)
            while frame is not None and "gridloom" not in frame.f_code.co_filename:
                frame = frame.f_back
            if frame is not None:
                where = frame.f_code.co_filename.rsplit("/src/", 1)[-1]
                key = f"{where}:{frame.f_lineno} {frame.f_code.co_name} pa.{name}"
                uses[key] = uses.get(key, 0) + 1
        return getattr(real, name)

    def __setattr__(self, name, value):
        setattr(real, name, value)


sys.modules["pyarrow"] = Recorder("pyarrow")
from gridloom.clients._wire import WireTransport
from gridloom.__main__ import main

post = WireTransport.post


async def first_post(self, *args, **kwargs):
    if state["before"]:
        state["before"] = False
        state["modules"] = sorted(sys.modules)
    return await post(self, *args, **kwargs)


WireTransport.post = first_post
sys.argv = ["gridloom", "preview", sys.argv[1], "-n", "5", "--no-cache"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
with open(__OUT__, "w") as f:
    json.dump({"uses": uses, "modules": state["modules"]}, f)
"""


def _imports_pyarrow(path: Path) -> list[str]:
    """The pyarrow modules ``path`` imports at module level (``if TYPE_CHECKING:`` aside)."""
    names: list[str] = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "pyarrow"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pyarrow":
            names.append(str(node.module))
    return names


def _module_file(name: str, src: Path) -> Path | None:
    base = src.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def main() -> None:
    config = Path(sys.argv[1]) if len(sys.argv) > 1 else CONFIG
    src = Path(__import__("gridloom").__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "uses.json"
        code = textwrap.dedent(CHILD).replace("__OUT__", repr(str(out)))
        env = {**os.environ, "GRIDLOOM_PROGRESS": "off"}
        subprocess.run(
            [sys.executable, "-c", code, str(config)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
        doc = json.loads(out.read_text())
    if doc["modules"] is None:
        sys.exit("no model request was sent: nothing to report")
    print(f"# pyarrow before the first model request: `preview {config.name} -n 5`\n")
    loaded = [m for m in doc["modules"] if m.split(".")[0] == "pyarrow"]
    print(f"pyarrow modules loaded then: {', '.join(loaded) or 'none'}\n")
    print("## gridloom modules loaded then that import pyarrow at module level\n")
    for name in doc["modules"]:
        if name.split(".")[0] != "gridloom":
            continue
        path = _module_file(name, src)
        if path is not None and (imported := _imports_pyarrow(path)):
            print(f"- `{name}`: {', '.join(imported)}")
    # file:line function pa.name -> per (file, function): its lines and names
    sites: dict[tuple[str, str], tuple[set[int], set[str]]] = {}
    for key in doc["uses"]:
        place, function, attribute = key.split(" ")
        file, line = place.rsplit(":", 1)
        lines, names = sites.setdefault((file, function), (set(), set()))
        lines.add(int(line))
        names.add(attribute)
    for title, at_import in (("Run time (functions)", False), ("Import time (module code)", True)):
        print(f"\n## {title}: `pa.*` looked up\n")
        for (file, function), (lines, names) in sorted(sites.items()):
            if (function == "<module>") == at_import:
                where = ",".join(str(n) for n in sorted(lines))
                print(f"- `{file}:{where}` {function}: {', '.join(sorted(names))}")


if __name__ == "__main__":
    main()
