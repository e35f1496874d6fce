"""Logistic regression (binary and multinomial) trained with IBS."""

from numbers import Real

import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn.base import BaseEstimator
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from .._compat import (Interval, LinearClassifierMixin, SparseCoefMixin, StrOptions,
                       _fit_context)
from .._dask_data import is_dask_collection, map_rows
from ..penalties import ElasticNetPenalty
from ._base import DistributedSparseMixin
from ._targets import ClassSummary, ClassTargets
from ._docs import SHARED_ATTRIBUTES, SHARED_PARAMETERS, STOCHASTIC_NOTE


class DistributedSparseLogisticRegression(
        LinearClassifierMixin, SparseCoefMixin, DistributedSparseMixin, BaseEstimator):
    __doc__ = f"""Logistic regression trained by workers that send sparse messages.

    Minimises scikit-learn's ``LogisticRegression`` objective (1.8+ API),

        C * sum_i s_i loss(x_i w + b, y_i) + (1 - l1_ratio) / 2 ||w||_2^2
          + l1_ratio ||w||_1,

    with the binary logistic loss for two classes and the multinomial loss
    for more, so the same ``C``, ``l1_ratio`` and ``class_weight`` give the
    same optimum.  ``s_i`` is the sample weight times the class weight.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength; ``np.inf`` means no penalty.

    l1_ratio : float, default=0.0
        0 for the L2 penalty, 1 for L1, in between for elastic net.

    class_weight : dict or "balanced", default=None
        Weights of the classes, as in ``LogisticRegression``.

{SHARED_PARAMETERS}
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.

    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Coefficients; one row for binary problems.  In the input's precision
        (float32 for float32 X; the fit computes in float64).  ``sparsify()``
        turns it into a CSR matrix (L1 gives exact zeros), ``densify()``
        back.

    intercept_ : ndarray of shape (1,) or (n_classes,)
        Intercepts (zeros when ``fit_intercept=False``).

    n_iter_ : ndarray of shape (1,)
        Number of iterations ("newton": accepted steps) or epochs run, as
        ``LogisticRegression`` gives it.

{SHARED_ATTRIBUTES}
{STOCHASTIC_NOTE}
    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_dsparse import DistributedSparseLogisticRegression
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> clf = DistributedSparseLogisticRegression(n_workers=4, random_state=0)
    >>> clf.fit(X, y).score(X, y) > 0.95
    True
    """

    _parameter_constraints = {
        **DistributedSparseMixin._parameter_constraints,
        "C": [Interval(Real, 0, None, closed="right")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, C=1.0, *, l1_ratio=0.0, class_weight=None,
                 fit_intercept=True, solver="newton", n_workers=4, n_blocks="auto",
                 blocks_per_worker="auto", sparsifier="auto",
                 control_variates="auto", batch_size="auto", step_size="auto",
                 max_iter=1000, tol=1e-4, random_state=None, verbose=0,
                 warm_start=False, n_jobs=None, master_address=None,
                 asynchronous=False, max_staleness="auto"):
        self.C = C
        self.l1_ratio = l1_ratio
        self.class_weight = class_weight
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the model.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask Array or DataFrame, FileShards} \
                of shape (n_samples, n_features)
            Dask collections (with a ``distributed.Client`` active) are fit
            where their partitions lie; y and ``sample_weight`` are then Dask
            collections with the same partitions (docs/engines.md, "Data on
            the cluster").  A :class:`~sklearn_dsparse.FileShards` is read by
            the worker tasks themselves, y with it ("Data read by the
            workers").
        y : array-like of shape (n_samples,), default=None
            Required, except with a ``FileShards``, whose files hold y.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; integer weights are equivalent to repeating
            rows.

        Returns
        -------
        self
        """
        W, targets, dtype = self._fit_data(
            X, y, sample_weight, dict(accept_sparse="csr", dtype=[np.float64, np.float32]))
        self.classes_ = targets.classes
        # Computed in float64; the model takes the input's precision, as
        # LogisticRegression's solvers for float32 input.
        W = W.astype(dtype)
        n_features = self.n_features_in_
        self.coef_ = np.ascontiguousarray(W[:n_features].T)
        self.intercept_ = (W[n_features].copy() if self.fit_intercept
                           else np.zeros_like(W[0]))
        self.n_iter_ = np.array([self.n_iter_], dtype=np.int32)
        return self

    _summary_type = ClassSummary

    def _targets(self, summary):
        """The encoder of y, from the classes of all of it (``ClassSummary``)."""
        classes = summary.classes
        if len(classes) < 2:
            raise ValueError(
                "This solver needs samples of at least 2 classes in the data, but "
                f"the data contains only one class: {classes[0]!r}.")
        if self.class_weight is None:
            return ClassTargets(classes)
        if self.class_weight == "balanced":
            # compute_class_weight's "balanced", from the counts alone.
            counts = summary.counts.astype(np.float64)
            return ClassTargets(classes, counts.sum() / (len(classes) * counts))
        return ClassTargets(classes, compute_class_weight(
            self.class_weight, classes=classes, y=classes))

    def _penalty(self, total_weight):
        if np.isinf(self.C):
            return ElasticNetPenalty(), total_weight
        strength = 1.0 / (self.C * total_weight)
        return ElasticNetPenalty(l2=(1 - self.l1_ratio) * strength,
                                 l1=self.l1_ratio * strength), self.C * total_weight

    def decision_function(self, X):
        """Confidence scores, shape (n_samples,) for two classes, else
        (n_samples, n_classes); for a Dask X, a Dask collection computed
        where X's partitions lie."""
        check_is_fitted(self)
        if is_dask_collection(X):
            return map_rows(X, self.decision_function, self._score_columns,
                            self.coef_.dtype)
        return super().decision_function(X)

    def predict(self, X):
        """Predicted class of each sample; for a Dask X, a Dask collection
        computed where X's partitions lie."""
        check_is_fitted(self)
        if is_dask_collection(X):
            return map_rows(X, self.predict, None, self.classes_.dtype)
        return super().predict(X)

    @property
    def _score_columns(self):
        return None if len(self.classes_) == 2 else len(self.classes_)

    def predict_proba(self, X):
        """Probability of each class, columns in the order of ``classes_``;
        for a Dask X, a Dask collection computed where X's partitions lie."""
        check_is_fitted(self)
        if is_dask_collection(X):
            return map_rows(X, self.predict_proba, len(self.classes_), self.coef_.dtype)
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = expit(scores)
            return np.column_stack([1 - p, p])
        return softmax(scores, axis=1)

    def predict_log_proba(self, X):
        """Log of ``predict_proba``, computed stably."""
        check_is_fitted(self)
        if is_dask_collection(X):
            return map_rows(X, self.predict_log_proba, len(self.classes_),
                            self.coef_.dtype)
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = np.column_stack([np.zeros_like(scores), scores])
        return log_softmax(scores, axis=1)
