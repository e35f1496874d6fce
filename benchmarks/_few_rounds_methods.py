"""The problems, the communication meter and the candidate methods of
``study_few_rounds.py`` (see its docstring for what each method is).

Parameters are (d, K) arrays: d = n_features + 1 rows (intercept last), K = 1
for binary logistic and ridge, K = n_classes for multinomial.  Blocks cut the
rows, so a block holds the same features for every class.  Every method is a
function ``method(problem, meter, rng, **hyper)`` that iterates until
``meter.record`` raises ``Finished`` (target reached, or a cap hit).
"""

import time

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numba import njit
from scipy.special import expit, log_softmax, softmax

HEADER_BYTES = 16
ID_BYTES = 4
VALUE_BYTES = 8
LOSS_CODES = {"logistic": 0, "squared": 1, "multinomial": 2}
# Largest curvature of one row's loss per unit ||a_j||^2: sigmoid' <= 1/4,
# squared = 1, softmax Jacobian <= 1/2 (Boehning's bound).
CURVATURE_BOUND = {"logistic": 0.25, "squared": 1.0, "multinomial": 0.5}
DENSE_HESSIAN_MAX_PARAMS = 2000  # above this, local solves use Hessian-vector CG


def dense_message_bytes(n_values):
    return HEADER_BYTES + VALUE_BYTES * n_values


# ----------------------------------------------------------------- problem

class Problem:
    """F(x) = sum_i w_i f_i(x), w_i = N_i / N, over contiguous near-equal shards.

    f_i(x) = mean loss over shard i + lam / 2 ||coef||^2 (intercept unpenalised).
    """

    def __init__(self, X, y, loss, lam, n_workers):
        n_samples = X.shape[0]
        self.loss, self.lam, self.n_workers = loss, lam, n_workers
        self.A = sp.hstack([X, np.ones((n_samples, 1))], format="csr")
        if loss == "multinomial":
            classes, index = np.unique(y, return_inverse=True)
            self.Y = np.eye(len(classes))[index]
        else:
            self.Y = np.asarray(y, dtype=np.float64)[:, None]
        self.d, self.K = self.A.shape[1], self.Y.shape[1]
        self.n_params = self.d * self.K
        self.penalty = np.ones((self.d, 1))
        self.penalty[-1] = 0.0
        self.bounds = np.linspace(0, n_samples, n_workers + 1).astype(int)
        self.sizes = np.diff(self.bounds)
        self.weights = self.sizes / n_samples
        self.shards = [self.A[a:b] for a, b in zip(self.bounds[:-1], self.bounds[1:])]
        self.targets = [self.Y[a:b] for a, b in zip(self.bounds[:-1], self.bounds[1:])]
        # One product with the block-diagonal matrix gives every worker's
        # margins at its own iterate (the local-training methods).
        self.stacked = sp.block_diag(self.shards, format="csr")
        self.stacked_T = self.stacked.T.tocsr()

    def _link(self, Z, Y):
        """Per-row loss and its derivative in the margins Z."""
        if self.loss == "logistic":
            return np.logaddexp(0, Z) - Y * Z, expit(Z) - Y
        if self.loss == "squared":
            return 0.5 * (Z - Y) ** 2, Z - Y
        log_p = log_softmax(Z, axis=1)
        return -(Y * log_p).sum(axis=1, keepdims=True), np.exp(log_p) - Y

    def _penalty_value(self, x):
        return 0.5 * self.lam * float(np.sum(self.penalty * x * x))

    def value_grad(self, i, x):
        """f_i(x), grad f_i(x) and the loss derivatives per row (one pass)."""
        A, Y = self.shards[i], self.targets[i]
        values, R = self._link(A @ x, Y)
        grad = A.T @ R / A.shape[0] + self.lam * self.penalty * x
        return values.mean() + self._penalty_value(x), grad, R

    def _derivative(self, Z, Y):
        if self.loss == "logistic":
            return expit(Z) - Y
        if self.loss == "squared":
            return Z - Y
        return softmax(Z, axis=1) - Y

    def all_grads(self, X):
        """grad f_i(X[i]) for every worker i at once; X has shape (n, d, K)."""
        Z = self.stacked @ X.reshape(-1, self.K)
        sums = (self.stacked_T @ self._derivative(Z, self.Y)).reshape(X.shape)
        return sums / self.sizes[:, None, None] + self.lam * self.penalty * X

    def curvature(self, i, x):
        """The state a Hessian-vector product at x needs (one pass)."""
        Z = self.shards[i] @ x
        if self.loss == "logistic":
            s = expit(Z)
            return s * (1 - s)
        if self.loss == "squared":
            return np.ones_like(Z)
        return softmax(Z, axis=1)

    def hvp(self, i, state, V):
        """(Hessian of f_i at the state's point) V: one pass."""
        A = self.shards[i]
        Z = A @ V
        if self.loss == "multinomial":
            PZ = state * Z
            W = PZ - state * PZ.sum(axis=1, keepdims=True)
        else:
            W = state * Z
        return A.T @ W / A.shape[0] + self.lam * self.penalty * V

    def dense_hessian(self, i, x):
        """Hessian of f_i at x as a dense (d, d) matrix, K = 1 only (one pass)."""
        A = self.shards[i]
        c = self.curvature(i, x)[:, 0] / A.shape[0]
        H = _weighted_gram(A.indptr, A.indices, A.data, c, self.d)
        return H + self.lam * np.diag(self.penalty[:, 0])

    def F(self, x):
        values, _ = self._link(self.A @ x, self.Y)
        return values.mean() + self._penalty_value(x)

    def grad(self, x):
        _, R = self._link(self.A @ x, self.Y)
        return self.A.T @ R / self.A.shape[0] + self.lam * self.penalty * x

    def smoothness(self):
        """L_i for every worker: an upper bound on the curvature of f_i."""
        if hasattr(self, "_smoothness"):
            return self._smoothness
        bound = []
        for A in self.shards:
            gram = spla.LinearOperator((self.d, self.d), dtype=np.float64,
                                       matvec=lambda v, A=A: A.T @ (A @ v) / A.shape[0])
            top = spla.eigsh(gram, k=1, which="LA", tol=1e-3,
                             v0=np.ones(self.d), return_eigenvectors=False)[0]
            bound.append(CURVATURE_BOUND[self.loss] * top + self.lam)
        self._smoothness = np.array(bound)
        return self._smoothness

    def max_row_smoothness(self, i):
        """Largest smoothness of one row's term of f_i (SAGA's step)."""
        if not hasattr(self, "_row_smoothness"):
            squares = self.A.multiply(self.A).sum(axis=1)
            row_norms = np.asarray(squares).ravel()
            self._row_smoothness = [
                CURVATURE_BOUND[self.loss] * row_norms[a:b].max() + self.lam
                for a, b in zip(self.bounds[:-1], self.bounds[1:])]
        return self._row_smoothness[i]

    def zeros(self):
        return np.zeros((self.d, self.K))


