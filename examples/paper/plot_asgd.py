"""
Accelerated SGD on models that interpolate
==========================================

``solver="asgd"`` is the paper's IASGD: sgd's estimate, with independent
block sparsification, inside the accelerated SGD of Vaswani, Bach & Schmidt
(AISTATS 2019), whose guarantee needs the model to interpolate (every row's
residual vanishes at the optimum).  A round of asgd sends exactly what a
round of sgd sends with the same blocks; the question is the rounds.

Data: synthetic, consistent least squares, ``y = X w + 0.5`` exactly:
4000 rows, 5 Gaussian features whose columns are scaled from 1 down to
0.1 (condition number about 100) or to 0.03 (about 1000), the data of
``tests/test_exactness.py``; ``DistributedSparseRidge`` with ``alpha=0``,
4 workers, 2 of 6 blocks each (the 5 features and the intercept, one a
block), ``batch_size=1000`` (a worker's whole shard, so the noise is the
compression's alone).  Then separable data for binary logistic
regression at ``C=np.inf`` (no minimizer: the loss goes to 0): 400 rows of
10 Gaussian features labelled by a hyperplane (offset 0.3), rows within 0.1
of it dropped, 4 workers, 1 of 4 blocks each, whole shards; asgd takes the
convex schedule there (the method page).  Seeds:
``numpy.random.default_rng(0)`` for the data, ``random_state=0`` for the
fits.  Each at its default step.  The optimal objective is 0, so the curves
are ``F / F(0)``, not relative to F*.
"""

# %%
# The fits
# --------

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from sklearn_dsparse import DistributedSparseLogisticRegression, DistributedSparseRidge

target = 1e-8


def interpolating_least_squares(decay, n_samples=4000, n_features=5, seed=0):
    """Column scales from 1 to 10**-decay: condition number about 10**(2 decay)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features)) * np.logspace(0, -decay,
                                                                   n_features)
    return X, X @ rng.standard_normal(n_features) + 0.5


def fit(X, y, solver, max_iter):
    est = DistributedSparseRidge(alpha=0.0, solver=solver, n_workers=4, n_blocks=6,
                                 blocks_per_worker=2, batch_size=1000,
                                 max_iter=max_iter, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


# One round per epoch (the batch is the shard): max_iter is rounds.
problems = {}
for decay, asgd_rounds in [(1.0, 300), (1.5, 600)]:
    X, y = interpolating_least_squares(decay)
    problems[decay] = {"asgd": fit(X, y, "asgd", asgd_rounds),
                       "sgd": fit(X, y, "sgd", 1600)}

def separable(n_samples=400, n_features=10, margin=0.1, seed=0):
    """Labels of a hyperplane; rows within ``margin`` of it dropped."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4 * n_samples, n_features))
    normal = rng.standard_normal(n_features)
    side = X @ normal / np.linalg.norm(normal) + 0.3
    keep = np.abs(side) > margin
    return X[keep][:n_samples], (side[keep][:n_samples] > 0).astype(int)


X_sep, y_sep = separable()
separable_fits = {}
for solver, max_iter in [("asgd", 1500), ("sgd", 3000)]:
    est = DistributedSparseLogisticRegression(
        C=np.inf, solver=solver, n_workers=4, n_blocks=4, blocks_per_worker=1,
        batch_size=100, max_iter=max_iter, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        separable_fits[solver] = est.fit(X_sep, y_sep)

# %%
# Rounds and bytes to the target
# ------------------------------
# The first record with ``F <= 1e-8 F(0)``; the uplink bytes per round are
# the same for both solvers.

print(f"{'scales':<12} {'solver':<6} {'step':>8} {'rounds':>7} {'B/round':>8} "
      f"{'uplink kB':>9} {'last':>8}")
for decay, fits in problems.items():
    for solver, est in fits.items():
        F = np.asarray(est.history_["objective"])
        sent = np.asarray(est.history_["uplink_bytes"])
        rounds = np.asarray(est.history_["rounds"])
        hit = np.flatnonzero(F <= target * F[0])
        per_round = (sent[-1] - sent[0]) / (rounds[-1] - rounds[0])
        cells = (f"{rounds[hit[0]]:>7} {per_round:>8.0f} {sent[hit[0]] / 1e3:>9.1f}"
                 if hit.size else f"{'-':>7} {per_round:>8.0f} {'-':>9}")
        print(f"1 to {10 ** -decay:<7.2g} {solver:<6} {est.step_size_:>8.3g} {cells} "
              f"{F[-1] / F[0]:>8.1e}")

# %%
# On the separable data the objective at ``C=np.inf`` is the sum of the
# rows' losses; the target is a mean loss of 1e-2.

for solver, est in separable_fits.items():
    mean_loss = np.asarray(est.history_["objective"]) / len(y_sep)
    rounds = np.asarray(est.history_["rounds"])
    hit = np.flatnonzero(mean_loss <= 1e-2)
    print(f"separable    {solver:<6} {est.step_size_:>8.3g} "
          f"{rounds[hit[0]] if hit.size else '-':>7} accuracy "
          f"{est.score(X_sep, y_sep):.3f}, mean loss at the end {mean_loss[-1]:.1e}")

# %%
# The curves
# ----------
# When this was written: with scales 1 to 0.1, asgd reached 1e-8 in 118
# rounds, sgd in 1453 (12 times more, for 12 times the bytes); with scales
# 1 to 0.03, asgd in 422 and sgd not in 1600 (at 3e-5 there).  Not shown
# here, where the claim stops: the acceleration needs the interpolation
# (with noisy targets or ``alpha > 0`` the gradient at the optimum is no
# longer zero and asgd, like sgd, stops at a neighbourhood of it; the method
# page, "Accelerated SGD"), and with small batches on ill-conditioned data
# its strong growth constant can make it slower than sgd.  On the separable
# data, asgd reached a mean loss of 1e-2 in 356 rounds, sgd in 2479.

fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for ax, (decay, fits) in zip(axes, problems.items()):
    for solver, est in fits.items():
        F = np.asarray(est.history_["objective"])
        ax.plot(est.history_["rounds"], F / F[0], label=solver)
    ax.axhline(target, color="0.7", linestyle=":")
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-12)
    ax.set_xlabel("rounds (the same bytes each for both)")
    ax.set_title(f"column scales 1 to {10 ** -decay:.2g}")
for solver, est in separable_fits.items():
    F = np.asarray(est.history_["objective"])
    axes[2].plot(est.history_["rounds"], F / F[0], label=solver)
axes[2].axhline(1e-2 / np.log(2), color="0.7", linestyle=":")
axes[2].set_yscale("log")
axes[2].set_xlabel("rounds (the same bytes each for both)")
axes[2].set_title("separable, logistic, C=inf, 1 of 4 blocks")
axes[0].set_ylabel("F / F(0)")
axes[0].legend()
fig.suptitle("least squares that interpolate (4 workers, 2 of 6 blocks) and "
             "separable data")
fig.tight_layout()
