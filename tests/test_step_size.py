"""The step_size="auto" rule: its formula, its constants, and that it is safe."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning

from sklearn_dsparse import DistributedSparseLogisticRegression, DistributedSparseRidge
from sklearn_dsparse.blocks import BlockPartition
from sklearn_dsparse.losses import SQUARED
from sklearn_dsparse.master import aggregate_message
from sklearn_dsparse.solvers import SOLVERS
from sklearn_dsparse.sparsifiers import SPARSIFIERS, Dense, Independent, Shared
from sklearn_dsparse.step_size import (accelerated_parameters, auto_step_size,
                                       gram_top_eigenvalue, minibatch_smoothness,
                                       quadratic_growth_constants)
from sklearn_dsparse.worker import worker_round

from conftest import load


def test_rule_per_sparsifier():
    weights = np.array([0.5, 0.3, 0.2])
    s2 = np.sum(weights ** 2)
    L_F, L_b, m, tau = 3.0, 7.0, 12, 4
    omega = m / tau - 1
    dense = 1 / (2 * (L_F + s2 * L_b))
    assert_allclose(auto_step_size(Dense(m), weights, L_F, L_b), dense)
    assert_allclose(auto_step_size(Shared(m, tau), weights, L_F, L_b),
                    1 / (2 * (1 + omega) * (L_F + s2 * L_b)))
    # independent masks: the compression limit L_F / 2 + omega s2 L_b binds here
    assert L_F / 2 + omega * s2 * L_b > L_F + s2 * L_b
    assert_allclose(auto_step_size(Independent(m, tau), weights, L_F, L_b),
                    1 / (2 * (L_F / 2 + omega * s2 * L_b)))
    # ... and light compression keeps dense averaging's step
    assert_allclose(auto_step_size(Independent(m, 10), weights, L_F, L_b), dense)
    for t in range(1, m + 1):
        assert auto_step_size(Independent(m, t), weights, L_F, L_b) <= dense
    # at tau = m / n with equal shards and L_F = L_b: 0.74 of dense's step
    n = 16
    ratio = (auto_step_size(Independent(64, 4), np.full(n, 1 / n), 1.0, 1.0)
             / auto_step_size(Dense(64), np.full(n, 1 / n), 1.0, 1.0))
    assert ratio == pytest.approx((1 + 1 / n) / (0.5 + 15 / n))


def shared_quadratic(n_workers, n_features, scale=2.0):
    """Every worker's shard is the same quadratic: rows scale * e_j, targets
    scale, so f_i(w) = scale^2 / (2 d) ||w - 1||^2 for every i."""
    rows = sp.vstack([scale * sp.identity(n_features, format="csr")] * n_workers)
    return rows.tocsr(), np.full(n_workers * n_features, scale)


@pytest.mark.parametrize("n_workers, blocks_per_worker", [
    (2, 32), (16, 4), (16, 1), (64, 1)])
def test_independent_step_keeps_a_margin_to_the_stability_limit(
        n_workers, blocks_per_worker):
    # The rule's premise, on the library's own round: with control variates
    # the compressed gd round is stable up to about 1 / (L / 2 + omega s2 L),
    # and "auto" takes half of it.  1.5x the default must still converge, 4x
    # must diverge (the rule is not needlessly small either).
    d = 64
    X, y = shared_quadratic(n_workers, d)
    params = dict(alpha=0.0, fit_intercept=False, solver="gd", n_workers=n_workers,
                  n_blocks=d, blocks_per_worker=blocks_per_worker, tol=0,
                  random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        auto = DistributedSparseRidge(max_iter=1, **params).fit(X, y).step_size_
        omega, s2, L = d / blocks_per_worker - 1, 1 / n_workers, 4.0 / d
        assert auto == pytest.approx(
            1 / (2 * max(L + s2 * L, L / 2 + omega * s2 * L)), rel=1e-6)
        larger = DistributedSparseRidge(step_size=1.5 * auto, max_iter=6000,
                                        **params).fit(X, y)
        assert_allclose(larger.coef_, 1.0, rtol=1e-4)
        with pytest.raises(FloatingPointError, match="diverged"):
            DistributedSparseRidge(step_size=4 * auto, max_iter=3000,
                                   **params).fit(X, y)


def test_minibatch_smoothness_interpolates_between_row_and_shard():
    assert minibatch_smoothness(2.0, 9.0, 100, 1) == pytest.approx(9.0)
    assert minibatch_smoothness(2.0, 9.0, 100, 100) == pytest.approx(2.0)
    assert minibatch_smoothness(2.0, 9.0, 100, 500) == pytest.approx(2.0)
    mid = minibatch_smoothness(2.0, 9.0, 100, 10)
    assert 2.0 < mid < 9.0


@pytest.mark.parametrize("n_features", [30, 1500])  # dense Gram and ARPACK paths
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gram_top_eigenvalue(n_features, fit_intercept):
    rng = np.random.RandomState(0)
    X = sp.random(200, n_features, density=0.05, format="csr", random_state=rng)
    w = rng.rand(200)
    Xd = X.toarray()
    if fit_intercept:
        Xd = np.hstack([Xd, np.ones((200, 1))])
    expected = np.linalg.eigvalsh(Xd.T @ (w[:, None] * Xd))[-1]
    assert gram_top_eigenvalue(X, w, fit_intercept) == pytest.approx(expected, rel=1e-5)


def problems():
    """(dataset, loss) pairs: every loss on every dataset it applies to."""
    out = []
    for name in ["a1a", "a5a", "a9a", "a9a.t", "mushrooms", "phishing", "news20",
                 "abalone_scale"]:
        out += [(name, "logistic"), (name, "squared")]
    out += [("news20", "multinomial"), ("abalone_scale", "multinomial")]
    return out


def data_for(name, loss):
    X, y = load(name)
    if name == "news20":
        X, y = X[:3000], y[:3000]  # the full set is in the slow study below
    if loss == "logistic":
        y = (y == np.max(y)) if name in ("news20", "abalone_scale") else y
    elif loss == "multinomial" and name == "abalone_scale":
        y = np.digitize(y, [8, 11])
    elif loss == "squared":
        y = y.astype(np.float64)
    return X, y


@pytest.mark.parametrize("sparsifier", ["independent", "shared", "none"])
@pytest.mark.parametrize("solver", ["saga", "sgd", "gd"])
@pytest.mark.parametrize("name, loss", problems())
def test_auto_step_never_diverges(name, loss, solver, sparsifier):
    X, y = data_for(name, loss)
    epochs = 3 if X.shape[0] * X.shape[1] > 3e6 else 10
    assert_descends(objective_history(X, y, loss, solver=solver, sparsifier=sparsifier,
                                      n_workers=16, max_iter=epochs))


def objective_history(X, y, loss, **params):
    """history_["objective"] of a fit at the default step (C = 1, alpha = 1)."""
    est = (DistributedSparseRidge(alpha=1.0) if loss == "squared"
           else DistributedSparseLogisticRegression(C=1.0))
    est.set_params(tol=0, random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return est.history_["objective"]


def assert_descends(objective):
    """Finite, lower at the end, and never above the start."""
    assert np.all(np.isfinite(objective))
    assert objective[-1] < objective[0]
    assert np.max(objective) <= objective[0] * (1 + 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("sparsifier", ["independent", "shared", "none"])
@pytest.mark.parametrize("solver", ["saga", "sgd", "gd"])
@pytest.mark.parametrize("loss", ["logistic", "multinomial", "squared"])
def test_auto_step_never_diverges_on_full_news20(loss, solver, sparsifier):
    X, y = load("news20")
    if loss == "logistic":
        y = y == 1
    est = (DistributedSparseRidge(alpha=1.0) if loss == "squared"
           else DistributedSparseLogisticRegression(C=1.0))
    est.set_params(solver=solver, sparsifier=sparsifier, n_workers=16, max_iter=5,
                   tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y.astype(np.float64) if loss == "squared" else y)
    objective = est.history_["objective"]
    assert np.all(np.isfinite(objective))
    assert np.max(objective[1:]) < objective[0]


@pytest.mark.slow
@pytest.mark.parametrize("n_workers, n_blocks, blocks_per_worker", [
    (2, "auto", "auto"), (4, "auto", "auto"), (16, 64, 1), (64, "auto", "auto"),
    (100, "auto", "auto")])  # (16, 64, 1): heavier compression than tau = m / n
@pytest.mark.parametrize("solver, batch_size", [
    ("gd", "auto"), ("saga", 1), ("saga", "auto"), ("sgd", "auto")])
@pytest.mark.parametrize("name, loss", [
    (name, loss) for name in ["a1a", "mushrooms", "phishing", "abalone_scale"]
    for loss in ["logistic", "squared"]])
def test_auto_step_never_diverges_for_other_worker_counts(
        name, loss, solver, batch_size, n_workers, n_blocks, blocks_per_worker):
    X, y = data_for(name, loss)
    if n_blocks != "auto":
        n_blocks = min(n_blocks, X.shape[1] + 1)  # abalone has 9 parameter rows
    assert_descends(objective_history(
        X, y, loss, solver=solver, batch_size=batch_size, n_workers=n_workers,
        n_blocks=n_blocks, blocks_per_worker=blocks_per_worker, max_iter=8))


def _round_estimates(X, Y, c, shard_starts, weights, partition, sparsifier, batch,
                     W, n_rounds, seed):
    """A = sum_i w_i M_i of ``n_rounds`` rounds of sgd's estimate at W: the
    library's own ``worker_round`` and ``aggregate_message``."""
    n_blocks, starts = partition.n_blocks, partition.starts
    rngs = [np.random.default_rng([seed, i]) for i in range(len(weights))]
    u_blocks = sparsifier.draw(rngs, None, n_rounds)
    u_rows = np.stack([rng.random((n_rounds, batch)) for rng in rngs])
    selected, touched = np.zeros(n_blocks, bool), np.zeros(n_blocks, bool)
    block_list = np.empty(n_blocks, np.int64)
    seen = np.zeros(X.shape[0], bool)
    rows, estimate = np.empty(batch, np.int64), np.zeros_like(W)
    values, z, dz = np.empty(W.size), np.empty(1), np.empty(1)
    empty = np.zeros((0,))
    out = np.empty((n_rounds, W.size))
    for r in range(n_rounds):
        A = np.zeros_like(W)
        for i, w in enumerate(weights):
            s, e = shard_starts[i], shard_starts[i + 1]
            n_sel, _ = worker_round(
                SOLVERS["asgd"], SQUARED.id, W, X.data, X.indices, X.indptr[s:e + 1],
                Y[s:e], c[s:e], empty, empty, empty, 0.0, True, False,
                sparsifier.scale, sparsifier.sends_all, u_blocks[i, r], u_rows[i, r],
                batch, starts, partition.column_block, selected, block_list, rows,
                seen, estimate, z, dz, values)
            aggregate_message(A, touched, block_list, n_sel, starts, values, w)
        A[~np.repeat(touched, np.diff(starts))] = 0.0  # blocks nobody sent
        touched[:] = False
        out[r] = A
    return out


