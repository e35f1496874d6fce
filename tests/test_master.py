"""The master's step, as the in-process engine takes it from A and as every
node of the joblib engine takes it from the broadcast message.

``master.master_step`` steps from the aggregate A on the touched blocks; the
joblib engine's master frames A in place (``_write_broadcast``, which moves the
touched blocks together when some were not sent) and every node steps from
that message (``_apply_broadcast`` -> ``master.step_from_broadcast``).  The
two must agree bit for bit, or the engines' iterates would drift apart.
"""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sklearn_dsparse.blocks import BlockPartition
from sklearn_dsparse.engines._transport import frame_at
from sklearn_dsparse.engines.joblib import (COMMAND_FRAME_BYTES, _apply_broadcast,
                                            _max_frame_bytes, _write_broadcast)
from sklearn_dsparse.master import (constant_acceleration, convex_acceleration,
                                    master_step)
from sklearn_dsparse.messages import HEADER_BYTES, read_header
from sklearn_dsparse.step_size import accelerated_parameters

N_COLUMNS, N_BLOCKS = 23, 6
PARTITIONS = {
    "library": BlockPartition(N_COLUMNS, N_BLOCKS).starts,  # sizes 4 and 3
    # A small block before larger ones: moving the blocks together overlaps.
    "overlapping": np.array([0, 1, 6, 8, 15, 16, 23]),
}


def unions(rng):
    """Sets of blocks sent in a round: never empty, every worker sends one."""
    yield np.ones(N_BLOCKS, dtype=bool)
    yield np.arange(N_BLOCKS) % 2 == 1  # the first block missing
    yield np.arange(N_BLOCKS) != 2
    yield np.arange(N_BLOCKS) == N_BLOCKS - 1
    for _ in range(5):
        yield (rng.random(N_BLOCKS) < 0.5) | (np.arange(N_BLOCKS) == 2)


@pytest.mark.parametrize("n_outputs, control_variates, l1, fit_intercept",
                         list(itertools.product([1, 3], [True, False], [0.0, 0.3],
                                                [True, False])))
