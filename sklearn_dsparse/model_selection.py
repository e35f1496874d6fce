"""Choosing a model by what it sends, and reading a fit's progress.

A grid search that scores only accuracy picks the least compression (more
blocks sent, more bytes) whenever that is a hair more accurate.  Three pieces
let ``GridSearchCV`` weigh the uplink instead:

- ``neg_uplink_bytes``, a scorer (greater is better, so minus the bytes) to put
  beside the accuracy in ``scoring``;
- ``best_score_within_budget`` and ``fewest_bytes_within``, which build the
  ``refit`` callable that picks a candidate from ``cv_results_``.

And two for the history of a single fit:

- ``suboptimality``, the history's relative suboptimality against a
  reference objective (by default the lowest one the fit recorded), with
  its rounds, uplink bytes and seconds, so that a plot is one line;
- ``objective``, the estimator's objective (in the scale of
  ``history_["objective"]``) at any coefficients, e.g. scikit-learn's
  solution, which gives the exact reference.

Example::

    from sklearn.model_selection import GridSearchCV
    from sklearn_dsparse.model_selection import (best_score_within_budget,
                                                 neg_uplink_bytes)

    search = GridSearchCV(
        DistributedSparseLogisticRegression(solver="saga", max_iter=20, tol=0),
        {"n_blocks": [4, 8, 16], "blocks_per_worker": [1, 2, 4]},
        scoring={"accuracy": "accuracy", "neg_uplink_bytes": neg_uplink_bytes},
        refit=best_score_within_budget(1_000_000, score="accuracy"))
"""

from numbers import Real

import numpy as np
import scipy.sparse as sp
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_array, check_is_fitted

from ._fit import _mean_loss
from ._fit import as_csr_float64

__all__ = ["best_score_within_budget", "fewest_bytes_within", "neg_uplink_bytes",
           "objective", "suboptimality"]


def _fitted_dsparse(estimator, needs):
    """The sklearn-dsparse estimator of ``estimator`` (the last step of a
    Pipeline), checked to have the fitted attribute ``needs``."""
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    check_is_fitted(final)
    if not hasattr(final, needs):
        raise TypeError(
            f"{type(final).__name__} has no {needs}: pass a fitted sklearn-dsparse "
            "estimator (or a Pipeline ending with one).")
    return final


def neg_uplink_bytes(estimator, X, y=None):
    """Minus the uplink bytes the fitted ``estimator`` sent: a scorer.

    scikit-learn's scorers are "greater is better", so this returns
    ``-estimator.communication_["uplink_bytes"]`` (as
    ``neg_mean_squared_error`` returns minus the error): the fewest bytes
    score highest.  Use it beside an accuracy in ``GridSearchCV``'s
    ``scoring``; each fold's value is what the fit on that fold's training
    rows sent, and ``cv_results_["mean_test_neg_uplink_bytes"]`` their
    mean.  A refit on all the rows sends somewhat more for the paper's
    solvers, whose epochs have rounds in proportion to the rows.

    Parameters
    ----------
    estimator : fitted sklearn-dsparse estimator, or Pipeline ending with one
    X, y : ignored
        The test rows of the fold; bytes are a property of the fit.

    Returns
    -------
    score : float
        ``-communication_["uplink_bytes"]``.

    Examples
    --------
    >>> scoring = {"accuracy": "accuracy", "neg_uplink_bytes": neg_uplink_bytes}
    """
    final = _fitted_dsparse(estimator, "communication_")
    return -float(final.communication_["uplink_bytes"])


def _mean_test(cv_results, metric, parameter, rule):
    """``cv_results["mean_test_<metric>"]``, or an error saying what to pass."""
    key = f"mean_test_{metric}"
    if key in cv_results:
        return np.asarray(cv_results[key], dtype=np.float64)
    found = sorted(k[len("mean_test_"):] for k in cv_results
                   if k.startswith("mean_test_"))
    hint = ("GridSearchCV was given a single metric (its key is 'score'); pass a "
            "dict, e.g. scoring={'accuracy': 'accuracy', "
            "'neg_uplink_bytes': neg_uplink_bytes}" if found == ["score"] else
            f"the scoring keys are {found}")
    raise ValueError(
        f"{rule}: cv_results_ has no {key!r} ({parameter}={metric!r}); {hint}. "
        f"Add {metric!r} to GridSearchCV's scoring dict, or set {parameter} to "
        "the key you used.")


