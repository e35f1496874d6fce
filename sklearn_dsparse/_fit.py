"""The shared fitting loop: shards, seed streams, epochs, stopping, divergence.

Every estimator converts its hyper-parameters to one form,

    F(W) = 1/S sum_r s_r loss(x_r W, y_r) + l2/2 ||coef||^2 + l1 ||coef||_1,

(S the total sample weight) and calls ``fit_dsparse``; it returns the
parameters and what happened.  Rows are assigned to workers as they come:
worker i gets the i-th of n contiguous, near-equal row ranges.  Data sorted by
label therefore gives heterogeneous shards, which control variates handle, at
some cost in speed; shuffle rows first for homogeneous shards.
"""

import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import njit
from sklearn.exceptions import ConvergenceWarning

from . import _lazy
from ._progress import Progress
from ._dask_data import RemoteData
from .accounting import COUNTERS, CommunicationStats, History, new_counters
from .blocks import BlockPartition
from .engines import engine_for, round_engine_for
from .losses import loss_value
from .master import constant_acceleration, convex_acceleration
from .newton import NewtonMaster, fit_newton
from .solvers import GD, SOLVERS, row_margin
from .sparsifiers import SPARSIFIERS
from .step_size import (accelerated_parameters, asynchronous_step_size,
                        auto_max_staleness, auto_step_size, gram_top_eigenvalue,
                        minibatch_smoothness, quadratic_growth_constants,
                        row_norms_squared, separable_growth_estimate)