@njit(cache=True)
def _weighted_gram(indptr, indices, data, weights, d):
    """A^T diag(weights) A for a CSR A (scipy's sparse product is ~10x slower
    at these sizes, and forming local Hessians dominates DANE's time)."""
    H = np.zeros((d, d))
    for j in range(len(indptr) - 1):
        for p in range(indptr[j], indptr[j + 1]):
            scaled = weights[j] * data[p]
            for q in range(indptr[j], indptr[j + 1]):
                H[indices[p], indices[q]] += scaled * data[q]
    return H


# ----------------------------------------------------------- communication

class BlockSparsifier:
    """Independent block sparsification ("ibs") or the identity ("none").

    m = min(d, n) contiguous row blocks (sizes differ by at most one); each
    call draws tau = max(1, round(m / n)) of them uniformly without
    replacement, independently of every other call, and rescales by m / tau.
    """

    def __init__(self, problem, kind, rng):
        self.kind, self.rng, self.K = kind, rng, problem.K
        self.m = min(problem.d, problem.n_workers)
        self.tau = max(1, round(self.m / problem.n_workers))
        starts = np.linspace(0, problem.d, self.m + 1).astype(int)
        self.block_of_row = np.repeat(np.arange(self.m), np.diff(starts))
        # E||C(v) - v||^2 = omega ||v||^2: each block is kept with probability
        # tau / m and scaled by m / tau, whatever the block sizes.
        self.omega = 0.0 if kind == "none" else self.m / self.tau - 1

    @property
    def scale(self):
        return 1.0 if self.kind == "none" else self.m / self.tau

    def draw(self):
        """A fresh row mask and the bytes of its message."""
        if self.kind == "none" or self.tau == self.m:
            rows = np.ones(len(self.block_of_row), bool)
        else:
            blocks = self.rng.choice(self.m, self.tau, replace=False)
            rows = np.isin(self.block_of_row, blocks)
        return rows, self.message_bytes(rows)

    def message_bytes(self, rows, values_per_entry=1):
        """A message of the masked rows: no ids when every block is sent."""
        ids = 0 if self.kind == "none" or self.tau == self.m else self.tau
        return (HEADER_BYTES + ID_BYTES * ids
                + VALUE_BYTES * values_per_entry * self.K * int(rows.sum()))

    def compress(self, v):
        """(C(v), the rows it keeps, its message bytes)."""
        rows, nbytes = self.draw()
        return np.where(rows[:, None], self.scale * v, 0.0), rows, nbytes


