"""The package's metadata agrees with itself, without the network.

The build with the declared setuptools floor itself runs in ``.ci/run``
(``.ci/check_build_floor.py``, which needs the package index); here: the
version, the licence, the changelog, and that the CI reads its floor from
pyproject.toml, so the declaration and the build it tests cannot drift.
"""

import importlib.util
import re
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

import sklearn_dsparse

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def ci_check():
    spec = importlib.util.spec_from_file_location(
        "check_build_floor", ROOT / ".ci" / "check_build_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_version_is_pyprojects(pyproject):
    assert sklearn_dsparse.__version__ == pyproject["project"]["version"]


def test_license_is_bsd_3_clause(pyproject):
    project = pyproject["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, sklearn-dsparse developers" in text
    for clause in ("Redistributions of source code must retain",
                   "Redistributions in binary form must reproduce",
                   "Neither the name of the copyright holder",
                   'PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"'):
        assert clause in text
    # PEP 639: the expression replaces licence classifiers, and setuptools
    # >= 77 refuses to build with both.
    assert not any(c.startswith("License ::") for c in project["classifiers"])


def test_changelog_has_the_current_version(pyproject):
    version = pyproject["project"]["version"]
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(version)}\]", text, re.MULTILINE)
    assert re.search(r"^## \[Unreleased\]", text, re.MULTILINE)


def test_classifiers_match_requires_python(pyproject):
    project = pyproject["project"]
    assert project["requires-python"] == ">=3.10"
    versions = sorted(c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                      if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert versions == ["3.10", "3.11", "3.12"]
    # The joblib engine needs a POSIX system.
    assert "Operating System :: POSIX" in project["classifiers"]


def test_ci_builds_with_the_declared_floor(pyproject, ci_check):
    (requirement,) = pyproject["build-system"]["requires"]
    floor = ci_check.setuptools_floor(pyproject)
    assert requirement == f"setuptools>={floor}"
    # PEP 639's `license` expression and `license-files` came with 77.0
    # (68 to 76.1 reject the string; 77.0.0 is not on PyPI).
    assert tuple(int(p) for p in floor.split(".")) >= (77, 0, 1)
    run = (ROOT / ".ci" / "run").read_text()
    assert "python .ci/check_build_floor.py" in run
    # README's test command, then README's build of the site, end the run.
    commands = ['pip install ".[test,dask,ray,spark]" && python -m pytest',
                'pip install ".[docs]" && python -m sphinx -W --keep-going -b html '
                'docs docs/_build/html']
    assert run.rstrip().splitlines()[-2:] == commands
    readme = (ROOT / "README.md").read_text()
    assert all(command in readme for command in commands)


@pytest.mark.parametrize("requires, message", [
    (["setuptools"], "expected 'setuptools>=X'"),
    (["setuptools>=77,<80"], "expected 'setuptools>=X'"),
    (["setuptools>=77", "setuptools>=78"], "expected one setuptools"),
    (["wheel"], "expected one setuptools"),
])
def test_ci_rejects_a_floor_it_cannot_install(ci_check, requires, message):
    with pytest.raises(ValueError, match=message):
        ci_check.setuptools_floor({"build-system": {"requires": requires}})


def test_ci_reads_the_floor_beside_other_requirements(ci_check):
    requires = ["setuptools_scm>=8", "setuptools >= 77.0.3", "wheel"]
    assert ci_check.setuptools_floor({"build-system": {"requires": requires}}) \
        == "77.0.3"


def _wheel(path, metadata, files=("LICENSE",)):
    info = "sklearn_dsparse-0.1.0.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{info}/METADATA", metadata)
        for name in files:
            z.writestr(f"{info}/licenses/{name}", "text")
    return path


def test_ci_checks_the_wheels_metadata(tmp_path, pyproject, ci_check):
    good = ("Metadata-Version: 2.4\nName: sklearn-dsparse\nVersion: 0.1.0\n"
            "License-Expression: BSD-3-Clause\nLicense-File: LICENSE\n\n")
    project = dict(pyproject["project"], version="0.1.0")
    config = {"project": project}
    assert ci_check.check_wheel(_wheel(tmp_path / "a.whl", good), config) == []
    old = good.replace("License-Expression: BSD-3-Clause\n", "License: BSD-3-Clause\n")
    problems = ci_check.check_wheel(_wheel(tmp_path / "b.whl", old), config)
    assert problems == ["License-Expression: None, expected 'BSD-3-Clause'"]
    problems = ci_check.check_wheel(_wheel(tmp_path / "c.whl", good, files=()), config)
    assert problems == ["LICENSE not in the wheel"]
