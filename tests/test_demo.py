"""``python -m sklearn_dsparse demo``: its figures are the fits' own, and it
hides no warning."""

import inspect
import re
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sklearn_dsparse import DistributedSparseLogisticRegression, __main__ as demo_module

ROW = re.compile(r"^(?P<label>\S.*?)\s{2,}(?P<accuracy>[\d.]+)?\s+(?P<rounds>\d+)\s+"
                 r"(?P<bytes>[\d,]+)(\s+(?P<seconds>[\d.]+)\s+(?P<gap>\S+))?$")


def _breast_cancer_only(random_state):
    X, y = load_breast_cancer(return_X_y=True)
    yield "breast cancer (scikit-learn's copy of UCI WDBC), standardised", X, y


def _table(text):
    rows = {}
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            rows[m["label"].strip()] = (int(m["rounds"]), int(m["bytes"].replace(",", "")))
    return rows


def test_demo_prints_the_fits_own_figures_and_every_warning(monkeypatch, capsys):
    source = inspect.getsource(demo_module)
    for silencer in ("filterwarnings", "simplefilter", "catch_warnings"):
        assert silencer not in source
    monkeypatch.setattr(demo_module, "_datasets", _breast_cancer_only)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        demo_module.main(["demo", "--n-workers", "8", "--random-state", "0"])
    out = capsys.readouterr().out
    assert out.startswith("Loading the solver's compiled kernels")

    # The paper's saga stops at max_iter on this data: the user sees it.
    convergence = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(convergence) == 2

    rows = _table(out)
    assert set(rows) >= {"default (newton)", "newton, 1 of 8 blocks",
                         "saga, independent blocks", "saga, dense averaging",
                         "dense L-BFGS, to that gap"}
    X, y = load_breast_cancer(return_X_y=True)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0,
                                              stratify=y)
    X_train = StandardScaler().fit(X_train).transform(X_train)
    for label, params in [("default (newton)", {}),
                          ("newton, 1 of 8 blocks", dict(n_blocks=8,
                                                         blocks_per_worker=1))]:
        est = DistributedSparseLogisticRegression(n_workers=8, random_state=0,
                                                  **params).fit(X_train, y_train)
        assert rows[label] == (est.communication_["rounds"],
                               est.communication_["uplink_bytes"])

    # The summary's ratios are those of the table's rows.
    ratios = re.search(r"The default: ([\d.e+-]+)x the bytes and ([\d.e+-]+)x the rounds "
                       r"of dense L-BFGS.*?; ([\d.e+-]+)x the bytes and ([\d.e+-]+)x the "
                       r"rounds of dense averaging", out, re.S)
    (r, b), (lr, lb), (dr, db) = (rows["default (newton)"],
                                  rows["dense L-BFGS, to that gap"],
                                  rows["saga, dense averaging"])
    expected = [b / lb, r / lr, b / db, r / dr]
    np.testing.assert_allclose([float(g) for g in ratios.groups()], expected, rtol=0.05)
