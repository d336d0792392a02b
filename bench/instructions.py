"""Instructions a ``gridloom preview`` runs, counted by valgrind's callgrind (issue 21, item 4).

The preview's start-up is measured in wall time by ``bench/preview.py``, but this VM's speed
drifts by a factor of two from one hour to the next, which swamps a change of a few tens of
milliseconds. The number of instructions a process runs does not drift: callgrind counts them
(every thread's, at about fifty times the run's CPU time), so one run of each source tree
compares them exactly. Reported for each: the whole process, and the instructions spent
inside a few CPython functions (inclusive), which say where they went: ``compile()`` (source
compiled at run time: attrs' and cattrs' generated methods), the cyclic garbage collector,
``marshal.loads`` (reading ``.pyc`` files), ``type()`` (class creation) and ``dlopen``
(extension modules). Beside them, a fresh interpreter importing only the core dependencies
(:data:`preview.CORE_IMPORTS`): what no code of gridloom's can go below.

Needs ``valgrind`` on the PATH. Bytecode is compiled by one unmeasured run first.

    python bench/instructions.py                         # this tree
    python bench/instructions.py --against /tmp/before/src --name instructions-gc

Results: ``bench/results/<name>-<date>-<host>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _harness import save
from preview import CONFIG, CORE_IMPORTS

#: CPython functions whose inclusive count is reported (name in callgrind's output: label).
FUNCTIONS = {
    "builtin_compile": "compile()",
    "gc_collect_main": "garbage collector",
    "marshal_loads": "marshal.loads (.pyc)",
    "type_new": "type() (classes)",
    "dlopen_doit": "dlopen (extensions)",
}

_LINE = re.compile(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S+)")


def _env(pythonpath: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["GRIDLOOM_PROGRESS"] = "off"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def count(command: list[str], pythonpath: str | None = None) -> dict[str, int]:
    """Instructions of ``command`` under callgrind: ``total`` and one per :data:`FUNCTIONS`."""
    subprocess.run(command, env=_env(pythonpath), check=True, capture_output=True)  # bytecode
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            env=_env(pythonpath),
            check=True,
            capture_output=True,
        )
        text = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    found = {"total": 0, **dict.fromkeys(FUNCTIONS, 0)}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        value, where = int(match.group(1).replace(",", "")), match.group(2)
        if where == "PROGRAM":
            found["total"] = value
        name = where.rsplit(":", 1)[-1]
        if name in FUNCTIONS:  # its outermost count ("name'2" marks a recursive cycle)
            found[name] = max(found[name], value)
    if not found["total"]:
        raise RuntimeError(f"no total in callgrind's report of {command}")
    return found


def preview_command(num: int) -> list[str]:
    return [sys.executable, "-m", "gridloom", "preview", str(CONFIG), "-n", str(num)]


def markdown(report: dict[str, Any]) -> str:
    rows = report["counts"]
    names = list(rows)
    lines = [
        f"**Instructions (callgrind, millions): `gridloom preview {CONFIG.name} -n"
        f" {report['num_records']}`**",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for key in ["total", *FUNCTIONS]:
        label = "**whole process**" if key == "total" else f"in {FUNCTIONS[key]}"
        lines.append(
            f"| {label} | " + " | ".join(f"{rows[n][key] / 1e6:,.0f}" for n in names) + " |"
        )
    if "against" in rows:
        diff = rows["this"]["total"] - rows["against"]["total"]
        share = diff / rows["against"]["total"]
        lines += ["", f"this - against: {diff / 1e6:+,.0f} M ({share:+.1%})."]
    lines += [
        "",
        "*core imports*: a fresh interpreter importing only the core dependencies a preview"
        " needs; *bare*: `python -c pass`. The counts include every thread's instructions.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--num-records", type=int, default=5)
    parser.add_argument("--against", help="another tree's src/ folder, counted alike")
    parser.add_argument("--name", default="instructions", help="results file prefix")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        sys.exit("valgrind (with callgrind_annotate) is needed for this benchmark")
    counts = {"this": count(preview_command(args.num_records))}
    if args.against:
        counts["against"] = count(preview_command(args.num_records), str(Path(args.against)))
    counts["core imports"] = count([sys.executable, "-c", f"import {', '.join(CORE_IMPORTS)}"])
    counts["bare"] = count([sys.executable, "-c", "pass"])
    report = {"num_records": args.num_records, "against": args.against, "counts": counts}
    path = save(args.name, report, markdown(report))
    print(markdown(report))
    print(path)


if __name__ == "__main__":
    main()
