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

A worker holds its rows once, as they came (CSR, in one piece or in
several: a worker's Dask partitions are not concatenated, which would copy
them while the cluster keeps the partitions).  Products X W are SciPy's; the
products with X^T (the gradient, the Hessian's products and its diagonal)
and the local Hessian's weighted Gram matrices are small compiled kernels
over the same rows (``add_transposed_product``, ``weighted_gram``): no
transposed copy of the rows, which would double a worker's memory, for a
product taking 0.8-1.25x the time of SciPy's product of that copy (news20,
a9a).  Run with one BLAS thread (``threadpool_limits(1)``, as every engine
does), a worker's answer is the same bit for bit in every process: the
kernels and sparse products are plain loops over the rows in order, and
single-threaded BLAS and LAPACK sum in a fixed order.
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
def add_transposed_product(data, indices, indptr, U, squared, out):
    """Add X^T U to ``out`` (n_columns, K), for X in CSR and U (n_rows, K);
    with ``squared``, the product of the entries' squares (the Hessian's
    diagonal).  Each row scatters into ``out`` in the rows' order: every
    element is summed over the rows in increasing order, as SciPy's product
    of the transposed copy sums it, and a shard in several pieces, each added
    in turn, sums as the whole shard."""
    # Unsigned, a column index needs no test for a negative (from the end)
    # one, and one output no inner loop: each halves the time, the second
    # only with its own loop (a test in the loop slows many outputs 2x).
    n_outputs = U.shape[1]
    if n_outputs == 1:
        for r in range(indptr.shape[0] - 1):
            u = U[r, 0]
            for e in range(indptr[r], indptr[r + 1]):
                value = data[e] * data[e] if squared else data[e]
                out[np.uint64(indices[e]), 0] += value * u
        return
    for r in range(indptr.shape[0] - 1):
        for e in range(indptr[r], indptr[r + 1]):
            value = data[e] * data[e] if squared else data[e]
            j = np.uint64(indices[e])
            for k in range(n_outputs):
                out[j, k] += value * U[r, k]


@njit(cache=True)
def weighted_gram(data, indices, indptr, weights, out):
    """Add the lower triangle of X^T diag(weights) X to the square ``out``,
    for X in CSR with sorted column indices (a row's entry pairs then fall in
    the lower triangle in order, without a test)."""
    for r in range(indptr.shape[0] - 1):
        w = weights[r]
        if w == 0.0:
            continue
        for e1 in range(indptr[r], indptr[r + 1]):
            v = w * data[e1]
            # Unsigned, as in add_transposed_product: 17-25% faster on
            # phishing, a9a and mushrooms shards, the same sums.
            j1 = np.uint64(indices[e1])
            for e2 in range(indptr[r], e1 + 1):
                out[j1, np.uint64(indices[e2])] += v * data[e2]


