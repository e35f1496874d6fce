"""Per-row losses of linear models, written once for every solver and engine.

A loss acts on the margins ``z`` (one value per output) of one row and that
row's encoded target ``y`` (same length).  Each loss provides

- ``value(z, y)``: the loss of the row;
- ``derivative(z, y, out)``: d loss / d z written into ``out``; the gradient of
  the row with respect to the coefficients is ``outer(x, out)``;
- ``curvature``: a bound on the largest eigenvalue of d^2 loss / d z^2, so that
  a row's smoothness is ``curvature * ||x||^2``.

The two functions are numba-compiled so that the compiled solvers take them as
arguments; nothing else in the library knows which loss it runs.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _logistic_value(z, y):
    # log(1 + exp(z)) - y z, without overflow for large |z|.
    t = z[0]
    if t > 0.0:
        return t + np.log1p(np.exp(-t)) - y[0] * t
    return np.log1p(np.exp(t)) - y[0] * t


@njit(cache=True)
def _logistic_derivative(z, y, out):
    t = z[0]
    if t >= 0.0:
        p = 1.0 / (1.0 + np.exp(-t))
    else:
        e = np.exp(t)
        p = e / (1.0 + e)
    out[0] = p - y[0]


@njit(cache=True)
def _multinomial_value(z, y):
    zmax = z.max()
    s = 0.0
    zy = 0.0
    for k in range(z.shape[0]):
        s += np.exp(z[k] - zmax)
        zy += y[k] * z[k]
    return zmax + np.log(s) - zy


@njit(cache=True)
def _multinomial_derivative(z, y, out):
    zmax = z.max()
    s = 0.0
    for k in range(z.shape[0]):
        out[k] = np.exp(z[k] - zmax)
        s += out[k]
    for k in range(z.shape[0]):
        out[k] = out[k] / s - y[k]


@njit(cache=True)
def _squared_value(z, y):
    s = 0.0
    for k in range(z.shape[0]):
        r = z[k] - y[k]
        s += r * r
    return 0.5 * s


@njit(cache=True)
def _squared_derivative(z, y, out):
    for k in range(z.shape[0]):
        out[k] = z[k] - y[k]


class Loss:
    """A per-row loss: compiled value and derivative, and a curvature bound."""

    def __init__(self, name, value, derivative, curvature):
        self.name = name
        self.value = value
        self.derivative = derivative
        self.curvature = curvature

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"

    def __reduce__(self):
        # The compiled functions are module globals: pickle the loss by name.
        return (by_name, (self.name,))


#: Binary logistic loss, targets in {0, 1}, one output: log(1 + e^z) - y z.
LOGISTIC = Loss("logistic", _logistic_value, _logistic_derivative, 0.25)
#: Multinomial (softmax cross-entropy) loss, one-hot targets, one output per
#: class.  The Hessian diag(p) - p p^T has largest eigenvalue at most 1/2.
MULTINOMIAL = Loss("multinomial", _multinomial_value, _multinomial_derivative, 0.5)
#: Half squared error 0.5 ||z - y||^2, one output per target.
SQUARED = Loss("squared", _squared_value, _squared_derivative, 1.0)

_LOSSES = {loss.name: loss for loss in (LOGISTIC, MULTINOMIAL, SQUARED)}


def by_name(name):
    return _LOSSES[name]
