"""What a worker computes for ``solver="newton"``: its shard's objective and
gradient, and its local Newton direction for a vector the master sends.

Worker i holds (``_fit``'s notation; c_r = N_i s_r / S_i, and x_r with a 1
appended when the intercept is fitted)

    f_i(W) = 1/N_i sum_r c_r loss(x_r W, y_r) + l2/2 ||coef||^2

and its local Hessian ``H_i = 1/N_i sum_r c_r (x_r x_r^T) kron D_r + l2 P``,
with ``D_r = loss''(x_r W)`` (``Loss.rows_second_derivative``) and P the
identity on the coefficients (the intercept, the last parameter row, is not
penalised).  Asked for q, the worker answers ``(H_i + mu I)^{-1} q``: by a
Cholesky factorisation of the dense local Hessian when that costs less than
``CG_MAX_ITER`` Hessian-vector products, else by conjugate gradients
preconditioned with the Hessian's diagonal.

Everything here is whole-shard NumPy and SciPy but the local Hessian's
weighted Gram matrices (``weighted_gram``, the one compiled kernel of the
default solver: 3 to 5 times faster than any SciPy or BLAS form of it on
sparse rows, and small enough to compile in about a second on a fresh
install).  Run with one BLAS thread (``threadpool_limits(1)``, as every
engine does), a worker's answer is the same bit for bit in every process:
sparse products are plain loops, and single-threaded BLAS and LAPACK sum in
a fixed order.
"""

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.linalg import cho_factor, cho_solve

#: Conjugate gradients stop after this many Hessian-vector products (news20,
#: 16 workers: 10 give the rounds 50 give, in a third of the time) ...
CG_MAX_ITER = 10
#: ... or once the residual is this fraction of the right-hand side: the
#: answer is a preconditioner, which the master's line search and memory
#: correct, so a rough solve is enough.
CG_RTOL = 1e-2
#: A dense local Hessian is factored (an exact answer) when forming and
#: factoring it costs at most this many Hessian-vector products, and its
#: order is at most ``DIRECT_MAX_ORDER`` (the memory is order^2 doubles).
DIRECT_BUDGET = 100
DIRECT_MAX_ORDER = 2048


@njit(cache=True)
def weighted_gram(data, indices, indptr, weights, out):
    """The lower triangle of X^T diag(weights) X into the square ``out``, for
    X in CSR with sorted column indices (a row's entry pairs then fall in the
    lower triangle in order, without a test)."""
    order = out.shape[0]
    for i in range(order):
        for j in range(i + 1):
            out[i, j] = 0.0
    for r in range(indptr.shape[0] - 1):
        w = weights[r]
        if w == 0.0:
            continue
        for e1 in range(indptr[r], indptr[r + 1]):
            v = w * data[e1]
            j1 = indices[e1]
            for e2 in range(indptr[r], e1 + 1):
                out[j1, indices[e2]] += v * data[e2]


