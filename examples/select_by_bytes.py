"""Choosing the compression by accuracy and uplink bytes with GridSearchCV.

The paper's solver (``solver="saga"``) runs a fixed number of epochs; each
worker sends ``blocks_per_worker`` of the ``n_blocks`` parameter blocks per
round.  Sending fewer blocks saves bytes and costs accuracy in the same
epochs, so an accuracy-only search picks little compression.  The bytes
scorer and a refit rule pick by both.  Then: how far the default solver's
history is from scikit-learn's optimum, without writing the objective.

Run from the repository root (breast cancer data ships with scikit-learn;
under 10 s):

    python examples/select_by_bytes.py
"""

import warnings

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
                                             objective, suboptimality)

X, y = load_breast_cancer(return_X_y=True)
pipe = Pipeline([
    ("scale", StandardScaler()),
    # tol=0: every candidate runs its 10 epochs, so bytes follow compression.
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


def describe(name, i):
    params = results["params"][i]
    print(f"{name:<36} candidate {i:>2}: n_blocks={params['clf__n_blocks']}, "
          f"blocks_per_worker={params['clf__blocks_per_worker']}, accuracy "
          f"{accuracy[i]:.4f}, {uplink[i]:.0f} B")


describe("best accuracy (refit='accuracy')", int(np.argmin(results["rank_test_accuracy"])))
describe(f"fewest bytes within {tolerance} of it", search.best_index_)
describe(f"best accuracy within {budget} B",
         best_score_within_budget(budget, score="accuracy")(results))
print("the refit on all rows sent "
      f"{search.best_estimator_[-1].communication_['uplink_bytes']} B "
      "(a fold's fit sees 4/5 of the rows, so fewer rounds per epoch)")

# Suboptimality of the default solver's history, against scikit-learn's
# optimum evaluated in the history's own scale.
X_scaled = StandardScaler().fit_transform(X)
clf = DistributedSparseLogisticRegression(n_workers=4, random_state=0).fit(X_scaled, y)
exact = LogisticRegression(solver="newton-cholesky", tol=1e-12).fit(X_scaled, y)
f_star = objective(clf, X_scaled, y, coef=exact.coef_, intercept=exact.intercept_)
curve = suboptimality(clf, reference=f_star)
print("\ndefault solver: (objective - optimum) / optimum by rounds and uplink")
for rounds, sent, gap in zip(curve["rounds"], curve["uplink_bytes"],
                             curve["suboptimality"]):
    print(f"{rounds:>6} rounds {sent:>8} B {gap:>10.2e}")