class Finished(Exception):
    """Raised by Meter.record when the run reached its target or a cap."""


class Meter:
    """Counts rounds, bytes and passes, and records the relative suboptimality.

    A round is one exchange: every worker sends one message up and the master
    broadcasts one down (downlink counted once per worker).  A pass is every
    worker touching every row of its shard once: ``passes`` is rows touched
    over all workers divided by N.
    """

    def __init__(self, problem, f_star, target, max_rounds, max_seconds):
        self.problem, self.f_star, self.target = problem, f_star, target
        self.max_rounds, self.deadline = max_rounds, time.monotonic() + max_seconds
        self.rounds = self.uplink = self.downlink = 0
        self.passes = 0.0
        self.rows = []  # (rounds, uplink, downlink, passes, gap)
        self.start_gap = None
        self.stop_reason = ""

    def exchange(self, uplink_bytes, broadcast_values=None):
        """One round: the workers' messages (total bytes) and a dense broadcast."""
        if broadcast_values is None:
            broadcast_values = self.problem.n_params
        self.rounds += 1
        self.uplink += int(uplink_bytes)
        self.downlink += self.problem.n_workers * dense_message_bytes(broadcast_values)

    def dense_exchange(self, extra_values=0):
        """Every worker sends n_params (+ extra) values, the master n_params."""
        self.exchange(self.problem.n_workers
                      * dense_message_bytes(self.problem.n_params + extra_values))

    def work(self, passes_per_worker):
        """Each worker touched its rows ``passes_per_worker[i]`` times (or all
        the same number)."""
        self.passes += float(np.dot(np.broadcast_to(passes_per_worker,
                                                    self.problem.n_workers),
                                    self.problem.weights))

    def record(self, x=None, value=None):
        value = self.problem.F(x) if value is None else value
        gap = (value - self.f_star) / abs(self.f_star)
        self.rows.append((self.rounds, self.uplink, self.downlink, self.passes, gap))
        if gap <= self.target:
            raise Finished
        if self.start_gap is None:
            self.start_gap = max(gap, 1.0)
        if not np.isfinite(gap) or gap > 100 * self.start_gap:
            self.stop_reason = "diverged"
        elif self.rounds >= self.max_rounds:
            self.stop_reason = "round cap"
        elif time.monotonic() > self.deadline:
            self.stop_reason = "time cap"
        if self.stop_reason:
            raise Finished


# ------------------------------------------------------------ 1. L-BFGS

def lbfgs(problem, meter, rng, x0=None, memory=10):
    """scipy L-BFGS-B; every f+g evaluation is one dense round."""
    n = problem.n_workers
    shape = (problem.d, problem.K)

    def value_grad(flat):
        x = flat.reshape(shape)
        value, grad = 0.0, problem.zeros()
        for i in range(n):
            f_i, g_i, _ = problem.value_grad(i, x)
            value += problem.weights[i] * f_i
            grad += problem.weights[i] * g_i
        meter.work(1)
        meter.dense_exchange(extra_values=1)  # g_i and f_i up, the point down
        meter.record(value=value)
        return value, grad.ravel()

    x0 = problem.zeros() if x0 is None else x0
    scipy.optimize.minimize(value_grad, x0.ravel(), jac=True, method="L-BFGS-B",
                            options=dict(maxcor=memory, maxiter=10**7, maxfun=10**7,
                                         ftol=0.0, gtol=0.0))


# ------------------------------------------------------ local sub-solvers

def _local_objective(problem, i, x, shift, mu):
    """y -> (phi(y), grad phi(y)), phi(y) = f_i(y) + <shift, y> + mu/2 ||y - x||^2."""
    def value_grad(y):
        f, g, _ = problem.value_grad(i, y)
        return (f + np.vdot(shift, y) + 0.5 * mu * np.vdot(y - x, y - x),
                g + shift + mu * (y - x))
    return value_grad