@pytest.mark.parametrize("partition", PARTITIONS)
def test_step_from_the_broadcast_is_the_step_from_A(partition, n_outputs,
                                                    control_variates, l1,
                                                    fit_intercept):
    rng = np.random.default_rng(n_outputs)
    starts = PARTITIONS[partition]
    shape = (N_COLUMNS,) if n_outputs == 1 else (N_COLUMNS, n_outputs)
    size = N_COLUMNS * n_outputs
    all_blocks = np.arange(N_BLOCKS, dtype=np.int32)
    step, cv_fraction = 0.7, 0.25
    for rnd, touched in enumerate(unions(rng)):
        W, hbar, A = (rng.standard_normal(shape) for _ in range(3))
        W_ref, hbar_ref = W.copy(), hbar.copy()
        n_ref = master_step(W_ref, hbar_ref, A.copy(), touched.copy(), starts, step,
                            l1, fit_intercept, control_variates, cv_fraction)

        # The joblib master: A lives in its broadcast frame.
        values_at = -(-(COMMAND_FRAME_BYTES + _max_frame_bytes(N_BLOCKS, 0)) // 8) * 8
        out = np.zeros(values_at + 8 * size, dtype=np.uint8)
        A_in_frame = out[values_at:].view(np.float64).reshape(shape)
        A_in_frame[...] = A
        flags, ids = touched.copy(), np.empty(N_BLOCKS, dtype=np.int32)
        begin, end, payload, n_sent, n_values = _write_broadcast(
            out, values_at, A_in_frame, flags, starts, rnd, ids)
        assert (n_sent, n_values) == n_ref
        assert not flags.any()  # cleared for the next round
        assert_array_equal(ids[:n_sent], np.flatnonzero(touched))
        # It starts where a command frame still fits before it.
        assert begin >= COMMAND_FRAME_BYTES

        offset, length, need = frame_at(out, begin, end)
        assert need == 0
        assert (length, offset + length) == (payload, end)
        frame = out[offset:end]
        assert read_header(frame)[2] == rnd
        sent = touched.all()
        assert payload == HEADER_BYTES + (0 if sent else 4 * n_sent) + 8 * n_values

        # Every node steps from the message.
        W_node, hbar_node = W.copy(), hbar.copy()
        assert _apply_broadcast(frame, rnd, W_node, hbar_node, starts, all_blocks,
                                np.empty(N_BLOCKS, np.int32), np.empty(size), step, l1,
                                fit_intercept, control_variates, cv_fraction)
        assert_array_equal(W_node, W_ref)
        assert_array_equal(hbar_node, hbar_ref)
        # W moved where it should: with neither hbar nor the prox, only there.
        moved = np.repeat(touched, np.diff(starts))
        if not control_variates and l1 == 0.0:
            assert_array_equal(W_ref.reshape(N_COLUMNS, -1)[~moved],
                               W.reshape(N_COLUMNS, -1)[~moved])
        assert np.all(W_ref.reshape(N_COLUMNS, -1)[moved]
                      != W.reshape(N_COLUMNS, -1)[moved])


def test_a_broadcast_is_refused_unless_it_is_the_rounds_with_increasing_blocks():
    starts = BlockPartition(N_COLUMNS, N_BLOCKS).starts
    values_at = -(-(COMMAND_FRAME_BYTES + _max_frame_bytes(N_BLOCKS, 0)) // 8) * 8
    out = np.zeros(values_at + 8 * N_COLUMNS, dtype=np.uint8)
    A = out[values_at:].view(np.float64)
    A[:] = 1.0
    touched = np.array([0, 1, 0, 1, 1, 0], dtype=bool)
    ids = np.empty(N_BLOCKS, dtype=np.int32)
    begin, end, _, n_sent, _ = _write_broadcast(out, values_at, A, touched, starts,
                                                5, ids)
    frame = out[begin + 4:end]

    def apply(frame, rnd):
        W = np.zeros(N_COLUMNS)
        ok = _apply_broadcast(frame, rnd, W, np.zeros(N_COLUMNS), starts,
                              np.arange(N_BLOCKS, dtype=np.int32),
                              np.empty(N_BLOCKS, np.int32), np.empty(N_COLUMNS), 0.5,
                              0.0, True, True, 0.5)
        return ok, W

    assert apply(frame, 5)[0]
    assert not apply(frame, 4)[0]  # another round's
    swapped = frame.copy()  # blocks 3 and 1: the same set, out of order
    first_id = HEADER_BYTES
    swapped[first_id:first_id + 4], swapped[first_id + 4:first_id + 8] = \
        frame[first_id + 4:first_id + 8], frame[first_id:first_id + 4]
    ok, W = apply(swapped, 5)
    assert not ok and not W.any()  # refused before touching W


def _broadcast_step(W, d, A, touched, rnd, eta, acceleration):
    """A node's step from the broadcast frame of A (the joblib engine's)."""
    starts = PARTITIONS["overlapping"]
    values_at = -(-(COMMAND_FRAME_BYTES + _max_frame_bytes(N_BLOCKS, 0)) // 8) * 8
    out = np.zeros(values_at + 8 * N_COLUMNS, dtype=np.uint8)
    A_in_frame = out[values_at:].view(np.float64)
    A_in_frame[:] = A
    ids = np.empty(N_BLOCKS, dtype=np.int32)
    begin, end, _, _, _ = _write_broadcast(out, values_at, A_in_frame,
                                           touched.copy(), starts, rnd, ids)
    offset, length, _ = frame_at(out, begin, end)
    assert _apply_broadcast(out[offset:end], rnd, W, d, starts,
                            np.arange(N_BLOCKS, dtype=np.int32),
                            np.empty(N_BLOCKS, np.int32), np.empty(N_COLUMNS), eta,
                            0.0, True, False, 1.0, acceleration)


def test_accelerated_step_is_the_three_sequences_of_asgd():
    """asgd's step on (y, d = y - w) is Vaswani et al.'s w, v, y recursion
    (docs/method.md, "Accelerated SGD"), written out here with v, on every
    block (A = 0 where nobody sent); every node's step from the broadcast
    gives the master's, bit for bit."""
    rng = np.random.default_rng(5)
    starts = PARTITIONS["overlapping"]
    mu, L, rho = 0.05, 2.0, 1.7
    eta, momentum, lookahead = accelerated_parameters(mu, L, rho)
    acceleration = constant_acceleration(momentum, lookahead)
    s = np.sqrt(mu * eta / rho)
    alpha, beta, gamma = s / (1 + s), 1 - s, 1 / np.sqrt(mu * eta * rho)
    w, v = rng.standard_normal(N_COLUMNS), rng.standard_normal(N_COLUMNS)
    y = alpha * v + (1 - alpha) * w
    W, d = y.copy(), y - w
    for rnd, touched in enumerate(unions(rng)):
        A = rng.standard_normal(N_COLUMNS) * np.repeat(touched, np.diff(starts))
        W_ref, d_ref = W.copy(), d.copy()
        master_step(W_ref, d_ref, A.copy(), touched.copy(), starts, eta, 0.0, True,
                    False, 1.0, acceleration)
        # The oracle, with v.
        w_next = y - eta * A
        v = beta * v + (1 - beta) * y - gamma * eta * A
        y = alpha * v + (1 - alpha) * w_next
        w = w_next
        assert_allclose(W_ref, y, rtol=1e-12, atol=1e-12)
        assert_allclose(W_ref - d_ref, w, rtol=1e-12, atol=1e-12)
        W_node, d_node = W.copy(), d.copy()
        _broadcast_step(W_node, d_node, A, touched, rnd, eta, acceleration)
        assert_array_equal(W_node, W_ref)
        assert_array_equal(d_node, d_ref)
        W, d = W_ref, d_ref


def test_convex_schedule_is_the_sequences_with_alpha_two_over_k_plus_two():
    """The convex schedule (docs/method.md, "Accelerated SGD"): y_k = alpha_k
    v_k + (1 - alpha_k) w_k, w_{k+1} = y_k - eta g, v_{k+1} = v_k - eta /
    (rho alpha_k) g with alpha_k = 2 / (k + 2), from w_0 = v_0; the master and
    a node each count the rounds in their own copy of the coefficients and
    agree bit for bit."""
    rng = np.random.default_rng(7)
    starts = PARTITIONS["overlapping"]
    eta, rho = 0.3, 2.5
    master, node = convex_acceleration(rho), convex_acceleration(rho)
    w = rng.standard_normal(N_COLUMNS)
    v, y = w.copy(), w.copy()
    W, d = w.copy(), np.zeros(N_COLUMNS)
    for rnd in range(12):
        touched = list(unions(rng))[rnd % 4]
        A = rng.standard_normal(N_COLUMNS) * np.repeat(touched, np.diff(starts))
        W_ref, d_ref = W.copy(), d.copy()
        master_step(W_ref, d_ref, A.copy(), touched.copy(), starts, eta, 0.0, True,
                    False, 1.0, master)
        alpha = 2 / (rnd + 2)
        w = y - eta * A
        v = v - eta / (rho * alpha) * A
        y = 2 / (rnd + 3) * v + (1 - 2 / (rnd + 3)) * w
        assert_allclose(W_ref, y, rtol=1e-11, atol=1e-11)
        assert_allclose(W_ref - d_ref, w, rtol=1e-11, atol=1e-11)
        W_node, d_node = W.copy(), d.copy()
        _broadcast_step(W_node, d_node, A, touched, rnd, eta, node)
        assert_array_equal(W_node, W_ref)
        assert_array_equal(d_node, d_ref)
        W, d = W_ref, d_ref
    assert master[-1] == node[-1] == 12  # the rounds each counted
