"""The master's round: aggregate the messages, take the proximal step.

With ``A = sum_i w_i M_i`` (the aggregated sparse message), the step is
``x+ = prox_{step R}(x - step (hbar + A))`` and, with control variates,
``hbar += (tau / m) A``.  A is exactly what is broadcast: a worker holding x
and hbar reproduces x+ and hbar+ from it with ``master_step`` itself, so every
node keeps identical state.
"""

from numba import njit

from .penalties import soft_threshold


@njit(cache=True)
def aggregate_message(A, touched, block_list, n_selected, starts, values, weight):
    """A += weight * message, on the message's blocks."""
    K = A.shape[1]
    pos = 0
    for j in range(n_selected):
        b = block_list[j]
        touched[b] = True
        for col in range(starts[b], starts[b + 1]):
            for k in range(K):
                A[col, k] += weight * values[pos]
                pos += 1


@njit(cache=True)
def master_step(W, hbar, A, touched, starts, step, l1, fit_intercept,
                use_control_variates, cv_fraction):
    """Apply the round to W (and hbar); clear A and touched.

    Returns the number of blocks and of values in the broadcast message.
    Rows whose block nobody sent only move through hbar and the prox; when
    both are absent they are skipped.
    """
    p1, K = W.shape
    n_coef = p1 - 1 if fit_intercept else p1
    every_row_moves = use_control_variates or l1 > 0.0
    threshold = step * l1
    n_blocks_sent = 0
    n_values_sent = 0
    for b in range(touched.shape[0]):
        sent = touched[b]
        if not (sent or every_row_moves):
            continue
        if sent:
            n_blocks_sent += 1
            n_values_sent += (starts[b + 1] - starts[b]) * K
        for col in range(starts[b], starts[b + 1]):
            shrink = threshold if col < n_coef else 0.0
            for k in range(K):
                v = W[col, k] - step * (hbar[col, k] + A[col, k])
                W[col, k] = soft_threshold(v, shrink) if shrink > 0.0 else v
                if sent:
                    if use_control_variates:
                        hbar[col, k] += cv_fraction * A[col, k]
                    A[col, k] = 0.0
        touched[b] = False
    return n_blocks_sent, n_values_sent