class LocalProblem:
    """One worker's f_i: its rows X (CSR), targets Y (n_rows, K), row weights
    c and the loss and L2 strength; the intercept, when it is fitted, is the
    last parameter row, whose column of ones is implicit (the rows are used
    as they come, not copied with that column: a shard can be most of a
    worker's memory)."""

    def __init__(self, rows, Y, c, loss, l2, fit_intercept):
        # Sorted column indices for weighted_gram; the caller's rows are only read.
        if not rows.has_sorted_indices:
            rows = rows.copy()
            rows.sort_indices()
        self.X = rows
        self.fit_intercept = fit_intercept
        self.n_features = rows.shape[1]
        # X^T u as a CSR product, a plain loop: 1.4-1.9x faster than the
        # CSC product of X.T, which would need no copy.
        self.XT = rows.T.tocsr()
        # The squares share XT's structure: only their values are stored.
        self.XT_squared = sp.csr_matrix(
            (self.XT.data * self.XT.data, self.XT.indices, self.XT.indptr),
            shape=self.XT.shape)
        self.Y = Y
        self.a = c / rows.shape[0]
        self.loss = loss
        self.l2 = l2
        self.penalised = np.ones((self.n_features + int(fit_intercept), Y.shape[1]))
        if fit_intercept:
            self.penalised[-1] = 0.0
        self.Z = None  # margins at the last value_gradient point
        self.D = None  # the second derivative there (curvature)

    @property
    def shape(self):
        return self.n_features + int(self.fit_intercept), self.Y.shape[1]

    def _margins(self, W):
        """X W, with the intercept's ones when it is fitted."""
        Z = self.X @ W[:self.n_features]
        if self.fit_intercept:
            Z += W[self.n_features]
        return Z

    def _transposed(self, U):
        """X^T U (n_columns, K), with the intercept's row of column sums."""
        out = np.empty(self.shape)
        out[:self.n_features] = self.XT @ U
        if self.fit_intercept:
            out[self.n_features] = U.sum(axis=0)
        return out

    def value_gradient(self, W):
        """f_i(W) and its gradient (n_columns, K); keeps the margins."""
        self.Z = self._margins(W)
        values, dZ = self.loss.rows_value_derivative(self.Z, self.Y)
        penalty = 0.5 * self.l2 * float(np.dot((self.penalised * W).ravel(), W.ravel()))
        grad = self._transposed(self.a[:, None] * dZ) + self.l2 * self.penalised * W
        return float(np.dot(self.a, values)) + penalty, grad

    def update_curvature(self):
        """The second derivative at the last value_gradient point."""
        self.D = self.loss.rows_second_derivative(self.Z)

    def hessian_vector(self, V, mu):
        """(H_i + mu I) V for V of shape (n_columns, K)."""
        DU = self.D * self._margins(V)
        if self.loss.rank_one:  # (diag(p) - p p^T) u = p * u - p (p . u)
            DU -= self.D * DU.sum(axis=1)[:, None]
        return self._transposed(self.a[:, None] * DU) + \
            (self.l2 * self.penalised + mu) * V

    def _gram(self, weights, out):
        """The lower triangle of [X 1]^T diag(weights) [X 1] into ``out``
        (without the ones when no intercept is fitted)."""
        X, p = self.X, self.n_features
        if not self.fit_intercept:
            weighted_gram(X.data, X.indices, X.indptr, weights, out)
            return
        features = np.empty((p, p))
        weighted_gram(X.data, X.indices, X.indptr, weights, features)
        out[:p, :p] = features
        out[p, :p] = self.XT @ weights
        out[p, p] = weights.sum()

    def hessian(self, mu):
        """The lower triangle of H_i + mu I, dense, of order n_columns * K
        (element (j, k) of W is row j * K + k)."""
        p1, K = self.shape
        gram = np.empty((p1, p1))
        if K == 1:
            self._gram(self.a * self.D[:, 0], gram)
            H = gram
        else:
            H4 = np.empty((p1, K, p1, K))
            for k in range(K):
                for k2 in range(k, K):
                    d = self.D[:, k] if k == k2 else np.zeros(self.X.shape[0])
                    if self.loss.rank_one:
                        d = d - self.D[:, k] * self.D[:, k2]
                    self._gram(self.a * d, gram)
                    full = gram + np.tril(gram, -1).T
                    H4[:, k, :, k2] = full
                    H4[:, k2, :, k] = full
            H = H4.reshape(p1 * K, p1 * K)
        H[np.diag_indices_from(H)] += (self.l2 * self.penalised).ravel() + mu
        return H

    def diagonal(self, mu):
        """The diagonal of H_i + mu I, shape (n_columns, K)."""
        d = self.D - self.D * self.D if self.loss.rank_one else self.D
        U = self.a[:, None] * d
        out = np.empty(self.shape)
        out[:self.n_features] = self.XT_squared @ U
        if self.fit_intercept:
            out[self.n_features] = U.sum(axis=0)
        return out + self.l2 * self.penalised + mu


