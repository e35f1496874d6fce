"""The ``step_size="auto"`` rule.

Notation (docs/method.md, "Step size"): n workers with weights w_i, m blocks of
which each worker sends tau, ``omega = m / tau - 1``, ``s2 = sum_i w_i^2``,
``L_F`` the smoothness of the smooth part of F and ``L_b`` the smoothness of
one worker's estimate (the largest over workers).  The rule is
``step = 1 / (c L_eff)`` with ``c = 2`` and, per sparsifier
(``Sparsifier.step_smoothness``),

- none:        ``L_eff = L_F + s2 L_b``
- independent, bernoulli: ``L_eff = max(L_F + s2 L_b, L_F / 2 + omega s2 L_b)``
- shared:      ``L_eff = (1 + omega) (L_F + s2 L_b)``

Dense averaging's term is the first specification's (docs/method.md, "Step
size"), measured never to diverge at c = 2.  The independent term is this
library's (the one-form rule it replaced writes ``L_F + (1 + omega) s2
L_b``, which with c = 4 is ISEGA's step of Mishchenko, Hanzely & Richtarik,
"99% of Worker-Master Communication in Distributed Optimization Is Not
Needed", UAI 2020): the round with control variates, simulated on a
quadratic of curvature L shared by every worker, n from 2 to 64 and tau / m
from 1/64 to 1/4, is stable up to ``1 / step = 0.44 L + 1.0 omega s2 L``
(within 10%), i.e. gradient descent's limit 2 / L plus the compression
variance.  Independent masks thus keep dense averaging's step until that
limit, halved, is the tighter one; at tau = m / n (``omega s2`` about 1)
their step is 0.74 of dense's, where the one-form rule gives 0.53 (a1a,
n = 16: 1.41x dense's rounds for gd, 1.46x for saga, against 1.94x and
2.00x).
``tests/test_step_size.py`` checks the margin on the library's own round and
that the default never diverges on the shared datasets.

``L_b`` depends on the solver: for ``gd`` it is the shard's smoothness L_i;
for a minibatch of b rows drawn without replacement from N_i it is the
expected smoothness of Gower et al., "SGD: General Analysis and Improved
Rates" (ICML 2019), Proposition 3.8:
``L_b = N(b - 1) / (b(N - 1)) L_i + (N - b) / (b(N - 1)) L_max``.
"""

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

SAFETY = 2.0
_DENSE_GRAM_MAX = 1000


def gram_top_eigenvalue(X, row_weights, fit_intercept):
    """Largest eigenvalue of ``sum_r row_weights[r] x_r x_r^T`` (x with a 1
    appended when the intercept is fitted)."""
    n_rows, n_features = X.shape
    n_columns = n_features + int(fit_intercept)
    if n_rows == 0:
        return 0.0
    sqrt_w = np.sqrt(row_weights)
    Xw = sp.diags(sqrt_w) @ X
    if n_columns <= _DENSE_GRAM_MAX:
        if fit_intercept:
            Xw = sp.hstack([Xw, sp.csr_matrix(sqrt_w[:, None])], format="csr")
        gram = (Xw.T @ Xw).toarray()
        return float(np.linalg.eigvalsh(gram)[-1])

    def matvec(v):
        v = np.ravel(v)
        u = Xw @ v[:n_features]
        if fit_intercept:
            u = u + sqrt_w * v[-1]
        out = Xw.T @ u
        if fit_intercept:
            out = np.append(out, sqrt_w @ u)
        return out

    op = LinearOperator((n_columns, n_columns), matvec=matvec, dtype=np.float64)
    v0 = np.ones(n_columns)  # deterministic start: the fit must not draw from a global RNG
    top = eigsh(op, k=1, which="LA", tol=1e-6, v0=v0, return_eigenvectors=False)
    return float(top[0]) * (1 + 1e-6)


def row_norms_squared(X, fit_intercept):
    sq = np.asarray(X.multiply(X).sum(axis=1)).ravel()
    return sq + float(fit_intercept)


def minibatch_smoothness(shard_smoothness, row_max_smoothness, n_rows, batch):
    """Expected smoothness of a b-of-N minibatch without replacement (Gower et al.)."""
    batch = min(batch, n_rows)
    if n_rows <= 1:
        return row_max_smoothness
    a = n_rows * (batch - 1) / (batch * (n_rows - 1))
    b = (n_rows - batch) / (batch * (n_rows - 1))
    return a * shard_smoothness + b * row_max_smoothness


