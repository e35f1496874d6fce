"""Asynchronous ISGD: the workers and the master of a fit without rounds.

Each worker, whenever it receives a model, computes its message there from
its own stream and sends it (``AsyncWorkers.respond``); the master applies
each message as it arrives and answers only its sender, with the model
(``AsyncMaster.apply``).  No worker waits for another, except as the
staleness bound demands (``AsyncMaster.can_apply``).  docs/method.md,
"Asynchronous ISGD", states the protocol, the bound and the step rule.

The master's update is the synchronous round of ``master.py`` with one
message in A: ``W -= step (hbar + w_i M_i)``, ``hbar += (tau / m) w_i M_i``.
So hbar holds every worker's last estimate with its own weight w_i, whatever
the order and the rate at which their messages arrive: a slow worker's data
keep their weight, and the fixed point is F's optimum.
"""

import time

import numpy as np

from ._layout import kernel_view
from .accounting import add_message, add_round
from .master import aggregate_message, master_step
from .solvers import SGD
from .worker import worker_round


def worker_spec(problem, group, seed_sequences, *, delay_means, sleep_seconds):
    """What the workers ``group`` need, as plain data (it travels to a task).

    ``delay_means``: the mean of each worker's simulated compute time (the
    in-process engine); ``sleep_seconds``: how long each worker sleeps per
    message (a test hook that makes a real worker slow).
    """
    pb = problem
    s, e = pb.shard_starts[group[0]], pb.shard_starts[group[-1] + 1]
    rows = pb.X[s:e]
    return dict(
        worker_ids=[int(i) for i in group], data=rows.data, indices=rows.indices,
        indptr=rows.indptr, Y=pb.Y[s:e], c=pb.c[s:e],
        shard_starts=pb.shard_starts[group[0]:group[-1] + 2] - s,
        seeds=[seed_sequences[i] for i in group], n_outputs=pb.n_outputs,
        n_columns=pb.partition.starts[-1], solver=pb.solver, loss_id=pb.loss.id,
        l2=pb.penalty.l2, fit_intercept=pb.fit_intercept,
        use_control_variates=pb.use_control_variates, sparsifier=pb.sparsifier,
        batch_size=pb.batch_size, starts=pb.partition.starts,
        column_block=pb.partition.column_block,
        delay_means=[float(delay_means[i]) for i in group],
        sleep_seconds=[float(sleep_seconds.get(int(i), 0.0)) for i in group])


class AsyncWorkers:
    """The logical workers of one process: their shards, streams and h_i.

    A worker's draws for one message, in this order from its own stream: the
    sparsifier's uniforms, the minibatch's uniforms, then one simulated
    compute time (drawn by every engine, so that the streams, hence each
    worker's k-th blocks and rows, are the same in every engine).
    """

    def __init__(self, spec):
        self.__dict__.update(spec)
        if self.solver != SGD:
            raise ValueError("asynchronous workers run solver='sgd' only")
        p1, K = self.n_columns, self.n_outputs
        n_hosted = len(self.worker_ids)
        self.local = {w: j for j, w in enumerate(self.worker_ids)}
        self.rngs = [np.random.default_rng(s) for s in self.seeds]
        self.h = [kernel_view(np.zeros((p1 if self.use_control_variates else 0, K)))
                  for _ in range(n_hosted)]
        # sgd keeps no table: empty SAGA arrays in the kernels' layout.
        self._alpha = kernel_view(np.zeros((0, K)))
        self._abar = kernel_view(np.zeros((0, K)))
        n_blocks = len(self.starts) - 1
        max_rows = int(np.max(np.diff(self.shard_starts)))
        self._selected = np.zeros(n_blocks, dtype=np.bool_)
        self._block_list = np.empty(n_blocks, dtype=np.int64)
        self._rows = np.empty(max(self.batch_size, 1), dtype=np.int64)
        self._seen = np.zeros(max_rows, dtype=np.bool_)
        self._estimate = kernel_view(np.zeros((p1, K)))
        self._values = np.empty(p1 * K)
        self._z = np.empty(K)
        self._dz = np.empty(K)

    def respond(self, worker, W):
        """Worker ``worker``'s message at the model ``W`` (kernel layout):
        ``(block_ids, values, compute_time)``, arrays of its own.  Sleeps
        ``sleep_seconds`` first when the test hook asks for it."""
        j = self.local[worker]
        rng = self.rngs[j]
        u_blocks = self.sparsifier.draw([rng], None, 1)[0, 0]
        u_rows = rng.random(self.batch_size)
        compute_time = rng.exponential(self.delay_means[j])
        s, e = self.shard_starts[j], self.shard_starts[j + 1]
        n_sel, n_val = worker_round(
            SGD, self.loss_id, W, self.data, self.indices, self.indptr[s:e + 1],
            self.Y[s:e], self.c[s:e], self._alpha, self._abar, self.h[j], self.l2,
            self.fit_intercept, self.use_control_variates, self.sparsifier.scale,
            self.sparsifier.selection, u_blocks, u_rows, self.batch_size,
            self.starts, self.column_block, self._selected, self._block_list,
            self._rows, self._seen, self._estimate, self._z, self._dz, self._values)
        if self.sleep_seconds[j] > 0.0:
            time.sleep(self.sleep_seconds[j])
        return (self._block_list[:n_sel].copy(), self._values[:n_val].copy(),
                compute_time)


