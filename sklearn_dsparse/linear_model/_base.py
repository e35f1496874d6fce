"""Parameters shared by every estimator, and the one place they are checked.

An estimator only converts its hyper-parameters to (loss, penalty) and the
encoded targets; ``DistributedSparseMixin._fit_dsparse`` does the rest.
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import check_is_fitted, validate_data

from .._compat import (Interval, StrOptions, _check_feature_names,
                       _check_sample_weight, _fit_context)
from .._dask_data import DaskData, RemoteData, is_dask_collection, map_rows
from .._file_data import FileData, FileShards
from .._fit import as_csr_float64, fit_dsparse
from ._targets import RegressionTargets, TargetSummary
from ..step_size import ASGD_MAX_COLUMNS


class DistributedSparseMixin:
    """Shared parameters of the sklearn-dsparse estimators.

    See the estimators' docstrings for their meaning; ``_fit_dsparse`` checks
    them against the data and runs the fit.
    """

    _parameter_constraints = {
        "fit_intercept": ["boolean"],
        "solver": [StrOptions({"newton", "saga", "sgd", "gd", "asgd"})],
        "n_workers": [Interval(Integral, 1, None, closed="left")],
        "n_blocks": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "blocks_per_worker": [Interval(Integral, 1, None, closed="left"),
                              StrOptions({"auto"})],
        "sparsifier": [StrOptions({"auto", "independent", "bernoulli", "shared",
                                   "none"})],
        "control_variates": ["boolean", StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "step_size": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        # 0 workers is no answer (joblib rejects it too); -1 is every slot.
        "n_jobs": [Interval(Integral, None, -1, closed="right"),
                   Interval(Integral, 1, None, closed="left"), None],
        "master_address": [str, None],
        "asynchronous": ["boolean"],
        "max_staleness": [Interval(Integral, 0, None, closed="left"),
                          StrOptions({"auto"})],
    }

    def _resolve_sparsifier(self):
        """The sparsifier "auto" stands for: "none" for ``solver="newton"``
        unless blocks are asked for, "independent" otherwise."""
        if self.sparsifier != "auto":
            return self.sparsifier
        blocks_given = self.n_blocks != "auto" or self.blocks_per_worker != "auto"
        return "none" if self.solver == "newton" and not blocks_given else "independent"

    def _check_solver_parameters(self):
        if self.solver != "newton":
            return
        for name in ("batch_size", "step_size"):
            if getattr(self, name) != "auto":
                raise ValueError(
                    f"{name}={getattr(self, name)!r} applies to solver='saga', 'sgd' "
                    f"or 'gd'; solver='newton' uses every row and a line search. Set "
                    f"{name}='auto', or choose one of those solvers.")

    def _check_asynchronous(self, sparsifier):
        """What ``asynchronous=True`` needs (docs/method.md, "Asynchronous
        ISGD"), or why it is refused."""
        if not self.asynchronous:
            if self.max_staleness != "auto":
                raise ValueError(
                    f"max_staleness={self.max_staleness!r} bounds the staleness of "
                    "an asynchronous fit. Set asynchronous=True, or "
                    "max_staleness='auto'.")
            return
        if self.solver != "sgd":
            raise ValueError(
                f"asynchronous=True runs asynchronous ISGD: it needs solver='sgd', "
                f"not solver={self.solver!r} (whose rounds need every worker's "
                "message, or a master that decides each round). Set solver='sgd', "
                "or asynchronous=False.")
        if sparsifier == "shared":
            raise ValueError(
                "sparsifier='shared' makes every worker replay one draw per round, "
                "and an asynchronous fit has no rounds. Use sparsifier='independent', "
                "'bernoulli' or 'none', or asynchronous=False.")
        if self.control_variates is False:
            raise ValueError(
                "asynchronous=True needs the control variates: the master's mean of "
                "them keeps each worker's last estimate at its weight, whatever the "
                "order in which messages arrive (without it, fast workers' data "
                "would count more). Set control_variates='auto' or True.")
        if self.max_staleness != "auto" and self.max_staleness < self.n_workers - 1:
            raise ValueError(
                f"max_staleness={self.max_staleness} is below n_workers - 1 = "
                f"{self.n_workers - 1}: while one worker computes, each of the "
                "others' messages is applied, so workers of equal speed already "
                f"see that staleness. Set max_staleness >= {self.n_workers - 1}, "
                "or 'auto'.")

    def _check_asgd(self, loss, penalty, sparsifier, n_columns):
        """What ``solver="asgd"`` needs (docs/method.md, "Accelerated SGD"), or
        a ValueError naming the fix."""
        if self.solver != "asgd":
            return
        if not (loss.constant_curvature or loss.name == "logistic"):
            # The convex schedule would apply; its estimate of rho is measured
            # on the binary logistic loss only (docs/method.md).
            raise ValueError(
                f"solver='asgd' takes the squared loss and the binary logistic "
                f"loss; its schedule has not been measured on the {loss.name} "
                "loss. Use solver='sgd', 'saga' or 'newton'.")
        if penalty.l1 > 0.0:
            raise ValueError(
                "solver='asgd' takes no L1 penalty: its accelerated sequences are "
                "analysed without a proximal step. Set l1_ratio=0, or use "
                "solver='saga' or 'newton'.")
        if sparsifier in ("shared", "bernoulli"):
            # Shared masks are not independent; Bernoulli's blocks go all or
            # none, which the estimate's second moment (step_size) leaves out.
            raise ValueError(
                f"solver='asgd' is the paper's accelerated SGD with independent "
                f"sparsification; its parameters assume blocks drawn independently "
                f"of each other, not sparsifier={sparsifier!r}. Set "
                "sparsifier='independent' or 'none'.")
        if self.control_variates is True:
            raise ValueError(
                "solver='asgd' runs without control variates: its guarantee is for "
                "the unbiased estimate of models that interpolate, whose every "
                "worker's gradient vanishes at the optimum. Set "
                "control_variates='auto' or False.")
        if loss.constant_curvature and n_columns > ASGD_MAX_COLUMNS:
            raise ValueError(
                f"solver='asgd' computes its parameters from d x d matrices, d = "
                f"n_features + fit_intercept = {n_columns}, at most "
                f"{ASGD_MAX_COLUMNS}. Use solver='sgd' or 'newton'.")

    def _resolve_blocks(self, n_samples, n_columns):
        """(sparsifier, n_blocks, blocks_per_worker) for this data, or a
        ValueError naming the fix."""
        sparsifier = self._resolve_sparsifier()
        if self.n_workers > n_samples:
            raise ValueError(
                f"n_workers={self.n_workers} is larger than the number of samples "
                f"(n_samples = {n_samples}): every worker needs at least one row. "
                f"Set n_workers <= {n_samples}.")
        if self.n_blocks == "auto":
            n_blocks = min(n_columns, self.n_workers)
        elif self.n_blocks > n_columns:
            raise ValueError(
                f"n_blocks={self.n_blocks} is larger than the number of parameter "
                f"rows (n_features + fit_intercept = {n_columns}). Set "
                f"n_blocks <= {n_columns} or n_blocks='auto'.")
        else:
            n_blocks = self.n_blocks
        if self.blocks_per_worker == "auto":
            tau = max(1, round(n_blocks / self.n_workers))
        elif self.blocks_per_worker > n_blocks:
            raise ValueError(
                f"blocks_per_worker={self.blocks_per_worker} is larger than "
                f"n_blocks={n_blocks}. Set blocks_per_worker <= n_blocks or "
                "blocks_per_worker='auto'.")
        else:
            tau = self.blocks_per_worker
        if sparsifier == "none":
            if self.blocks_per_worker not in ("auto", n_blocks):
                raise ValueError(
                    f"sparsifier='none' sends all n_blocks={n_blocks} blocks, but "
                    f"blocks_per_worker={self.blocks_per_worker}. Set "
                    "blocks_per_worker='auto', or sparsifier='independent'.")
            tau = n_blocks
        return sparsifier, n_blocks, tau

    @staticmethod
    def _validated_sample_weight(sample_weight, X):
        """A fresh float64 array of non-negative weights with a positive sum."""
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                             ensure_non_negative=True, copy=True)
        if not sample_weight.sum() > 0:
            raise ValueError("sample_weight sums to zero: at least one sample "
                             "must have a positive weight.")
        return sample_weight

    def _objective_parts(self, y, sample_weight):
        """(loss, encoded Y, row weights, penalty, objective_scale) of the
        objective on targets ``y``: ``objective_scale * F`` is the docstring's
        objective, F the weighted mean loss plus ``penalty``.  Used by ``fit``
        and by ``sklearn_dsparse.model_selection.objective``."""
        targets = self._targets(self._summary_type(y, sample_weight))
        Y, sample_weight = targets.encode(y, sample_weight)
        penalty, scale = self._penalty(float(np.sum(sample_weight)))
        return targets.loss, Y, sample_weight, penalty, scale

    def _fit_data(self, X, y, sample_weight, validation):
        """Validate X and y (``validate_data(**validation)``), encode y and
        fit, in memory or, for data that lives elsewhere (Dask collections,
        ``FileShards``), in the tasks that hold or read it.  Returns (W, the
        targets' encoder, X's dtype)."""
        if isinstance(X, FileShards) or is_dask_collection(X, y, sample_weight):
            return self._fit_elsewhere(X, y, sample_weight, validation)
        self.__dict__.pop("shard_partitions_", None)  # from a fit of data elsewhere
        X, y = validate_data(self, X, y, **validation)
        sample_weight = self._validated_sample_weight(sample_weight, X)
        targets = self._targets(self._summary_type(y, sample_weight))
        Y, sample_weight = targets.encode(y, sample_weight)
        penalty, scale = self._penalty(float(np.sum(sample_weight)))
        W = self._fit_dsparse(X, Y, sample_weight, targets.loss, penalty, scale)
        return W, targets, X.dtype

    def _fit_elsewhere(self, X, y, sample_weight, validation):
        validation = dict(validation, estimator=type(self).__name__)
        if isinstance(X, FileShards):
            if y is not None or sample_weight is not None:
                raise ValueError(
                    "X is a FileShards: its files hold y, and the fit takes no "
                    f"{'y' if y is not None else 'sample_weight'} beside them. "
                    "Call fit(FileShards(...)) alone.")
            data = FileData(X, self.n_jobs, validation, self._summary_type)
        else:
            if self.n_jobs not in (None, -1):
                raise ValueError(
                    f"n_jobs={self.n_jobs}: with Dask collections the worker tasks "
                    "run on the Dask workers that hold the partitions, one per "
                    "worker. Set n_jobs=None (or -1).")
            data = DaskData(self, X, y, sample_weight, validation, self._summary_type)
        try:
            self.n_features_in_ = data.n_features
            if data.meta is not None:
                _check_feature_names(self, data.meta, reset=True)
            else:
                self.__dict__.pop("feature_names_in_", None)
            targets = self._targets(data.summary)
            data.shard(targets, self.n_workers)
            penalty, scale = self._penalty(data.total_weight)
            W = self._fit_dsparse(data, None, None, targets.loss, penalty, scale)
        finally:
            data.release()
        self.shard_partitions_ = [list(map(int, parts)) for parts in data.shard_partitions]
        return W, targets, data.dtype

    def _fit_dsparse(self, X, Y, sample_weight, loss, penalty, objective_scale):
        """Fit and set the fitted attributes common to all estimators.

        Returns W of shape (n_features + fit_intercept, n_outputs).
        """
        n_samples, n_features = X.shape
        n_columns = n_features + int(self.fit_intercept)
        self._check_solver_parameters()
        sparsifier, n_blocks, tau = self._resolve_blocks(n_samples, n_columns)
        self._check_asgd(loss, penalty, sparsifier, n_columns)
        self._check_asynchronous(sparsifier)
        if not isinstance(X, RemoteData):
            X, Y = as_csr_float64(X), np.ascontiguousarray(Y, dtype=np.float64)
        n_outputs = X.targets.n_outputs if Y is None else Y.shape[1]
        result = fit_dsparse(
            X, Y, sample_weight, loss=loss, penalty=penalty,
            objective_scale=objective_scale, fit_intercept=self.fit_intercept,
            solver=self.solver, n_workers=self.n_workers, n_blocks=n_blocks,
            blocks_per_worker=tau, sparsifier=sparsifier,
            control_variates=self.control_variates, batch_size=self.batch_size,
            step_size=self.step_size, max_iter=self.max_iter, tol=self.tol,
            random_state=check_random_state(self.random_state),
            verbose=self.verbose, coef_init=self._warm_start_coef(n_columns, n_outputs),
            n_jobs=self.n_jobs, master_address=self.master_address,
            asynchronous=self.asynchronous, max_staleness=self.max_staleness)
        self.n_iter_ = result.n_iter
        self.step_size_ = result.step_size
        self.batch_size_ = result.batch_size
        self.communication_ = result.communication
        self.history_ = result.history
        self.n_blocks_ = n_blocks
        self.blocks_per_worker_ = tau
        self.sparsifier_ = sparsifier
        return result.coef

    def _warm_start_coef(self, n_columns, n_outputs):
        if not (self.warm_start and hasattr(self, "coef_")):
            return None
        coef = self.coef_.toarray() if sp.issparse(self.coef_) else self.coef_
        coef = np.atleast_2d(coef).T  # (n_features, n_outputs)
        if coef.shape != (n_columns - int(self.fit_intercept), n_outputs):
            return None
        if self.fit_intercept:
            coef = np.vstack([coef, np.atleast_1d(self.intercept_)[np.newaxis]])
        return np.array(coef, dtype=np.float64, order="C")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class DistributedSparseRegressorMixin(DistributedSparseMixin):
    """fit / predict of the squared-loss estimators.

    A subclass only states its penalty: ``_penalty(total_weight)`` returns the
    ``ElasticNetPenalty`` of the objective divided by ``objective_scale``, and
    that scale, so that ``objective_scale * F`` is the estimator's objective.
    """

    def _penalty(self, total_weight):
        raise NotImplementedError

    _summary_type = TargetSummary

    @staticmethod
    def _targets(summary):
        return RegressionTargets(summary)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

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
        y : array-like of shape (n_samples,) or (n_samples, n_targets), default=None
            Required, except with a ``FileShards``, whose files hold y.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; integer weights are equivalent to repeating
            rows.

        Returns
        -------
        self
        """
        W, targets, dtype = self._fit_data(
            X, y, sample_weight, dict(accept_sparse="csr", dtype=[np.float64, np.float32],
                                      multi_output=True, y_numeric=True))
        # Computed in float64; the model takes the input's precision, as
        # scikit-learn's solvers for float32 input.
        W = W.astype(dtype)
        n_features = self.n_features_in_
        coef = W[:n_features].T
        intercept = W[n_features] if self.fit_intercept else np.zeros_like(W[0])
        if targets.ndim == 1:
            self.coef_, self.intercept_ = coef[0].copy(), intercept[0]
        else:
            self.coef_, self.intercept_ = np.ascontiguousarray(coef), intercept.copy()
        self.n_iter_ = self._n_iter_as_scikit_learn(self.n_iter_, targets.ndim,
                                                    targets.n_outputs)
        return self

    @staticmethod
    def _n_iter_as_scikit_learn(n_iter, y_ndim, n_targets):
        """``n_iter_`` in the shape of the scikit-learn counterpart's."""
        raise NotImplementedError

    def predict(self, X):
        """Predicted targets, shape (n_samples,) or (n_samples, n_targets);
        for a Dask X, a Dask collection computed where X's partitions lie."""
        check_is_fitted(self)
        if is_dask_collection(X):
            return map_rows(X, self.predict, None if self.coef_.ndim == 1
                            else self.coef_.shape[0], self.coef_.dtype)
        X = validate_data(self, X, accept_sparse="csr", reset=False,
                          dtype=[np.float64, np.float32])
        return safe_sparse_dot(X, self.coef_.T, dense_output=True) + self.intercept_