def auto_step_size(sparsifier, weights, smoothness_F, smoothness_estimate,
                   safety=SAFETY):
    """The rule of the module docstring for ``sparsifier``.

    The sparsifier states how its compression inflates dense averaging's
    smoothness (``step_smoothness``), so the rule is written once.
    """
    s2 = float(np.sum(np.asarray(weights) ** 2))
    return 1.0 / (safety * sparsifier.step_smoothness(smoothness_F, s2,
                                                      smoothness_estimate))


#: ``solver="asgd"`` forms d x d matrices (d = n_features + fit_intercept).
ASGD_MAX_COLUMNS = 2000


def _with_intercept(X, fit_intercept):
    X = sp.csr_matrix(X)
    if fit_intercept:
        X = sp.hstack([X, np.ones((X.shape[0], 1))], format="csr")
    return X


#: Eigenvalues of H below this fraction of the largest are its null space.
RANK_TOLERANCE = 1e-10


def quadratic_growth_constants(X, c, shard_starts, weights, l2, fit_intercept,
                               batch, scale):
    """(mu, L, rho) of a squared loss under ``solver="asgd"``'s estimate.

    With a constant Hessian every worker's minibatch gradient at y is
    ``Hhat_i (y - x*)`` when the data interpolate, so the round's estimate
    ``g = sum_i w_i D_i Hhat_i (y - x*)`` (D_i: the independent mask, rescaled
    by ``scale = m / tau``) has ``E ||g||^2 = e^T M e`` exactly, with

        M = H^2 + sum_i w_i^2 (scale E[Hhat_i^2] - H_i^2),
        E[Hhat_i^2] = H_i^2 + beta_i (S_i - R_i^2),

    R_i the shard's mean of the rows' Hessians ``c_r x_r x_r^T``, H_i = R_i +
    l2 (coefficients only), S_i the mean of their squares
    ``c_r^2 ||x_r||^2 x_r x_r^T`` and ``beta_i = (N_i - b) / (b (N_i - 1))``
    (b of N_i rows without replacement), H = sum_i w_i H_i.

    Every Hhat_i vanishes on the null space of H (the directions orthogonal
    to every row, when there are fewer independent rows than parameters), so
    F, g and the part of y - x* in the range of H evolve on their own: the
    sequences' guarantee holds on that range, whatever the rest does.  mu and
    L are the smallest and largest eigenvalues of H on it (mu the smallest
    non-zero one: the restricted strong convexity), and the strong growth
    constant of Vaswani, Bach & Schmidt, E ||g||^2 <= rho ||grad F||^2 for e
    in the range, is the largest eigenvalue of ``Lambda^-1 Q^T M Q Lambda^-1``
    (``H = Q Lambda Q^T`` on the range).  It bounds E ||P g||^2, the part of
    the noise the range sees, from above.  (docs/method.md, "Accelerated SGD".)
    """
    Xt = _with_intercept(X, fit_intercept)
    d = Xt.shape[1]
    penalised = np.full(d, l2)
    if fit_intercept:
        penalised[-1] = 0.0
    row_sq = np.asarray(Xt.multiply(Xt).sum(axis=1)).ravel()
    H = np.zeros((d, d))
    M = np.zeros((d, d))
    for i, w in enumerate(weights):
        s, e = shard_starts[i], shard_starts[i + 1]
        n_rows, Xi, ci = e - s, Xt[s:e], c[s:e]
        R = (Xi.T @ sp.diags(ci / n_rows) @ Xi).toarray()
        S = (Xi.T @ sp.diags(ci ** 2 * row_sq[s:e] / n_rows) @ Xi).toarray()
        H_i = R + np.diag(penalised)
        b = min(batch, n_rows)
        beta = 0.0 if n_rows <= 1 else (n_rows - b) / (b * (n_rows - 1))
        H_i2 = H_i @ H_i
        H += w * H_i
        M += w * w * (scale * (H_i2 + beta * (S - R @ R)) - H_i2)
    M += H @ H
    eigenvalues, Q = np.linalg.eigh(H)
    L = float(eigenvalues[-1])
    in_range = eigenvalues > RANK_TOLERANCE * L
    if not np.any(in_range):
        return 0.0, L, np.inf
    lam, Q = eigenvalues[in_range], Q[:, in_range]
    scaled = (Q.T @ M @ Q) / np.outer(lam, lam)
    rho = float(np.linalg.eigvalsh((scaled + scaled.T) / 2)[-1])
    return float(lam[0]), L, max(rho, 1.0)


