"""Elastic net and Lasso trained with IBS."""

from numbers import Real

import scipy.sparse as sp

from sklearn.base import BaseEstimator, RegressorMixin

from .._compat import Interval
from ..penalties import ElasticNetPenalty
from ._base import DistributedSparseRegressorMixin
from ._docs import SHARED_ATTRIBUTES, SHARED_PARAMETERS, STOCHASTIC_NOTE


class DistributedSparseElasticNet(RegressorMixin, DistributedSparseRegressorMixin,
                                  BaseEstimator):
    __doc__ = f"""Elastic net trained by workers that send sparse messages.

    Minimises scikit-learn's ``ElasticNet`` objective,

        1 / (2 S) sum_i s_i (y_i - x_i w - b)^2 + alpha * l1_ratio ||w||_1
          + alpha * (1 - l1_ratio) / 2 ||w||_2^2,

    (``S`` the sum of the sample weights ``s_i``), so the same ``alpha`` and
    ``l1_ratio`` give the same optimum.  The L1 part is applied by the master
    as a proximal step; with several targets each is penalised separately,
    as in ``ElasticNet``.

    Parameters
    ----------
    alpha : float, default=1.0
        Penalty strength.

    l1_ratio : float, default=0.5
        Mix of L1 (1) and L2 (0).

{SHARED_PARAMETERS}
    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)

    intercept_ : float or ndarray of shape (n_targets,)

    sparse_coef_ : sparse matrix of shape (1, n_features) or (n_targets, n_features)
        ``coef_`` as a CSR matrix (L1 gives exact zeros).

    n_iter_ : int or list of int
        Number of iterations ("newton": accepted steps) or epochs run; one
        per target for a 2-d ``y``, as ``ElasticNet`` gives it (every target
        is fitted in the same iterations, so the entries are equal).

{SHARED_ATTRIBUTES}
{STOCHASTIC_NOTE}
    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import ElasticNet
    >>> from sklearn_dsparse import DistributedSparseElasticNet
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = DistributedSparseElasticNet(alpha=0.01, random_state=0).fit(X, y)
    >>> ref = ElasticNet(alpha=0.01).fit(X, y)
    >>> float(np.linalg.norm(reg.coef_ - ref.coef_) / np.linalg.norm(ref.coef_)) < 1e-4
    True
    """

    _parameter_constraints = {
        **DistributedSparseRegressorMixin._parameter_constraints,
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, alpha=1.0, *, l1_ratio=0.5, fit_intercept=True, solver="newton",
                 n_workers=4, n_blocks="auto", blocks_per_worker="auto",
                 sparsifier="auto", control_variates="auto", batch_size="auto",
                 step_size="auto", max_iter=1000, tol=1e-4, random_state=None,
                 verbose=0, warm_start=False, n_jobs=None, master_address=None,
                 asynchronous=False, max_staleness="auto"):
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.n_workers = n_workers
        self.n_blocks = n_blocks
        self.blocks_per_worker = blocks_per_worker
        self.sparsifier = sparsifier
        self.control_variates = control_variates
        self.batch_size = batch_size
        self.step_size = step_size
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.n_jobs = n_jobs
        self.master_address = master_address
        self.asynchronous = asynchronous
        self.max_staleness = max_staleness

    @property
    def sparse_coef_(self):
        """``coef_`` as a CSR matrix (as ``ElasticNet.sparse_coef_``)."""
        return sp.csr_matrix(self.coef_)

    @staticmethod
    def _n_iter_as_scikit_learn(n_iter, y_ndim, n_targets):
        return n_iter if y_ndim == 1 else [n_iter] * n_targets

    def _penalty(self, total_weight):
        return ElasticNetPenalty(l2=self.alpha * (1 - self.l1_ratio),
                                 l1=self.alpha * self.l1_ratio), 1.0


class DistributedSparseLasso(DistributedSparseElasticNet):
    __doc__ = DistributedSparseElasticNet.__doc__.replace(
        "Elastic net trained", "Lasso (elastic net with l1_ratio=1) trained").replace(
        """    l1_ratio : float, default=0.5
        Mix of L1 (1) and L2 (0).

""", "")

    _parameter_constraints = {
        k: v for k, v in DistributedSparseElasticNet._parameter_constraints.items()
        if k != "l1_ratio"}

    def __init__(self, alpha=1.0, *, fit_intercept=True, solver="newton", n_workers=4,
                 n_blocks="auto", blocks_per_worker="auto", sparsifier="auto",
                 control_variates="auto", batch_size="auto", step_size="auto",
                 max_iter=1000, tol=1e-4, random_state=None, verbose=0,
                 warm_start=False, n_jobs=None, master_address=None,
                 asynchronous=False, max_staleness="auto"):
        super().__init__(
            alpha=alpha, l1_ratio=1.0, fit_intercept=fit_intercept, solver=solver,
            n_workers=n_workers, n_blocks=n_blocks,
            blocks_per_worker=blocks_per_worker, sparsifier=sparsifier,
            control_variates=control_variates, batch_size=batch_size,
            step_size=step_size, max_iter=max_iter, tol=tol,
            random_state=random_state, verbose=verbose, warm_start=warm_start,
            n_jobs=n_jobs, master_address=master_address,
            asynchronous=asynchronous, max_staleness=max_staleness)
