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