@pytest.mark.parametrize("sparsifier", ["independent", "none"])
def test_strong_growth_matrix_is_the_second_moment_of_the_round(sparsifier):
    """E ||A||^2 = e^T M e at y = x* + e on data that interpolate, Monte Carlo
    on the library's round (4 standard errors), and rho, mu, L its extremes."""
    rng = np.random.default_rng(3)
    n_rows, d = 30, 4
    X = sp.csr_matrix(rng.standard_normal((n_rows, d)) * [1.0, 0.5, 2.0, 0.3])
    x_star = rng.standard_normal(d + 1)
    Y = (X @ x_star[:d] + x_star[d])[:, None]
    c = rng.uniform(0.5, 1.5, n_rows)
    shard_starts = np.array([0, 8, 19, 30])
    c *= np.repeat(np.diff(shard_starts) / np.add.reduceat(c, shard_starts[:-1]),
                   np.diff(shard_starts))
    weights = np.array([0.2, 0.3, 0.5])
    partition = BlockPartition(d + 1, 5)
    sparsif = SPARSIFIERS[sparsifier](5, 2)
    batch = 3
    e = rng.standard_normal(d + 1)
    estimates = _round_estimates(X, Y, c, shard_starts, weights, partition, sparsif,
                                 batch, x_star + e, 6000, seed=7)
    squares = np.sum(estimates ** 2, axis=1)
    # The same M, from the function under test: rho ||H e||^2 bounds it, and
    # the direction of rho's eigenvector attains it.
    mu, L, rho = quadratic_growth_constants(X, c, shard_starts, weights, 0.0, True,
                                            batch, sparsif.scale)
    Xt = np.hstack([X.toarray(), np.ones((n_rows, 1))])
    H = sum(w * Xt[s:t].T @ np.diag(c[s:t] / (t - s)) @ Xt[s:t]
            for w, s, t in zip(weights, shard_starts[:-1], shard_starts[1:]))
    assert_allclose(np.mean(estimates, axis=0), H @ e, atol=4 * np.sqrt(
        np.var(estimates, axis=0).max() / len(estimates)))
    eig = np.linalg.eigvalsh(H)
    assert_allclose([mu, L], [eig[0], eig[-1]], rtol=1e-10)
    assert 1.0 < rho and np.mean(squares) <= rho * np.sum((H @ e) ** 2) * 1.01
    expected = _second_moment(X, c, shard_starts, weights, batch, sparsif.scale, e)
    assert abs(np.mean(squares) - expected) <= 4 * np.std(squares) / np.sqrt(
        len(squares))