def _cg(apply, rhs, max_iter, rtol):
    """Conjugate gradients from 0 for apply(s) = rhs; (s, products used)."""
    s = np.zeros_like(rhs)
    r = rhs.copy()
    q = r.copy()
    rr = np.vdot(r, r)
    stop = rtol * np.sqrt(rr)
    for k in range(1, max_iter + 1):
        Aq = apply(q)
        a = rr / np.vdot(q, Aq)
        s += a * q
        r -= a * Aq
        rr_new = np.vdot(r, r)
        if np.sqrt(rr_new) <= stop:
            return s, k
        q = r + (rr_new / rr) * q
        rr = rr_new
    return s, max_iter


def newton_direction(problem, i, x, rhs, mu, cg_iters=50, cg_rtol=1e-2):
    """(H_i(x) + mu I)^-1 rhs: dense solve for small models, else CG on
    Hessian-vector products.  Returns (direction, passes)."""
    if problem.K == 1 and problem.n_params <= DENSE_HESSIAN_MAX_PARAMS:
        H = problem.dense_hessian(i, x) + mu * np.eye(problem.d)
        return np.linalg.solve(H, rhs), 1
    state = problem.curvature(i, x)
    s, products = _cg(lambda v: problem.hvp(i, state, v) + mu * v, rhs, cg_iters, cg_rtol)
    return s, 1 + products


def local_newton(problem, i, x, value_at_x, grad_at_x, shift, mu, rtol=1e-8,
                 max_steps=10):
    """argmin_y f_i(y) + <shift, y> + mu/2 ||y - x||^2 by damped Newton from x.

    f_i(x) and grad f_i(x) are already known (no pass).  Stops when the
    local gradient falls below rtol times its value at x.  Returns (y, passes).
    """
    value_grad = _local_objective(problem, i, x, shift, mu)
    y, g = x, grad_at_x + shift
    phi = value_at_x + np.vdot(shift, x)
    passes = 0
    stop = rtol * np.linalg.norm(g)
    for _ in range(max_steps):
        step, used = newton_direction(problem, i, y, -g, mu, cg_rtol=1e-3)
        passes += used
        t, slope = 1.0, np.vdot(g, step)
        while True:  # Armijo backtracking on phi
            y_new = y + t * step
            phi_new, g_new = value_grad(y_new)
            passes += 1
            if phi_new <= phi + 1e-4 * t * slope or t < 1e-6:
                break
            t *= 0.5
        y, phi, g = y_new, phi_new, g_new
        if np.linalg.norm(g) <= stop:
            break
    return y, passes


@njit(cache=True, inline="always")
def _row_derivative(loss_code, z, Y, j, out):
    """d loss / d z of row j (logistic 0, squared 1, multinomial 2); z is
    overwritten for the multinomial."""
    K = z.shape[0]
    if loss_code == 0:
        out[0] = 1.0 / (1.0 + np.exp(-z[0])) - Y[j, 0]
    elif loss_code == 1:
        out[0] = z[0] - Y[j, 0]
    else:
        top = z.max()
        total = 0.0
        for c in range(K):
            z[c] = np.exp(z[c] - top)
            total += z[c]
        for c in range(K):
            out[c] = z[c] / total - Y[j, c]


@njit(cache=True)
def _saga_epochs(indptr, indices, data, Y, R, y, x, shift, gbar, lam, penalty,
                 mu, step, rows, loss_code):
    """SAGA on phi(y) = mean_j loss(a_j y) + lam/2||pen y||^2 + <shift,y> + mu/2||y-x||^2.

    R holds each row's loss derivative at the point it was last seen, gbar =
    A^T R / N.  The dense part of each step, y_k <- a_k y_k + b_k with
    a_k = 1 - step (lam pen_k + mu) and b_k = step (mu x_k - gbar_k - shift_k),
    is applied lazily: a coordinate catches up when a row touches it (gbar_k
    only changes then) and all catch up at the end.  y, R, gbar are updated
    in place.
    """
    d, K = y.shape
    n_rows = R.shape[0]
    last = np.zeros(d, np.int64)
    a = 1.0 - step * (lam * penalty + mu)
    z = np.empty(K)
    delta = np.empty(K)

    def catch_up(k, q):
        if q == 0:
            return
        if a[k] == 1.0:
            for c in range(K):
                y[k, c] += q * step * (mu * x[k, c] - gbar[k, c] - shift[k, c])
        else:
            aq = a[k] ** q
            for c in range(K):
                b = step * (mu * x[k, c] - gbar[k, c] - shift[k, c])
                y[k, c] = aq * y[k, c] + b * (1.0 - aq) / (1.0 - a[k])

    for t in range(rows.shape[0]):
        j = rows[t]
        for p in range(indptr[j], indptr[j + 1]):
            k = indices[p]
            catch_up(k, t - last[k])
            last[k] = t
        for c in range(K):
            z[c] = 0.0
        for p in range(indptr[j], indptr[j + 1]):
            for c in range(K):
                z[c] += data[p] * y[indices[p], c]
        _row_derivative(loss_code, z, Y, j, delta)
        for c in range(K):
            delta[c] -= R[j, c]
        for p in range(indptr[j], indptr[j + 1]):
            k = indices[p]
            catch_up(k, 1)
            last[k] = t + 1
            for c in range(K):
                y[k, c] -= step * delta[c] * data[p]
                gbar[k, c] += delta[c] * data[p] / n_rows
        for c in range(K):
            R[j, c] += delta[c]
    for k in range(d):
        catch_up(k, rows.shape[0] - last[k])


