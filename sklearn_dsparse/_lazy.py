"""Dense rounds computed lazily, in O(nnz of the minibatches) per round.

When every worker sends every block (``sparsifier="none"``, or
``blocks_per_worker == n_blocks``, e.g. one worker), without control variates
or an L1 part, the round of ``worker.worker_round`` + ``master.master_step`` is

    W <- W - step (S + abar + l2 W_penalised),

with ``abar = sum_i w_i abar_i`` the weighted SAGA table mean (zero for sgd) and
S the weighted minibatch corrections, which are non-zero only on the features
of the rows drawn.  A parameter row outside them moves by the same affine map
every round until a drawn row uses it, so its pending rounds are applied at
once just before it is read (scikit-learn's SAGA does the same "just in
time"), with a global scale for the l2 shrinkage and cumulative sums for the
table-mean steps (see ``run_lazy_rounds``).

A round makes two passes over its rows: the first brings their features up
to date and differentiates every row at the round's W; the second applies
the round to W and to the table mean directly, row by row, so there is no
buffer of S to gather and then apply (a third pass, which cost a third of a
binary epoch on news20 and almost half of a 20-class one).

The iterates are those of the message-passing rounds up to rounding (tested in
test_lazy.py); messages are counted exactly as those rounds send them.
"""

import numpy as np
from numba import njit

from ._layout import n_outputs
from .accounting import count_message, count_round
from .losses import loss_derivative
from .solvers import SAGA, swap_table_entry
from .sparsifiers import floyd_sample


def applies(problem):
    """Whether ``run_lazy_rounds`` computes this problem's rounds, and faster."""
    return possible(problem) and cheaper(problem)


def possible(problem):
    """Whether this problem's rounds are dense averaging steps that can be
    computed lazily: every block sent, no control variates, no L1."""
    sparsifier = problem.sparsifier
    return (sparsifier.blocks_per_worker == sparsifier.n_blocks
            and not problem.use_control_variates and problem.penalty.l1 == 0.0
            and problem.solver_name in ("saga", "sgd"))


def cheaper(problem):
    """Lazy rounds cost a few times more per non-zero of the minibatches than a
    dense round per parameter (measured on a9a, phishing, news20): use them when
    a round's minibatches hold fewer non-zeros than the model has rows."""
    X = problem.X
    nnz_per_round = problem.n_workers * problem.batch_size * X.nnz / X.shape[0]
    return problem.partition.n_columns > nnz_per_round


@njit(cache=True)
def _rescale(W, abar, last, cumulative, now, step, n_coef, scale):
    """Bring every row to round ``now`` and fold the scale into the coefficients."""
    p1, K = W.shape
    for j in range(p1):
        then = last[j]
        f = cumulative[now] - cumulative[then] if j < n_coef else step * (now - then)
        for k in range(K):
            W[j, k] -= f * abar[j, k]
            if j < n_coef:
                W[j, k] *= scale
        last[j] = now


