"""The master's round: aggregate the messages, take the proximal step.

With ``A = sum_i w_i M_i`` (the aggregated sparse message), the step is
``x+ = prox_{step R}(x - step (hbar + A))`` and, with control variates,
``hbar += (tau / m) A``.  A is exactly what is broadcast: a worker holding x
and hbar reproduces x+ and hbar+ from it with ``step_from_broadcast``, the
same arithmetic (``_step_block``) read from the message instead of from A, so
every node keeps identical state.

``solver="asgd"`` (docs/method.md, "Accelerated SGD") keeps in hbar the
look-ahead displacement d = y - w of Nesterov's sequences instead of control
variates: W is the point y where the workers take gradients and the model is
w = W - d.  Its step, from the same A,

    d+ = momentum d - lookahead A,    W+ = W - step A + d+,

moves every block (d decays on blocks nobody sent), so the same broadcast
gives every node the same y, w and d.  The coefficients come from
``acceleration``, a float64 array every node holds (``ACCELERATION``
fields): constant ones (the strongly convex schedule), or, when its
``CONVEX_RHO`` is positive, the convex schedule's, which depend on the
number of rounds taken; that count lives in the array and every node
advances its own copy once a step, so all nodes agree without sending it.
No ``acceleration`` is the plain step.

W, hbar and A are (n_columns, n_outputs) C-contiguous arrays (1-D with one
output, see ``_layout``), so block b is the flat range
``starts[b] * K : starts[b + 1] * K``.  The loops run over views of a block,
from 0: an index the compiler knows is non-negative needs no wraparound, and
the loop vectorises (7x faster than indexing the whole array from ``lo``).
"""

import numpy as np
from numba import njit

from ._layout import flat, n_outputs
from .penalties import soft_threshold

#: The fields of ``acceleration``.
ACCELERATION = (MOMENTUM, LOOKAHEAD, CONVEX_RHO, ROUNDS_TAKEN) = range(4)


def constant_acceleration(momentum, lookahead):
    """``acceleration`` of the strongly convex schedule: fixed coefficients."""
    return np.array([momentum, lookahead, 0.0, 0.0])


def convex_acceleration(rho):
    """``acceleration`` of the convex schedule with strong growth constant
    ``rho``, before its first round (``round_coefficients``)."""
    return np.array([0.0, 0.0, rho, 0.0])


@njit(cache=True)
def round_coefficients(acceleration, step):
    """(momentum, lookahead) of this round; the convex schedule advances its
    count of rounds.

    The convex schedule is Vaswani, Bach & Schmidt's accelerated SGD for
    convex functions under the strong growth condition with constant rho
    (docs/method.md, "Accelerated SGD"): alpha_k = 2 / (k + 2), beta = 1,
    gamma_k = 1 / (rho alpha_k), which in (y, d) reads
    ``momentum_k = k / (k + 3)`` and
    ``lookahead_k = step (k + 2 - 2 rho) / (rho (k + 3))``.
    """
    if acceleration is None:
        return 0.0, 0.0
    rho = acceleration[CONVEX_RHO]
    if rho > 0.0:
        k = acceleration[ROUNDS_TAKEN]
        acceleration[ROUNDS_TAKEN] = k + 1.0
        return k / (k + 3.0), step * (k + 2.0 - 2.0 * rho) / (rho * (k + 3.0))
    return acceleration[MOMENTUM], acceleration[LOOKAHEAD]


@njit(cache=True)
def aggregate_message(A, touched, block_list, n_selected, starts, values, weight):
    """A += weight * message, on the message's blocks.

    A holds the round's sum on the blocks marked in ``touched`` and is never
    read elsewhere: a block's first message of the round overwrites it, so
    nobody spends a pass clearing A (it is memory traffic on wide models).
    """
    K = n_outputs(A)
    a = flat(A)
    pos = 0
    for j in range(n_selected):
        b = block_list[j]
        size = (starts[b + 1] - starts[b]) * K
        block = a[starts[b] * K:starts[b + 1] * K]
        sent = values[pos:pos + size]
        if touched[b]:
            for i in range(size):
                block[i] += weight * sent[i]
        else:
            touched[b] = True
            for i in range(size):
                block[i] = weight * sent[i]
        pos += size


