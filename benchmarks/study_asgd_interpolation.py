"""Rounds and bytes of ``solver="asgd"`` against ``solver="sgd"`` on models
that interpolate, each at its default step (docs/method.md, "Accelerated SGD").

    python benchmarks/study_asgd_interpolation.py      # about a minute

Both solvers send the same blocks of the same size every round, so the bytes
per round are equal and the question is the rounds: for each case, the first
round at which the training objective reaches the target, for asgd, for
sgd, their ratio, and the uplink bytes per round of each (from
``history_``).  One round per epoch everywhere (``batch_size`` is the
shard), so ``max_iter`` is rounds.  The cases:

- ``strongly convex``: consistent least squares, 4000 rows, 5 Gaussian
  features scaled 1 to 0.1 and an intercept, 4 workers, 2 of 6 blocks (the
  data of ``tests/test_exactness.py``); target ``F <= 1e-8 F(0)``.
- ``over-parameterised``: consistent least squares, 200 rows, 400 Gaussian
  features and an intercept (the 401 parameters interpolate the rows in
  many ways), 4 workers, 2 of 8 blocks; target ``F <= 1e-8 F(0)``.  asgd
  with the restricted strong convexity (the library's, "strongly convex
  schedule") and with the convex schedule (Vaswani et al.'s convex case,
  the same rho), and the distance of each model to the minimum-norm
  interpolant (``np.linalg.lstsq`` on ``[X 1]``), with independent masks and
  with ``sparsifier="none"``.
- ``separable``: binary logistic regression, ``C=np.inf``, 400 rows of 10
  Gaussian features whose labels a hyperplane (offset 0.3) separates with
  margin 0.1 (rows closer are dropped), 4 workers, 1 of 4 blocks; targets
  mean logistic loss 1e-2 and 1e-3 (all rows classified right well before),
  and the same with ``C=1e4``.

For the separable case it also prints, at asgd's iterates, the two constants
its rho stands for: ``E ||g||^2 / ||grad F||^2`` (the strong growth ratio,
which grows as the shards' gradients cancel near the max-margin direction)
and ``E[g^T grad^2 F g] / (L ||grad F||^2)`` (what the descent step
``F(y - eta g) <= F(y) - eta ||grad F||^2 + eta^2 / 2 g^T grad^2 F g`` needs,
the curvature vanishing with the loss), both exact for the round's
estimate (independent masks of tau of m blocks, whole shards).
"""

import time
import warnings

import numpy as np
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning

from sklearn_dsparse import DistributedSparseLogisticRegression, DistributedSparseRidge
from sklearn_dsparse import _fit
from sklearn_dsparse._testing import separable_binary
from sklearn_dsparse.blocks import BlockPartition
from sklearn_dsparse.master import convex_acceleration


