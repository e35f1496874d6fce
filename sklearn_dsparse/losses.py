"""Per-row losses of linear models, written once for every solver and engine.

A loss acts on the margins ``z`` (one value per output) of row r and that
row's encoded target, row r of ``Y`` (as many values; ``Y`` may be the 1-D
kernel view of ``_layout`` with one output).  The target is read in place:
a view ``Y[r]`` per row costs a reference count's two atomic operations,
a fifth of a small gd round.  Each loss provides

- ``value(z, Y, r)``: the loss of the row;
- ``derivative(z, Y, r, out)``: d loss / d z written into ``out``; the
  gradient of the row with respect to the coefficients is ``outer(x, out)``;
- ``curvature``: a bound on the largest eigenvalue of d^2 loss / d z^2, so that
  a row's smoothness is ``curvature * ||x||^2``.

``solver="newton"`` works on whole shards at once, in NumPy (no kernel to
compile): ``rows_value_derivative(Z, Y)`` gives every row's loss and d loss /
d z for the margins Z (n_rows, n_outputs), and ``rows_second_derivative(Z)``
the second derivative as ``diag(D[r]) - [multinomial] D[r] D[r]^T``.  They
are the same functions as the compiled ones, vectorised (``tests/test_losses.py``
checks that they agree).

The compiled solvers call ``loss_value(loss.id, ...)`` and
``loss_derivative(loss.id, ...)``: the only place that knows which loss runs
is the switch at the bottom of this file.  (Passing the compiled functions as
arguments works too, but numba then recompiles every solver in every process
instead of loading it from its cache.)
"""

import numpy as np
from numba import njit
from scipy.special import expit, log_softmax, softmax

from ._layout import at


@njit(cache=True)
def _logistic_value(z, Y, r):
    # log(1 + exp(z)) - y z, without overflow for large |z|.
    t = z[0]
    y = at(Y, r, 0)
    if t > 0.0:
        return t + np.log1p(np.exp(-t)) - y * t
    return np.log1p(np.exp(t)) - y * t


@njit(cache=True, inline="always")
def _logistic_derivative(z, Y, r, out):
    t = z[0]
    if t >= 0.0:
        p = 1.0 / (1.0 + np.exp(-t))
    else:
        e = np.exp(t)
        p = e / (1.0 + e)
    out[0] = p - at(Y, r, 0)


@njit(cache=True)
def _multinomial_value(z, Y, r):
    zmax = z.max()
    s = 0.0
    zy = 0.0
    for k in range(z.shape[0]):
        s += np.exp(z[k] - zmax)
        zy += at(Y, r, k) * z[k]
    return zmax + np.log(s) - zy


@njit(cache=True)
def _multinomial_derivative(z, Y, r, out):
    zmax = z.max()
    s = 0.0
    for k in range(z.shape[0]):
        out[k] = np.exp(z[k] - zmax)
        s += out[k]
    for k in range(z.shape[0]):
        out[k] = out[k] / s - at(Y, r, k)


@njit(cache=True)
def _squared_value(z, Y, r):
    s = 0.0
    for k in range(z.shape[0]):
        residual = z[k] - at(Y, r, k)
        s += residual * residual
    return 0.5 * s


@njit(cache=True, inline="always")
def _squared_derivative(z, Y, r, out):
    for k in range(z.shape[0]):
        out[k] = z[k] - at(Y, r, k)


def _logistic_rows(Z, Y):
    z = Z[:, 0]
    return np.logaddexp(0.0, z) - Y[:, 0] * z, expit(Z) - Y


def _logistic_rows_second(Z):
    p = expit(Z)
    return p * (1.0 - p)


def _multinomial_rows(Z, Y):
    log_p = log_softmax(Z, axis=1)
    return -np.einsum("rk,rk->r", Y, log_p), np.exp(log_p) - Y


def _squared_rows(Z, Y):
    residual = Z - Y
    return 0.5 * np.einsum("rk,rk->r", residual, residual), residual


class Loss:
    """A per-row loss: its id in the compiled switch, a curvature bound, and
    its vectorised value, derivative and second derivative."""

    def __init__(self, name, loss_id, curvature, rows, rows_second, *,
                 rank_one=False, constant_curvature=False):
        self.name = name
        self.id = loss_id
        self.curvature = curvature
        self.rows_value_derivative = rows
        self.rows_second_derivative = rows_second
        #: Whether the second derivative has the rank-one part -D D^T; the
        #: loss is then unchanged by adding one value to every output's margin.
        self.rank_one = rank_one
        #: Whether the second derivative is the same at every margin.
        self.constant_curvature = constant_curvature

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"

    def __reduce__(self):
        # The compiled functions are module globals: pickle the loss by name.
        return (by_name, (self.name,))


#: Binary logistic loss, targets in {0, 1}, one output: log(1 + e^z) - y z.
LOGISTIC = Loss("logistic", 0, 0.25, _logistic_rows, _logistic_rows_second)
#: Multinomial (softmax cross-entropy) loss, one-hot targets, one output per
#: class.  The Hessian diag(p) - p p^T has largest eigenvalue at most 1/2.
MULTINOMIAL = Loss("multinomial", 1, 0.5, _multinomial_rows,
                   lambda Z: softmax(Z, axis=1), rank_one=True)
#: Half squared error 0.5 ||z - y||^2, one output per target.
SQUARED = Loss("squared", 2, 1.0, _squared_rows, np.ones_like,
               constant_curvature=True)

_LOSSES = {loss.name: loss for loss in (LOGISTIC, MULTINOMIAL, SQUARED)}


def by_name(name):
    return _LOSSES[name]


@njit(cache=True)
def loss_value(loss_id, z, Y, r):
    if loss_id == 0:
        return _logistic_value(z, Y, r)
    if loss_id == 1:
        return _multinomial_value(z, Y, r)
    return _squared_value(z, Y, r)


@njit(cache=True, inline="always")
def loss_derivative(loss_id, z, Y, r, out):
    if loss_id == 0:
        _logistic_derivative(z, Y, r, out)
    elif loss_id == 1:
        _multinomial_derivative(z, Y, r, out)
    else:
        _squared_derivative(z, Y, r, out)