@njit(cache=True)
def run_lazy_rounds(solver, loss_id, W, abar, data, indices, indptr, Y, c, alpha,
                    shard_starts, weights, l2, fit_intercept, step, u_rows, batch,
                    n_blocks, counters):
    """The rounds of one epoch; W and abar (the weighted table mean) in place.

    During the epoch the coefficient rows hold V with W = scale * V, so that
    the l2 shrinkage of every row is one multiplication of ``scale`` per round
    (scikit-learn's ``wscale``), and ``cumulative[t]`` sums step / scale over
    rounds, so that a row's pending table-mean steps are one subtraction.
    """
    n_workers = weights.shape[0]
    # (rows, K) views, with K a compile-time constant for one output (_layout).
    K = n_outputs(W)
    p1 = W.shape[0]
    w = W.reshape((p1, K))
    mean = abar.reshape((p1, K))
    table = alpha.reshape((alpha.shape[0], K))
    n_coef = p1 - 1 if fit_intercept else p1
    n_rounds = u_rows.shape[1]
    decay = 1.0 - step * l2
    scale = 1.0
    cumulative = np.zeros(n_rounds + 1)
    last = np.zeros(p1, dtype=np.int64)
    max_rows = 0
    for i in range(n_workers):
        max_rows = max(max_rows, shard_starts[i + 1] - shard_starts[i])
    seen = np.zeros(max_rows, dtype=np.bool_)
    rows = np.empty((n_workers, max(batch, 1)), dtype=np.int64)
    # Every row of a round is differentiated at the round's W, then applied.
    dZ = np.empty((n_workers, max(batch, 1), K))
    z = np.empty(K)
    for now in range(n_rounds):
        for i in range(n_workers):
            s = shard_starts[i]
            n_rows = shard_starts[i + 1] - s
            b = min(batch, n_rows)
            floyd_sample(u_rows[i, now, :b], n_rows, seen, rows[i, :b])
            for q in range(b):
                r = s + rows[i, q]
                for k in range(K):
                    z[k] = 0.0
                for t in range(indptr[r], indptr[r + 1]):
                    j = indices[t]
                    # Catch up on the rounds no drawn row used j: without a
                    # branch (f = 0 when j is current), which mispredicts
                    # about half the time on rows of a few dozen features.
                    f = cumulative[now] - cumulative[last[j]]
                    for k in range(K):
                        w[j, k] -= f * mean[j, k]
                    last[j] = now
                    for k in range(K):
                        z[k] += data[t] * w[j, k]
                for k in range(K):
                    z[k] *= scale
                if fit_intercept:
                    j = p1 - 1
                    f = step * (now - last[j])
                    for k in range(K):
                        w[j, k] -= f * mean[j, k]
                        z[k] += w[j, k]
                    last[j] = now
                dz = dZ[i, q]
                loss_derivative(loss_id, z, Y, r, dz)
                if solver == SAGA:
                    swap_table_entry(table, r, dz)
            count_message(counters, n_blocks, p1 * K, n_blocks)
        # W <- decay W - step (S + abar), on the scaled rows (W = scale V):
        # V -= step (S + abar) / new_scale.  A row's abar term is applied at
        # its first use in the round, before the round changes abar;
        # last[j] = now + 1 marks it applied.
        new_scale = scale * decay
        fc = step / new_scale
        for i in range(n_workers):
            s = shard_starts[i]
            n_rows = shard_starts[i + 1] - s
            b = min(batch, n_rows)
            for q in range(b):
                r = s + rows[i, q]
                dz = dZ[i, q]
                g = weights[i] * c[r] / b
                a = weights[i] * c[r] / n_rows
                for t in range(indptr[r], indptr[r + 1]):
                    j = indices[t]
                    v = data[t]
                    if last[j] == now:
                        last[j] = now + 1
                        for k in range(K):
                            w[j, k] -= fc * mean[j, k]
                    for k in range(K):
                        w[j, k] -= fc * (g * v * dz[k])
                    if solver == SAGA:
                        for k in range(K):
                            mean[j, k] += a * v * dz[k]
                if fit_intercept:
                    j = p1 - 1
                    if last[j] == now:
                        last[j] = now + 1
                        for k in range(K):
                            w[j, k] -= step * mean[j, k]
                    for k in range(K):
                        w[j, k] -= step * (g * dz[k])
                    if solver == SAGA:
                        for k in range(K):
                            mean[j, k] += a * dz[k]
        scale = new_scale
        cumulative[now + 1] = cumulative[now] + step / scale
        if scale < 1e-6:  # keep V within range: fold the scale in, O(d), rarely
            _rescale(w, mean, last, cumulative, now + 1, step, n_coef, scale)
            scale = 1.0
        count_round(counters, n_workers, n_blocks, p1 * K, n_blocks, p1 * K)
    _rescale(w, mean, last, cumulative, n_rounds, step, n_coef, scale)
