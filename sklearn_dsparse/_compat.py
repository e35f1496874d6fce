"""The one module importing scikit-learn's private helpers.

They are what scikit-learn's own estimators use for parameter validation,
sample weights and linear classifiers; when scikit-learn moves them, only this
file changes.
"""

from sklearn.base import _fit_context
from sklearn.linear_model._base import LinearClassifierMixin, SparseCoefMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names, _check_sample_weight

__all__ = ["Interval", "LinearClassifierMixin", "SparseCoefMixin", "StrOptions",
           "_check_feature_names", "_check_sample_weight", "_fit_context"]
