"""Build the wheel with exactly the lowest setuptools pyproject.toml declares.

The floor is read from ``[build-system] requires`` (so the declaration and
this check cannot drift), installed alone into a throwaway virtual
environment, and used without build isolation on a copy of the sources; the
wheel's METADATA must then carry the project's name, version and licence
expression, and the licence file.  Run by ``.ci/run``; needs the network only
to install that one setuptools.

    python3 .ci/check_build_floor.py
"""

import email.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: the TOML reader pip ships.
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent

# What never goes into the build's copy of the sources.
IGNORE = shutil.ignore_patterns(".git", ".venv", ".ci-venv", "build", "dist",
                                "*.egg-info", "__pycache__", ".pytest_cache",
                                ".cache")


def read_pyproject(root=ROOT):
    with open(Path(root) / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def setuptools_floor(pyproject):
    """The X of the single ``setuptools>=X`` in ``[build-system] requires``."""
    specs = [r for r in pyproject["build-system"]["requires"]
             if re.match(r"setuptools\b", r.strip())]
    if len(specs) != 1:
        raise ValueError(f"expected one setuptools requirement, got {specs}")
    m = re.fullmatch(r"setuptools\s*>=\s*([0-9][0-9.]*)", specs[0].strip())
    if m is None:
        raise ValueError(f"expected 'setuptools>=X', got {specs[0]!r}")
    return m.group(1)


def check_wheel(wheel, pyproject):
    """Problems with the wheel's METADATA and licence file (empty if none)."""
    project = pyproject["project"]
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
    expected = {"Name": project["name"], "Version": project["version"],
                "License-Expression": project["license"]}
    problems = [f"{key}: {meta.get(key)!r}, expected {value!r}"
                for key, value in expected.items() if meta.get(key) != value]
    for name in project.get("license-files", []):
        if meta_name.replace("METADATA", f"licenses/{name}") not in names:
            problems.append(f"{name} not in the wheel")
        if name not in (meta.get_all("License-File") or []):
            problems.append(f"License-File: {name} not in METADATA")
    return problems


def main():
    pyproject = read_pyproject()
    floor = setuptools_floor(pyproject)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = tmp / "venv"
        venv.create(env, with_pip=True)
        python = str(env / "bin" / "python")
        pip = [python, "-m", "pip", "--quiet", "--disable-pip-version-check"]
        subprocess.run(pip + ["install", f"setuptools=={floor}"], check=True)
        src = tmp / "src"
        shutil.copytree(ROOT, src, ignore=IGNORE)
        out = tmp / "wheel"
        subprocess.run(pip + ["wheel", "--no-build-isolation", "--no-deps",
                              "-w", str(out), str(src)], check=True,
                       env={**os.environ, "PIP_NO_INPUT": "1"})
        (wheel,) = out.glob("*.whl")
        problems = check_wheel(wheel, pyproject)
    if problems:
        sys.exit(f"wheel built with setuptools=={floor}:\n  "
                 + "\n  ".join(problems))
    print(f"built {wheel.name} with setuptools=={floor}: metadata as declared")


if __name__ == "__main__":
    main()
