"""The lazy dense rounds give the message-passing rounds' iterates and bytes."""

import warnings

import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from sklearn_dsparse import DistributedSparseLogisticRegression, DistributedSparseRidge
from sklearn_dsparse import _lazy

from conftest import abalone_classes, load


def fit_both(monkeypatch, make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with monkeypatch.context() as m:
            m.setattr(_lazy, "cheaper", lambda problem: True)
            lazy = make().fit(*make.data)
        with monkeypatch.context() as m:
            m.setattr(_lazy, "applies", lambda problem: False)
            eager = make().fit(*make.data)
    return lazy, eager


@pytest.mark.parametrize("solver", ["saga", "sgd"])
@pytest.mark.parametrize("problem", ["binary", "multinomial", "ridge", "strong_ridge"])
@pytest.mark.parametrize("n_workers, sparsifier", [(1, "independent"), (3, "none")])
def test_lazy_rounds_match_message_rounds(monkeypatch, solver, problem, n_workers,
                                          sparsifier):
    if problem == "binary":
        X, y = load("a1a")
        est = DistributedSparseLogisticRegression(C=0.5)
    elif problem == "multinomial":
        X, y = abalone_classes()
        est = DistributedSparseLogisticRegression(C=0.5)
    else:
        X, y = load("abalone_scale")
        # a strong penalty shrinks the lazy scale below 1e-6 within an epoch
        est = DistributedSparseRidge(alpha=1.0 if problem == "ridge" else 4000.0)
    est.set_params(solver=solver, n_workers=n_workers, sparsifier=sparsifier,
                   batch_size=4, max_iter=4, tol=0, random_state=0)

    def make():
        return clone(est)
    make.data = (X, y)
    lazy, eager = fit_both(monkeypatch, make)
    assert_allclose(lazy.coef_, eager.coef_, rtol=1e-9, atol=1e-12)
    assert_allclose(lazy.intercept_, eager.intercept_, rtol=1e-9, atol=1e-12)
    assert dict(lazy.communication_) == dict(eager.communication_)
    assert_allclose(lazy.history_["objective"], eager.history_["objective"], rtol=1e-9)


def test_lazy_rounds_are_used_only_where_they_apply():
    X, y = load("a1a")
    seen = []
    original = _lazy.applies

    def spy(problem):
        seen.append(original(problem))
        return seen[-1]

    _lazy.applies = spy
    cheaper = _lazy.cheaper
    _lazy.cheaper = lambda problem: True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for params in [dict(n_workers=1), dict(sparsifier="none"),
                           dict(n_workers=4), dict(n_workers=1, l1_ratio=0.5),
                           dict(n_workers=1, solver="gd"),
                           dict(n_workers=1, control_variates=True)]:
                DistributedSparseLogisticRegression(
                    **{"solver": "saga", "max_iter": 1, **params}).fit(X, y)
    finally:
        _lazy.applies = original
        _lazy.cheaper = cheaper
    assert seen == [True, True, False, False, False, False]


def test_lazy_rounds_are_chosen_when_the_model_is_wider_than_a_round():
    X, y = load("a1a")  # 124 parameter rows, ~14 non-zeros per row
    fit = lambda **params: DistributedSparseLogisticRegression(
        solver="saga", n_workers=1, max_iter=1, **params).fit(X, y)
    seen = []
    original = _lazy.cheaper
    _lazy.cheaper = lambda problem: seen.append(original(problem)) or seen[-1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit(batch_size=1)
            fit(batch_size=16)
    finally:
        _lazy.cheaper = original
    assert seen == [True, False]
