"""
Choosing the compression by accuracy and uplink bytes
=====================================================

The paper's solver (``solver="saga"``) runs a fixed number of epochs; each
worker sends ``blocks_per_worker`` of the ``n_blocks`` parameter blocks per
round.  Sending fewer blocks saves bytes and costs accuracy in the same
epochs, so an accuracy-only search picks little compression.  The bytes
scorer and a refit rule of :mod:`sklearn_dsparse.model_selection` pick by
both.  Then: how far the default solver's history is from scikit-learn's
optimum, without writing the objective.

Data: breast cancer (ships with scikit-learn), standardised.  Seed:
``random_state=0`` for every fit; the folds are ``StratifiedKFold(5)``
without shuffling.  Runs in a few seconds; from the repository root,
``python examples/select_by_bytes.py`` prints the same tables.
"""

# %%
# A grid over the compression, scored by accuracy and bytes
# ----------------------------------------------------------
# ``tol=0``: every candidate runs its 10 epochs, so the bytes follow the
# compression alone.  The refit rule keeps the candidate that sends the
# fewest bytes among those within 0.01 of the best accuracy.

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_dsparse import DistributedSparseLogisticRegression
from sklearn_dsparse.model_selection import (best_score_within_budget,
                                             fewest_bytes_within, neg_uplink_bytes,
                                             objective)
from sklearn_dsparse.plot import plot_convergence

X, y = load_breast_cancer(return_X_y=True)
pipe = Pipeline([
    ("scale", StandardScaler()),
    ("clf", DistributedSparseLogisticRegression(
        solver="saga", n_workers=4, max_iter=10, tol=0, random_state=0)),
])
grid = {"clf__n_blocks": [4, 8, 16, 31], "clf__blocks_per_worker": [1, 2, 4]}
scoring = {"accuracy": "accuracy", "neg_uplink_bytes": neg_uplink_bytes}
tolerance, budget = 0.01, 12_000

search = GridSearchCV(pipe, grid, scoring=scoring, cv=StratifiedKFold(5),
                      refit=fewest_bytes_within(tolerance, score="accuracy"))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    search.fit(X, y)

results = search.cv_results_
accuracy = results["mean_test_accuracy"]
uplink = -results["mean_test_neg_uplink_bytes"]  # the scorer returns minus the bytes
print("breast cancer, 4 workers, saga, 10 epochs; 5-fold means")
print(f"{'':>3} {'n_blocks':>8} {'blocks/worker':>13} {'accuracy':>9} {'uplink B':>9}")
for i, params in enumerate(results["params"]):
    print(f"{i:>3} {params['clf__n_blocks']:>8} {params['clf__blocks_per_worker']:>13} "
          f"{accuracy[i]:>9.4f} {uplink[i]:>9.0f}")

# %%
# Three rules, three candidates
# -----------------------------
# The most accurate candidate, the fewest bytes within ``tolerance`` of it
# (the refit rule of the search) and the best accuracy within a byte budget.


def describe(name, i):
    params = results["params"][i]
    print(f"{name:<36} candidate {i:>2}: n_blocks={params['clf__n_blocks']}, "
          f"blocks_per_worker={params['clf__blocks_per_worker']}, accuracy "
          f"{accuracy[i]:.4f}, {uplink[i]:.0f} B")


picks = {
    "best accuracy (refit='accuracy')": int(np.argmin(results["rank_test_accuracy"])),
    f"fewest bytes within {tolerance} of it": search.best_index_,
    f"best accuracy within {budget} B":
        best_score_within_budget(budget, score="accuracy")(results),
}
for name, i in picks.items():
    describe(name, i)
print("the refit on all rows sent "
      f"{search.best_estimator_[-1].communication_['uplink_bytes']} B "
      "(a fold's fit sees 4/5 of the rows, so fewer rounds per epoch)")

fig, ax = plt.subplots(figsize=(6.4, 4))
ax.scatter(uplink, accuracy, color="0.6", label="candidates")
for (name, i), marker in zip(picks.items(), ["o", "s", "^"]):
    ax.scatter(uplink[i], accuracy[i], s=90, marker=marker, facecolors="none",
               edgecolors="C3" if i == search.best_index_ else "C0", linewidths=2,
               label=name)
ax.axvline(budget, color="0.8", linestyle=":")
ax.set_xscale("log")
ax.set_xlabel("mean uplink bytes of a fold's fit")
ax.set_ylabel("mean test accuracy (5 folds)")
ax.set_title("saga, 4 workers, 10 epochs: accuracy against bytes")
ax.legend(fontsize="small", loc="lower right")
fig.tight_layout()

# %%
# The default solver's distance to the optimum
# --------------------------------------------
# :func:`~sklearn_dsparse.model_selection.objective` evaluates the fit's own
# objective at scikit-learn's solution, which gives the exact reference of
# the suboptimality curves that
# :func:`~sklearn_dsparse.plot.plot_convergence` draws.

X_scaled = StandardScaler().fit_transform(X)
clf = DistributedSparseLogisticRegression(n_workers=4, random_state=0).fit(X_scaled, y)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    saga = DistributedSparseLogisticRegression(
        solver="saga", n_workers=4, max_iter=100, tol=0, random_state=0).fit(X_scaled, y)
exact = LogisticRegression(solver="newton-cholesky", tol=1e-12).fit(X_scaled, y)
f_star = objective(clf, X_scaled, y, coef=exact.coef_, intercept=exact.intercept_)

fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
fits = {"newton (default)": clf,
        f"saga, {saga.blocks_per_worker_} of {saga.n_blocks_} blocks": saga}
for ax, x in zip(axes, ["rounds", "uplink_bytes"]):
    plot_convergence(fits, x=x, reference=f_star, ax=ax)
axes[1].get_legend().remove()
fig.suptitle("breast cancer, 4 workers: (F - F*) / F*")
fig.tight_layout()