def direct_is_cheaper(nnz_per_row, n_rows, n_outputs, order):
    """Whether forming and factoring the dense local Hessian costs at most
    ``DIRECT_BUDGET`` Hessian-vector products (two passes over the shard
    each): then the answers are exact rather than ``CG_MAX_ITER`` steps of
    conjugate gradients (a9a, 64 workers: 26 rounds against 68)."""
    if order > DIRECT_MAX_ORDER:
        return False
    direct = n_rows * (nnz_per_row + 1) ** 2 * n_outputs ** 2 / 2 + order ** 3 / 3
    iterative = DIRECT_BUDGET * 4 * n_rows * (nnz_per_row + 1) * n_outputs
    return direct <= iterative


class LocalSolver:
    """Answers ``(H_i + mu I)^{-1} q`` for the curvature of its last
    ``refresh``: a Cholesky factor, or the diagonal for conjugate gradients.

    mu is the master's relative damping (``set_damping``) times the mean of
    the Hessian's diagonal.  ``weights`` is that diagonal, with a floor of
    ``FLOOR`` of its mean (a feature no row of the shard has, the
    multinomial intercepts): the master averages the workers' answers
    weighted by it.
    """

    FLOOR = 1e-8

    def __init__(self, problem, cg_max_iter=CG_MAX_ITER, cg_rtol=CG_RTOL):
        self.problem = problem
        self.cg_max_iter = cg_max_iter
        self.cg_rtol = cg_rtol
        X = problem.X
        p1, K = problem.shape
        # The intercept's one is a non-zero of every row.
        nnz_per_row = X.nnz / max(X.shape[0], 1) + int(problem.fit_intercept)
        self.direct = direct_is_cheaper(nnz_per_row, X.shape[0], K, p1 * K)
        self.damping = None

    def refresh(self):
        """Take the curvature of the last value_gradient point."""
        pb = self.problem
        pb.update_curvature()
        diagonal = pb.diagonal(0.0)
        self.scale = max(float(np.mean(diagonal)), 1e-300)
        self.weights = diagonal + self.FLOOR * self.scale
        self.hessian = pb.hessian(0.0) if self.direct else None
        self.damping = None

    def set_damping(self, relative):
        self.damping = relative
        self.mu = relative * self.scale
        if self.direct:
            # A singular local Hessian (no penalty: the multinomial's class
            # sums, separable rows) with a damping below its rounding errors
            # is not numerically positive definite: damp it more, until it is
            # (deterministic: the same on every engine).
            mu = self.mu
            for _ in range(40):
                H = self.hessian.copy()
                H[np.diag_indices_from(H)] += mu
                try:
                    self.factor = cho_factor(H, lower=True, check_finite=False,
                                             overwrite_a=True)
                    break
                except np.linalg.LinAlgError:
                    mu = max(10.0 * mu, 1e-12 * self.scale)
            else:
                raise FloatingPointError(
                    "The local Hessian could not be factored at any damping: the "
                    "data hold non-finite or huge values. Scale X.")
            self.mu = mu
        else:
            self.preconditioner = 1.0 / (self.weights + self.mu)

    def solve(self, q):
        """The answer for q of shape (n_columns, K)."""
        if self.direct:
            return cho_solve(self.factor, q.ravel(), check_finite=False).reshape(q.shape)
        return self._conjugate_gradient(q)

    def _conjugate_gradient(self, q):
        hv = self.problem.hessian_vector
        x = np.zeros_like(q)
        residual = q.copy()
        z = self.preconditioner * residual
        direction = z.copy()
        rz = float(np.dot(residual.ravel(), z.ravel()))
        stop = self.cg_rtol * float(np.linalg.norm(q.ravel()))
        for _ in range(self.cg_max_iter):
            if float(np.linalg.norm(residual.ravel())) <= stop:
                break
            product = hv(direction, self.mu)
            curvature = float(np.dot(direction.ravel(), product.ravel()))
            if not curvature > 0.0:
                break
            step = rz / curvature
            x += step * direction
            residual -= step * product
            z = self.preconditioner * residual
            rz, rz_before = float(np.dot(residual.ravel(), z.ravel())), rz
            direction = z + (rz / rz_before) * direction
        return x
