"""
Where the claim stops
=====================

Two conditions of the paper's claim, each broken on purpose.

- **L/µ ≥ n.** ISEGA keeps dense averaging's rounds when the problem is
  ill-conditioned enough for the n workers (the smoothness L over the strong
  convexity µ at least n).  On a well-conditioned problem dense averaging
  converges in a few rounds, and with tau = 1 of m = n blocks a worker needs
  about n rounds to send a whole gradient: the compressed method cannot
  follow.  Here a5a without intercept at ``C=1e-4`` (a strong penalty), n = 64
  workers, at dense averaging's step.
- **Control variates.** Without them each worker sends its rescaled gradient
  on its blocks, whose variance does not vanish at the optimum (every shard's
  own gradient is not zero there): the fit stalls at a noise floor instead of
  converging.  Here a1a at ``C=0.01``, n = 16, m = 64, tau = 4, gd at the
  default step, with and without ``control_variates``.

Data: a5a (``datasets/a5a.bz2``, 6414 rows) and a1a (``datasets/a1a.bz2``,
1605 rows), 123 features, L2 logistic regression.  Seed: ``random_state=0``.
The optima are scikit-learn's ``newton-cholesky`` solutions.
"""

# %%
# L/µ < n: dense averaging's few rounds
# -------------------------------------

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
from sklearn.datasets import load_svmlight_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from sklearn_dsparse import DistributedSparseLogisticRegression
from sklearn_dsparse._testing import datasets_dir
from sklearn_dsparse.model_selection import objective
from sklearn_dsparse.plot import plot_convergence

# Run from the repository root; the site's build sets $DSPARSE_DATASETS.
DATA = datasets_dir(Path.cwd())


def load(name):
    return load_svmlight_file(str(DATA / f"{name}.bz2"), n_features=123,
                              zero_based=False)


def fit(X, y, **params):
    est = DistributedSparseLogisticRegression(solver="gd", tol=0, random_state=0,
                                              **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def optimum(est, X, y):
    exact = LogisticRegression(C=est.C, solver="newton-cholesky", tol=1e-12,
                               fit_intercept=est.fit_intercept).fit(X, y)
    return objective(est, X, y, coef=exact.coef_, intercept=exact.intercept_)


X, y = load("a5a")
well = dict(C=1e-4, fit_intercept=False, n_workers=64, n_blocks=64)
# Dense averaging reaches rounding errors in under 100 rounds.
dense = fit(X, y, sparsifier="none", max_iter=100, **well)
ibs = fit(X, y, sparsifier="independent", blocks_per_worker=1,
          step_size=dense.step_size_, max_iter=600, **well)
well_fits = {"dense averaging": dense, "independent, 1 of 64 blocks": ibs}
well_star = optimum(dense, X, y)

# %%
# Without control variates: a noise floor
# ---------------------------------------

X, y = load("a1a")
floor = dict(C=0.01, n_workers=16, n_blocks=64, blocks_per_worker=4,
             sparsifier="independent", max_iter=2000)
floor_fits = {"control variates": fit(X, y, control_variates=True, **floor),
              "none": fit(X, y, control_variates=False, **floor)}
floor_star = optimum(floor_fits["none"], X, y)

fig, (ax_well, ax_floor) = plt.subplots(1, 2, figsize=(9, 3.6))
plot_convergence(well_fits, reference=well_star, ax=ax_well)
ax_well.set_title("a5a, C=1e-4, no intercept, 64 workers")
plot_convergence(floor_fits, reference=floor_star, ax=ax_floor)
ax_floor.set_title("a1a, C=0.01, gd, 16 workers, 4 of 64 blocks")
fig.tight_layout()