class _RefitRule:
    """A ``refit`` callable for ``GridSearchCV``: ``cv_results_ -> index``.

    A class, not a closure, so that a fitted search pickles."""

    def __init__(self, *, score, bytes_score):
        self.score = score
        self.bytes_score = bytes_score

    def _columns(self, cv_results):
        rule = repr(self)
        scores = _mean_test(cv_results, self.score, "score", rule)
        uplink = -_mean_test(cv_results, self.bytes_score, "bytes_score", rule)
        # A failed fit scores nan (GridSearchCV's error_score): never chosen.
        valid = np.isfinite(scores) & np.isfinite(uplink)
        if not valid.any():
            raise ValueError(f"{rule}: every candidate's {self.score!r} or bytes "
                             "is nan (every fit failed); see the search's warnings.")
        return scores, uplink, valid


def _first_best(keys, candidates):
    """Index of the first candidate whose keys are lexicographically smallest
    (``keys`` a tuple of arrays, most important first)."""
    order = np.lexsort(tuple(k[candidates] for k in reversed(keys)))
    return int(np.flatnonzero(candidates)[order[0]])


class _BestScoreWithinBudget(_RefitRule):
    def __init__(self, max_uplink_bytes, *, score, bytes_score):
        super().__init__(score=score, bytes_score=bytes_score)
        self.max_uplink_bytes = max_uplink_bytes

    def __repr__(self):
        return (f"best_score_within_budget({self.max_uplink_bytes!r}, "
                f"score={self.score!r}, bytes_score={self.bytes_score!r})")

    def __call__(self, cv_results):
        scores, uplink, valid = self._columns(cv_results)
        within = valid & (uplink <= self.max_uplink_bytes)
        if not within.any():
            fewest = _first_best((uplink,), valid)
            raise ValueError(
                f"{self!r}: no candidate sends at most max_uplink_bytes="
                f"{self.max_uplink_bytes!r} uplink bytes (mean over the folds); "
                f"the fewest is {uplink[fewest]:.0f}, by candidate {fewest} "
                f"{cv_results['params'][fewest]}. Raise max_uplink_bytes to at "
                f"least {uplink[fewest]:.0f}, or add candidates that send less "
                "(more n_blocks per blocks_per_worker, or fewer epochs).")
        # Highest score; among equal scores, the fewest bytes.
        return _first_best((-scores, uplink), within)


class _FewestBytesWithin(_RefitRule):
    def __init__(self, tolerance, *, score, bytes_score):
        super().__init__(score=score, bytes_score=bytes_score)
        self.tolerance = tolerance

    def __repr__(self):
        return (f"fewest_bytes_within({self.tolerance!r}, score={self.score!r}, "
                f"bytes_score={self.bytes_score!r})")

    def __call__(self, cv_results):
        scores, uplink, valid = self._columns(cv_results)
        near_best = valid & (scores >= np.max(scores[valid]) - self.tolerance)
        # Fewest bytes; among equal bytes, the highest score.
        return _first_best((uplink, -scores), near_best)


def _check_non_negative(name, value):
    if not isinstance(value, Real) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}.")


def best_score_within_budget(max_uplink_bytes, *, score="accuracy",
                             bytes_score="neg_uplink_bytes"):
    """``refit`` for ``GridSearchCV``: the best score among the candidates
    whose uplink is within a budget.

    Parameters
    ----------
    max_uplink_bytes : float
        The budget: a candidate qualifies when its mean uplink bytes over the
        folds (``-cv_results_["mean_test_<bytes_score>"]``) is at most this.

    score : str, default="accuracy"
        The key of the score to maximise in GridSearchCV's ``scoring`` dict.

    bytes_score : str, default="neg_uplink_bytes"
        The key under which ``neg_uplink_bytes`` is in ``scoring``.

    Returns
    -------
    refit : callable
        ``refit(cv_results_)`` returns the index of the qualifying candidate
        with the highest mean ``score``; among equal scores, the one that
        sends the fewest bytes; then the first.  It raises ``ValueError``
        when a key is missing from ``cv_results_`` or when no candidate fits
        the budget (naming the fewest bytes any candidate sent).  Candidates
        whose fit failed (nan scores) never qualify.

    Notes
    -----
    With a callable ``refit``, ``GridSearchCV`` sets ``best_index_``,
    ``best_params_`` and ``best_estimator_`` but not ``best_score_``, and its
    ``score`` method needs a metric name: score with
    ``search.best_estimator_.score(X, y)``.

    Examples
    --------
    >>> refit = best_score_within_budget(1_000_000, score="accuracy")
    """
    _check_non_negative("max_uplink_bytes", max_uplink_bytes)
    return _BestScoreWithinBudget(max_uplink_bytes, score=score,
                                  bytes_score=bytes_score)


