"""Asynchronous ISGD (``asynchronous=True``; docs/method.md, "Asynchronous ISGD").

The problem is a ridge regression on rows sorted by target, so the shards are
heterogeneous: a master that let a fast worker's data count more than w_i
would end away from scikit-learn's optimum.
"""


import numpy as np
import pytest
from numpy.linalg import norm
from sklearn.datasets import make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from sklearn_dsparse.asynchronous import feasible
from sklearn_dsparse.engines import asynchronous as engines
from sklearn_dsparse.linear_model import (DistributedSparseLogisticRegression,
                                          DistributedSparseRidge)

ALPHA = 40.0

# The fits run a fixed number of epochs (tol=0) on purpose.
pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def sorted_ridge():
    X, y = make_regression(400, 10, noise=5.0, random_state=0)
    X = StandardScaler().fit_transform(X)
    y = (y - y.mean()) / y.std()
    order = np.argsort(y)
    X, y = X[order], y[order]
    ref = Ridge(alpha=ALPHA).fit(X, y)
    return X, y, np.r_[ref.coef_, ref.intercept_]


def relative_error(est, w_star):
    return norm(np.r_[est.coef_, est.intercept_] - w_star) / norm(w_star)


def fit(X, y, **params):
    params = dict(dict(alpha=ALPHA, solver="sgd", n_workers=4, random_state=0,
                       tol=0, asynchronous=True), **params)
    return DistributedSparseRidge(**params).fit(X, y)


def test_slow_worker_keeps_its_weight_and_the_fit_reaches_the_optimum(
        sorted_ridge, monkeypatch):
    """Without minibatch noise (each batch is the whole shard) the update is
    a proximal incremental aggregated gradient step, linearly convergent to
    the exact optimum for delays within the bound, whatever the arrival
    rates: worker 0 computes 5 times slower and its data still count w_0."""
    X, y, w_star = sorted_ridge
    monkeypatch.setitem(engines.SIMULATED_SLOWDOWN, 0, 5.0)
    est = fit(X, y, batch_size=100, max_iter=300)
    assert relative_error(est, w_star) < 1e-9
    assert norm(est.coef_) > 0.1
    stats = est.communication_
    # The bound held, and it was needed: the slow worker made others wait.
    assert 0 < stats["max_staleness"] <= 2 * 4 - 1  # max_staleness="auto"
    assert stats["held_messages"] > 0
    assert stats["rounds"] == 300 * 4  # one master update per message
    assert est.step_size_ == pytest.approx(
        fit(X, y, batch_size=100, max_iter=1, asynchronous=False).step_size_ / 8)


def test_stochastic_neighbourhood_scales_with_the_step(sorted_ridge):
    """Constant-step SGD (delayed or not) ends in a neighbourhood of the
    optimum whose mean squared radius is proportional to the step: a quarter
    of the step halves the RMS distance (measured 2.2x over 3 seeds)."""
    X, y, w_star = sorted_ridge
    step = fit(X, y, batch_size=8, max_iter=1).step_size_
    rms = []
    for factor in (1.0, 0.25):
        errors = [relative_error(fit(X, y, batch_size=8, max_iter=60,
                                     step_size=factor * step, random_state=seed),
                                 w_star) for seed in range(3)]
        rms.append(np.sqrt(np.mean(np.square(errors))))
    assert 1.4 < rms[0] / rms[1] < 3.5
    assert 1e-3 < rms[1] < 0.03


def test_in_process_fit_is_deterministic(sorted_ridge):
    X, y, _ = sorted_ridge
    first = fit(X, y, batch_size=8, max_iter=5, random_state=3)
    again = fit(X, y, batch_size=8, max_iter=5, random_state=3)
    other = fit(X, y, batch_size=8, max_iter=5, random_state=4)
    np.testing.assert_array_equal(first.coef_, again.coef_)
    assert dict(first.communication_) == dict(again.communication_)
    assert not np.array_equal(first.coef_, other.coef_)


@pytest.mark.parametrize("max_staleness", [3, 6])
def test_staleness_never_exceeds_the_bound(sorted_ridge, monkeypatch, max_staleness):
    """A worker 10 times slower pushes every message to the bound, not past."""
    X, y, _ = sorted_ridge
    monkeypatch.setitem(engines.SIMULATED_SLOWDOWN, 1, 10.0)
    est = fit(X, y, batch_size=25, max_iter=10, max_staleness=max_staleness)
    assert est.communication_["max_staleness"] == max_staleness
    assert est.communication_["held_messages"] > 0