def local_saga(problem, i, x, grad_at_x, derivatives, shift, mu, epochs, rng):
    """``epochs`` SAGA epochs on the DANE local problem from y = x.

    The table (and its mean) start from the loss derivatives at x, which the
    gradient pass of the same iteration computed (no extra pass).
    Returns (y, passes)."""
    n_rows = problem.sizes[i]
    A = problem.shards[i]
    step = 1.0 / (3.0 * (problem.max_row_smoothness(i) + mu))
    R = np.array(derivatives, dtype=np.float64)
    gbar = grad_at_x - problem.lam * problem.penalty * x
    y = x.copy()
    rows = rng.integers(0, n_rows, epochs * n_rows)
    _saga_epochs(A.indptr, A.indices, A.data, problem.targets[i], R, y, x,
                 np.ascontiguousarray(shift), gbar, problem.lam, problem.penalty[:, 0],
                 mu, step, rows, LOSS_CODES[problem.loss])
    return y, epochs


# ------------------------------------------------- gradient estimators

class GradientAverage:
    """sum_i w_i g_i, sent dense, or with IBS and DIANA control variates.

    With control variates each worker sends C(g_i - h_i) and sets h_i = g_i on
    the rows it sent; the master keeps hbar = sum_i w_i h_i and estimates
    ghat = hbar + sum_i w_i C(g_i - h_i).  The h_i start from a dense round.
    """

    def __init__(self, problem, meter, sparsifier):
        self.problem, self.meter, self.sparsifier = problem, meter, sparsifier
        self.h = None

    def __call__(self, grads):
        weights = self.problem.weights
        if self.sparsifier.kind == "none" or self.h is None:
            self.meter.dense_exchange()
            if self.sparsifier.kind != "none":
                self.h = [g.copy() for g in grads]
                self.hbar = sum(w * g for w, g in zip(weights, grads))
            return sum(w * g for w, g in zip(weights, grads))
        ghat, uplink = self.hbar.copy(), 0
        for i, g in enumerate(grads):
            difference = g - self.h[i]
            message, rows, nbytes = self.sparsifier.compress(difference)
            ghat += weights[i] * message
            self.hbar[rows] += weights[i] * difference[rows]
            self.h[i][rows] = g[rows]
            uplink += nbytes
        self.meter.exchange(uplink)
        return ghat


# ------------------------------------------------------------- 3-4. DANE

def dane(problem, meter, rng, mu, eta, gradient="none", step="none",
         local_solver="newton", epochs=1):
    """DANE: a gradient round, then a round of local solutions y_i - x.

    ``local_solver="newton"`` solves the local problem to 1e-8 relative gradient
    (``local_newton``); ``local_solver="saga"`` runs ``epochs`` SAGA epochs.
    ``gradient`` / ``step`` pick the compressor of each phase ("none" or
    "ibs"; the gradient phase uses DIANA control variates under IBS).
    """
    n, weights = problem.n_workers, problem.weights
    average_gradient = GradientAverage(problem, meter,
                                       BlockSparsifier(problem, gradient, rng))
    step_sparsifier = BlockSparsifier(problem, step, rng)
    x = problem.zeros()
    meter.record(x)
    while True:
        evaluations = [problem.value_grad(i, x) for i in range(n)]
        meter.work(1)
        grads = [g for _, g, _ in evaluations]
        ghat = average_gradient(grads)
        move, uplink, passes = problem.zeros(), 0, np.zeros(n)
        for i in range(n):
            shift = ghat - grads[i]
            if local_solver == "newton":
                y, passes[i] = local_newton(problem, i, x, evaluations[i][0], grads[i],
                                            shift, mu)
            else:
                y, passes[i] = local_saga(problem, i, x, grads[i], evaluations[i][2],
                                          shift, mu, epochs, rng)
            message, _, nbytes = step_sparsifier.compress(y - x)
            move += weights[i] * message
            uplink += nbytes
        meter.work(passes)
        meter.exchange(uplink)
        x = x + eta * move
        meter.record(x)