def fewest_bytes_within(tolerance, *, score="accuracy",
                        bytes_score="neg_uplink_bytes"):
    """``refit`` for ``GridSearchCV``: the fewest uplink bytes among the
    candidates within ``tolerance`` of the best score.

    Parameters
    ----------
    tolerance : float
        How much mean ``score`` (in its own units: 0.005 is half a point of
        accuracy) a candidate may lose against the best one and still
        qualify.  0 keeps only the best-scoring candidates.

    score : str, default="accuracy"
        The key of the score in GridSearchCV's ``scoring`` dict.

    bytes_score : str, default="neg_uplink_bytes"
        The key under which ``neg_uplink_bytes`` is in ``scoring``.

    Returns
    -------
    refit : callable
        ``refit(cv_results_)`` returns the index of the qualifying candidate
        that sends the fewest mean uplink bytes; among equal bytes, the
        highest score; then the first.  It raises ``ValueError`` when a key
        is missing from ``cv_results_``.  Candidates whose fit failed (nan
        scores) never qualify.

    Notes
    -----
    See ``best_score_within_budget`` for what ``GridSearchCV`` sets with a
    callable ``refit``.

    Examples
    --------
    >>> refit = fewest_bytes_within(0.005, score="accuracy")
    """
    _check_non_negative("tolerance", tolerance)
    return _FewestBytesWithin(tolerance, score=score, bytes_score=bytes_score)


def suboptimality(estimator, reference=None):
    """Relative suboptimality of each row of ``history_``, with its costs.

    Parameters
    ----------
    estimator : fitted sklearn-dsparse estimator, or Pipeline ending with one

    reference : float, default=None
        The optimal objective, in the scale of ``history_["objective"]``
        (the estimator's own, scikit-learn's objective: see ``objective``,
        which computes it at any coefficients, e.g. scikit-learn's
        solution at a tight ``tol``).  None takes the lowest objective the
        fit recorded (its final one when the objective only decreases, as
        with ``solver="newton"``).

    Returns
    -------
    curve : dict of ndarrays of shape (n_history_rows,)
        ``"suboptimality"``: ``(objective - reference) / |reference|``;
        ``"rounds"``, ``"uplink_bytes"``, ``"seconds"``: the same columns of
        ``history_``.  ``pandas.DataFrame(curve).plot(x="uplink_bytes",
        y="suboptimality", logy=True)`` draws it.

    Notes
    -----
    With ``reference=None`` the curve measures progress towards where this
    fit ended, not towards the optimum: it reads 0 at the lowest recorded
    objective by construction (a point a log scale cannot show), and every
    value is smaller than the true suboptimality by the fit's own final
    gap, ``(best recorded - optimum) / |reference|``.  It is a good estimate
    of the true one wherever it is much larger than that gap, e.g. for a
    fit that converged to a tight ``tol``; it is not a bound.  With the
    exact optimum as ``reference`` the values are non-negative up to
    rounding; a negative value means the reference is not the optimum (or
    not in the scale of ``history_``).

    Examples
    --------
    >>> curve = suboptimality(clf)                                # doctest: +SKIP
    >>> f_star = objective(clf, X, y, coef=sk.coef_, intercept=sk.intercept_)
    ... # doctest: +SKIP
    >>> curve = suboptimality(clf, reference=f_star)             # doctest: +SKIP
    """
    history = _fitted_dsparse(estimator, "history_").history_
    values = history["objective"]
    if reference is None:
        reference = float(np.min(values))
    if not (isinstance(reference, Real) and np.isfinite(reference)
            and reference != 0):
        raise ValueError(
            f"reference must be a finite, non-zero objective value, got "
            f"{reference!r}; the suboptimality is relative to |reference|. For an "
            "objective of 0, use history_['objective'] itself.")
    return {"suboptimality": (values - reference) / abs(reference),
            "rounds": history["rounds"].copy(),
            "uplink_bytes": history["uplink_bytes"].copy(),
            "seconds": history["seconds"].copy()}