@dataclass
class Problem:
    """Everything a worker or the master needs to know about a fit."""

    X: object  # CSR float64, rows in shard order (None: ``data`` holds them)
    Y: np.ndarray  # (n_samples, n_outputs) encoded targets
    c: np.ndarray  # per-row multipliers N_i s_r / S_i
    shard_starts: np.ndarray  # (n_workers + 1,)
    weights: np.ndarray  # w_i = S_i / S
    loss: object
    penalty: object
    fit_intercept: bool
    partition: BlockPartition
    sparsifier: object
    solver_name: str
    batch_size: int
    use_control_variates: bool
    row_scales: np.ndarray = None  # N_i / S_i: c_r = s_r row_scales[i]
    step_size: float = None
    #: The rows when they live elsewhere (``_dask_data.RemoteData``: Dask
    #: partitions, files the tasks read).
    data: object = None
    # solver="asgd"'s step coefficients (master.ACCELERATION); None for the others.
    acceleration: np.ndarray = None

    @property
    def accelerated(self):
        return self.solver_name == "asgd"

    @property
    def n_workers(self):
        return len(self.weights)

    @property
    def n_outputs(self):
        return self.Y.shape[1] if self.data is None else self.data.targets.n_outputs

    @property
    def solver(self):
        return SOLVERS[self.solver_name]

    @property
    def largest_shard(self):
        return int(np.max(np.diff(self.shard_starts)))

    @property
    def batch_size_used(self):
        """Rows of the largest shard a worker uses per round (all of them for gd)."""
        largest = self.largest_shard
        return largest if self.solver == GD else min(self.batch_size, largest)

    @property
    def rounds_per_epoch(self):
        if self.solver == GD:
            return 1
        return -(-self.largest_shard // self.batch_size)


@dataclass
class FitResult:
    coef: np.ndarray  # (n_columns, n_outputs)
    n_iter: int
    step_size: float
    batch_size: int
    communication: CommunicationStats
    history: dict


@njit(cache=True)
def _mean_loss(loss_id, W, data, indices, indptr, Y, row_weights, fit_intercept):
    K = W.shape[1]
    z = np.empty(K)
    total = 0.0
    for r in range(Y.shape[0]):
        if row_weights[r] != 0.0:
            row_margin(W, data, indices, indptr, r, fit_intercept, z)
            total += row_weights[r] * loss_value(loss_id, z, Y, r)
    return total


def objective(problem, W, row_weights):
    """F(W) of the module docstring; ``row_weights`` sum to one."""
    X = problem.X
    n_coef = W.shape[0] - int(problem.fit_intercept)
    return _mean_loss(problem.loss.id, W, X.data, X.indices, X.indptr, problem.Y,
                      row_weights, problem.fit_intercept) + problem.penalty.value(
                          W[:n_coef])


def as_csr_float64(X):
    """The layout of the rows: CSR float64, a copy only when X is not already it."""
    if sp.issparse(X):
        X = X.tocsr()
        return X if X.dtype == np.float64 else X.astype(np.float64)
    return sp.csr_matrix(np.asarray(X, dtype=np.float64))


def split_rows(n_samples, n_workers):
    """Boundaries of n contiguous row ranges whose sizes differ by at most one."""
    base, extra = divmod(n_samples, n_workers)
    sizes = np.full(n_workers, base, dtype=np.int64)
    sizes[:extra] += 1
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


BLOCKS_SENT = COUNTERS.index("blocks_sent")

#: batch_size="auto" reads at least this many non-zeros per parameter row a round.
NNZ_PER_PARAMETER_ROW = 2
#: ... and never fewer rows per worker than this (what small models get).
MIN_AUTO_BATCH = 16


def auto_batch_size(X, n_workers, n_columns):
    """Rows per worker per round for ``batch_size="auto"``, where rounds are
    not lazy (``_lazy.possible``: those cost O(nnz of the batch) and keep
    ``MIN_AUTO_BATCH``).

    Such a round costs O(d) whatever its batch: every worker builds tau dense
    blocks and the master moves every parameter (control variates, or every
    block sent), so an epoch of N / (n b) rounds costs O(N d / (n b)) beside
    the O(nnz) of its rows.  This batch makes the round's minibatches (n b
    rows of nnz / N non-zeros) read at least ``NNZ_PER_PARAMETER_ROW``
    non-zeros per parameter row, so the rows, not the messages, dominate an
    epoch; it is ``MIN_AUTO_BATCH`` on narrow data (a9a, phishing) and grows
    on wide sparse data (news20 at n_workers=16: 98).  Such data has rows far
    apart (L_max much above L_F), so the safe step grows like b and the epochs
    to a given accuracy do not (see docs/index.md, "Batch size").
    """
    nnz_per_row = max(X.nnz / X.shape[0], 1.0)
    batch = max(MIN_AUTO_BATCH,
                int(np.ceil(NNZ_PER_PARAMETER_ROW * n_columns
                            / (n_workers * nnz_per_row))))
    return min(batch, -(-X.shape[0] // n_workers))


def smoothness_constants(problem, sample_weight):
    """(L_F, L_b): smoothness of F's smooth part and of the worst worker's estimate."""
    X, pb = problem.X, problem
    curv, l2 = pb.loss.curvature, pb.penalty.l2
    total = sample_weight.sum()
    L_F = curv * gram_top_eigenvalue(X, sample_weight / total, pb.fit_intercept) + l2
    row_sq = row_norms_squared(X, pb.fit_intercept)
    L_b = 0.0
    for i in range(pb.n_workers):
        s, e = pb.shard_starts[i], pb.shard_starts[i + 1]
        n_rows = e - s
        c = pb.c[s:e]
        L_i = curv * gram_top_eigenvalue(X[s:e], c / n_rows, pb.fit_intercept) + l2
        if pb.solver == GD:
            L_b = max(L_b, L_i)
            continue
        L_max = curv * float(np.max(c * row_sq[s:e])) + l2
        L_b = max(L_b, minibatch_smoothness(L_i, L_max, n_rows, pb.batch_size))
    return L_F, L_b


def fit_dsparse(X, Y, sample_weight, *, loss, penalty, objective_scale,
                fit_intercept, solver, n_workers, n_blocks, blocks_per_worker,
                sparsifier, control_variates, batch_size, step_size, max_iter, tol,
                random_state, verbose, coef_init, n_jobs=None,
                master_address=None, asynchronous=False, max_staleness="auto"):
    """Fit W; see the module docstring for the objective.

    ``X`` is CSR float64, ``Y`` (n_samples, n_outputs) float64, ``random_state``
    a numpy RandomState (consumed once, for the seed of every stream).  Or
    ``X`` is a ``_dask_data.RemoteData`` (``Y`` and ``sample_weight`` None):
    its pieces (Dask partitions, files) make the shards, in the tasks.
    ``objective_scale`` converts F to the estimator's own objective in
    ``history["objective"]``.  ``solver="newton"`` runs ``newton.fit_newton``;
    the others run epochs of IBS rounds, or with ``asynchronous`` (sgd only)
    epochs of as many messages, each applied as it arrives
    (``asynchronous.py``).
    """
    data = X if isinstance(X, RemoteData) else None
    if data is None:
        shard_starts = split_rows(X.shape[0], n_workers)
        shard_weight = np.add.reduceat(sample_weight, shard_starts[:-1])
    else:
        if solver != "newton":
            raise ValueError(
                f"solver={solver!r} needs X in memory; data that lives elsewhere "
                "(Dask collections, FileShards) is fit by solver='newton' (the "
                "default). Set solver='newton', or fit X in memory (for Dask, "
                "X.compute()).")
        X, shard_starts, shard_weight = None, data.shard_starts, data.shard_weight
    total_weight = shard_weight.sum()
    weights = shard_weight / total_weight
    n_rows = np.diff(shard_starts)
    # c_r = N_i s_r / S_i, so that f_i = 1/N_i sum_r c_r loss_r.
    row_scales = np.divide(n_rows, shard_weight, out=np.zeros(n_workers),
                           where=shard_weight > 0)
    c = None if data is not None else sample_weight * np.repeat(row_scales, n_rows)

    n_columns = (X if data is None else data).shape[1] + int(fit_intercept)
    partition = BlockPartition(n_columns, n_blocks)
    sparsifier = SPARSIFIERS[sparsifier](n_blocks, blocks_per_worker)
    if asynchronous:
        # The master's hbar is what keeps each worker's last estimate at its
        # weight w_i whatever the arrival rates (asynchronous.py).
        control_variates = True
        max_staleness = auto_max_staleness(n_workers) if max_staleness == "auto" \
            else int(max_staleness)
    else:
        max_staleness = None
    if control_variates == "auto":
        # When every block is sent the estimate is exact: nothing to remember.
        # Newton's compressed answers vanish at the optimum by themselves.
        # asgd's sequences assume the unbiased estimate of sgd alone.
        control_variates = solver not in ("newton", "asgd") and \
            sparsifier.blocks_per_worker < sparsifier.n_blocks
    problem = Problem(X=X, Y=Y, c=c, shard_starts=shard_starts, weights=weights,
                      loss=loss, penalty=penalty, fit_intercept=fit_intercept,
                      partition=partition, sparsifier=sparsifier,
                      solver_name=solver,
                      batch_size=MIN_AUTO_BATCH if batch_size == "auto" else batch_size,
                      use_control_variates=bool(control_variates),
                      row_scales=row_scales, data=data)
    n_outputs = problem.n_outputs
    W = np.zeros((n_columns, n_outputs)) if coef_init is None else coef_init
    seeds = np.random.SeedSequence(random_state.randint(np.iinfo(np.int32).max))
    if solver == "newton":
        return _fit_newton(problem, W, seeds, objective_scale=objective_scale,
                           max_iter=max_iter, tol=tol, verbose=verbose, n_jobs=n_jobs,
                           master_address=master_address)
    if batch_size == "auto" and not _lazy.possible(problem):
        problem.batch_size = auto_batch_size(X, n_workers, n_columns)
    if solver == "asgd":
        step_size = _accelerate(problem, step_size, sample_weight)
    elif step_size == "auto":
        L_F, L_b = smoothness_constants(problem, sample_weight)
        step_size = auto_step_size(sparsifier, weights, L_F, L_b)
        if asynchronous:
            step_size = asynchronous_step_size(step_size, max_staleness)
    problem.step_size = float(step_size)

    row_weights = sample_weight / total_weight
    history = History()
    f0 = objective(problem, W, row_weights)
    _check_start(f0)
    # Losses are non-negative: a run that climbs far above both its start and
    # the objective at zero is diverging, even where it stays finite (the
    # logistic loss grows only linearly).
    divergence_bound = 10.0 * max(f0, objective(problem, np.zeros_like(W), row_weights))
    engine = engine_for(n_jobs, master_address, max_staleness)
    progress = Progress(verbose, solver, "epoch", max_iter)
    progress.start(n_workers, W.size)
    with engine:
        # history's seconds are time spent fitting: the engine's start and its
        # rounds, not the objective evaluations history itself needs.
        seconds = -time.perf_counter()
        engine.start(problem, W, seeds.spawn(n_workers + 1))
        seconds += time.perf_counter()
        history.record(objective_scale * f0, engine.counters, seconds)
        converged = False
        f = f0
        for epoch in range(1, max_iter + 1):
            W_before = engine.coef.copy()
            blocks_before = engine.counters[BLOCKS_SENT]
            seconds -= time.perf_counter()
            engine.run_epoch(problem.rounds_per_epoch)
            seconds += time.perf_counter()
            W = engine.coef
            f = objective(problem, W, row_weights)
            _check_divergence(f, f0, divergence_bound, W, epoch, problem.step_size)
            history.record(objective_scale * f, engine.counters, seconds)
            change = np.max(np.abs(W - W_before))
            scale = max(np.max(np.abs(W)), np.finfo(np.float64).tiny)
            progress.update(epoch, objective_scale * f, engine.counters,
                            f", relative change {change / scale:.3g}")
            # An epoch in which no worker sent a block (possible with
            # sparsifier="bernoulli") moved W by hbar alone, or not at all:
            # its change says nothing about convergence.
            sent = engine.counters[BLOCKS_SENT] > blocks_before
            if change <= tol * scale and sent:
                converged = True
                break
        W = engine.coef.copy()
        counters = engine.counters.copy()
        wire_bytes = engine.wire_bytes
        statistics = engine.statistics
    progress.end(epoch, objective_scale * f, counters,
                 "converged" if converged else "stopped at max_iter")
    if not converged:
        warnings.warn(
            f"The max_iter={max_iter} epochs were reached before the relative "
            f"change of the coefficients fell below tol={tol}: increase "
            "max_iter, or the step size.", ConvergenceWarning, stacklevel=3)
    return FitResult(coef=W, n_iter=epoch, step_size=problem.step_size,
                     batch_size=problem.batch_size_used,
                     communication=CommunicationStats(counters, wire_bytes, statistics),
                     history=history.as_dict())


def _accelerate(problem, step_size, sample_weight):
    """Set asgd's schedule on ``problem`` (docs/method.md, "Accelerated SGD");
    return its step.

    A constant Hessian (the squared loss) gives mu, L and rho exactly, on the
    span the iterates' error lives in: the strongly convex schedule.
    Otherwise (the logistic loss) the convex schedule, with L the smoothness
    of F and rho the estimate of ``separable_growth_estimate``.
    """
    pb = problem
    eta = None if step_size == "auto" else float(step_size)
    if not pb.loss.constant_curvature:
        L_F, L_b = smoothness_constants(pb, sample_weight)
        rho = separable_growth_estimate(pb.sparsifier.scale, L_F, L_b)
        pb.acceleration = convex_acceleration(rho)
        return 1.0 / (rho * L_F) if eta is None else eta
    mu, L, rho = quadratic_growth_constants(
        pb.X, pb.c, pb.shard_starts, pb.weights, pb.penalty.l2, pb.fit_intercept,
        pb.batch_size, pb.sparsifier.scale)
    if eta is not None and not mu * eta * rho < 1.0:
        raise ValueError(
            f"step_size={eta:.4g} is too large for solver='asgd': its sequences "
            f"need step_size < 1 / (mu rho) = {1.0 / (mu * rho):.4g} (mu = {mu:.4g}, "
            f"rho = {rho:.4g}). Set a smaller step_size or step_size='auto'.")
    eta, momentum, lookahead = accelerated_parameters(mu, L, rho, eta)
    pb.acceleration = constant_acceleration(momentum, lookahead)
    return eta


def _fit_newton(problem, W, seeds, *, objective_scale, max_iter, tol, verbose,
                n_jobs, master_address):
    counters = new_counters()
    master = NewtonMaster(problem, counters)
    history = History()
    progress = Progress(verbose, "newton", "iteration", max_iter)
    progress.start(problem.n_workers, W.size)
    started = time.perf_counter()

    def record(F, W):
        _check_start(F)
        history.record(objective_scale * F, counters, time.perf_counter() - started)

    def report(iteration, F, decrement, step):
        progress.update(iteration, objective_scale * F, counters,
                        f", estimated suboptimality {objective_scale * decrement / 2:.3g}"
                        f" before a step of {step:.3g}")

    placed = problem.data is not None and problem.data.places_tasks
    with round_engine_for(-1 if placed else n_jobs,
                          master_address) as engine:
        engine.start(problem, master, seeds.spawn(problem.n_workers + 1))
        W, n_iter, converged, reason = fit_newton(
            engine, problem, W, tol=tol, max_iter=max_iter, record=record,
            report=report)
        wire_bytes = engine.wire_bytes
    progress.end(n_iter, history.last_objective, counters,
                 "converged" if converged else "stopped")
    if not converged:
        warnings.warn(
            f"The fit stopped before the estimated suboptimality fell below "
            f"tol^2 / 2 = {tol * tol / 2:.3g} of the objective: "
            + (reason or f"the max_iter={max_iter} iterations were reached; "
               "increase max_iter") + ".", ConvergenceWarning, stacklevel=3)
    return FitResult(coef=W, n_iter=n_iter, step_size=None,
                     batch_size=problem.largest_shard,
                     communication=CommunicationStats(counters, wire_bytes),
                     history=history.as_dict())


def _check_start(F):
    """No step size helps an objective that is not finite where the fit
    starts: the data are out of the floating-point range of the loss."""
    if not np.isfinite(F):
        raise FloatingPointError(
            f"The objective is {F} at the starting point: the data overflow the "
            "loss. Scale X (and y for a regression), e.g. with "
            "sklearn.preprocessing.StandardScaler.")


def _check_divergence(f, f0, bound, W, epoch, step_size):
    if np.isfinite(f) and np.all(np.isfinite(W)) and f <= bound:
        return
    raise FloatingPointError(
        f"The fit diverged at epoch {epoch} with step_size={step_size:.4g} "
        f"(objective {f:.4g}, started at {f0:.4g}). Set a smaller step_size, "
        f"e.g. step_size={step_size / 10:.4g}, or step_size='auto'.")