# --------------------------------------------------- 5. GIANT-L-BFGS

def giant_lbfgs(problem, meter, rng, mu, memory, direction="none"):
    """L-BFGS whose initial inverse Hessian is sum_i w_i (H_i(x) + mu I)^-1.

    Each iteration: the master runs the first loop of the two-loop recursion
    on g, broadcasts q, the workers send r_i = (H_i(x) + mu I)^-1 q
    (compressed by ``direction``), the master finishes the recursion and
    runs an Armijo backtracking line search from step 1, one dense f+g round
    per trial point.  With memory 0 this is GIANT (Wang et al., 2018) with
    a line search.
    """
    n, weights = problem.n_workers, problem.weights
    sparsifier = BlockSparsifier(problem, direction, rng)

    def value_grad(x):
        value, grad = 0.0, problem.zeros()
        for i in range(n):
            f_i, g_i, _ = problem.value_grad(i, x)
            value += weights[i] * f_i
            grad += weights[i] * g_i
        meter.work(1)
        meter.dense_exchange(extra_values=1)
        meter.record(value=value)
        return value, grad

    x = problem.zeros()
    f, g = value_grad(x)
    steps, changes = [], []
    while True:
        q, alphas = g.copy(), []
        for s, y in zip(reversed(steps), reversed(changes)):
            alphas.append(np.vdot(s, q) / np.vdot(y, s))
            q -= alphas[-1] * y
        r, uplink, passes = problem.zeros(), 0, np.zeros(n)
        for i in range(n):
            r_i, passes[i] = newton_direction(problem, i, x, q, mu)
            message, _, nbytes = sparsifier.compress(r_i)
            r += weights[i] * message
            uplink += nbytes
        meter.work(passes)
        meter.exchange(uplink)
        for s, y, alpha in zip(steps, changes, reversed(alphas)):
            r += s * (alpha - np.vdot(y, r) / np.vdot(y, s))
        descent, slope = -r, -np.vdot(g, r)
        if slope >= 0:  # a compressed direction can point uphill: restart
            descent, slope = -g, -np.vdot(g, g)
            steps, changes = [], []
        t = 1.0
        while True:
            x_new = x + t * descent
            f_new, g_new = value_grad(x_new)
            if f_new <= f + 1e-4 * t * slope or t < 1e-8:
                break
            t *= 0.5
        s, y = x_new - x, g_new - g
        if np.vdot(s, y) > 1e-12 * np.linalg.norm(s) * np.linalg.norm(y):
            steps.append(s)
            changes.append(y)
            if len(steps) > memory:
                steps.pop(0)
                changes.pop(0)
        x, f, g = x_new, f_new, g_new


# ------------------------------------------------------ 6. Scaffnew

def _uniform_average_form(problem):
    """Factors c_i = n w_i: F = (1/n) sum_i c_i f_i, the form the
    local-training papers state (uniform average over workers)."""
    return problem.n_workers * problem.weights


def scaffnew(problem, meter, rng, gamma_L, p_factor):
    """Scaffnew / ProxSkip on F = (1/n) sum_i c_i f_i.

    x_i <- x_i - gamma (c_i grad f_i(x_i) - h_i) every local step; with
    probability p (a shared coin) the workers send x_i, the master
    broadcasts xbar = mean_i x_i, and h_i <- h_i + p / gamma (xbar - x_i),
    x_i <- xbar.  gamma = gamma_L / L, L = max_i c_i L_i;
    p = min(1, p_factor sqrt(gamma mu)), mu = lam min_i c_i (theory: p_factor 1).
    """
    c = _uniform_average_form(problem)[:, None, None]
    L = float(np.max(c[:, 0, 0] * problem.smoothness()))
    gamma = gamma_L / L
    p = min(1.0, p_factor * np.sqrt(gamma * problem.lam * c.min()))
    X = np.zeros((problem.n_workers, problem.d, problem.K))
    H = np.zeros_like(X)
    meter.record(X[0])
    while True:
        X = X - gamma * (c * problem.all_grads(X) - H)
        meter.work(1)
        if rng.random() < p:
            mean = X.mean(axis=0)
            H += (p / gamma) * (mean - X)
            X[:] = mean
            meter.dense_exchange()
            meter.record(mean)


