"""What a worker computes: a local gradient estimate on the requested blocks.

For worker i with shard rows r (weights c_r = N_i s_r / S_i, so that
f_i = 1/N_i sum_r c_r loss_r + l2/2 ||w||^2):

- ``gd``: the full local gradient of f_i (the paper's IBCD / ISEGA estimate);
- ``sgd``: a minibatch gradient over ``b`` rows drawn without replacement;
- ``saga``: the minibatch SAGA estimate
  ``1/b sum_r c_r (loss'_r(x) - alpha_r) x_r + abar_i + l2 w`` where ``alpha``
  is the table of the last derivative seen per row (one value per output) and
  ``abar_i = 1/N_i sum_r c_r alpha_r x_r`` its mean: O(N_i + d) memory.

The estimate is written only on the selected blocks (computing the rest would
be wasted work); the SAGA table is updated on every feature of the rows used.
The intercept is the last parameter row and is never penalised.

The arrays come in the layout of ``_layout`` (1-D with one output); each
kernel indexes them through ``_layout.at`` and ``add_at`` (no reshape per row),
with K known to the compiler when it is 1.
"""

import numpy as np
from numba import njit

from ._layout import add_at, at, flat, n_outputs, set_at
from .losses import loss_derivative

GD, SGD, SAGA = 0, 1, 2
#: asgd's workers send sgd's estimate, taken at the look-ahead point that
#: ``master`` keeps; only the master's step differs.
SOLVERS = {"gd": GD, "sgd": SGD, "saga": SAGA, "asgd": SGD}


@njit(cache=True, inline="always")
def row_margin(W, data, indices, indptr, r, fit_intercept, z):
    """z = x_r W (+ intercept row)."""
    K = n_outputs(W)
    p1 = W.shape[0]
    for k in range(K):
        z[k] = at(W, p1 - 1, k) if fit_intercept else 0.0
    for t in range(indptr[r], indptr[r + 1]):
        col = indices[t]
        v = data[t]
        for k in range(K):
            z[k] += v * at(W, col, k)


@njit(cache=True, inline="always")
def swap_table_entry(alpha, r, dz):
    """dz <- dz - alpha[r] and alpha[r] <- the old dz: the SAGA correction of row r."""
    K = n_outputs(alpha)
    for k in range(K):
        new = dz[k]
        dz[k] = new - at(alpha, r, k)
        set_at(alpha, r, k, new)


@njit(cache=True)
def init_saga_table(loss_id, W, data, indices, indptr, Y, c, fit_intercept,
                    alpha, abar):
    """Fill the SAGA table with the derivatives at W (one pass over the shard)."""
    K = n_outputs(W)
    p1 = W.shape[0]
    n_rows = Y.shape[0]
    alpha = alpha.reshape((n_rows, K))
    abar = abar.reshape((p1, K))
    z = np.empty(K)
    dz = np.empty(K)
    abar[:, :] = 0.0
    for r in range(n_rows):
        row_margin(W, data, indices, indptr, r, fit_intercept, z)
        loss_derivative(loss_id, z, Y, r, dz)
        a = c[r] / n_rows
        for k in range(K):
            alpha[r, k] = dz[k]
        for t in range(indptr[r], indptr[r + 1]):
            col = indices[t]
            v = a * data[t]
            for k in range(K):
                abar[col, k] += v * dz[k]
        if fit_intercept:
            for k in range(K):
                abar[p1 - 1, k] += a * dz[k]


@njit(cache=True)
def local_estimate(solver, loss_id, W, data, indices, indptr, Y, c, alpha, abar,
                   l2, fit_intercept, rows, selected, block_list, n_selected,
                   starts, column_block, out, z, dz):
    """Write worker i's estimate g_i on the selected blocks into ``out``."""
    K = n_outputs(W)
    p1 = W.shape[0]
    n_penalised = (p1 - 1 if fit_intercept else p1) * K
    w = flat(W)
    est = flat(out)
    table_mean = flat(abar)
    for j in range(n_selected):
        b = block_list[j]
        lo = starts[b] * K
        hi = starts[b + 1] * K
        n_pen = min(max(lo, n_penalised), hi) - lo
        # Views from 0 vectorise (see ``master``).
        # One pass over the block: on wide models these are memory-bound.
        est_b, w_b = est[lo:hi], w[lo:hi]
        if solver == SAGA:
            mean_b = table_mean[lo:hi]
            for i in range(n_pen):
                est_b[i] = l2 * w_b[i] + mean_b[i]
            for i in range(n_pen, hi - lo):
                est_b[i] = mean_b[i]
        else:
            for i in range(n_pen):
                est_b[i] = l2 * w_b[i]
            for i in range(n_pen, hi - lo):
                est_b[i] = 0.0

    # A worker that sends nothing (``sparsifier="bernoulli"``) needs no
    # gradient; saga's table still learns the rows drawn.
    if n_selected == 0 and solver != SAGA:
        return
    # One copy of the row loop per solver, each without the others' tests.
    if solver == GD:
        _add_rows(GD, loss_id, W, data, indices, indptr, Y, c, alpha, abar,
                  fit_intercept, rows, selected, n_selected, starts, column_block,
                  out, z, dz)
    elif solver == SGD:
        _add_rows(SGD, loss_id, W, data, indices, indptr, Y, c, alpha, abar,
                  fit_intercept, rows, selected, n_selected, starts, column_block,
                  out, z, dz)
    else:
        _add_rows(SAGA, loss_id, W, data, indices, indptr, Y, c, alpha, abar,
                  fit_intercept, rows, selected, n_selected, starts, column_block,
                  out, z, dz)


@njit(cache=True, inline="always")
def _add_rows(solver, loss_id, W, data, indices, indptr, Y, c, alpha, abar,
              fit_intercept, rows, selected, n_selected, starts, column_block, out,
              z, dz):
    """The rows' part of ``local_estimate``; inlined where ``solver`` is a
    constant, so that the compiler drops the other solvers' branches."""
    K = n_outputs(W)
    p1 = W.shape[0]
    n_shard = Y.shape[0]
    n_used = n_shard if solver == GD else rows.shape[0]
    inv_used = 1.0 / n_used
    inv_shard = 1.0 / n_shard
    intercept_selected = fit_intercept and selected[column_block[p1 - 1]]
    every_block = n_selected == starts.shape[0] - 1
    for i in range(n_used):
        r = i if solver == GD else rows[i]
        row_margin(W, data, indices, indptr, r, fit_intercept, z)
        loss_derivative(loss_id, z, Y, r, dz)
        if solver == SAGA:
            swap_table_entry(alpha, r, dz)
        g = c[r] * inv_used
        a = c[r] * inv_shard
        for t in range(indptr[r], indptr[r + 1]):
            col = indices[t]
            v = data[t]
            if every_block or selected[column_block[col]]:
                for k in range(K):
                    add_at(out, col, k, g * v * dz[k])
            if solver == SAGA:
                for k in range(K):
                    add_at(abar, col, k, a * v * dz[k])
        if intercept_selected:
            for k in range(K):
                add_at(out, p1 - 1, k, g * dz[k])
        if fit_intercept and solver == SAGA:
            for k in range(K):
                add_at(abar, p1 - 1, k, a * dz[k])