class LocalProblem:
    """One worker's f_i: its rows X (a CSR matrix, or a list of CSR matrices
    whose rows, in order, are the shard's), targets Y (n_rows, K), row
    weights c and the loss and L2 strength; the intercept, when it is
    fitted, is the last parameter row, whose column of ones is implicit.  The
    rows are used as they come, neither stacked, transposed nor extended by
    that column: a shard can be most of a worker's memory."""

    def __init__(self, rows, Y, c, loss, l2, fit_intercept):
        pieces = rows if isinstance(rows, list) else [rows]
        # Sorted column indices for weighted_gram; the caller's rows are only read.
        self.pieces = [piece if piece.has_sorted_indices else _sorted_copy(piece)
                       for piece in pieces]
        self.piece_starts = np.cumsum([0] + [piece.shape[0] for piece in pieces])
        self.n_rows = int(self.piece_starts[-1])
        self.nnz = sum(piece.nnz for piece in pieces)
        self.fit_intercept = fit_intercept
        self.n_features = pieces[0].shape[1]
        self.Y = Y
        self.a = c / self.n_rows
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

    def _pieces(self):
        """Each piece of the rows with the range of the shard's rows it holds."""
        return zip(self.pieces, self.piece_starts[:-1], self.piece_starts[1:])

    def _margins(self, W):
        """X W, with the intercept's ones when it is fitted."""
        coef = W[:self.n_features]
        if len(self.pieces) == 1:  # SciPy's product is Z itself
            Z = self.pieces[0] @ coef
        else:
            Z = np.empty((self.n_rows, W.shape[1]))
            for piece, start, stop in self._pieces():
                Z[start:stop] = piece @ coef
        if self.fit_intercept:
            Z += W[self.n_features]
        return Z

    def _add_transposed(self, U, squared, out):
        """Add X^T U (or, ``squared``, the squares' product) to ``out[:n_features]``."""
        for piece, start, stop in self._pieces():
            add_transposed_product(piece.data, piece.indices, piece.indptr,
                                   U[start:stop], squared, out)

    def _transposed(self, U, squared=False):
        """X^T U (n_columns, K), with the intercept's row of column sums (or,
        ``squared``, the same with the squares of X's entries)."""
        out = np.zeros(self.shape)
        self._add_transposed(U, squared, out)
        if self.fit_intercept:
            out[self.n_features] = U.sum(axis=0)
        return out

    def value_gradient(self, W):
        """f_i(W) and its gradient (n_columns, K); keeps the margins."""
        self.Z = self._margins(W)
        values, dZ = self.loss.rows_value_derivative(self.Z, self.Y)
        penalty = 0.5 * self.l2 * float(np.dot((self.penalised * W).ravel(), W.ravel()))
        dZ *= self.a[:, None]  # the loss's own array: scaled where it is
        grad = self._transposed(dZ) + self.l2 * self.penalised * W
        return float(np.dot(self.a, values)) + penalty, grad

    def update_curvature(self):
        """The second derivative at the last value_gradient point."""
        self.D = self.loss.rows_second_derivative(self.Z)

    def hessian_vector(self, V, mu):
        """(H_i + mu I) V for V of shape (n_columns, K)."""
        DU = self.D * self._margins(V)
        if self.loss.rank_one:  # (diag(p) - p p^T) u = p * u - p (p . u)
            DU -= self.D * DU.sum(axis=1)[:, None]
        DU *= self.a[:, None]
        return self._transposed(DU) + \
            (self.l2 * self.penalised + mu) * V

    def _gram(self, weights):
        """The lower triangle of [X 1]^T diag(weights) [X 1] (without the
        ones when no intercept is fitted), square, of order n_columns."""
        p, order = self.n_features, self.shape[0]
        out = np.zeros((order, order))
        for piece, start, stop in self._pieces():
            weighted_gram(piece.data, piece.indices, piece.indptr, weights[start:stop],
                          out)
        if self.fit_intercept:
            column_sums = np.zeros((order, 1))
            self._add_transposed(weights[:, None], False, column_sums)
            out[p, :p] = column_sums[:p, 0]
            out[p, p] = weights.sum()
        return out

    def hessian(self, mu):
        """The lower triangle of H_i + mu I, dense, of order n_columns * K
        (element (j, k) of W is row j * K + k)."""
        p1, K = self.shape
        if K == 1:
            H = self._gram(self.a * self.D[:, 0])
        else:
            H4 = np.empty((p1, K, p1, K))
            for k in range(K):
                for k2 in range(k, K):
                    d = self.D[:, k] if k == k2 else np.zeros(self.n_rows)
                    if self.loss.rank_one:
                        d = d - self.D[:, k] * self.D[:, k2]
                    gram = self._gram(self.a * d)
                    full = gram + np.tril(gram, -1).T
                    H4[:, k, :, k2] = full
                    H4[:, k2, :, k] = full
            H = H4.reshape(p1 * K, p1 * K)
        H[np.diag_indices_from(H)] += (self.l2 * self.penalised).ravel() + mu
        return H

    def diagonal(self, mu):
        """The diagonal of H_i + mu I, shape (n_columns, K)."""
        d = self.D - self.D * self.D if self.loss.rank_one else self.D
        return self._transposed(self.a[:, None] * d, squared=True) + \
            self.l2 * self.penalised + mu


def row_range(X, start, stop):
    """Rows ``start:stop`` of the CSR matrix X, sharing its values and column
    indices (``X[start:stop]`` copies them)."""
    first, last = X.indptr[start], X.indptr[stop]
    rows = sp.csr_matrix((stop - start, X.shape[1]), dtype=X.dtype)
    # Set after construction: SciPy's constructor copies a view of less than
    # half of its array, and may narrow the indices' type (another copy).
    rows.indptr = X.indptr[start:stop + 1] - first
    rows.indices = X.indices[first:last]
    rows.data = X.data[first:last]
    return rows


def _sorted_copy(rows):
    rows = rows.copy()
    rows.sort_indices()
    return rows


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
        p1, K = problem.shape
        # The intercept's one is a non-zero of every row.
        nnz_per_row = problem.nnz / max(problem.n_rows, 1) + int(problem.fit_intercept)
        self.direct = direct_is_cheaper(nnz_per_row, problem.n_rows, K, p1 * K)
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
