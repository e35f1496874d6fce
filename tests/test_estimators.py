"""scikit-learn compatibility, input handling and the fitted attributes."""

import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_dsparse import (DistributedSparseElasticNet, DistributedSparseLasso,
                             DistributedSparseLogisticRegression,
                             DistributedSparseRidge)

from conftest import abalone_classes, load, relative_error

ESTIMATORS = [DistributedSparseLogisticRegression, DistributedSparseRidge,
              DistributedSparseElasticNet, DistributedSparseLasso]

SAMPLE_WEIGHT_REASON = (
    "sample_weight is not equivalent to removing/repeating samples at the default "
    "tol: repeated rows change the shards, hence the local Hessians (and the rows "
    "each random stream draws), so the iterates differ at any finite tolerance; "
    "the optima agree (test_integer_sample_weight_equals_repeated_rows).")


def expected_failed_checks(estimator):
    return {
        "check_sample_weight_equivalence_on_dense_data": SAMPLE_WEIGHT_REASON,
        "check_sample_weight_equivalence_on_sparse_data": SAMPLE_WEIGHT_REASON,
    }


@parametrize_with_checks([E(random_state=0) for E in ESTIMATORS],
                         expected_failed_checks=expected_failed_checks)
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def small_binary():
    X, y = load("a1a")
    return X, y


def test_class_weight_matches_scikit_learn():
    X, y = small_binary()
    weights = {-1.0: 1.0, 1.0: 3.0}
    ref = LogisticRegression(C=0.1, class_weight=weights, solver="newton-cholesky",
                             tol=1e-12).fit(X, y)
    est = DistributedSparseLogisticRegression(
        C=0.1, class_weight=weights, tol=1e-8, random_state=0).fit(X, y)
    assert relative_error(est, ref.coef_, ref.intercept_) < 1e-4
    balanced = DistributedSparseLogisticRegression(
        C=0.1, class_weight="balanced", tol=1e-8, random_state=0).fit(X, y)
    ref = LogisticRegression(C=0.1, class_weight="balanced", solver="newton-cholesky",
                             tol=1e-12).fit(X, y)
    assert relative_error(balanced, ref.coef_, ref.intercept_) < 1e-4


def test_integer_sample_weight_equals_repeated_rows():
    X, y = abalone_classes()
    X, y = X[:600], y[:600]
    weights = np.random.RandomState(0).randint(0, 4, size=X.shape[0])
    params = dict(C=0.5, tol=1e-9, random_state=0)
    weighted = DistributedSparseLogisticRegression(**params).fit(
        X, y, sample_weight=weights)
    repeated = DistributedSparseLogisticRegression(**params).fit(
        X[np.repeat(np.arange(X.shape[0]), weights)], np.repeat(y, weights))
    assert relative_error(weighted, repeated.coef_, repeated.intercept_) < 1e-5


def test_no_penalty_and_no_intercept_match_scikit_learn():
    X, y = load("abalone_scale")
    y = (y > 10).astype(int)
    ref = LogisticRegression(C=np.inf, fit_intercept=False, solver="newton-cholesky",
                             tol=1e-12).fit(X, y)
    est = DistributedSparseLogisticRegression(
        C=np.inf, fit_intercept=False, tol=1e-9, random_state=0).fit(X, y)
    assert_array_equal(est.intercept_, [0.0])
    assert relative_error(est, ref.coef_, ref.intercept_) < 1e-4


def test_lasso_is_elastic_net_with_l1_ratio_one():
    X, y = load("abalone_scale")
    params = dict(alpha=0.05, random_state=0, tol=1e-9)
    lasso = DistributedSparseLasso(**params).fit(X, y)
    enet = DistributedSparseElasticNet(l1_ratio=1.0, **params).fit(X, y)
    assert_array_equal(lasso.coef_, enet.coef_)
    assert 0 < np.sum(lasso.coef_ == 0) < X.shape[1]  # the L1 prox makes exact zeros


def test_ridge_two_dimensional_y_fits_each_target():
    X, y = load("abalone_scale")
    Y = np.column_stack([y, -2 * y + 1])
    params = dict(alpha=10.0, tol=1e-9, random_state=0)
    both = DistributedSparseRidge(**params).fit(X, Y)
    assert both.coef_.shape == (2, X.shape[1]) and both.intercept_.shape == (2,)
    single = DistributedSparseRidge(**params).fit(X, y)
    assert both.predict(X).shape == (X.shape[0], 2)
    assert_allclose(both.coef_[0], single.coef_, rtol=1e-4)
    assert_allclose(both.coef_[1], -2 * single.coef_, rtol=1e-4)