def _second_moment(X, c, shard_starts, weights, batch, scale, e):
    """e^T M e of ``quadratic_growth_constants``'s docstring, written out with
    per-row sums (the obvious, slow way)."""
    Xt = np.hstack([X.toarray(), np.ones((X.shape[0], 1))])
    H_e = []
    total = 0.0
    for w, s, t in zip(weights, shard_starts[:-1], shard_starts[1:]):
        g_rows = (c[s:t] * (Xt[s:t] @ e))[:, None] * Xt[s:t]  # each row's gradient
        n = t - s
        mean = g_rows.mean(axis=0)
        b = min(batch, n)
        var = (n - b) / (b * (n - 1)) * np.mean(np.sum((g_rows - mean) ** 2, axis=1))
        H_e.append(w * mean)
        total += w * w * (scale * (mean @ mean + var) - mean @ mean)
    return total + np.sum(np.sum(H_e, axis=0) ** 2)


def test_accelerated_parameters_are_nesterovs_without_noise():
    """At rho = 1 the sequences are Nesterov's constant-momentum method:
    step 1 / L, momentum (sqrt(kappa) - 1) / (sqrt(kappa) + 1), and the
    look-ahead adds that momentum times the step (y+ = w+ + m (w+ - w))."""
    mu, L = 0.01, 4.0
    step, momentum, lookahead = accelerated_parameters(mu, L, 1.0)
    root = np.sqrt(L / mu)
    assert_allclose([step, momentum, lookahead],
                    [1 / L, (root - 1) / (root + 1), (root - 1) / (root + 1) / L])
    # With noise the step shrinks by rho and the momentum decays faster.
    step4, momentum4, _ = accelerated_parameters(mu, L, 4.0)
    s = np.sqrt(mu / L) / 4
    assert_allclose([step4, momentum4], [1 / (4 * L), (1 - s) / (1 + s)])
