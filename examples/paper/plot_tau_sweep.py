"""
A sweep of tau: beyond m / n, sending more barely helps
=======================================================

With n workers and m blocks, ``blocks_per_worker`` (tau) = m / n sends each
block about once per round in total.  Sending more blocks costs bytes in
proportion to tau; what does it buy in rounds?  ``solver="gd"`` (ISEGA) to a
relative suboptimality of 1e-6, for tau from 1 to m, twice:

- at dense averaging's step, the same for every tau (the step of the
  paper's claim): the rounds hardly move with tau, so the bytes to the
  target grow in proportion to it;
- at each tau's default step (``step_size="auto"``), which shrinks as the
  compression variance grows and is dense averaging's from tau = 2 m / n
  on: below m / n the rounds grow fast; from m / n to 2 m / n they fall back
  to dense averaging's (the step rule's margin), for more bytes; beyond
  2 m / n nothing changes but the bytes.

Data: a1a (``datasets/a1a.bz2``, 1605 rows, 123 features), L2 logistic
regression at ``C=0.01``; n = 16 workers, m = 64 blocks (m / n = 4).  Seed:
``random_state=0``.  The optimum is scikit-learn's ``newton-cholesky``
solution.  tau = m is dense averaging (``sparsifier="none"``).
"""

# %%
# The fits
# --------

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_svmlight_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from sklearn_dsparse import DistributedSparseLogisticRegression
from sklearn_dsparse._testing import datasets_dir
from sklearn_dsparse.model_selection import objective, suboptimality

# Run from the repository root; the site's build sets $DSPARSE_DATASETS.
DATA = datasets_dir(Path.cwd())
X, y = load_svmlight_file(str(DATA / "a1a.bz2"), n_features=123, zero_based=False)
C, target, n, m = 0.01, 1e-6, 16, 64
exact = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12).fit(X, y)


def fit(tau, step_size="auto"):
    est = DistributedSparseLogisticRegression(
        C=C, solver="gd", n_workers=n, n_blocks=m, blocks_per_worker=tau,
        sparsifier="none" if tau == m else "independent", step_size=step_size,
        max_iter=3000, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


dense = fit(m)
f_star = objective(dense, X, y, coef=exact.coef_, intercept=exact.intercept_)


def to_target(est):
    """Rounds and uplink bytes at the first epoch within the target, or nan."""
    curve = suboptimality(est, reference=f_star)
    hit = np.flatnonzero(curve["suboptimality"] <= target)
    if not hit.size:
        return np.nan, np.nan
    return curve["rounds"][hit[0]], curve["uplink_bytes"][hit[0]]


taus = [1, 2, 4, 8, 16, 32, 64]
results = {"dense averaging's step": [], "default step": []}
for tau in taus:
    same_step = dense if tau == m else fit(tau, step_size=dense.step_size_)
    results["dense averaging's step"].append((same_step.step_size_,
                                              *to_target(same_step)))
    # From tau = 2 m / n on, the default step is dense averaging's: the same fit.
    default = same_step if tau >= 2 * m // n else fit(tau)
    results["default step"].append((default.step_size_, *to_target(default)))

print(f"a1a, C={C}, gd, n={n}, m={m}: rounds and uplink MB to {target:g} "
      "(nan: not reached in 3000 rounds)")
print(f"{'tau':>4} " + "  ".join(f"{name:>30}" for name in results))
for i, tau in enumerate(taus):
    cells = [f"step {step:.3f} {rounds:>6.0f} r {sent / 1e6:>6.2f} MB"
             for step, rounds, sent in (runs[i] for runs in results.values())]
    print(f"{tau:>4} " + "  ".join(f"{cell:>30}" for cell in cells))

# %%
# Rounds and bytes against tau
# ----------------------------
# The dotted line is tau = m / n; a triangle at 3000 rounds marks a fit that
# had not reached the target when it stopped.

fig, (ax_rounds, ax_bytes) = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
for (name, runs), marker in zip(results.items(), ["o", "s"]):
    _, rounds, sent = np.array(runs).T
    ax_rounds.plot(taus, rounds, marker=marker, label=name)
    ax_bytes.plot(taus, sent, marker=marker, label=name)
    # A fit that did not reach the target is drawn at the cap, pointing up.
    missed = np.isnan(rounds)
    ax_rounds.plot(np.array(taus)[missed], np.full(missed.sum(), 3000), "^",
                   color=ax_rounds.lines[-1].get_color(), markersize=9)
for ax in (ax_rounds, ax_bytes):
    ax.axvline(m / n, color="0.7", linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_xticks(taus, labels=[str(tau) for tau in taus])
    ax.set_xlabel("tau, blocks each worker sends per round (of 64)")
ax_rounds.set_ylim(bottom=0)
ax_rounds.set_ylabel(f"rounds to {target:g}")
ax_bytes.set_yscale("log")
ax_bytes.set_ylabel(f"uplink bytes to {target:g}")
ax_rounds.legend()
fig.suptitle(f"a1a, C={C}, gd, {n} workers, {m} blocks")
fig.tight_layout()
