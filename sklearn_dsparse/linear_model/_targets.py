"""The targets as the fit sees them, written once for y in memory and for y
in the partitions of a Dask collection.

``summarize`` reads a piece of y (all of it, or one partition) into a small
summary; summaries of pieces add up (``merge``) to the summary of the whole.
The estimator turns the whole's summary into an encoder (``ClassTargets``,
``RegressionTargets``) whose ``encode`` maps a piece to (Y, sample weights)
row by row, so that pieces encoded apart are the whole encoded at once, bit
for bit.
"""

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from ..losses import LOGISTIC, MULTINOMIAL, SQUARED


class ClassSummary:
    """The classes of a piece of y, their counts and their sample weight."""

    def __init__(self, y, sample_weight):
        check_classification_targets(y)
        self.classes, index, self.counts = np.unique(y, return_inverse=True,
                                                     return_counts=True)
        self.weights = np.bincount(index, weights=sample_weight,
                                   minlength=len(self.classes))

    def merge(self, other):
        merged = object.__new__(ClassSummary)
        merged.classes = np.unique(np.concatenate([self.classes, other.classes]))
        merged.counts = np.zeros(len(merged.classes), dtype=np.int64)
        merged.weights = np.zeros(len(merged.classes))
        for part in (self, other):
            at = np.searchsorted(merged.classes, part.classes)
            merged.counts[at] += part.counts
            merged.weights[at] += part.weights
        return merged


class ClassTargets:
    """y as the logistic losses take it: a 0/1 column for two classes, one-hot
    rows for more; ``class_weight`` (one factor per class, or None)
    multiplies the sample weights."""

    ndim = 1

    def __init__(self, classes, class_weight=None):
        self.classes = classes
        self.class_weight = class_weight
        self.loss = LOGISTIC if len(classes) == 2 else MULTINOMIAL

    @property
    def n_outputs(self):
        return 1 if len(self.classes) == 2 else len(self.classes)

    def encode(self, y, sample_weight):
        # What LabelEncoder.transform computes, for labels known to be classes.
        index = np.searchsorted(self.classes, y)
        if self.class_weight is not None:
            sample_weight = sample_weight * self.class_weight[index]
        if len(self.classes) == 2:
            return (index == 1).astype(np.float64)[:, None], sample_weight
        return np.eye(len(self.classes))[index], sample_weight

    def weight_of(self, summary):
        """The encoded sample weight of the piece ``summary`` describes."""
        weights = summary.weights
        if self.class_weight is not None:
            weights = weights * self.class_weight[
                np.searchsorted(self.classes, summary.classes)]
        return float(np.sum(weights))


class TargetSummary:
    """The shape of a piece of a regression's y and its sample weight."""

    def __init__(self, y, sample_weight):
        y = np.asarray(y)
        self.ndim = y.ndim
        self.n_outputs = 1 if y.ndim == 1 else y.shape[1]
        self.weight = float(np.sum(sample_weight))

    def merge(self, other):
        if (self.ndim, self.n_outputs) != (other.ndim, other.n_outputs):
            raise ValueError(
                f"y has {self.n_outputs} target(s) in one partition and "
                f"{other.n_outputs} in another: every partition of y needs the "
                "same columns.")
        merged = object.__new__(TargetSummary)
        merged.ndim, merged.n_outputs = self.ndim, self.n_outputs
        merged.weight = self.weight + other.weight
        return merged


class RegressionTargets:
    """y as the squared loss takes it: a column per target (``ndim`` that of
    the y given, which the fitted coefficients follow)."""

    loss = SQUARED

    def __init__(self, summary):
        self.n_outputs = summary.n_outputs
        self.ndim = summary.ndim

    def encode(self, y, sample_weight):
        return np.asarray(y, dtype=np.float64).reshape(len(y), -1), sample_weight

    @staticmethod
    def weight_of(summary):
        return summary.weight
