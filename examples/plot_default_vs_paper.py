"""
The default method against the paper's solvers and dense L-BFGS
===============================================================

Three ways to fit the same L2 logistic regression with 16 workers, in
rounds and uplink bytes to the optimum:

- the default, ``solver="newton"``: each iteration a round of objectives and
  gradients and a round of local Newton directions, which precondition an
  L-BFGS on the master;
- ``solver="saga"`` with independent block sparsification, tau = 4 of
  m = 64 blocks (n · tau = m, the paper's setting), ``batch_size=16``, at its
  default step;
- dense L-BFGS over an all-reduce: scipy's L-BFGS-B (memory 10) on the same
  objective, each function and gradient evaluation one round in which each
  of the 16 workers sends its objective and gradient whole, a message of
  16 + 8 (P + 1) bytes for P parameters (the library's 16-byte header and
  8 bytes a value).  This is how ``benchmarks/_few_rounds_methods.py``
  (``lbfgs``, ``Meter.dense_exchange``) counts it; the gallery does not
  import the benchmarks, so the few lines are written out below, and the
  sum of the workers' gradients is computed as one gradient over all rows
  (the same numbers, up to rounding).

Data: a1a (``datasets/a1a.bz2``, 1605 rows, 123 features, so P = 124 with
the intercept), at ``C=1`` (scikit-learn's default) and ``C=0.01``; shards
of about 100 rows, in file order.  Seed: ``random_state=0`` (L-BFGS is
deterministic).  The optimum is scikit-learn's ``newton-cholesky``
solution; the curves are the relative suboptimality ``(F - F*) / F*``.
"""

# %%
# The fits
# --------

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit
from sklearn.datasets import load_svmlight_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from sklearn_dsparse import DistributedSparseLogisticRegression
from sklearn_dsparse._testing import datasets_dir
from sklearn_dsparse.model_selection import objective, suboptimality
from sklearn_dsparse.plot import plot_convergence

# Run from the repository root; the site's build sets $DSPARSE_DATASETS.
DATA = datasets_dir(Path.cwd())
X, y = load_svmlight_file(str(DATA / "a1a.bz2"), n_features=123, zero_based=False)
n_workers, target = 16, 1e-6
HEADER_BYTES, VALUE_BYTES = 16, 8


def dense_lbfgs(C, max_rounds):
    """scikit-learn's objective along L-BFGS-B's evaluations, and the rounds
    and uplink bytes after each (every evaluation one dense round)."""
    A = sp.hstack([X, np.ones((X.shape[0], 1))], format="csr")
    t = (y == y.max()).astype(float)
    penalised = np.ones(A.shape[1])
    penalised[-1] = 0.0  # the intercept
    round_bytes = n_workers * (HEADER_BYTES + VALUE_BYTES * (A.shape[1] + 1))
    values = []

    def value_grad(w):
        z = A @ w
        values.append(C * np.sum(np.logaddexp(0, z) - t * z)
                      + 0.5 * np.sum(penalised * w * w))
        return values[-1], C * (A.T @ (expit(z) - t)) + penalised * w

    # ftol = gtol = 0: run to the cap, as the estimators below run to theirs.
    scipy.optimize.minimize(value_grad, np.zeros(A.shape[1]), jac=True,
                            method="L-BFGS-B",
                            options=dict(maxcor=10, maxfun=max_rounds,
                                         maxiter=max_rounds, ftol=0, gtol=0))
    rounds = np.arange(1, len(values) + 1)
    return {"objective": np.array(values), "rounds": rounds,
            "uplink_bytes": rounds * round_bytes}


