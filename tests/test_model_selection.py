"""Choosing a model by its uplink bytes, and the history's suboptimality."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_dsparse import (DistributedSparseElasticNet, DistributedSparseLasso,
                             DistributedSparseLogisticRegression,
                             DistributedSparseRidge)
from sklearn_dsparse.model_selection import (best_score_within_budget,
                                             fewest_bytes_within, neg_uplink_bytes,
                                             objective, suboptimality)

GRID = {"n_blocks": [4, 8, 31], "blocks_per_worker": [1, 4]}
CV = StratifiedKFold(3)


def saga_fixed_epochs():
    # A fixed number of epochs (tol=0), so that compression trades accuracy
    # for bytes: fewer blocks sent, less progress in the same epochs.
    return DistributedSparseLogisticRegression(
        solver="saga", n_workers=4, max_iter=10, tol=0, random_state=0)


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def grid_search(X, y, refit, scoring=None):
    scoring = scoring or {"accuracy": "accuracy", "neg_uplink_bytes": neg_uplink_bytes}
    search = GridSearchCV(saga_fixed_epochs(), GRID, scoring=scoring, refit=refit,
                          cv=CV)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return search.fit(X, y)


@pytest.fixture(scope="module")
def cv_results(breast_cancer):
    return grid_search(*breast_cancer, refit=False).cv_results_


def test_scorer_is_minus_each_fold_fits_uplink_bytes(breast_cancer, cv_results):
    X, y = breast_cancer
    for i, params in enumerate(cv_results["params"]):
        for k, (train, _) in enumerate(CV.split(X, y)):
            est = clone(saga_fixed_epochs()).set_params(**params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est.fit(X[train], y[train])
            assert cv_results[f"split{k}_test_neg_uplink_bytes"][i] == \
                -est.communication_["uplink_bytes"]
    uplink = -cv_results["mean_test_neg_uplink_bytes"]
    # Not trivial: every candidate sends a different amount, and the least
    # compressed (4 of 4 blocks) more than 4 times the most (1 of 31).
    assert len(set(uplink)) == len(uplink)
    assert uplink.max() > 4 * uplink.min()


def test_scorer_reads_the_last_step_of_a_pipeline(breast_cancer):
    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), DistributedSparseLogisticRegression(
        n_workers=4, random_state=0)).fit(X, y)
    bytes_sent = pipe[-1].communication_["uplink_bytes"]
    assert bytes_sent > 0
    assert neg_uplink_bytes(pipe, X, y) == -bytes_sent


def test_scorer_names_what_it_needs(breast_cancer):
    X, y = breast_cancer
    with pytest.raises(TypeError, match="no communication_"):
        neg_uplink_bytes(LogisticRegression().fit(X, y), X, y)


def expected_best_within_budget(scores, uplink, budget):
    """The rule written out: highest score within the budget, then fewest bytes."""
    best = None
    for i in range(len(scores)):
        if np.isnan(scores[i]) or uplink[i] > budget:
            continue
        if best is None or (scores[i], -uplink[i]) > (scores[best], -uplink[best]):
            best = i
    return best


def expected_fewest_within(scores, uplink, tolerance):
    """The rule written out: fewest bytes within tolerance of the best, then score."""
    top = np.nanmax(scores)
    best = None
    for i in range(len(scores)):
        if np.isnan(scores[i]) or scores[i] < top - tolerance:
            continue
        if best is None or (-uplink[i], scores[i]) > (-uplink[best], scores[best]):
            best = i
    return best


def test_refit_rules_on_a_real_grid(breast_cancer, cv_results):
    scores = cv_results["mean_test_accuracy"]
    uplink = -cv_results["mean_test_neg_uplink_bytes"]
    most_accurate = int(np.argmax(scores))
    budget = np.median(uplink)
    expected = expected_best_within_budget(scores, uplink, budget)
    # The budget changes the choice: the most accurate candidate sends more.
    assert uplink[most_accurate] > budget
    assert expected != most_accurate and uplink[expected] <= budget
    assert best_score_within_budget(budget)(cv_results) == expected

    tolerance = 0.01
    expected = expected_fewest_within(scores, uplink, tolerance)
    assert scores[expected] >= scores[most_accurate] - tolerance
    assert uplink[expected] < uplink[most_accurate]
    assert fewest_bytes_within(tolerance)(cv_results) == expected

    # GridSearchCV takes the rule as refit and refits the chosen candidate.
    search = grid_search(*breast_cancer, refit=fewest_bytes_within(tolerance))
    assert search.best_index_ == expected
    assert search.best_params_ == cv_results["params"][expected]
    assert search.best_estimator_.n_blocks == cv_results["params"][expected]["n_blocks"]


def test_refit_rules_break_ties_and_skip_failed_fits():
    cv_results = {
        "params": [{}] * 5,
        "mean_test_accuracy": np.array([0.90, 0.95, 0.95, np.nan, 0.94]),
        "mean_test_neg_uplink_bytes": -np.array([100.0, 300.0, 200.0, 10.0, 150.0]),
    }
    assert best_score_within_budget(1000)(cv_results) == 2  # 0.95, fewer bytes
    assert best_score_within_budget(160)(cv_results) == 4
    assert best_score_within_budget(100)(cv_results) == 0
    assert fewest_bytes_within(0.0)(cv_results) == 2
    assert fewest_bytes_within(0.01)(cv_results) == 4
    assert fewest_bytes_within(0.06)(cv_results) == 0  # never 3, whose fit failed


def test_refit_rules_under_other_keys_and_pickled():
    cv_results = {"params": [{}] * 2, "mean_test_roc_auc": np.array([0.8, 0.9]),
                  "mean_test_uplink": -np.array([5.0, 9.0])}
    rule = best_score_within_budget(6, score="roc_auc", bytes_score="uplink")
    assert rule(cv_results) == 0
    rule = pickle.loads(pickle.dumps(fewest_bytes_within(
        0.2, score="roc_auc", bytes_score="uplink")))
    assert rule(cv_results) == 0
    assert repr(rule) == ("fewest_bytes_within(0.2, score='roc_auc', "
                          "bytes_score='uplink')")


def test_refit_rules_name_the_missing_key_and_the_fix(breast_cancer, cv_results):
    X, y = breast_cancer
    with pytest.raises(ValueError, match=r"no 'mean_test_neg_uplink_bytes'.*"
                       r"the scoring keys are \['accuracy'\]"):
        grid_search(X, y, refit=fewest_bytes_within(0.01),
                    scoring={"accuracy": "accuracy"})
    with pytest.raises(ValueError, match="single metric.*scoring="):
        fewest_bytes_within(0.01)({"params": [{}], "mean_test_score": np.ones(1)})
    with pytest.raises(ValueError, match=r"no 'mean_test_f1' \(score='f1'\)"):
        best_score_within_budget(1e9, score="f1")(cv_results)
    fewest = (-cv_results["mean_test_neg_uplink_bytes"]).min()
    with pytest.raises(ValueError, match=f"the fewest is {fewest:.0f}.*Raise "
                       f"max_uplink_bytes to at least {fewest:.0f}"):
        best_score_within_budget(fewest - 1)(cv_results)
    with pytest.raises(ValueError, match="tolerance must be a non-negative"):
        fewest_bytes_within(-0.01)
    with pytest.raises(ValueError, match="max_uplink_bytes must be"):
        best_score_within_budget("1MB")


def regression_data(n_targets=1):
    X, y = make_regression(120, 8, n_targets=n_targets, noise=1.0, random_state=0)
    return X, y


@pytest.mark.parametrize("make, data", [
    (lambda: DistributedSparseLogisticRegression(C=0.5), "binary"),
    (lambda: DistributedSparseLogisticRegression(
        C=0.5, l1_ratio=0.5, class_weight="balanced", solver="saga", max_iter=20),
     "binary_weighted"),
    (lambda: DistributedSparseLogisticRegression(C=2.0, fit_intercept=False),
     "multinomial"),
    (lambda: DistributedSparseLogisticRegression(
        C=np.inf, solver="saga", max_iter=20), "multinomial"),
    (lambda: DistributedSparseRidge(alpha=3.0), "regression"),
    (lambda: DistributedSparseRidge(alpha=3.0, solver="saga", max_iter=20),
     "two_targets"),
    (lambda: DistributedSparseElasticNet(alpha=0.3), "regression_weighted"),
    (lambda: DistributedSparseLasso(alpha=0.3, solver="saga", max_iter=20),
     "two_targets"),
])
def test_objective_at_the_fit_equals_its_last_history_value(make, data,
                                                            breast_cancer):
    if data.startswith("binary"):
        X, y = breast_cancer
    elif data == "multinomial":
        X, y = load_iris(return_X_y=True)
    else:
        X, y = regression_data(2 if data == "two_targets" else 1)
    sample_weight = (np.random.RandomState(0).uniform(0.5, 2.0, len(y))
                     if data.endswith("weighted") else None)
    est = make().set_params(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y, sample_weight=sample_weight)
    value = objective(est, X, y, sample_weight)
    assert_allclose(value, est.history_["objective"][-1], rtol=1e-12)
    # The same coefficients given explicitly; and the fit's starting point,
    # zero, where the history starts.
    assert objective(est, X, y, sample_weight, coef=est.coef_,
                     intercept=est.intercept_) == value
    assert_allclose(objective(est, X, y, sample_weight,
                              coef=np.zeros_like(est.coef_), intercept=0.0),
                    est.history_["objective"][0], rtol=1e-12)


def test_objective_checks_its_coefficients(breast_cancer):
    X, y = breast_cancer
    est = DistributedSparseLogisticRegression(random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="pass intercept= too"):
        objective(est, X, y, coef=est.coef_)
    with pytest.raises(ValueError, match=r"coef_ would have shape \(1, 30\)"):
        objective(est, X, y, coef=np.zeros((2, 30)), intercept=0.0)
    with pytest.raises(ValueError, match="intercept_ would have 1"):
        objective(est, X, y, coef=est.coef_, intercept=[0.0, 0.0])
    with pytest.raises(TypeError, match="not an sklearn-dsparse estimator"):
        objective(LogisticRegression(), X, y, coef=est.coef_, intercept=0.0)


def test_suboptimality_against_its_own_best_value(breast_cancer):
    X, y = breast_cancer
    est = DistributedSparseLogisticRegression(random_state=0).fit(X, y)
    curve = suboptimality(est)
    history = est.history_
    for column in ("rounds", "uplink_bytes", "seconds"):
        assert_array_equal(curve[column], history[column])
    # newton's objective only decreases: the reference is the final value.
    assert curve["suboptimality"][-1] == 0.0
    assert np.all(np.diff(curve["suboptimality"]) <= 0)
    assert_allclose(curve["suboptimality"][0],
                    history["objective"][0] / history["objective"][-1] - 1)


def test_suboptimality_against_scikit_learn_optimum(breast_cancer):
    X, y = breast_cancer
    C = 0.5
    exact = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12).fit(X, y)
    est = DistributedSparseLogisticRegression(C=C, random_state=0).fit(X, y)
    f_star = objective(est, X, y, coef=exact.coef_, intercept=exact.intercept_)
    curve = suboptimality(est, reference=f_star)["suboptimality"]
    assert np.all(curve >= -1e-12)
    assert curve[0] > 0.1  # the start (zero coefficients) is far from it
    assert curve[-1] < 1e-6  # the default tol reaches it
    # The fit's own estimate is the exact curve shifted by its final gap.
    assert_allclose(suboptimality(est)["suboptimality"] * est.history_["objective"][-1],
                    (curve - curve[-1]) * f_star, atol=1e-9)


def test_suboptimality_of_ridge_against_the_closed_form():
    X, y = regression_data()
    alpha = 3.0
    exact = Ridge(alpha=alpha, solver="cholesky").fit(X, y)
    est = DistributedSparseRidge(alpha=alpha, random_state=0).fit(X, y)
    f_star = objective(est, X, y, coef=exact.coef_, intercept=exact.intercept_)
    assert_allclose(f_star, np.sum((y - exact.predict(X)) ** 2)
                    + alpha * np.sum(exact.coef_ ** 2), rtol=1e-12)
    curve = suboptimality(est, reference=f_star)["suboptimality"]
    assert np.all(curve >= -1e-12)
    assert curve[0] > 0.1 and curve[-1] < 1e-6


def test_suboptimality_rejects_a_zero_reference(breast_cancer):
    X, y = breast_cancer
    est = DistributedSparseLogisticRegression(random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="finite, non-zero"):
        suboptimality(est, reference=0.0)
