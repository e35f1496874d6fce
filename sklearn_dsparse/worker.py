"""A worker's round: estimate on its blocks, subtract h_i, emit the message.

This is where the sparsifier, the control variates and the solver meet
(GRACE's ``Communicator.step``).  Only ``values`` leaves the worker, together
with the block ids in ``block_list``.
"""

from numba import njit

from ._layout import flat, n_outputs
from .solvers import GD, local_estimate
from .sparsifiers import floyd_sample, select_blocks


@njit(cache=True)
def emit_message(estimate, h, use_control_variates, block_list, n_selected,
                 starts, scale, values):
    """Pack ``scale * (g_i - h_i)`` over the selected blocks into ``values``.

    With control variates the worker then sets ``h_i = g_i`` on those blocks
    (docs/method.md, "One round", step 6), from the values it sent and
    nothing else.  Returns the number of values written.  Block b is the flat range
    ``starts[b] * K : starts[b + 1] * K`` of the arrays (see ``_layout``);
    loops over block views vectorise, as in ``master``.
    """
    K = n_outputs(estimate)
    g = flat(estimate)
    hf = flat(h)
    pos = 0
    for j in range(n_selected):
        b = block_list[j]
        lo = starts[b] * K
        hi = starts[b + 1] * K
        size = hi - lo
        g_b = g[lo:hi]
        out = values[pos:pos + size]
        if use_control_variates:
            h_b = hf[lo:hi]
            for i in range(size):
                out[i] = scale * (g_b[i] - h_b[i])
                h_b[i] = g_b[i]
        else:
            for i in range(size):
                out[i] = scale * g_b[i]
        pos += size
    return pos


@njit(cache=True)
def worker_estimate(solver, loss_id, W, data, indices, indptr, Y, c, alpha, abar,
                    l2, fit_intercept, selection, scale, u_blocks, u_rows, batch,
                    starts, column_block, scratch_selected, block_list, rows,
                    scratch_seen, estimate, z, dz):
    """Choose this round's blocks and compute the estimate on them.

    ``u_blocks`` and ``u_rows`` are this round's uniforms from the worker's own
    stream; ``selection`` and ``scale`` are the sparsifier's.  Writes the
    blocks into ``block_list`` and marks them in ``scratch_selected``
    (cleared by the caller once the message is out); returns how many,
    0 when the worker sends nothing this round.
    """
    n_blocks_total = starts.shape[0] - 1
    n_selected = select_blocks(u_blocks, n_blocks_total, selection, scale,
                               scratch_selected, block_list)
    n_rows = Y.shape[0]
    b = min(batch, n_rows)
    if solver != GD:
        floyd_sample(u_rows[:b], n_rows, scratch_seen, rows[:b])
    local_estimate(solver, loss_id, W, data, indices, indptr, Y, c, alpha, abar,
                   l2, fit_intercept, rows[:b], scratch_selected, block_list,
                   n_selected, starts, column_block, estimate, z, dz)
    return n_selected


@njit(cache=True)
def message_values(block_list, n_selected, starts, n_outputs):
    """How many values the message on ``block_list[:n_selected]`` carries."""
    n_values = 0
    for j in range(n_selected):
        n_values += (starts[block_list[j] + 1] - starts[block_list[j]]) * n_outputs
    return n_values


@njit(cache=True)
def worker_round(solver, loss_id, W, data, indices, indptr, Y, c, alpha, abar, h,
                 l2, fit_intercept, use_control_variates, scale, selection,
                 u_blocks, u_rows, batch, starts, column_block, scratch_selected,
                 block_list, rows, scratch_seen, estimate, z, dz, values):
    """One worker's round on its shard (rows of ``data/indices/indptr``, Y, c).

    Writes the message into ``block_list[:n_blocks]`` and
    ``values[:n_values]`` and returns ``(n_blocks, n_values)``.  (A real
    engine calls the two halves itself, to emit straight into its frame.)
    """
    n_selected = worker_estimate(
        solver, loss_id, W, data, indices, indptr, Y, c, alpha, abar, l2,
        fit_intercept, selection, scale, u_blocks, u_rows, batch, starts, column_block,
        scratch_selected, block_list, rows, scratch_seen, estimate, z, dz)
    n_values = emit_message(estimate, h, use_control_variates, block_list,
                            n_selected, starts, scale, values)
    for j in range(n_selected):
        scratch_selected[block_list[j]] = False
    return n_selected, n_values
