"""All workers in this process: a compiled loop over rounds and workers.

Workers read the master's parameters in place (the broadcast is a no-op
copy), but each keeps its own SAGA table and control variates, draws from its
own stream and sends its message through ``master.aggregate_message`` exactly
as a remote worker would.
"""

import numpy as np
from numba import njit

from .. import _lazy
from .._layout import kernel_view, n_outputs
from ..accounting import count_message, count_round, new_counters
from ..master import aggregate_message, master_step
from ..solvers import SAGA, init_saga_table
from ..worker import worker_round
from .base import Engine


@njit(cache=True)
def _run_rounds(solver, loss_id, W, hbar, data, indices, indptr, Y, c, alpha,
                abar, h, shard_starts, weights, l2, l1, fit_intercept,
                use_control_variates, step, scale, selection, starts, column_block,
                u_blocks, u_rows, batch, counters, acceleration):
    n_workers = weights.shape[0]
    n_blocks = starts.shape[0] - 1
    K = n_outputs(W)
    n_rounds = u_blocks.shape[1]
    max_rows = 0
    for i in range(n_workers):
        max_rows = max(max_rows, shard_starts[i + 1] - shard_starts[i])
    selected = np.zeros(n_blocks, dtype=np.bool_)
    touched = np.zeros(n_blocks, dtype=np.bool_)
    block_list = np.empty(n_blocks, dtype=np.int64)
    seen = np.zeros(max_rows, dtype=np.bool_)
    rows = np.empty(max(batch, 1), dtype=np.int64)
    estimate = np.zeros_like(W)
    A = np.zeros_like(W)
    values = np.empty(W.size)
    z = np.empty(K)
    dz = np.empty(K)
    cv_fraction = 1.0 / scale
    for rnd in range(n_rounds):
        for i in range(n_workers):
            s = shard_starts[i]
            e = shard_starts[i + 1]
            n_sel, n_val = worker_round(
                solver, loss_id, W, data, indices, indptr[s:e + 1], Y[s:e],
                c[s:e], alpha[s:e], abar[i], h[i],
                l2, fit_intercept, use_control_variates, scale, selection,
                u_blocks[i, rnd], u_rows[i, rnd], batch, starts, column_block,
                selected, block_list, rows, seen, estimate, z, dz, values)
            aggregate_message(A, touched, block_list, n_sel, starts, values,
                              weights[i])
            count_message(counters, n_sel, n_val, n_blocks)
        nb, nv = master_step(W, hbar, A, touched, starts, step, l1, fit_intercept,
                             use_control_variates, cv_fraction, acceleration)
        count_round(counters, n_workers, nb, nv, n_blocks, W.size)


class InProcessEngine(Engine):
    """Run every worker in this process (``n_jobs=None``)."""

    def start(self, problem, coef, seed_sequences):
        pb = self.problem = problem
        self._W = np.array(coef, dtype=np.float64, order="C")
        p1, K = self._W.shape
        n = pb.n_workers
        saga = pb.solver == SAGA
        cv = pb.use_control_variates
        # Control variates' mean, or asgd's look-ahead displacement (master.py).
        hbar = self._hbar = np.zeros((p1, K))
        h = np.zeros((n, p1 if cv else 0, K))
        alpha = np.zeros((pb.Y.shape[0] if saga else 0, K))
        abar = np.zeros((n, p1 if saga else 0, K))
        # W, hbar, alpha, abar, h as the kernels take them (``_layout``).
        self._state = tuple(kernel_view(a) for a in (self._W, hbar, alpha, abar, h))
        W, hbar, alpha, abar, h = self._state
        if saga:
            for i in range(n):
                s, e = pb.shard_starts[i], pb.shard_starts[i + 1]
                init_saga_table(pb.loss.id, W, pb.X.data, pb.X.indices,
                                pb.X.indptr[s:e + 1], pb.Y[s:e], pb.c[s:e],
                                pb.fit_intercept, alpha[s:e], abar[i])
        self._worker_rngs = [np.random.default_rng(s) for s in seed_sequences[:n]]
        # Every worker replays the shared stream; in one process one copy serves all.
        self._shared_rng = np.random.default_rng(seed_sequences[n])
        self._counters = new_counters()
        # asgd's coefficients; the convex schedule counts its rounds in them.
        self._acceleration = None if pb.acceleration is None else pb.acceleration.copy()
        self._lazy = _lazy.applies(pb)
        if self._lazy:
            # Only the weighted table mean enters a dense round.
            self._abar_total = np.tensordot(pb.weights, abar, axes=1) if saga \
                else np.zeros_like(W)
        return self

    def run_epoch(self, n_rounds):
        pb = self.problem
        u_blocks = pb.sparsifier.draw(self._worker_rngs, self._shared_rng, n_rounds)
        width = 0 if pb.solver_name == "gd" else pb.batch_size
        u_rows = np.stack([rng.random((n_rounds, width)) for rng in self._worker_rngs])
        W, hbar, alpha, abar, h = self._state
        if self._lazy:
            _lazy.run_lazy_rounds(
                pb.solver, pb.loss.id, W, self._abar_total, pb.X.data,
                pb.X.indices, pb.X.indptr, pb.Y, pb.c, alpha, pb.shard_starts,
                pb.weights, pb.penalty.l2, pb.fit_intercept, pb.step_size, u_rows,
                pb.batch_size, pb.partition.n_blocks, self._counters)
            return
        _run_rounds(pb.solver, pb.loss.id, W, hbar, pb.X.data, pb.X.indices,
                    pb.X.indptr, pb.Y, pb.c, alpha, abar, h, pb.shard_starts,
                    pb.weights, pb.penalty.l2, pb.penalty.l1, pb.fit_intercept,
                    pb.use_control_variates, pb.step_size, pb.sparsifier.scale,
                    pb.sparsifier.selection, pb.partition.starts,
                    pb.partition.column_block, u_blocks, u_rows, pb.batch_size,
                    self._counters, self._acceleration)