def test_feasibility_lets_the_oldest_through():
    # Two workers still at version 0 after 3 updates with S = 3: one more
    # update would leave one of them past the bound.
    assert feasible(np.array([0, 0]), 3, 3) is False
    assert feasible(np.array([0, 0]), 2, 3) is True
    assert feasible(np.array([0, 2, 3]), 3, 3) is True


def test_messages_and_bytes_on_loky_with_a_sleeping_worker(sorted_ridge, monkeypatch):
    """Real arrival order: a worker that sleeps 20 ms per message no longer
    paces the others.  With max_staleness = n - 1 = 1 the two workers
    alternate, as a synchronous fit would (one round per sleep); with a loose
    bound the fast worker's messages keep being applied."""
    X, y, w_star = sorted_ridge
    sleep = 0.02

    def rate(**params):
        est = fit(X, y, n_workers=2, n_jobs=2, batch_size=20, max_iter=5,
                  step_size=1e-3, **params)
        seconds = est.history_["seconds"]
        stats = est.communication_
        # Every reply is counted as sent; each worker has one message in
        # flight, which may have been read and not applied when the fit ends.
        assert stats["wire_downlink_payload_bytes"] == stats["downlink_bytes"]
        pending = stats["wire_uplink_payload_bytes"] - stats["uplink_bytes"]
        largest = 16 + 4 * est.n_blocks_ + 8 * (X.shape[1] + 1)
        assert 0 <= pending <= 2 * largest
        return stats["rounds"] / (seconds[-1] - seconds[0]), est

    fit(X, y, n_workers=2, n_jobs=2, max_iter=1)  # processes and kernels warm
    free, _ = rate(max_staleness=1000)
    monkeypatch.setitem(engines.SLEEP_SECONDS, 0, sleep)
    paced, est_paced = rate(max_staleness=1)
    loose, est_loose = rate(max_staleness=1000)
    # Alternating: at most two messages per sleep.
    assert paced < 2.5 / sleep
    assert est_paced.communication_["max_staleness"] <= 1
    assert loose > 4 * paced  # measured 7-18x
    assert loose > 0.1 * free
    assert est_loose.communication_["max_staleness"] > 10


@pytest.mark.parametrize("params, match", [
    (dict(solver="saga"), "needs solver='sgd'"),
    (dict(solver="newton"), "needs solver='sgd'"),
    (dict(sparsifier="shared"), "sparsifier='shared'"),
    (dict(control_variates=False), "needs the control variates"),
    (dict(max_staleness=2), "max_staleness >= 3"),
    (dict(asynchronous=False, max_staleness=5), "Set asynchronous=True"),
])
def test_unsupported_combinations_are_refused(sorted_ridge, params, match):
    X, y, _ = sorted_ridge
    with pytest.raises(ValueError, match=match):
        fit(X, y, **params)


def test_classifier_reaches_scikit_learns_optimum():
    X, y = make_regression(300, 5, noise=30.0, random_state=0)
    X = StandardScaler().fit_transform(X)
    y = (y > 0).astype(int)
    ref = LogisticRegression(C=0.1, tol=1e-12).fit(X, y)
    est = DistributedSparseLogisticRegression(
        C=0.1, solver="sgd", asynchronous=True, n_workers=3, batch_size=100,
        max_iter=300, tol=0, random_state=0).fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-6)
    np.testing.assert_allclose(est.intercept_, ref.intercept_, atol=1e-7)


def test_on_dask_the_fit_reaches_the_optimum_in_real_arrival_order(sorted_ridge,
                                                                  dask_client):
    """The tasks on a Dask cluster, messages applied in the order they arrive
    (which timing decides): with whole-shard batches the update is PIAG's,
    whose limit is the exact optimum for any order within the bound."""
    import distributed
    from joblib import parallel_config

    X, y, w_star = sorted_ridge
    with parallel_config(backend="dask"), \
            distributed.get_task_stream(dask_client) as tasks:
        est = fit(X, y, batch_size=100, max_iter=300, n_jobs=2)
    # The two worker tasks ran on the cluster's two workers.
    assert len({task["worker"] for task in tasks.data}) == 2
    assert relative_error(est, w_star) < 1e-9
    stats = est.communication_
    assert stats["rounds"] == 300 * 4
    assert stats["max_staleness"] <= 2 * 4 - 1
    assert stats["wire_downlink_payload_bytes"] == stats["downlink_bytes"]
