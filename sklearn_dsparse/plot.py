"""Convergence figures from ``history_``: suboptimality against rounds,
uplink bytes or seconds, for one or several fitted estimators on one axis.

Needs matplotlib (``pip install "sklearn-dsparse[plot]"``).
"""

from collections.abc import Mapping

import numpy as np

from .model_selection import _fitted_dsparse, suboptimality

__all__ = ["plot_convergence"]

#: What the x axis can show (a column of ``history_``), and its label.
X_AXES = {"rounds": "rounds", "uplink_bytes": "uplink bytes, all workers",
          "seconds": "seconds fitting"}


def plot_convergence(estimators, *, x="rounds", reference=None, ax=None):
    """Plot the relative suboptimality of fitted estimators against a cost.

    Parameters
    ----------
    estimators : fitted estimator, list of them, or dict of label -> estimator
        sklearn-dsparse estimators fitted on the same data with the same
        objective (or Pipelines ending with one).  A list is labelled by each
        estimator's solver and sparsifier.

    x : {"rounds", "uplink_bytes", "seconds"}, default="rounds"
        The cost on the horizontal axis (cumulative, from ``history_``).

    reference : float, default=None
        The optimal objective (``sklearn_dsparse.model_selection.objective``
        gives it at scikit-learn's solution, say).  None takes the lowest
        objective any of the estimators recorded: the curves then measure
        progress towards the best of them, whose last point (0) is not
        drawn on the log scale.

    ax : matplotlib Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : matplotlib Axes
        One line per estimator; the y axis is logarithmic, and so is the x
        axis for bytes.
    """
    if x not in X_AXES:
        raise ValueError(f"x={x!r} is not a cost history_ records; choose one of "
                         f"{sorted(X_AXES)}.")
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plot_convergence needs matplotlib: pip install "
                          '"sklearn-dsparse[plot]".') from exc
    if isinstance(estimators, Mapping):
        labelled = dict(estimators)
    else:
        if not isinstance(estimators, (list, tuple)):
            estimators = [estimators]
        labelled = {_label(_fitted_dsparse(est, "history_"), i): est
                    for i, est in enumerate(estimators)}
    if reference is None:
        reference = min(float(np.min(_fitted_dsparse(est, "history_")
                                     .history_["objective"]))
                        for est in labelled.values())
    if ax is None:
        ax = plt.figure().add_subplot()
    for label, est in labelled.items():
        curve = suboptimality(est, reference=reference)
        shown = curve["suboptimality"] > 0  # a log axis cannot show 0
        ax.plot(curve[x][shown], curve["suboptimality"][shown], label=label)
    ax.set_yscale("log")
    if x == "uplink_bytes":
        ax.set_xscale("log")
    ax.set_xlabel(X_AXES[x])
    ax.set_ylabel("relative suboptimality")
    ax.legend()
    return ax


def _label(final, index):
    return f"{index}: {final.solver}, {final.sparsifier_}"
