"""Rounds and uplink bytes to a given accuracy: dense averaging, shared masks
and independent block sparsification, on a5a (L2 logistic regression).

Run from the repository root (the datasets are read from datasets/ or
$DSPARSE_DATASETS):

    python examples/compare_sparsifiers.py
"""

import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_svmlight_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from sklearn_dsparse import DistributedSparseLogisticRegression
from sklearn_dsparse._testing import datasets_dir

DATA = datasets_dir(Path(__file__).resolve().parents[1])
X, y = load_svmlight_file(str(DATA / "a5a.bz2"), n_features=123, zero_based=False)
C, target = 0.01, 1e-6

ref = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12).fit(X, y)
margin = np.where(y > 0, 1, -1) * (X @ ref.coef_.ravel() + ref.intercept_[0])
f_star = C * np.logaddexp(0, -margin).sum() + 0.5 * np.sum(ref.coef_ ** 2)

print(f"a5a, C={C}, 16 workers, 64 blocks: rounds and uplink to "
      f"(F - F*) / F* <= {target:g}")
print(f"{'sparsifier':<12} {'step':>8} {'rounds':>8} {'uplink MB':>10} {'vs dense':>9}")
dense_bytes = None
for sparsifier in ["none", "shared", "independent"]:
    est = DistributedSparseLogisticRegression(
        C=C, solver="gd", n_workers=16, n_blocks=64, sparsifier=sparsifier,
        max_iter=15_000, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    h = est.history_
    hit = np.flatnonzero((h["objective"] - f_star) / f_star <= target)
    if not hit.size:
        print(f"{sparsifier:<12} {est.step_size_:>8.3g}   not reached in "
              f"{est.n_iter_[0]} rounds")
        continue
    rounds, sent = h["rounds"][hit[0]], h["uplink_bytes"][hit[0]]
    dense_bytes = dense_bytes or sent
    print(f"{sparsifier:<12} {est.step_size_:>8.3g} {rounds:>8} {sent / 1e6:>10.2f} "
          f"{sent / dense_bytes:>9.3f}")
