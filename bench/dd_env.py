"""Create a venv with NVIDIA NeMo Data Designer 0.9.7, the peer of ``bench/peer.py``.

    python bench/dd_env.py VENV_DIR

Idempotent: nothing is done when ``VENV_DIR/bin/python`` already imports
``data_designer.interface`` and reports ``data-designer`` 0.9.7. Otherwise the venv is made
with the Python running this script (``sys.executable -m venv``) and

1. ``pip install data-designer==0.9.7`` is tried;
2. if that fails (``data-designer-config`` 0.9.7 pins ``certifi>=2026.10.19``, which the
   registry here may not have yet), the three ``data-designer*`` wheels are downloaded with
   ``--no-deps``, their ``Requires-Dist`` lines are read from ``*.dist-info/METADATA``
   (optional extras skipped, other environment markers kept, the version pin dropped on
   ``certifi`` only), those requirements are installed, then the three wheels ``--no-deps``.

``pip check`` then still reports the certifi pin; certifi is only the CA bundle, so that is
harmless for the benchmark.
"""

from __future__ import annotations

import argparse
import email.parser
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "0.9.7"
PACKAGES = ("data-designer", "data-designer-config", "data-designer-engine")
UNPINNED = frozenset({"certifi"})  # version pin dropped in the fallback
PROBE = "import importlib.metadata as m, data_designer.interface; print(m.version('data-designer'))"
_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(.*)")
_EXTRA = re.compile(r"\bextra\s*==")


def normalise(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def installed_version(python: Path) -> str | None:
    """The data-designer version ``python`` imports, or None if it cannot import it."""
    if not python.exists():
        return None
    proc = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def run(cmd: list[str], *, capture: bool = False) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, capture_output=capture, text=True)


def requirement(line: str) -> str | None:
    """The requirement to install for one ``Requires-Dist`` value, or None to skip it."""
    spec, _, marker = line.partition(";")
    marker = marker.strip()
    if marker and _EXTRA.search(marker):
        return None  # an optional extra
    match = _NAME.fullmatch(spec)
    if match is None:
        raise ValueError(f"cannot parse Requires-Dist: {line!r}")
    name, extras, version = match.group(1), match.group(2) or "", match.group(3).strip()
    if normalise(name).startswith("data-designer"):
        return None  # installed from the wheels themselves
    if normalise(name) in UNPINNED:
        version = ""
    req = f"{name}{extras}{version}"
    return f"{req}; {marker}" if marker else req


def wheel_requirements(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` values of ``wheel`` (from its ``*.dist-info/METADATA``)."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(names) != 1:
            raise RuntimeError(f"{wheel.name}: expected one dist-info/METADATA, found {names}")
        metadata = email.parser.BytesParser().parsebytes(zf.read(names[0]), headersonly=True)
    return list(metadata.get_all("Requires-Dist") or [])


def fallback(pip: list[str]) -> None:
    """Install the wheels' requirements (certifi unpinned), then the wheels with --no-deps."""
    with tempfile.TemporaryDirectory(prefix="dd_wheels_") as tmp:
        pins = [f"{p}=={VERSION}" for p in PACKAGES]
        if run(
            [*pip, "download", "--no-deps", "--progress-bar", "off", "-d", tmp, *pins]
        ).returncode:
            raise SystemExit("dd_env: pip download of the data-designer wheels failed")
        wheels = sorted(Path(tmp).glob("*.whl"))
        found = {normalise(w.name.split("-")[0]) for w in wheels}
        if found != set(PACKAGES):
            raise SystemExit(
                f"dd_env: expected wheels for {PACKAGES}, got {[w.name for w in wheels]}"
            )
        reqs: list[str] = []
        for wheel in wheels:
            kept = [r for r in map(requirement, wheel_requirements(wheel)) if r is not None]
            print(f"{wheel.name}: {len(kept)} requirements", flush=True)
            reqs.extend(r for r in kept if r not in reqs)
        print("requirements (certifi unpinned):", " ".join(repr(r) for r in reqs), flush=True)
        if run([*pip, "install", "--progress-bar", "off", *reqs]).returncode:
            raise SystemExit("dd_env: installing the requirements of data-designer failed")
        cmd = [*pip, "install", "--no-deps", "--progress-bar", "off", *map(str, wheels)]
        if run(cmd).returncode:
            raise SystemExit("dd_env: installing the data-designer wheels failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("venv", type=Path, help="the venv directory (created if needed)")
    args = parser.parse_args(argv)
    venv: Path = args.venv.resolve()
    python = venv_python(venv)

    version = installed_version(python)
    if version == VERSION:
        print(f"dd_env: {venv} already has data-designer {VERSION}; nothing to do")
        return 0
    if python.exists():
        print(f"dd_env: {venv} exists but has data-designer {version or 'missing'}; reinstalling")
    else:
        print(f"dd_env: creating {venv} with {sys.executable}")
        if run([sys.executable, "-m", "venv", str(venv)]).returncode:
            raise SystemExit("dd_env: venv creation failed")
    pip = [str(python), "-m", "pip"]

    plain = run(
        [*pip, "install", "--progress-bar", "off", f"data-designer=={VERSION}"], capture=True
    )
    if plain.returncode == 0:
        print(f"dd_env: plain install of data-designer=={VERSION} worked")
    else:
        lines = (plain.stderr or plain.stdout).strip().splitlines()
        tail = "\n".join([ln for ln in lines if ln.startswith("ERROR")] or lines[-6:])
        print(f"dd_env: plain install failed:\n{tail}\ndd_env: falling back to --no-deps wheels")
        fallback(pip)

    version = installed_version(python)
    if version != VERSION:
        raise SystemExit(f"dd_env: {python} still does not import data-designer {VERSION}")
    check = run([*pip, "check"], capture=True)
    print(f"dd_env: pip check: {(check.stdout or check.stderr).strip()}")
    print(f"dd_env: ready: {python} (data-designer {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