def feasible(versions, now, max_staleness):
    """Whether workers computing at ``versions`` can all be applied within
    the bound after the ``now``-th update, oldest first: the r-th oldest
    (r from 0) is applied at the earliest at update ``now + r``."""
    ages = now + np.arange(len(versions)) - np.sort(versions)
    return len(versions) == 0 or int(ages.max()) <= max_staleness


class AsyncMaster:
    """W, hbar, the version each worker computes at, and the staleness bound.

    The staleness of a message is the number of updates between the model
    it was computed at and its application.  The master applies a message
    only if, afterwards, every other worker's pending message could still be
    applied within ``max_staleness`` (``feasible``); otherwise it holds it,
    and its sender waits.  The oldest pending message is always applicable,
    so the fit never deadlocks, and with ``max_staleness >= n - 1`` workers of
    equal speed never wait.
    """

    def __init__(self, problem, W, max_staleness, counters):
        pb = self.problem = problem
        self.W = W  # kernel views, updated in place
        self.hbar = np.zeros_like(W)
        self._A = np.zeros_like(W)
        self._touched = np.zeros(pb.partition.n_blocks, dtype=np.bool_)
        self.max_staleness = int(max_staleness)
        self.counters = counters
        self.version = 0
        self.versions = np.zeros(pb.n_workers, dtype=np.int64)
        self.staleness_sum = 0
        self.staleness_max = 0
        self.n_applied = 0
        self.n_held = 0

    def can_apply(self, worker):
        others = np.delete(self.versions, worker)
        return feasible(others, self.version + 1, self.max_staleness)

    def apply(self, worker, block_ids, values):
        """Apply ``worker``'s message; it next computes at the new version."""
        pb = self.problem
        staleness = self.version - int(self.versions[worker])
        m = pb.partition.n_blocks
        aggregate_message(self._A, self._touched, block_ids, len(block_ids),
                          pb.partition.starts, values, pb.weights[worker])
        master_step(self.W, self.hbar, self._A, self._touched, pb.partition.starts,
                    pb.step_size, pb.penalty.l1, pb.fit_intercept,
                    pb.use_control_variates, 1.0 / pb.sparsifier.scale)
        self.version += 1
        self.versions[worker] = self.version
        self.staleness_sum += staleness
        self.staleness_max = max(self.staleness_max, staleness)
        self.n_applied += 1
        # Up: this message; down: the model, to its sender alone.
        add_message(self.counters, len(block_ids), m, values.nbytes)
        add_round(self.counters, 1, m, self.W.size, m, self.W.nbytes)

    @property
    def statistics(self):
        return {"max_staleness": self.staleness_max,
                "mean_staleness": self.staleness_sum / max(self.n_applied, 1),
                "held_messages": self.n_held}
