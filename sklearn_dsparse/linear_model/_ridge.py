"""Ridge regression trained with IBS."""

from numbers import Real

import numpy as np

from sklearn.base import BaseEstimator, RegressorMixin

from .._compat import Interval
from ..penalties import ElasticNetPenalty
from ._base import DistributedSparseRegressorMixin
from ._docs import SHARED_ATTRIBUTES, SHARED_PARAMETERS, STOCHASTIC_NOTE


class DistributedSparseRidge(RegressorMixin, DistributedSparseRegressorMixin,
                             BaseEstimator):
    __doc__ = f"""Ridge regression trained by workers that send sparse messages.

    Minimises scikit-learn's ``Ridge`` objective,

        sum_i s_i (y_i - x_i w - b)^2 + alpha ||w||_2^2,

    so the same ``alpha`` gives the same optimum (``s_i`` the sample weights).

    Parameters
    ----------
    alpha : float, default=1.0
        L2 regularisation strength.

{SHARED_PARAMETERS}
    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)

    intercept_ : float or ndarray of shape (n_targets,)

    n_iter_ : ndarray of shape (n_targets,)
        Number of iterations ("newton": accepted steps) or epochs run, as
        ``Ridge``'s iterative solvers give it (every target is fitted in the
        same iterations, so the entries are equal).

{SHARED_ATTRIBUTES}
{STOCHASTIC_NOTE}
    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn_dsparse import DistributedSparseRidge
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = DistributedSparseRidge(alpha=0.1, n_workers=4, random_state=0).fit(X, y)
    >>> ref = Ridge(alpha=0.1).fit(X, y)
    >>> float(np.linalg.norm(reg.coef_ - ref.coef_) / np.linalg.norm(ref.coef_)) < 1e-4
    True
    """

    _parameter_constraints = {
        **DistributedSparseRegressorMixin._parameter_constraints,
        "alpha": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, alpha=1.0, *, fit_intercept=True, solver="newton", n_workers=4,
                 n_blocks="auto", blocks_per_worker="auto", sparsifier="auto",
                 control_variates="auto", batch_size="auto", step_size="auto",
                 max_iter=1000, tol=1e-4, random_state=None, verbose=0,
                 warm_start=False, n_jobs=None, master_address=None,
                 asynchronous=False, max_staleness="auto"):
        self.alpha = alpha
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

    @staticmethod
    def _n_iter_as_scikit_learn(n_iter, y_ndim, n_targets):
        return np.full(n_targets, n_iter, dtype=np.int32)

    def _penalty(self, total_weight):
        # sum s r^2 + alpha ||w||^2 = 2 S (mean of r^2 / 2 + alpha / (2 S) ||w||^2)
        return ElasticNetPenalty(l2=self.alpha / total_weight), 2.0 * total_weight