def test_predict_proba_is_consistent():
    X, y = abalone_classes()
    est = DistributedSparseLogisticRegression(max_iter=20, random_state=0).fit(X, y)
    proba = est.predict_proba(X)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_allclose(np.log(proba), est.predict_log_proba(X), atol=1e-10)
    assert_array_equal(est.classes_[proba.argmax(axis=1)], est.predict(X))
    assert est.score(X, y) > 0.6


def test_fitted_attributes_and_history():
    pd = pytest.importorskip("pandas")
    X, y = small_binary()
    est = DistributedSparseLogisticRegression(solver="saga", max_iter=7, tol=0,
                                              random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter=7"):
        est.fit(X, y)
    assert est.n_iter_ == 7
    history = pd.DataFrame(est.history_)
    assert list(history.columns) == ["objective", "rounds", "uplink_bytes", "seconds"]
    assert len(history) == est.n_iter_ + 1  # the starting point, then every epoch
    rounds_per_epoch = -(-int(np.ceil(X.shape[0] / 4)) // 16)
    assert_array_equal(history["rounds"], np.arange(8) * rounds_per_epoch)
    assert history["uplink_bytes"].iloc[-1] == est.communication_["uplink_bytes"]
    assert np.all(np.diff(history["seconds"]) >= 0)
    # history's objective is scikit-learn's: C * sum(loss) + ||w||^2 / 2
    z = X @ est.coef_.ravel() + est.intercept_[0]
    t = np.where(y > 0, 1.0, -1.0)
    expected = np.sum(np.logaddexp(0, -t * z)) + 0.5 * est.coef_.ravel() @ est.coef_.ravel()
    assert_allclose(history["objective"].iloc[-1], expected, rtol=1e-10)
    assert history["objective"].iloc[-1] < history["objective"].iloc[0]
    comm = est.communication_
    with pytest.raises(TypeError):
        comm["rounds"] = 0
    assert comm["rounds"] == 7 * rounds_per_epoch
    assert comm["uplink_ratio"] == comm["uplink_bytes"] / comm["dense_uplink_bytes"]
    assert est.step_size_ > 0


def test_pipeline_grid_search_and_pickle():
    X, y = small_binary()
    pipe = make_pipeline(MaxAbsScaler(), DistributedSparseLogisticRegression(
        max_iter=30, random_state=0))
    grid = GridSearchCV(pipe, {
        "distributedsparselogisticregression__n_blocks": [8, 31],
        "distributedsparselogisticregression__blocks_per_worker": [1, 2],
    }, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_score_ > 0.8
    best = grid.best_estimator_[-1]
    assert best.n_blocks_ == grid.best_params_[
        "distributedsparselogisticregression__n_blocks"]
    clone = pickle.loads(pickle.dumps(grid.best_estimator_))
    assert_array_equal(clone.predict_proba(X), grid.best_estimator_.predict_proba(X))
    assert clone[-1].communication_ == best.communication_


def test_same_seed_same_model_bitwise_and_different_seed_differs():
    X, y = abalone_classes()
    for solver in ["saga", "sgd", "gd"]:
        fit = lambda seed: DistributedSparseLogisticRegression(
            solver=solver, max_iter=5, random_state=seed).fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            a, b, c = fit(3), fit(3), fit(4)
        assert_array_equal(a.coef_, b.coef_)
        assert_array_equal(a.intercept_, b.intercept_)
        assert not np.array_equal(a.coef_, c.coef_)


def test_warm_start_continues_from_last_fit():
    X, y = small_binary()
    params = dict(C=0.1, max_iter=5, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm = DistributedSparseLogisticRegression(warm_start=True, **params).fit(X, y)
        first = warm.history_["objective"][-1]
        warm.fit(X, y)
        cold = DistributedSparseLogisticRegression(**params).fit(X, y)
    assert warm.history_["objective"][0] == pytest.approx(first, rel=1e-12)
    assert warm.history_["objective"][-1] < cold.history_["objective"][-1]


def test_sparse_input_is_never_densified():
    # 2e9 dense cells (16 GB as float64), far more than the test may allocate.
    rng = np.random.RandomState(0)
    n_samples, n_features = 2_000, 1_000_000
    nnz = 40_000
    X = sp.csr_matrix((rng.rand(nnz), (rng.randint(0, n_samples, nnz),
                                       rng.randint(0, n_features, nnz))),
                      shape=(n_samples, n_features))
    y = rng.randint(0, 2, n_samples)
    X64 = X.copy()
    X64.indices = X64.indices.astype(np.int64)
    X64.indptr = X64.indptr.astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = DistributedSparseLogisticRegression(max_iter=2, random_state=0).fit(X, y)
        b = DistributedSparseLogisticRegression(max_iter=2, random_state=0).fit(X64, y)
    assert a.coef_.shape == (1, n_features)
    assert_array_equal(a.coef_, b.coef_)  # int64 indices: same model
    assert np.any(a.coef_ != 0)


def test_input_is_not_modified():
    X, y = small_binary()
    X_dense = X[:300].toarray()
    before = (X.data.copy(), X.indices.copy(), X_dense.copy(), y.copy())
    w = np.ones(300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        DistributedSparseLogisticRegression(max_iter=2, class_weight="balanced").fit(
            X_dense, y[:300], sample_weight=w)
        DistributedSparseLogisticRegression(max_iter=2).fit(X, y)
    assert_array_equal(before[0], X.data)
    assert_array_equal(before[1], X.indices)
    assert_array_equal(before[2], X_dense)
    assert_array_equal(w, 1.0)


@pytest.mark.parametrize("params, X_rows, match", [
    (dict(blocks_per_worker=9, n_blocks=8), 100, "blocks_per_worker=9 is larger"),
    (dict(n_workers=200), 100, "n_workers=200 is larger than the number of samples"),
    (dict(n_blocks=500), 100, "n_blocks=500 is larger than the number of parameter"),
    (dict(sparsifier="none", n_blocks=8, blocks_per_worker=2), 100,
     "sparsifier='none' sends all"),
])
def test_inconsistent_parameters_name_the_fix(params, X_rows, match):
    X, y = small_binary()
    with pytest.raises(ValueError, match=match):
        DistributedSparseLogisticRegression(**params).fit(X[:X_rows], y[:X_rows])


def _regression(n_samples=60, n_features=4):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_samples, n_features))
    return X, X @ rng.standard_normal(n_features)


@pytest.mark.parametrize("make, match", [
    # The convex schedule's rho is an estimate measured on the binary loss.
    (lambda: (DistributedSparseLogisticRegression(solver="asgd"), abalone_classes()),
     "not been measured on the multinomial"),
    (lambda: (DistributedSparseElasticNet(alpha=0.1, solver="asgd"), _regression()),
     "no L1 penalty"),
    (lambda: (DistributedSparseRidge(solver="asgd", sparsifier="shared"),
              _regression()), "independent sparsification"),
    (lambda: (DistributedSparseRidge(solver="asgd", sparsifier="bernoulli"),
              _regression()), "not sparsifier='bernoulli'"),
    (lambda: (DistributedSparseRidge(solver="asgd", control_variates=True),
              _regression()), "without control variates"),
    (lambda: (DistributedSparseRidge(solver="asgd", step_size=1e6), _regression()),
     "too large for solver='asgd'"),
    (lambda: (DistributedSparseRidge(solver="asgd"), _regression(3000, 2001)),
     "at most 2000"),
])
def test_asgd_refuses_what_it_does_not_support(make, match):
    est, (X, y) = make()
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)


@pytest.mark.parametrize("params", [
    dict(solver="lbfgs"), dict(n_workers=0), dict(sparsifier="topk"),
    dict(step_size=-1.0), dict(batch_size=0), dict(C=0.0), dict(l1_ratio=2.0),
    dict(control_variates="yes"), dict(n_jobs=0), dict(master_address=127),
])
def test_invalid_parameters_are_rejected_by_validation(params):
    X, y = small_binary()
    with pytest.raises(ValueError, match=list(params)[0]):
        DistributedSparseLogisticRegression(**params).fit(X, y)


def test_bad_data_gets_clear_errors():
    X, y = small_binary()
    X = X[:50].toarray()
    y = y[:50]
    with pytest.raises(ValueError, match="only one class"):
        DistributedSparseLogisticRegression().fit(X, np.ones(50))
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        DistributedSparseLogisticRegression().fit(X_nan, y)
    X_inf = X.copy()
    X_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        DistributedSparseRidge().fit(X_inf, y)
    with pytest.raises(ValueError, match="[Ss]ample weights"):
        DistributedSparseRidge().fit(X, y, sample_weight=np.zeros(50))


@pytest.mark.parametrize("solver", ["saga", "gd"])
def test_diverging_step_stops_with_a_hint(solver):
    X, y = small_binary()
    est = DistributedSparseLogisticRegression(solver=solver, step_size=1e3,
                                              max_iter=200, random_state=0)
    with pytest.raises(FloatingPointError, match="smaller step_size"):
        est.fit(X, y)
    assert not hasattr(est, "coef_")


@pytest.mark.parametrize("solver", ["newton", "saga", "gd"])
def test_data_that_overflow_the_loss_ask_for_scaling_not_a_smaller_step(solver):
    X, y = load("abalone_scale")
    est = DistributedSparseRidge(solver=solver, random_state=0)
    with pytest.raises(FloatingPointError, match="starting point.*Scale X"):
        est.fit(X, y * 1e200)
    assert not hasattr(est, "coef_")


def test_auto_batch_size_follows_the_width_of_the_data():
    X, y = load("news20")
    y = (y == 1).astype(int)
    params = dict(solver="saga", max_iter=4, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Compressed rounds cost O(n_features): the batch grows until the rows
        # a round reads hold twice as many non-zeros as there are parameters.
        wide = DistributedSparseLogisticRegression(n_workers=16, **params).fit(X, y)
        small = DistributedSparseLogisticRegression(n_workers=16, batch_size=16,
                                                    **params).fit(X, y)
        # One worker sends every block: lazy rounds cost O(nnz), 16 rows.
        single = DistributedSparseLogisticRegression(solver="saga", n_workers=1,
                                                     max_iter=1).fit(X[:500], y[:500])
        gd = DistributedSparseLogisticRegression(n_workers=3, solver="gd", max_iter=1
                                                 ).fit(X[:500], y[:500])
        narrow = DistributedSparseLogisticRegression(solver="saga", n_workers=16,
                                                     max_iter=1).fit(*small_binary())
    expected = int(np.ceil(2 * (X.shape[1] + 1) / (16 * X.nnz / X.shape[0])))
    assert wide.batch_size_ == expected == 98
    assert small.batch_size_ == 16
    largest_shard = -(-X.shape[0] // 16)
    assert wide.communication_["rounds"] == 4 * -(-largest_shard // expected)
    # Rows of news20 are far apart, so the safe step grows like the batch and
    # an epoch makes as much progress, in 1/6 of the rounds and uplink bytes.
    assert wide.step_size_ == pytest.approx(small.step_size_ * expected / 16, rel=0.05)
    assert wide.history_["objective"][-1] <= small.history_["objective"][-1]
    assert wide.communication_["uplink_bytes"] < small.communication_["uplink_bytes"] / 5
    assert single.batch_size_ == 16
    assert gd.batch_size_ == 167  # gd uses every row of the largest shard
    assert narrow.batch_size_ == 16


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_float32_input_gives_a_float32_model(Estimator):
    X, y = small_binary()
    X32 = X.astype(np.float32)
    est32 = Estimator(random_state=0).fit(X32, y)
    # Computed in float64 from the float32 values, then rounded once.
    est64 = Estimator(random_state=0).fit(X32.astype(np.float64), y)
    assert est32.coef_.dtype == np.float32
    assert np.asarray(est32.intercept_).dtype == np.float32
    assert_array_equal(est32.coef_, est64.coef_.astype(np.float32))
    assert_array_equal(est32.intercept_, np.float32(est64.intercept_))
    if Estimator is not DistributedSparseLogisticRegression:
        assert est32.predict(X32).dtype == np.float32  # as scikit-learn's Ridge
        assert_allclose(est32.predict(X32), est64.predict(X32), rtol=1e-5, atol=1e-5)


def test_n_iter_has_scikit_learn_shapes():
    X, y = small_binary()
    X = X.toarray()
    Y = X[:, :2]
    pairs = [
        (DistributedSparseLogisticRegression(), LogisticRegression(), y),
        (DistributedSparseRidge(), Ridge(solver="sag"), Y[:, 0]),
        (DistributedSparseRidge(), Ridge(solver="sag"), Y),
        (DistributedSparseElasticNet(alpha=0.01), ElasticNet(alpha=0.01), Y[:, 0]),
        (DistributedSparseElasticNet(alpha=0.01), ElasticNet(alpha=0.01), Y),
    ]
    for ours, theirs, target in pairs:
        X_fit = X[:, 2:] if target is not y else X
        mine, reference = ours.fit(X_fit, target).n_iter_, theirs.fit(X_fit, target).n_iter_
        assert type(mine) is type(reference) or (
            np.isscalar(mine) and np.isscalar(reference))
        assert np.shape(mine) == np.shape(reference)
        assert np.all(np.asarray(mine) >= 1)


def test_sparsify_and_densify_with_l1():
    X, y = small_binary()
    clf = DistributedSparseLogisticRegression(C=0.05, l1_ratio=1.0, random_state=0)
    dense_coef = clf.fit(X, y).coef_.copy()
    n_zeros = int(np.sum(dense_coef == 0))
    assert 0 < n_zeros < dense_coef.size  # L1 gives exact zeros, not all
    scores = clf.decision_function(X)
    clf.sparsify()
    assert sp.issparse(clf.coef_) and clf.coef_.nnz == dense_coef.size - n_zeros
    assert_array_equal(clf.decision_function(X), scores)
    assert_array_equal(clf.densify().coef_, dense_coef)
    clf.sparsify().set_params(warm_start=True).fit(X, y)  # a sparse coef_ warm-starts
    assert isinstance(clf.coef_, np.ndarray)
    assert_allclose(clf.coef_, dense_coef, atol=1e-3)

    enet = DistributedSparseLasso(alpha=0.05).fit(X, X[:, :2].toarray() @ [1.0, -1.0])
    assert sp.issparse(enet.sparse_coef_)
    assert_array_equal(enet.sparse_coef_.toarray(), enet.coef_[np.newaxis])
    assert 0 < enet.sparse_coef_.nnz < X.shape[1]


def test_public_exceptions_are_the_ones_raised():
    from sklearn_dsparse import engines, exceptions
    assert engines.WorkerProcessError is exceptions.WorkerProcessError
    assert issubclass(exceptions.WorkerProcessError, RuntimeError)


def test_master_address_is_a_parameter(monkeypatch):
    X, y = small_binary()
    in_process = DistributedSparseLogisticRegression(random_state=0).fit(X, y)
    tasks = DistributedSparseLogisticRegression(
        random_state=0, n_jobs=2, master_address="localhost").fit(X, y)
    assert_array_equal(tasks.coef_, in_process.coef_)
    # Names under .invalid never resolve (RFC 6761), on any machine.
    with pytest.raises(ValueError, match="master_address='driver.invalid'"):
        DistributedSparseLogisticRegression(n_jobs=2,
                                            master_address="driver.invalid").fit(X, y)
    monkeypatch.setenv("SKLEARN_DSPARSE_MASTER_ADDRESS", "from-env.invalid")
    with pytest.raises(ValueError, match="from-env.invalid"):
        DistributedSparseLogisticRegression(n_jobs=2).fit(X, y)


def _lines(capsys, solver):
    return [line for line in capsys.readouterr().out.splitlines()
            if line.startswith(f"[{solver}]")]


@pytest.mark.parametrize("solver", ["newton", "saga"])
def test_verbose_prints_compact_progress(solver, capsys, monkeypatch):
    from sklearn_dsparse import _progress

    X, y = small_binary()
    params = dict(solver=solver, random_state=0, max_iter=30)
    monkeypatch.setattr(_progress, "_kernels_loaded", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # saga at max_iter=30
        est = DistributedSparseLogisticRegression(verbose=0, **params).fit(X, y)
        assert _lines(capsys, solver) == []
        # verbose=1 on a fit far shorter than the interval: start and end only.
        monkeypatch.setattr(_progress, "INTERVAL", 3600.0)
        DistributedSparseLogisticRegression(verbose=1, **params).fit(X, y)
        lines = _lines(capsys, solver)
        assert len(lines) == 2
        end = re.search(r"(\w[\w ]*): \w+ (\d+)/30, objective (\S+), rounds (\d+), "
                        r"uplink (\S+) MB", lines[-1])
        assert int(end[2]) == np.ravel(est.n_iter_)[0]
        assert int(end[4]) == est.communication_["rounds"]
        assert float(end[5]) == pytest.approx(est.communication_["uplink_bytes"] / 1e6,
                                              rel=1e-2)
        assert float(end[3]) == pytest.approx(est.history_["objective"][-1], rel=1e-9)
        assert end[1] == ("converged" if solver == "newton" else "stopped at max_iter")
        # verbose=2: a line per iteration or epoch, then the end.
        DistributedSparseLogisticRegression(verbose=2, **params).fit(X, y)
        assert len(_lines(capsys, solver)) == 1 + np.ravel(est.n_iter_)[0] + 1
    # A new process's first fit says that the kernels load.
    monkeypatch.setattr(_progress, "_kernels_loaded", False)
    DistributedSparseLogisticRegression(verbose=1, random_state=0).fit(X, y)
    assert "loading the compiled kernels" in _lines(capsys, "newton")[0]


@pytest.mark.parametrize("module_name", [
    "sklearn_dsparse.linear_model._logistic", "sklearn_dsparse.linear_model._ridge",
    "sklearn_dsparse.linear_model._elastic_net", "sklearn_dsparse.model_selection"])
def test_docstring_examples_run_without_a_warning(module_name):
    import doctest
    import importlib

    module = importlib.import_module(module_name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a ConvergenceWarning at the defaults
        failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failed == 0 and attempted > 0
