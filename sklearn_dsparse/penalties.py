"""Penalties on the coefficients (never on the intercept).

The penalty is ``l2 / 2 * ||w||_2^2 + l1 * ||w||_1``.  The L2 part is smooth
and belongs to every worker's f_i (its gradient travels in the messages); the
L1 part is the non-smooth, block-separable R of docs/method.md ("The
problem"), applied by the master as a proximal step.  L2-only, L1-only,
elastic net and no penalty are the same object with different strengths.
"""

import numpy as np
from numba import njit


class ElasticNetPenalty:
    """``l2 / 2 * ||w||^2 + l1 * ||w||_1`` on the coefficient rows of W."""

    def __init__(self, l2=0.0, l1=0.0):
        if l2 < 0 or l1 < 0:
            raise ValueError(f"penalty strengths must be >= 0, got l2={l2}, l1={l1}")
        self.l2 = float(l2)
        self.l1 = float(l1)

    def value(self, coef):
        return 0.5 * self.l2 * float(np.sum(coef * coef)) + self.l1 * float(
            np.sum(np.abs(coef))
        )

    def __repr__(self):
        return f"ElasticNetPenalty(l2={self.l2!r}, l1={self.l1!r})"


@njit(cache=True)
def soft_threshold(v, threshold):
    """prox of ``threshold * |.|`` at v."""
    if v > threshold:
        return v - threshold
    if v < -threshold:
        return v + threshold
    return 0.0
