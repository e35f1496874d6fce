"""Each loss: derivative against finite differences, curvature bound, stability."""

import pickle

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from sklearn_dsparse.losses import (LOGISTIC, MULTINOMIAL, SQUARED, loss_derivative,
                                    loss_value)


def samples(loss, rng, n=20):
    """Margins z of one row and the targets Y whose row 0 is that row's."""
    for z, y in _rows(loss, rng, n):
        yield z, y[np.newaxis]


def _rows(loss, rng, n):
    for _ in range(n):
        if loss is LOGISTIC:
            yield rng.normal(scale=3, size=1), rng.randint(0, 2, size=1).astype(float)
        elif loss is MULTINOMIAL:
            yield rng.normal(scale=3, size=4), np.eye(4)[rng.randint(4)]
        else:
            yield rng.normal(scale=3, size=3), rng.normal(size=3)


@pytest.mark.parametrize("loss", [LOGISTIC, MULTINOMIAL, SQUARED], ids=repr)
def test_derivative_matches_finite_differences(loss):
    rng = np.random.RandomState(0)
    for z, y in samples(loss, rng):
        out = np.empty_like(z)
        loss_derivative(loss.id, z, y, 0, out)
        numeric = approx_fprime(z, lambda v: loss_value(loss.id, v, y, 0), 1e-7)
        np.testing.assert_allclose(out, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", [LOGISTIC, MULTINOMIAL, SQUARED], ids=repr)
def test_curvature_bounds_the_hessian(loss):
    rng = np.random.RandomState(1)
    largest = 0.0
    for z, y in samples(loss, rng, n=200):
        z = z / 3  # near zero, where the logistic curvature peaks
        def grad(v):
            out = np.empty_like(v)
            loss_derivative(loss.id, v, y, 0, out)
            return out
        hessian = np.array([approx_fprime(z, lambda v: grad(v)[k], 1e-6)
                            for k in range(z.size)])
        largest = max(largest, np.linalg.eigvalsh((hessian + hessian.T) / 2)[-1])
    assert largest <= loss.curvature * (1 + 1e-4)
    assert largest >= 0.5 * loss.curvature  # the bound is not loose


def test_losses_are_finite_for_large_margins():
    for t in (-800.0, 800.0):
        z = np.array([t])
        for y in (0.0, 1.0):
            assert np.isfinite(loss_value(LOGISTIC.id, z, np.array([y]), 0))
            out = np.empty(1)
            loss_derivative(LOGISTIC.id, z, np.array([y]), 0, out)
            assert -1 <= out[0] <= 1
    z = np.array([900.0, -900.0, 0.0])
    assert np.isfinite(loss_value(MULTINOMIAL.id, z, np.eye(3)[1:2], 0))
    assert loss_value(LOGISTIC.id, np.array([800.0]), np.array([1.0]), 0) == 0.0


def test_losses_pickle_to_themselves():
    for loss in (LOGISTIC, MULTINOMIAL, SQUARED):
        assert pickle.loads(pickle.dumps(loss)) is loss


@pytest.mark.parametrize("loss", [LOGISTIC, MULTINOMIAL, SQUARED], ids=repr)
def test_vectorised_rows_are_the_compiled_loss(loss):
    # solver="newton" uses the NumPy forms: the same values, derivatives, and
    # a second derivative that is the derivative's Jacobian.
    rng = np.random.RandomState(2)
    rows = list(_rows(loss, rng, 30))
    Z = np.array([z for z, _ in rows])
    Y = np.array([y for _, y in rows])
    values, dZ = loss.rows_value_derivative(Z, Y)
    D = loss.rows_second_derivative(Z)
    for r, (z, y) in enumerate(rows):
        assert values[r] == pytest.approx(loss_value(loss.id, z, y[None], 0), rel=1e-12)
        out = np.empty_like(z)
        loss_derivative(loss.id, z, y[None], 0, out)
        np.testing.assert_allclose(dZ[r], out, rtol=1e-12, atol=1e-15)

        def grad(v):
            g = np.empty_like(v)
            loss_derivative(loss.id, v, y[None], 0, g)
            return g
        jacobian = np.array([approx_fprime(z, lambda v: grad(v)[k], 1e-7)
                             for k in range(z.size)])
        hessian = np.diag(D[r]) - (np.outer(D[r], D[r]) if loss.rank_one else 0.0)
        np.testing.assert_allclose(hessian, jacobian, atol=1e-6)
    assert loss.constant_curvature == np.all(D == D[0])