@njit(cache=True, inline="always")
def _step_block(w_b, hb_b, a_b, sent, n_penalised_b, step, threshold,
                use_control_variates, cv_fraction, accelerated, momentum, lookahead):
    """The step on one block: ``a_b`` is A on it when it was sent."""
    size = w_b.shape[0]
    if accelerated:
        if sent:
            for i in range(size):
                hb_b[i] = momentum * hb_b[i] - lookahead * a_b[i]
                w_b[i] += hb_b[i] - step * a_b[i]
        else:
            for i in range(size):
                hb_b[i] *= momentum
                w_b[i] += hb_b[i]
        return
    if sent and use_control_variates:
        for i in range(size):
            w_b[i] -= step * (hb_b[i] + a_b[i])
            hb_b[i] += cv_fraction * a_b[i]
    elif sent:
        for i in range(size):
            w_b[i] -= step * a_b[i]
    elif use_control_variates:
        for i in range(size):
            w_b[i] -= step * hb_b[i]
    if threshold > 0.0:
        for i in range(n_penalised_b):
            w_b[i] = soft_threshold(w_b[i], threshold)


@njit(cache=True)
def master_step(W, hbar, A, touched, starts, step, l1, fit_intercept,
                use_control_variates, cv_fraction, acceleration=None):
    """Apply the round to W (and hbar); clear ``touched`` for the next round.

    Returns the number of blocks and of values in the broadcast message.
    Blocks nobody sent move only through hbar and the prox; when both are
    absent they are skipped.
    """
    K = n_outputs(W)
    w = flat(W)
    hb = flat(hbar)
    a = flat(A)
    n_penalised = (W.shape[0] - 1 if fit_intercept else W.shape[0]) * K
    accelerated = acceleration is not None
    momentum, lookahead = round_coefficients(acceleration, step)
    every_block_moves = use_control_variates or l1 > 0.0 or accelerated
    n_blocks_sent = 0
    n_values_sent = 0
    for b in range(touched.shape[0]):
        sent = touched[b]
        if not (sent or every_block_moves):
            continue
        lo = starts[b] * K
        hi = starts[b + 1] * K
        _step_block(w[lo:hi], hb[lo:hi], a[lo:hi], sent,
                    max(min(hi, n_penalised) - lo, 0), step, step * l1,
                    use_control_variates, cv_fraction, accelerated, momentum,
                    lookahead)
        if sent:
            n_blocks_sent += 1
            n_values_sent += hi - lo
            touched[b] = False
    return n_blocks_sent, n_values_sent


@njit(cache=True)
def step_from_broadcast(W, hbar, block_ids, n_blocks_sent, values, starts, step,
                        l1, fit_intercept, use_control_variates, cv_fraction,
                        acceleration=None):
    """``master_step`` with A given as the broadcast message itself: the blocks
    ``block_ids[:n_blocks_sent]`` (increasing) and their concatenated values.

    The same arithmetic on the same numbers, so W and hbar come out bit for
    bit as from ``master_step``, without first spreading the message into A
    (a pass over the model, on wide models the price of a round).
    """
    K = n_outputs(W)
    w = flat(W)
    hb = flat(hbar)
    n_penalised = (W.shape[0] - 1 if fit_intercept else W.shape[0]) * K
    accelerated = acceleration is not None
    momentum, lookahead = round_coefficients(acceleration, step)
    every_block_moves = use_control_variates or l1 > 0.0 or accelerated
    j = 0
    pos = 0
    for b in range(starts.shape[0] - 1):
        sent = j < n_blocks_sent and block_ids[j] == b
        lo = starts[b] * K
        hi = starts[b + 1] * K
        a_b = values[pos:pos + (hi - lo if sent else 0)]
        if sent:
            j += 1
            pos += hi - lo
        elif not every_block_moves:
            continue
        _step_block(w[lo:hi], hb[lo:hi], a_b, sent,
                    max(min(hi, n_penalised) - lo, 0), step, step * l1,
                    use_control_variates, cv_fraction, accelerated, momentum,
                    lookahead)
