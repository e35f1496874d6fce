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
"""

import numpy as np
from numba import njit

from .losses import loss_derivative

GD, SGD, SAGA = 0, 1, 2
SOLVERS = {"gd": GD, "sgd": SGD, "saga": SAGA}


@njit(cache=True)
def row_margin(W, data, indices, indptr, r, fit_intercept, z):
    """z = x_r W (+ intercept row)."""
    p1, K = W.shape
    for k in range(K):
        z[k] = W[p1 - 1, k] if fit_intercept else 0.0
    for t in range(indptr[r], indptr[r + 1]):
        col = indices[t]
        v = data[t]
        for k in range(K):
            z[k] += v * W[col, k]


@njit(cache=True, inline="always")
def swap_table_entry(alpha, r, dz):
    """dz <- dz - alpha[r] and alpha[r] <- the old dz: the SAGA correction of row r."""
    for k in range(dz.shape[0]):
        new = dz[k]
        dz[k] = new - alpha[r, k]
        alpha[r, k] = new


@njit(cache=True)
def init_saga_table(loss_id, W, data, indices, indptr, Y, c, fit_intercept,
                    alpha, abar):
    """Fill the SAGA table with the derivatives at W (one pass over the shard)."""
    p1, K = W.shape
    n_rows = Y.shape[0]
    z = np.empty(K)
    dz = np.empty(K)
    abar[:, :] = 0.0
    for r in range(n_rows):
        row_margin(W, data, indices, indptr, r, fit_intercept, z)
        loss_derivative(loss_id, z, Y[r], dz)
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
    p1, K = W.shape
    n_penalised = (p1 - 1 if fit_intercept else p1) * K
    w = W.reshape(-1)
    est = out.reshape(-1)
    table_mean = abar.reshape(-1)
    for j in range(n_selected):
        b = block_list[j]
        lo = starts[b] * K
        hi = starts[b + 1] * K
        mid = min(max(lo, n_penalised), hi)
        for i in range(lo, mid):
            est[i] = l2 * w[i]
        for i in range(mid, hi):
            est[i] = 0.0
        if solver == SAGA:
            for i in range(lo, hi):
                est[i] += table_mean[i]

    n_shard = Y.shape[0]
    n_used = n_shard if solver == GD else rows.shape[0]
    inv_used = 1.0 / n_used
    inv_shard = 1.0 / n_shard
    intercept_selected = fit_intercept and selected[column_block[p1 - 1]]
    every_block = n_selected == starts.shape[0] - 1
    for i in range(n_used):
        r = i if solver == GD else rows[i]
        row_margin(W, data, indices, indptr, r, fit_intercept, z)
        loss_derivative(loss_id, z, Y[r], dz)
        if solver == SAGA:
            swap_table_entry(alpha, r, dz)
        g = c[r] * inv_used
        a = c[r] * inv_shard
        for t in range(indptr[r], indptr[r + 1]):
            col = indices[t]
            v = data[t]
            if every_block or selected[column_block[col]]:
                for k in range(K):
                    out[col, k] += g * v * dz[k]
            if solver == SAGA:
                for k in range(K):
                    abar[col, k] += a * v * dz[k]
        if intercept_selected:
            for k in range(K):
                out[p1 - 1, k] += g * dz[k]
        if fit_intercept and solver == SAGA:
            for k in range(K):
                abar[p1 - 1, k] += a * dz[k]
