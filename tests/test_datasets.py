"""The repository carries the data its tests read, as datasets/README.md records it."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sklearn_dsparse._testing import datasets_dir, sha256

from conftest import N_FEATURES

CHECKOUT = Path(__file__).resolve().parents[1]
DATASETS = CHECKOUT / "datasets"


def readme_sha256():
    """{file: sha256} from the rows of datasets/README.md that end in a sha256."""
    row = re.compile(r"^\|\s*`([^`]+)`\s*\|.*\|\s*`([0-9a-f]{64})`\s*\|\s*$")
    table = {}
    for line in (DATASETS / "README.md").read_text(encoding="utf-8").splitlines():
        m = row.match(line)
        if m:
            assert m[1] not in table, f"{m[1]} listed twice in datasets/README.md"
            table[m[1]] = m[2]
    return table


def test_readme_lists_exactly_the_stored_files():
    stored = {p.name for p in DATASETS.glob("*.bz2")}
    assert set(readme_sha256()) == stored
    assert {f"{name}.bz2" for name in N_FEATURES} <= stored
    assert len(stored) == 9  # the 8 svmlight files and the raw phishing source


@pytest.mark.parametrize("file", sorted({f"{name}.bz2" for name in N_FEATURES}
                                        | {"phishing_uci_source.csv.bz2"}))
def test_stored_file_matches_readme_sha256(file):
    assert sha256(DATASETS / file) == readme_sha256()[file]


def test_datasets_dir_is_the_checkouts_own_folder(tmp_path, monkeypatch):
    checkout = tmp_path / "repo"
    checkout.mkdir()
    (tmp_path / "shared" / "datasets").mkdir(parents=True)  # no longer consulted
    monkeypatch.delenv("DSPARSE_DATASETS", raising=False)
    assert datasets_dir(checkout) == checkout / "datasets"
    # benchmarks pass a path through their own file
    assert datasets_dir(f"{checkout}/bench.py/..") == checkout / "datasets"
    monkeypatch.setenv("DSPARSE_DATASETS", str(tmp_path / "elsewhere"))
    assert datasets_dir(checkout) == tmp_path / "elsewhere"


LOAD_IN_COPY = """
import json, sys
import numpy as np
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import conftest, sklearn_dsparse
X, y = conftest.load("a1a")
labels, counts = np.unique(y, return_counts=True)
print(json.dumps({"package": sklearn_dsparse.__file__, "datasets": str(conftest.DATASETS),
                  "shape": X.shape, "nnz": int(X.nnz),
                  "labels": dict(zip(map(int, labels), map(int, counts)))}))
"""


def test_a_copy_of_the_checkout_loads_its_own_data(tmp_path):
    # The checkout's code and data, copied (no links) where nothing is beside them:
    # no ../shared, no git origin, no DSPARSE_DATASETS.
    copy = tmp_path / "x" / "clone"
    shutil.copytree(CHECKOUT / "sklearn_dsparse", copy / "sklearn_dsparse",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(DATASETS, copy / "datasets")
    (copy / "tests").mkdir()
    shutil.copy(CHECKOUT / "tests" / "conftest.py", copy / "tests")
    assert os.listdir(copy.parent) == ["clone"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DSPARSE_DATASETS", "PYTHONPATH")}
    out = subprocess.run([sys.executable, "-c", LOAD_IN_COPY, str(copy)], cwd=copy,
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert Path(got["package"]).parent == copy / "sklearn_dsparse"
    assert Path(got["datasets"]) == copy / "datasets"
    assert got["shape"] == [1605, 123]
    assert got["nnz"] == 22249
    assert got["labels"] == {"-1": 1210, "1": 395}