# -------------------------------------------------------- 7. LoCoDL

def locodl(problem, meter, rng, gamma_L, p_factor, chi_factor, compressor="ibs"):
    """LoCoDL (Condat, Maranjyan & Richtarik, 2024) with IBS.

    Split F = (1/n) sum_i f'_i + g, f'_i(x) = c_i loss_i(x) + lam/4 ||pen x||^2,
    g(y) = lam/4 ||pen y||^2 (each part strongly convex in the coefficients).
    Every iteration, on every worker and (replicated) for y:
      xh_i = x_i - gamma grad f'_i(x_i) + gamma u_i,   yh = y - gamma grad g(y) + gamma v.
    With probability p (shared coin), a round:
      d_i = C_i(xh_i - yh)  (sent up),   dbar = (1/2n) sum_i d_i  (broadcast),
      x_i = (1 - rho) xh_i + rho (yh + dbar),   y = yh + rho dbar,
      u_i += s (dbar - d_i),   v += s dbar,   s = p chi / (gamma (1 + 2 omega));
    otherwise x_i = xh_i, y = yh.  The invariant (1/n) sum u_i + v = 0 holds.
    gamma = gamma_L / L (L the largest smoothness of the f'_i and g),
    chi = rho = min(1, chi_factor / (1 + omega)), p = min(1, p_factor sqrt(gamma mu)),
    mu = lam / 2 (the strong convexity of each part).
    """
    c = _uniform_average_form(problem)
    n = problem.n_workers
    quarter = 0.5 * problem.lam * problem.penalty  # grad of lam/4 ||pen x||^2 = quarter x
    L = float(np.max(c * (problem.smoothness() - problem.lam) + problem.lam / 2))
    gamma = gamma_L / L
    sparsifier = BlockSparsifier(problem, compressor, rng)
    omega = sparsifier.omega
    chi = rho = min(1.0, chi_factor / (1 + omega))
    p = min(1.0, p_factor * np.sqrt(gamma * problem.lam / 2))
    dual_step = p * chi / (gamma * (1 + 2 * omega))
    X = np.zeros((n, problem.d, problem.K))
    U = np.zeros_like(X)
    y, v = problem.zeros(), problem.zeros()
    meter.record(y)
    while True:
        loss_grads = problem.all_grads(X) - problem.lam * problem.penalty * X
        X_hat = X - gamma * (c[:, None, None] * loss_grads + quarter * X) + gamma * U
        y_hat = y - gamma * quarter * y + gamma * v
        meter.work(1)
        if rng.random() >= p:
            X, y = X_hat, y_hat
            continue
        D, uplink = np.empty_like(X), 0
        for i in range(n):
            D[i], _, nbytes = sparsifier.compress(X_hat[i] - y_hat)
            uplink += nbytes
        d_bar = D.sum(axis=0) / (2 * n)
        X = (1 - rho) * X_hat + rho * (y_hat + d_bar)
        y = y_hat + rho * d_bar
        U += dual_step * (d_bar - D)
        v += dual_step * d_bar
        meter.exchange(uplink)
        meter.record(y)


# -------------------------------------------------------- 8. ADIANA