def least_squares(n_samples, n_features, decay, seed=0):
    """y = X w + 0.5 exactly, column scales from 1 to 10^-decay."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features)) * np.logspace(0, -decay,
                                                                   n_features)
    return X, X @ rng.standard_normal(n_features) + 0.5


def fit(estimator, X, y, max_iter):
    estimator.set_params(max_iter=max_iter, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def rounds_to(est, target, relative, per_row=None):
    """First round with objective <= target (times F(0) when ``relative``;
    divided by ``per_row`` first when given), and the uplink bytes per round."""
    F = np.asarray(est.history_["objective"]) / (per_row or 1.0)
    rounds = np.asarray(est.history_["rounds"])
    up = np.asarray(est.history_["uplink_bytes"])
    hit = np.flatnonzero(F <= target * (F[0] if relative else 1.0))
    per_round = (up[-1] - up[0]) / (rounds[-1] - rounds[0])
    return (int(rounds[hit[0]]) if hit.size else None), per_round, F[-1]


def row(case, solver, est, target, relative, baseline=None, extra="", per_row=None):
    reached, per_round, last = rounds_to(est, target, relative, per_row)
    ratio = ""
    if baseline is not None and reached:
        base = rounds_to(baseline, target, relative, per_row)[0]
        ratio = f"{base / reached:6.1f}x" if base else f"> {est.max_iter / reached:.1f}x"
    shown = f"{reached:>7}" if reached else f"> {est.max_iter:<5}"
    print(f"{case:<26} {solver:<14} {target:>7.0e} {shown} {per_round:>8.0f} "
          f"{est.step_size_:>9.3g} {last:>9.2e} {ratio:>8} {extra}")
    return reached


class convex_schedule:
    """Within it, asgd on the squared loss takes the convex schedule, with
    the rho of the restricted constants (for the comparison only)."""

    def __enter__(self):
        self._accelerate = _fit._accelerate

        def accelerate(problem, step_size, sample_weight):
            eta = self._accelerate(problem, step_size, sample_weight)
            rho = 1.0 / (eta * _fit.quadratic_growth_constants(
                problem.X, problem.c, problem.shard_starts, problem.weights,
                problem.penalty.l2, problem.fit_intercept, problem.batch_size,
                problem.sparsifier.scale)[1])
            problem.acceleration = convex_acceleration(rho)
            return eta

        _fit._accelerate = accelerate

    def __exit__(self, *exc):
        _fit._accelerate = self._accelerate


def strongly_convex():
    X, y = least_squares(4000, 5, 1.0)
    params = dict(alpha=0.0, n_workers=4, n_blocks=6, blocks_per_worker=2,
                  batch_size=1000)
    sgd = fit(DistributedSparseRidge(solver="sgd", **params), X, y, 1600)
    asgd = fit(DistributedSparseRidge(solver="asgd", **params), X, y, 400)
    row("strongly convex", "sgd", sgd, 1e-8, True)
    row("strongly convex", "asgd", asgd, 1e-8, True, sgd)


def over_parameterised():
    X, y = least_squares(200, 400, 0.0)
    Xt = np.hstack([X, np.ones((len(X), 1))])
    min_norm = np.linalg.lstsq(Xt, y, rcond=None)[0]

    def distance(est):
        w = np.append(est.coef_, est.intercept_)
        return f"|w - w_min_norm| = {np.linalg.norm(w - min_norm):.2e}"

    for sparsifier, blocks in [("independent", 2), ("none", 8)]:
        params = dict(alpha=0.0, n_workers=4, n_blocks=8, blocks_per_worker=blocks,
                      batch_size=50, sparsifier=sparsifier)
        case = f"over-parameterised {'masks' if blocks < 8 else 'dense'}"
        sgd = fit(DistributedSparseRidge(solver="sgd", **params), X, y, 3000)
        asgd = fit(DistributedSparseRidge(solver="asgd", **params), X, y, 3000)
        with convex_schedule():
            convex = fit(DistributedSparseRidge(solver="asgd", **params), X, y, 3000)
        row(case, "sgd", sgd, 1e-8, True, extra=distance(sgd))
        row(case, "asgd", asgd, 1e-8, True, sgd, distance(asgd))
        row(case, "asgd convex", convex, 1e-8, True, sgd, distance(convex))


def growth_constants(X, y, coef, n_workers, n_blocks, blocks_per_worker):
    """(E||g||^2 / ||grad F||^2, E[g^T H g] / (L ||grad F||^2)) at ``coef``
    for the logistic loss, whole shards, independent masks, equal weights."""
    Z = np.where(y == 1, 1.0, -1.0)[:, None] * np.hstack([X, np.ones((len(X), 1))])
    n, d = Z.shape
    shards = np.array_split(np.arange(n), n_workers)
    weights = np.array([len(s) / n for s in shards])
    block = BlockPartition(d, n_blocks).column_block
    scale, m, tau = n_blocks / blocks_per_worker, n_blocks, blocks_per_worker
    # E[(delta_a - 1)(delta_b - 1)] for the rescaled mask of tau of m blocks.
    mask_cov = np.where(block[:, None] == block[None, :], scale - 1.0,
                        (tau - m) / (tau * (m - 1)) if m > 1 else 0.0)
    sigma = expit(-Z @ coef)
    gradients = [-Z[s].T @ sigma[s] / len(s) for s in shards]
    grad = sum(w * g for w, g in zip(weights, gradients))
    hessian = Z.T @ ((sigma * (1 - sigma))[:, None] * Z) / n
    L = 0.25 * np.linalg.eigvalsh(Z.T @ Z / n)[-1]
    # E ||D g_i - g_i||^2 = (scale - 1) ||g_i||^2, the workers independent.
    second = grad @ grad + (scale - 1.0) * sum(w * w * g @ g
                                               for w, g in zip(weights, gradients))
    curved = grad @ hessian @ grad + sum(w * w * g @ (mask_cov * hessian) @ g
                                         for w, g in zip(weights, gradients))
    return second / (grad @ grad), curved / (L * (grad @ grad))


def logistic():
    X, y = separable_binary()
    params = dict(n_workers=4, n_blocks=4, blocks_per_worker=1, batch_size=100)
    for C in [np.inf, 1e4]:
        case = f"separable, C={C:g}"
        sgd = fit(DistributedSparseLogisticRegression(C=C, solver="sgd", **params),
                  X, y, 20000)
        asgd = fit(DistributedSparseLogisticRegression(C=C, solver="asgd", **params),
                   X, y, 20000)
        # The estimator's objective is C sum_r loss_r + ||w||^2 / 2 (sum_r
        # loss_r at C=inf): per row and per unit of C it is the mean loss
        # (plus the penalty's share).
        per_row = len(y) * (1.0 if np.isinf(C) else C)
        for target in [1e-2, 1e-3]:
            row(case, "sgd", sgd, target, False, per_row=per_row,
                extra=f"accuracy {sgd.score(X, y):.3f}" if target == 1e-3 else "")
            row(case, "asgd", asgd, target, False, sgd, per_row=per_row,
                extra=f"accuracy {asgd.score(X, y):.3f}" if target == 1e-3 else "")
    print("\nasgd's iterates on the separable data, C=inf: the two constants rho"
          " stands for (its value: m / tau L_b / L_F)")
    print(f"{'round':>6} {'mean loss':>10} {'E|g|^2/|gradF|^2':>17} "
          f"{'E[gHg]/(L|gradF|^2)':>20}")
    for rounds in [0, 10, 100, 300, 1000, 3000]:
        est = fit(DistributedSparseLogisticRegression(C=np.inf, solver="asgd",
                                                      **params), X, y, max(rounds, 1))
        F = est.history_["objective"]
        coef = np.append(est.coef_.ravel(), est.intercept_) if rounds else \
            np.zeros(X.shape[1] + 1)
        ratio, curved = growth_constants(X, y, coef, 4, 4, 1)
        print(f"{rounds:>6} {(F[-1] if rounds else F[0]) / len(y):>10.2e} {ratio:>17.2f} "
              f"{curved:>20.3f}")


def main():
    started = time.perf_counter()
    print(f"{'case':<26} {'solver':<14} {'target':>7} {'rounds':>7} {'B/round':>8} "
          f"{'step':>9} {'last F':>9} {'sgd/asgd':>8}")
    strongly_convex()
    over_parameterised()
    logistic()
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