def objective(estimator, X, y, sample_weight=None, *, coef=None, intercept=None):
    """The estimator's objective on (X, y) at given coefficients.

    The value is the objective in the estimator's docstring (scikit-learn's
    for the same hyper-parameters: ``C``, ``l1_ratio``, ``class_weight``,
    ``alpha``), in the scale of ``history_["objective"]``, computed by the
    same code: at the fitted coefficients on the training data it equals
    the history's last value.  At scikit-learn's solution it gives
    ``suboptimality`` its exact reference.

    Parameters
    ----------
    estimator : sklearn-dsparse estimator
        Its hyper-parameters define the objective; it needs to be fitted
        only when ``coef`` is None.

    X : {array-like, sparse matrix} of shape (n_samples, n_features)

    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Classes are encoded as ``fit`` does: sorted, two classes binary.

    sample_weight : array-like of shape (n_samples,), default=None

    coef : array-like of shape (n_features,), (1, n_features), \
            (n_classes, n_features) or (n_targets, n_features), default=None
        The coefficients, shaped as a ``coef_`` (scikit-learn's
        ``LogisticRegression``, ``Ridge`` or ``ElasticNet`` ``coef_``
        qualifies); None takes ``estimator.coef_``.

    intercept : float or array-like of shape (n_outputs,), default=None
        None takes ``estimator.intercept_`` when ``coef`` is None, and is
        required with ``coef`` when ``estimator.fit_intercept`` is True (0
        otherwise).  The intercept is never penalised.

    Returns
    -------
    value : float

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression       # doctest: +SKIP
    >>> sk = LogisticRegression(C=clf.C, tol=1e-12).fit(X, y)     # doctest: +SKIP
    >>> f_star = objective(clf, X, y, coef=sk.coef_, intercept=sk.intercept_)
    ... # doctest: +SKIP
    """
    if not hasattr(estimator, "_objective_parts"):
        raise TypeError(f"{type(estimator).__name__} is not an sklearn-dsparse "
                        "estimator; its hyper-parameters define the objective.")
    if coef is None:
        check_is_fitted(estimator)
        coef, intercept = estimator.coef_, estimator.intercept_
    elif intercept is None:
        if estimator.fit_intercept:
            raise ValueError(
                "coef was given without intercept, but the estimator has "
                "fit_intercept=True: pass intercept= too (e.g. the intercept_ of "
                "the model coef comes from), or 0 to evaluate without one.")
        intercept = 0.0
    X = as_csr_float64(check_array(X, accept_sparse="csr",
                                    dtype=[np.float64, np.float32]))
    y = np.asarray(y)
    sample_weight = estimator._validated_sample_weight(sample_weight, X)
    loss, Y, sample_weight, penalty, scale = estimator._objective_parts(
        y, sample_weight)
    n_features, n_outputs = X.shape[1], Y.shape[1]
    if sp.issparse(coef):  # after sparsify()
        coef = coef.toarray()
    coef_rows = np.atleast_2d(np.asarray(coef, dtype=np.float64)).T
    if coef_rows.shape != (n_features, n_outputs):
        raise ValueError(
            f"coef has shape {np.shape(coef)}; with {n_features} features and "
            f"{n_outputs} outputs (a binary problem has one), the estimator's "
            f"coef_ would have shape ({n_outputs}, {n_features}).")
    intercept = np.asarray(intercept, dtype=np.float64).ravel()
    if intercept.size not in (1, n_outputs):
        raise ValueError(f"intercept has {intercept.size} values; the estimator's "
                         f"intercept_ would have {n_outputs}.")
    intercept = np.broadcast_to(intercept, (n_outputs,))
    # The intercept as the last parameter row, always present: a zero
    # intercept contributes nothing, so one layout serves both settings.
    W = np.ascontiguousarray(np.vstack([coef_rows, intercept[np.newaxis]]))
    row_weights = sample_weight / np.sum(sample_weight)
    mean_loss = _mean_loss(loss.id, W, X.data, X.indices, X.indptr,
                           np.ascontiguousarray(Y), row_weights, True)
    return float(scale * (mean_loss + penalty.value(coef_rows)))
