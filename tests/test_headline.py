"""The paper's claim on real data: with tau = m / n, IBS needs (about) the
rounds of dense averaging while sending 1/n of its uplink.

a1a, L2 logistic regression at C = 0.01 (L / mu ~ 100 >= n = 16, the
condition of ISEGA's claim), n_workers = 16, m = 64 blocks, tau = 4.
Rounds are read from ``history_`` (one entry per epoch): the first epoch at
which the relative suboptimality (F - F*) / F* is at most 1e-6.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from sklearn_dsparse import DistributedSparseLogisticRegression

from conftest import load

C = 0.01
TARGET = 1e-6


def optimum(X, y, C, fit_intercept=True):
    ref = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12,
                             fit_intercept=fit_intercept).fit(X, y)
    z = X @ ref.coef_.ravel() + ref.intercept_[0]
    t = np.where(y > 0, 1.0, -1.0)
    w = ref.coef_.ravel()
    return C * np.sum(np.logaddexp(0, -t * z)) + 0.5 * w @ w


def to_target(est, f_star):
    """(rounds, uplink bytes) at the first epoch within TARGET of F*."""
    h = est.history_
    reached = np.flatnonzero((h["objective"] - f_star) / f_star <= TARGET)
    assert reached.size, "did not reach the target: raise max_iter"
    return h["rounds"][reached[0]], h["uplink_bytes"][reached[0]]


def fit(X, y, **params):
    est = DistributedSparseLogisticRegression(C=C, n_workers=16, n_blocks=64,
                                              tol=0, random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


@pytest.mark.parametrize("solver, batch_size, max_iter", [
    ("gd", 1, 5000), ("saga", 16, 1000)])
def test_independent_sparsification_costs_almost_no_rounds(
        solver, batch_size, max_iter, record_property):
    X, y = load("a1a")
    f_star = optimum(X, y, C)
    params = dict(solver=solver, batch_size=batch_size, max_iter=max_iter)
    dense = fit(X, y, sparsifier="none", **params)
    same_step = fit(X, y, sparsifier="independent", blocks_per_worker=4,
                    step_size=dense.step_size_, **params)
    default = fit(X, y, sparsifier="independent", blocks_per_worker=4, **params)
    rounds_dense, bytes_dense = to_target(dense, f_star)
    rounds_same, _ = to_target(same_step, f_star)
    rounds_default, bytes_default = to_target(default, f_star)

    # (a) the paper's claim: at one common step, at most 1.25x the rounds
    assert rounds_same <= 1.25 * rounds_dense
    # (b) what a user gets, each at its default step
    ratio, uplink = rounds_default / rounds_dense, bytes_default / bytes_dense
    record_property("default_step_round_ratio", ratio)
    record_property("default_step_uplink_ratio", uplink)
    print(f"{solver}: same step x{rounds_same / rounds_dense:.2f} rounds; default "
          f"step x{ratio:.2f} rounds, uplink {uplink:.3f} of dense")
    # The bounds were 3x the rounds and 0.25 of the uplink (gd); the
    # step rule (step_size.py) meets the goal beyond them, 1.5x, for both.
    assert ratio <= 1.5
    assert uplink <= 0.25


@pytest.mark.slow
def test_claim_stops_when_well_conditioned():
    # L / mu < n (strong penalty, no unpenalised intercept to slow dense
    # averaging down): ISEGA's condition fails and IBS needs many more rounds.
    X, y = load("a5a")
    C_small = 1e-4
    f_star = optimum(X, y, C_small, fit_intercept=False)
    params = dict(solver="gd", max_iter=3000, fit_intercept=False)
    dense = DistributedSparseLogisticRegression(
        C=C_small, n_workers=64, n_blocks=64, sparsifier="none", tol=0,
        random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        rounds_dense, _ = to_target(dense.fit(X, y), f_star)
        ibs = DistributedSparseLogisticRegression(
            C=C_small, n_workers=64, n_blocks=64, blocks_per_worker=1, tol=0,
            step_size=dense.step_size_, random_state=0, **params)
        rounds_ibs, _ = to_target(ibs.fit(X, y), f_star)
    print(f"L/mu < n: dense {rounds_dense} rounds, independent {rounds_ibs}")
    assert rounds_ibs > 5 * rounds_dense
