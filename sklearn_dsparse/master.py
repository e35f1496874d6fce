"""The master's round: aggregate the messages, take the proximal step.

With ``A = sum_i w_i M_i`` (the aggregated sparse message), the step is
``x+ = prox_{step R}(x - step (hbar + A))`` and, with control variates,
``hbar += (tau / m) A``.  A is exactly what is broadcast: a worker holding x
and hbar reproduces x+ and hbar+ from it with ``master_step`` itself, so every
node keeps identical state.

W, hbar and A are (n_columns, n_outputs) C-contiguous arrays, so block b is the
flat range ``starts[b] * K : starts[b + 1] * K``; the loops run over flat ranges
so that the compiler vectorises them.
"""

from numba import njit

from .penalties import soft_threshold


@njit(cache=True)
def aggregate_message(A, touched, block_list, n_selected, starts, values, weight):
    """A += weight * message, on the message's blocks."""
    K = A.shape[1]
    a = A.reshape(-1)
    pos = 0
    for j in range(n_selected):
        b = block_list[j]
        touched[b] = True
        lo = starts[b] * K
        hi = starts[b + 1] * K
        for i in range(lo, hi):
            a[i] += weight * values[pos + i - lo]
        pos += hi - lo


@njit(cache=True)
def master_step(W, hbar, A, touched, starts, step, l1, fit_intercept,
                use_control_variates, cv_fraction):
    """Apply the round to W (and hbar); clear A and touched.

    Returns the number of blocks and of values in the broadcast message.
    Blocks nobody sent move only through hbar and the prox; when both are
    absent they are skipped.
    """
    p1, K = W.shape
    w = W.reshape(-1)
    hb = hbar.reshape(-1)
    a = A.reshape(-1)
    n_penalised = (p1 - 1 if fit_intercept else p1) * K
    every_block_moves = use_control_variates or l1 > 0.0
    threshold = step * l1
    n_blocks_sent = 0
    n_values_sent = 0
    for b in range(touched.shape[0]):
        sent = touched[b]
        if not (sent or every_block_moves):
            continue
        lo = starts[b] * K
        hi = starts[b + 1] * K
        if use_control_variates:
            for i in range(lo, hi):
                w[i] -= step * (hb[i] + a[i])
        else:
            for i in range(lo, hi):
                w[i] -= step * a[i]
        if threshold > 0.0:
            for i in range(lo, min(hi, n_penalised)):
                w[i] = soft_threshold(w[i], threshold)
        if sent:
            n_blocks_sent += 1
            n_values_sent += hi - lo
            if use_control_variates:
                for i in range(lo, hi):
                    hb[i] += cv_fraction * a[i]
            for i in range(lo, hi):
                a[i] = 0.0
            touched[b] = False
    return n_blocks_sent, n_values_sent