def fit(C, **params):
    est = DistributedSparseLogisticRegression(C=C, n_workers=n_workers,
                                              random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


problems = {}
for C in (1.0, 0.01):
    exact = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12).fit(X, y)
    # tol small enough for newton to pass the target (tol**2 / 2); saga runs
    # 450 epochs of 7 rounds.
    fits = {"newton (default)": fit(C, tol=1e-7),
            "saga, 4 of 64 blocks": fit(C, solver="saga", n_blocks=64,
                                        blocks_per_worker=4, batch_size=16,
                                        max_iter=450, tol=0)}
    f_star = objective(fits["newton (default)"], X, y, coef=exact.coef_,
                       intercept=exact.intercept_)
    problems[C] = (fits, dense_lbfgs(C, max_rounds=120), f_star)

# %%
# Rounds and bytes to the target
# ------------------------------
# The first record within a relative suboptimality of 1e-6, and the ratio
# to dense L-BFGS.  Newton's rounds count every round it makes, line-search
# trials included.

print(f"a1a, {n_workers} workers: rounds and uplink bytes to {target:g}")
print(f"{'C':>5} {'method':<22} {'rounds':>7} {'uplink MB':>9} {'x L-BFGS':>17} "
      f"{'last':>8}")
for C, (fits, lbfgs, f_star) in problems.items():
    curves = {name: suboptimality(est, reference=f_star)
              for name, est in fits.items()}
    curves["dense L-BFGS"] = dict(
        lbfgs, suboptimality=(lbfgs["objective"] - f_star) / abs(f_star))
    reached = {}
    for name, curve in curves.items():
        hit = np.flatnonzero(curve["suboptimality"] <= target)
        reached[name] = ((curve["rounds"][hit[0]], curve["uplink_bytes"][hit[0]])
                         if hit.size else None)
    base = reached["dense L-BFGS"]
    for name, curve in curves.items():
        if reached[name]:
            rounds, sent = reached[name]
            cells = (f"{rounds:>7} {sent / 1e6:>9.3f} "
                     f"{rounds / base[0]:>7.2f}r {sent / base[1]:>7.2f}B")
        else:
            cells = f"{'-':>7} {'-':>9} {'not reached':>17}"
        print(f"{C:>5g} {name:<22} {cells} {curve['suboptimality'][-1]:>8.1e}")

# %%
# The curves
# ----------
# Both axes logarithmic: saga's rounds run to 3150.
#
# When this was written: at ``C=1`` the default reached 1e-6 in 33 rounds
# and 0.45 MB of uplink, 0.45 times dense L-BFGS's rounds (74) and 0.37
# times its bytes (1.2 MB); saga sent a tenth of a dense message per round
# but was still at 8e-3 after 3150 rounds and 4.7 MB.  At ``C=0.01`` (a
# better-conditioned problem) dense L-BFGS needs only 16 rounds and the
# default's lead shrinks to 0.69 times the rounds and 0.62 times the bytes;
# saga reached 1e-6 after 3031 rounds, 190 times L-BFGS's rounds and 17.5
# times its bytes.  The paper's claim holds for saga (its rounds are dense
# averaging's, for a tenth of the bytes: see the n · tau = m page), but
# dense averaging of one step a round is itself far behind a quasi-Newton
# method: against L-BFGS, the compression does not make up for the rounds.
# What these two problems do not show: shards that mislead the local Newton
# directions (label-sorted, or with few rows per parameter) can make dense
# L-BFGS the better choice (the user guide's Newton page, "Where each method
# wins").

fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
for row, (C, (fits, lbfgs, f_star)) in enumerate(problems.items()):
    gaps = (lbfgs["objective"] - f_star) / abs(f_star)
    for ax, x in zip(axes[row], ["rounds", "uplink_bytes"]):
        plot_convergence(fits, x=x, reference=f_star, ax=ax)
        shown = gaps > 0
        ax.plot(lbfgs[x][shown], gaps[shown], label="dense L-BFGS")
        ax.axhline(target, color="0.7", linestyle=":")
        ax.set_xscale("log")
        ax.set_ylim(bottom=1e-12)
        ax.set_title(f"a1a, C={C:g}, {n_workers} workers")
    axes[row, 0].legend(fontsize="small")
    axes[row, 1].get_legend().remove()
fig.tight_layout()
