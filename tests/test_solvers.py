"""The compiled estimates against a slow, obvious NumPy oracle, and one round
of the whole machinery against plain (proximal) gradient descent."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose

from sklearn_dsparse import DistributedSparseElasticNet, DistributedSparseLogisticRegression
from sklearn_dsparse.blocks import BlockPartition
from sklearn_dsparse.losses import LOGISTIC, MULTINOMIAL, SQUARED, loss_derivative
from sklearn_dsparse.solvers import GD, SAGA, SGD, init_saga_table, local_estimate


def augmented(X, fit_intercept):
    Xd = X.toarray()
    return np.hstack([Xd, np.ones((Xd.shape[0], 1))]) if fit_intercept else Xd


def derivatives(loss, Xa, W, Y):
    Z = Xa @ W
    out = np.empty_like(Z)
    for r in range(Z.shape[0]):
        loss_derivative(loss.id, Z[r], Y, r, out[r])
    return out


def setup(loss, fit_intercept, seed=0):
    rng = np.random.RandomState(seed)
    N, p = 40, 11
    K = 3 if loss is MULTINOMIAL else (2 if loss is SQUARED else 1)
    X = sp.random(N, p, density=0.4, format="csr", random_state=rng)
    if loss is MULTINOMIAL:
        Y = np.eye(K)[rng.randint(K, size=N)]
    elif loss is LOGISTIC:
        Y = rng.randint(0, 2, size=(N, 1)).astype(float)
    else:
        Y = rng.normal(size=(N, K))
    p1 = p + int(fit_intercept)
    W = rng.normal(size=(p1, K))
    c = rng.uniform(0.5, 2.0, size=N)
    return rng, X, Y, W, c


def run_estimate(solver, loss, X, Y, W, c, alpha, abar, l2, fit_intercept, rows,
                 partition, chosen):
    m = partition.n_blocks
    selected = np.zeros(m, dtype=np.bool_)
    selected[chosen] = True
    block_list = np.array(chosen, dtype=np.int64)
    out = np.full(W.shape, np.nan)
    local_estimate(solver, loss.id, W, X.data, X.indices, X.indptr, Y, c, alpha,
                   abar, l2, fit_intercept, rows, selected, block_list, len(chosen),
                   partition.starts, partition.column_block, out,
                   np.empty(W.shape[1]), np.empty(W.shape[1]))
    return out


def penalty_gradient(W, l2, fit_intercept):
    g = l2 * W
    if fit_intercept:
        g[-1] = 0.0
    return g


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("loss", [LOGISTIC, MULTINOMIAL, SQUARED], ids=repr)
@pytest.mark.parametrize("solver", [GD, SGD, SAGA])
def test_estimate_matches_numpy_oracle(solver, loss, fit_intercept):
    rng, X, Y, W, c = setup(loss, fit_intercept)
    N, K = Y.shape
    Xa = augmented(X, fit_intercept)
    l2 = 0.3
    partition = BlockPartition(W.shape[0], 4)
    chosen = [0, 3]  # the intercept (last row) is in block 3
    rows = np.array([5, 17, 2, 31], dtype=np.int64)
    alpha, abar = np.zeros((0, K)), np.zeros((0, K))
    if solver == SAGA:
        W0 = rng.normal(size=W.shape)
        alpha, abar = np.zeros((N, K)), np.zeros(W.shape)
        init_saga_table(loss.id, W0, X.data, X.indices, X.indptr, Y, c,
                        fit_intercept, alpha, abar)
        D0 = derivatives(loss, Xa, W0, Y)
        assert_allclose(alpha, D0)
        assert_allclose(abar, Xa.T @ (c[:, None] * D0) / N, atol=1e-12)
    out = run_estimate(solver, loss, X, Y, W, c, alpha, abar, l2, fit_intercept,
                       rows, partition, chosen)

    D = derivatives(loss, Xa, W, Y)
    if solver == GD:
        expected = Xa.T @ (c[:, None] * D) / N
    elif solver == SGD:
        expected = Xa[rows].T @ (c[rows, None] * D[rows]) / len(rows)
    else:
        diff = c[rows, None] * (D[rows] - D0[rows])
        expected = Xa[rows].T @ diff / len(rows) + Xa.T @ (c[:, None] * D0) / N
        # the table now holds the new derivatives of the rows used
        D0[rows] = D[rows]
        assert_allclose(alpha, D0)
        assert_allclose(abar, Xa.T @ (c[:, None] * D0) / N, atol=1e-12)
    expected = expected + penalty_gradient(W, l2, fit_intercept)
    mask = np.zeros(W.shape[0], dtype=bool)
    for b in chosen:
        mask[partition.starts[b]:partition.starts[b + 1]] = True
    assert_allclose(out[mask], expected[mask], rtol=1e-10, atol=1e-12)
    assert np.all(np.isnan(out[~mask]))  # nothing computed off the blocks


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_one_dense_gd_round_is_a_gradient_step():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 5))
    y = rng.randint(0, 3, size=30)
    step, C = 0.05, 2.0
    est = DistributedSparseLogisticRegression(
        C=C, solver="gd", n_workers=3, sparsifier="none", step_size=step,
        max_iter=1, tol=0).fit(X, y)
    # from W = 0: one step of -step * grad F(0), F = mean loss + ||w||^2 / (2 C N)
    Y = np.eye(3)[y]
    grad = np.hstack([X, np.ones((30, 1))]).T @ (np.full((30, 3), 1 / 3) - Y) / 30
    assert_allclose(est.coef_, -step * grad[:5].T, rtol=1e-12)
    assert_allclose(est.intercept_, -step * grad[5], rtol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_one_dense_gd_round_applies_the_l1_prox():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(40, 6))
    y = X @ rng.normal(size=6) + 3.0
    step, alpha = 0.1, 0.5
    est = DistributedSparseElasticNet(alpha=alpha, l1_ratio=1.0, solver="gd",
                                      n_workers=4, sparsifier="none",
                                      step_size=step, max_iter=1, tol=0).fit(X, y)
    grad_w, grad_b = -X.T @ y / 40, -y.mean()
    v = -step * grad_w
    assert_allclose(est.coef_, np.sign(v) * np.maximum(np.abs(v) - step * alpha, 0),
                    rtol=1e-12)
    assert_allclose(est.intercept_, -step * grad_b, rtol=1e-12)
    assert np.any(est.coef_ == 0) and np.any(est.coef_ != 0)