def separable_growth_estimate(scale, smoothness_F, smoothness_estimate):
    """rho of ``solver="asgd"`` for a loss without a constant Hessian (the
    logistic loss on separable data): ``scale L_b / L_F``.

    Exact in two cases: one worker sending all its rows' gradient (rho = 1,
    Nesterov's method) and one worker compressing it (E ||D g||^2 = scale
    ||g||^2: rho = m / tau); ``L_b / L_F`` is the minibatch's and the shards'
    excess smoothness, as in sgd's step rule.  An estimate, not a bound: on
    separable data the ratio E ||g||^2 / ||grad F||^2 grows as the iterates
    approach the max-margin direction (where the shards' gradients cancel),
    while the constant the descent step needs, E[g^T grad^2 F g] /
    (L ||grad F||^2), falls, the curvature vanishing with the loss;
    ``benchmarks/study_asgd_interpolation.py`` measures both.
    (docs/method.md, "Accelerated SGD".)
    """
    return max(scale * smoothness_estimate / smoothness_F, 1.0)


def accelerated_parameters(mu, L, rho, step=None):
    """(step, momentum, lookahead) of ``solver="asgd"``.

    Vaswani, Bach & Schmidt, "Fast and Faster Convergence of SGD for
    Over-Parameterized Models and an Accelerated Perceptron" (AISTATS 2019),
    Theorem 1 (strongly convex): with eta = 1 / (rho L) and
    ``s = sqrt(mu eta / rho)``, the sequences

        y_k     = alpha v_k + (1 - alpha) w_k
        w_{k+1} = y_k - eta g(y_k)
        v_{k+1} = beta v_k + (1 - beta) y_k - gamma eta g(y_k)

    take alpha = s / (1 + s), beta = 1 - s, gamma = 1 / sqrt(mu eta rho),
    and E F(w_k) - F* falls like (1 - sqrt(mu / (rho^2 L)))^k when g
    satisfies the strong growth condition E ||g||^2 <= rho ||grad F||^2.  Written in
    w and the look-ahead displacement d = y - w (``master``):
    ``momentum = beta (1 - alpha)``, ``lookahead = eta alpha (gamma - 1)``.
    ``step`` replaces eta when given; it needs ``mu eta rho < 1`` (else the
    sequences are not a contraction: momentum or lookahead negative).
    """
    eta = 1.0 / (rho * L) if step is None else float(step)
    s = np.sqrt(mu * eta / rho)
    alpha, beta, gamma = s / (1.0 + s), 1.0 - s, 1.0 / np.sqrt(mu * eta * rho)
    return eta, float(beta * (1.0 - alpha)), float(eta * alpha * (gamma - 1.0))


def auto_max_staleness(n_workers):
    """``max_staleness="auto"``: ``2 n - 1`` master updates.

    Workers of equal speed see a staleness of about n - 1 (every other
    worker's message is applied while one computes), so they do not wait; a
    worker up to about twice as slow as the others holds nobody up.
    """
    return 2 * n_workers - 1


def asynchronous_step_size(step, max_staleness):
    """The asynchronous step: the synchronous rule's step over ``S + 1``.

    Each message moves W by a whole step along ``hbar + w_i M_i`` (an
    estimate of the full gradient whose parts are up to ``S`` updates old),
    where a synchronous round moves it once for n messages.  Bounded-delay
    analyses of incremental aggregated and delayed gradient methods take
    steps of order ``1 / (L (S + 1))`` for delays up to S (Feyzmahdavian,
    Aytekin & Johansson, "A delayed proximal gradient method with linear
    convergence rate", MLSP 2014; Vanli, Gurbuzbalaban & Ozdaglar, "Global
    convergence rate of proximal incremental aggregated gradient methods",
    SIAM J. Optim. 2018; Stich & Karimireddy, "The error-feedback framework:
    better rates for SGD with delayed gradients and compressed
    communication", JMLR 2020); their constants are not this one, which
    keeps n messages of ``S = n - 1`` at the synchronous round's step and is
    checked by ``tests/test_asynchronous.py``.
    """
    return step / (max_staleness + 1)
