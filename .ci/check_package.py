"""The package as users get it: build it, install the wheel without extras, run a program.

Run by ``make package`` (part of ``make test``).  It builds the sdist and, from the sdist, the
wheel (``python -m build``), checks the files users need are in the wheel, then for each
CPython >= 3.10 it finds (this one, and ``python3.10`` ... ``python3.13`` on PATH or
installed by pyenv) creates a
fresh virtual environment, installs the wheel *without* any extras, and runs
``import txgreen`` (and its subpackages) and ``examples/hello_block_on.py`` there, from outside
the source tree.  One more environment pins the lowest versions ``pyproject.toml`` allows
(Twisted 23.8.0, greenlet 3.0.0) on the lowest Python found.  A missing dependency or a file
missing from the wheel fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hello_block_on.py"
EXPECTED_OUTPUT = "slow_square(7) = 49\nthree green threads at once: [1, 4, 9]\n"
IN_WHEEL = [
    "txgreen/__init__.py",
    "txgreen/py.typed",
    "txgreen/pytest_plugin.py",
    "txgreen/green/socket.py",
    "txgreen/web/__init__.py",
]
LOWEST = ["twisted==23.8.0", "greenlet==3.0.0"]  # the bounds in pyproject.toml
IMPORTS = "import txgreen, txgreen.green.socket, txgreen.stackless, txgreen.web; "


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"check_package: {' '.join(map(str, cmd))} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def candidates(version: str) -> list[str]:
    """Where a ``python3.X`` may be: on PATH, or installed by pyenv but not activated."""
    paths = [p for p in [shutil.which(f"python{version}")] if p is not None]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    paths += [str(p) for p in sorted(pyenv.glob(f"{version}.*/bin/python{version}"))]
    return paths


def pythons() -> dict[str, str]:
    """{"3.11": path} for this interpreter and every other CPython >= 3.10 found."""
    found = {f"{sys.version_info[0]}.{sys.version_info[1]}": sys.executable}
    for minor in range(10, 14):
        version = f"3.{minor}"
        for path in candidates(version) if version not in found else []:
            probe = subprocess.run([path, "-c", "import venv"], capture_output=True, check=False)
            if probe.returncode == 0:
                found[version] = path
                break
    return dict(sorted(found.items(), key=lambda item: int(item[0].split(".")[1])))


def check_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [n for n in IN_WHEEL if n not in names]
    if not any(n.endswith("/licenses/LICENSE") for n in names):
        missing.append("*.dist-info/licenses/LICENSE")
    if (ROOT / "src" / "twisted" / "plugins").is_dir() and not any(
        n.startswith("twisted/plugins/") for n in names
    ):
        missing.append("twisted/plugins/ (the twist plugin)")
    if missing:
        sys.exit(f"check_package: the wheel lacks {missing}")


def try_in_venv(python: str, wheel: Path, work: Path, name: str, pins: list[str]) -> str:
    venv = work / name
    run(python, "-m", "venv", venv)
    pip = venv / "bin" / "pip"
    run(pip, "install", "--quiet", "--disable-pip-version-check", wheel, *pins)
    here = work / f"{name}-run"
    here.mkdir()
    shutil.copy(EXAMPLE, here / EXAMPLE.name)
    py = venv / "bin" / "python"
    version = run(py, "-c", IMPORTS + "print(txgreen.__version__)", cwd=here).strip()
    output = run(py, EXAMPLE.name, cwd=here)
    if output != EXPECTED_OUTPUT:
        sys.exit(f"check_package: {EXAMPLE.name} under {name} printed {output!r}")
    freeze = run(pip, "freeze", "--disable-pip-version-check")
    versions = {
        line.split("==")[0].lower(): line.split("==")[1]
        for line in freeze.splitlines()
        if "==" in line
    }
    return (
        f"txgreen {version}, Twisted {versions.get('twisted')}, greenlet {versions.get('greenlet')}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="txgreen-package-") as tmp:
        work = Path(tmp)
        run(sys.executable, "-m", "build", "--outdir", work / "dist", ROOT)
        wheels = list((work / "dist").glob("txgreen-*.whl"))
        if len(wheels) != 1 or not list((work / "dist").glob("txgreen-*.tar.gz")):
            sys.exit(f"check_package: expected one wheel and one sdist, got {wheels}")
        wheel = wheels[0]
        check_wheel(wheel)
        print(f"built {wheel.name} (from the sdist) and its sdist")
        found = pythons()
        lowest = next(iter(found))
        plan: list[tuple[str, str, str, list[str]]] = [
            (f"Python {v}", p, f"py{v}", []) for v, p in found.items()
        ]
        plan.append((f"Python {lowest}, lowest pins", found[lowest], "lowest", LOWEST))
        with ThreadPoolExecutor(max_workers=len(plan)) as pool:  # pip mostly waits: overlap
            got = pool.map(lambda step: try_in_venv(step[1], wheel, work, step[2], step[3]), plan)
            for (title, *_), figures in zip(plan, got, strict=True):
                print(f"  {title}: installed without extras, example ran ({figures})")


if __name__ == "__main__":
    main()
