"""``sklearn_dsparse.plot``: the lines drawn are the fits' suboptimality."""

import matplotlib
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from sklearn_dsparse import DistributedSparseLogisticRegression
from sklearn_dsparse.model_selection import objective
from sklearn_dsparse.plot import plot_convergence

# No display in CI; pyplot picks the backend when first imported (in the tests).
matplotlib.use("Agg")


@pytest.fixture(scope="module")
def fits():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    newton = DistributedSparseLogisticRegression(random_state=0).fit(X, y)
    saga = DistributedSparseLogisticRegression(solver="saga", max_iter=50, tol=0,
                                               random_state=0)
    with pytest.warns(Warning):
        saga.fit(X, y)  # stops at max_iter: a ConvergenceWarning
    exact = LogisticRegression(tol=1e-12, max_iter=10_000).fit(X, y)
    F_star = objective(newton, X, y, coef=exact.coef_, intercept=exact.intercept_)
    return newton, saga, F_star


def test_lines_are_the_suboptimality_against_the_cost(fits):
    import matplotlib.pyplot as plt

    newton, saga, F_star = fits
    ax = plot_convergence({"default": newton, "saga": saga}, x="uplink_bytes",
                          reference=F_star)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"default", "saga"}
    for label, est in (("default", newton), ("saga", saga)):
        h = est.history_
        expected = (h["objective"] - F_star) / F_star
        shown = expected > 0
        assert_array_equal(lines[label].get_xdata(), h["uplink_bytes"][shown])
        assert_allclose(lines[label].get_ydata(), expected[shown], rtol=1e-12)
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    assert ax.get_xlabel() == "uplink bytes, all workers"
    assert ax.get_ylabel() == "relative suboptimality"
    # the default reaches 1e-6 with far fewer bytes than the paper's saga
    assert lines["default"].get_ydata()[-1] < 1e-6 < lines["saga"].get_ydata()[-1]
    plt.close("all")


def test_default_reference_is_the_lowest_recorded_objective(fits):
    import matplotlib.pyplot as plt

    newton, saga, _ = fits
    _, ax = plt.subplots()
    assert plot_convergence([newton, saga], x="rounds", ax=ax) is ax
    best = min(newton.history_["objective"].min(), saga.history_["objective"].min())
    first = ax.get_lines()[0]
    assert first.get_label() == "0: newton, none"
    assert ax.get_lines()[1].get_label() == "1: saga, independent"
    h = newton.history_
    values = (h["objective"] - best) / best
    assert_allclose(first.get_ydata(), values[values > 0], rtol=1e-12)
    assert ax.get_xscale() == "linear"
    plt.close("all")


def test_bad_axis_and_unfitted_estimators_are_refused(fits):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(ValueError, match="x='epochs' is not a cost"):
        plot_convergence(fits[0], x="epochs")
    with pytest.raises(NotFittedError):
        plot_convergence(DistributedSparseLogisticRegression())