def adiana(problem, meter, rng, eta_rule, compressor="ibs"):
    """ADIANA (Li, Kovalev, Qian & Richtarik, 2020), weighted by w_i.

      x = theta1 z + theta2 w + (1 - theta1 - theta2) y
      worker i, one mask per round for both messages:
        m_i = C_i(grad f_i(w) - h_i),  mt_i = C_i(grad f_i(x) - h_i),  h_i += alpha m_i
      g = hbar + sum_i w_i mt_i,   hbar += alpha sum_i w_i m_i
      y+ = x - eta g,   z+ = beta z + (1 - beta) x + (gamma / eta)(y+ - x)
      w+ = y (the old y) with probability p, else w
    alpha = 1/(1+omega), theta2 = 1/2, theta1 = min(1/4, sqrt(eta mu / p)),
    gamma = eta / (2 (theta1 + eta mu)), beta = 1 - gamma mu,
    p = min(1, max(1, sqrt(n / (32 omega)) - 1) / (2 (1 + omega))),
    eta_theory = min(1/(2L), n / (64 omega (2 p (omega + 1) + 1)^2 L)),
    L = max_i L_i, mu = lam.  ``eta_rule`` is "theory" or a multiple of 1/L.
    """
    n, weights = problem.n_workers, problem.weights
    sparsifier = BlockSparsifier(problem, compressor, rng)
    omega, mu = sparsifier.omega, problem.lam
    L = float(problem.smoothness().max())
    ratio = np.inf if omega == 0 else np.sqrt(n / (32 * omega))
    p = min(1.0, max(1.0, ratio - 1) / (2 * (1 + omega)))
    eta_theory = min(1 / (2 * L), n / (64 * omega * (2 * p * (omega + 1) + 1) ** 2 * L)
                     if omega > 0 else np.inf)
    eta = eta_theory if eta_rule == "theory" else eta_rule / L
    alpha, theta2 = 1 / (1 + omega), 0.5
    theta1 = min(0.25, np.sqrt(eta * mu / p))
    gamma = eta / (2 * (theta1 + eta * mu))
    beta = 1 - gamma * mu

    def stack(v):  # every worker at the same point
        return np.broadcast_to(v, (n, problem.d, problem.K))

    y, z, w = problem.zeros(), problem.zeros(), problem.zeros()
    H, hbar = np.zeros((n, problem.d, problem.K)), problem.zeros()
    grads_w = problem.all_grads(stack(w))
    meter.work(1)
    meter.record(y)
    while True:
        x = theta1 * z + theta2 * w + (1 - theta1 - theta2) * y
        grads_x = problem.all_grads(stack(x))
        meter.work(1)
        g, uplink = hbar.copy(), 0
        for i in range(n):
            rows, _ = sparsifier.draw()
            keep = sparsifier.scale * rows[:, None]
            m_i = keep * (grads_w[i] - H[i])
            g += weights[i] * keep * (grads_x[i] - H[i])
            H[i] += alpha * m_i
            hbar += alpha * weights[i] * m_i
            # both messages share the ids: one header, two values per entry
            uplink += sparsifier.message_bytes(rows, values_per_entry=2)
        meter.exchange(uplink)
        y_new = x - eta * g
        z = beta * z + (1 - beta) * x + (gamma / eta) * (y_new - x)
        if rng.random() < p:
            w = y
            grads_w = problem.all_grads(stack(w))
            meter.work(1)
        y = y_new
        meter.record(y)


# --------------------------------------------------------- 9. hybrid

@njit(cache=True)
def _adagrad_pass(indptr, indices, data, Y, order, x, lam, penalty, column_share,
                  rate, loss_code):
    """One online pass of per-coordinate adaptive SGD (AdaGrad) over the rows
    in ``order``.  The L2 term is applied on the coordinates each row touches,
    scaled by N / (rows touching it) so that a pass applies it once."""
    d, K = x.shape
    accumulated = np.full((d, K), 1e-12)
    z = np.empty(K)
    r = np.empty(K)
    for j in order:
        for c in range(K):
            z[c] = 0.0
        for p in range(indptr[j], indptr[j + 1]):
            for c in range(K):
                z[c] += data[p] * x[indices[p], c]
        _row_derivative(loss_code, z, Y, j, r)
        for p in range(indptr[j], indptr[j + 1]):
            k = indices[p]
            for c in range(K):
                g = r[c] * data[p] + lam * penalty[k] * column_share[k] * x[k, c]
                accumulated[k, c] += g * g
                x[k, c] -= rate * g / np.sqrt(accumulated[k, c])


def hybrid(problem, meter, rng, rate):
    """Agarwal, Chapelle, Dudik & Langford (2014): one online AdaGrad pass per
    worker (random order), one dense round averaging the results with
    weights w_i, then dense L-BFGS from that average."""
    start = problem.zeros()
    for i, A in enumerate(problem.shards):
        rows_touching = np.maximum(np.bincount(A.indices, minlength=problem.d), 1)
        x_i = problem.zeros()
        _adagrad_pass(A.indptr, A.indices, A.data, problem.targets[i],
                      rng.permutation(A.shape[0]), x_i, problem.lam,
                      problem.penalty[:, 0], A.shape[0] / rows_touching, rate,
                      LOSS_CODES[problem.loss])
        start += problem.weights[i] * x_i
    meter.work(1)
    meter.dense_exchange()
    meter.record(start)
    lbfgs(problem, meter, rng, x0=start)
