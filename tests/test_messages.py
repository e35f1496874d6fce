"""Message sizes, and the communication accounting of a real fit.

docs/method.md, "Communication accounting": every message costs a fixed header,
one 32-bit id per block (none when all m blocks are sent, their order is then
implied) and its values at the dtype's itemsize.  The in-process engine counts
per round (engines/inprocess.py):

- uplink: every worker's message, ``message_nbytes(tau, n_values, m)``; with
  ``sparsifier="bernoulli"`` a worker's message is all m blocks (no ids) or,
  when it sends nothing, its header alone;
- downlink: the aggregated message (the union of the blocks the workers
  sent), counted once per receiving worker;
- dense uplink: what ``sparsifier="none"`` would have sent, n dense messages.
"""

import struct
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from sklearn_dsparse import DistributedSparseLogisticRegression
from sklearn_dsparse.blocks import BlockPartition
from sklearn_dsparse.messages import (BLOCK_ID_BYTES, HEADER_BYTES, Message,
                                      message_nbytes, read_header, read_message,
                                      write_header)
from sklearn_dsparse.sparsifiers import (SAMPLE, SPARSIFIERS, Independent,
                                         select_blocks)

N_WORKERS, N_BLOCKS, TAU, MAX_ITER = 16, 64, 4, 3


# --------------------------------------------------------------------------
# message_nbytes and Message.nbytes
# --------------------------------------------------------------------------

def test_wire_constants():
    assert HEADER_BYTES == 16
    assert BLOCK_ID_BYTES == 4


@pytest.mark.parametrize("n_blocks_sent, n_values, n_blocks_total, itemsize", [
    (4, 20, 64, 8),
    (4, 16, 64, 8),
    (1, 1, 64, 8),
    (63, 315, 64, 8),
    (0, 0, 64, 8),
    (4, 20, 64, 4),
    (3, 30, 10, 2),
    (10, 7, 100, 8),  # values need not be a multiple of the blocks (K outputs)
])
def test_message_nbytes_partial(n_blocks_sent, n_values, n_blocks_total, itemsize):
    expected = 16 + 4 * n_blocks_sent + itemsize * n_values
    assert message_nbytes(n_blocks_sent, n_values, n_blocks_total, itemsize) == expected


@pytest.mark.parametrize("n_blocks_total, n_values, itemsize", [
    (64, 300, 8), (64, 320, 8), (1, 5, 8), (10, 40, 4)])
def test_message_nbytes_all_blocks_has_no_ids(n_blocks_total, n_values, itemsize):
    assert message_nbytes(n_blocks_total, n_values, n_blocks_total,
                          itemsize) == 16 + itemsize * n_values


def test_message_nbytes_default_itemsize_is_float64():
    assert message_nbytes(4, 20, 64) == 16 + 16 + 160


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_sent", [0, 1, 4, 63, 64])
def test_message_object_nbytes_agrees(dtype, n_sent):
    partition = BlockPartition(300, 64)
    ids = np.arange(n_sent, dtype=np.int32)
    n_values = int(partition.sizes[:n_sent].sum()) * 2  # two outputs
    msg = Message(sender=3, round=7, block_ids=ids,
                  values=np.zeros(n_values, dtype=dtype))
    itemsize = np.dtype(dtype).itemsize
    ids_bytes = 0 if n_sent == 64 else 4 * n_sent
    assert msg.nbytes(64) == 16 + ids_bytes + itemsize * n_values
    assert msg.nbytes(64) == message_nbytes(n_sent, n_values, 64, itemsize)


# --------------------------------------------------------------------------
# A real fit: the engine's counters against the formula
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data():
    out = {}
    for n_features in (300, 320):
        out[n_features] = make_classification(n_samples=400, n_features=n_features,
                                               random_state=0)
    return out


def _fit(X, y, sparsifier, blocks_per_worker=TAU):
    est = DistributedSparseLogisticRegression(
        solver="gd", n_workers=N_WORKERS, n_blocks=N_BLOCKS,
        blocks_per_worker=blocks_per_worker, sparsifier=sparsifier,
        max_iter=MAX_ITER, tol=0, random_state=0, fit_intercept=False)
    # One BLAS thread: the step-size rule's small eigenproblems are much slower
    # with threads on a busy machine, and the byte counts do not depend on it.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=3 on purpose
        return est.fit(X, y)


_FITS = {}


def _fitted(data, n_features, name):
    """The fit of ``name`` on ``n_features`` features (shared by the tests),
    with the uniforms the engine drew for the block masks (observation only:
    the sparsifier's ``draw`` is wrapped, not replaced)."""
    key = (n_features, name)
    if key not in _FITS:
        X, y = data[n_features]
        cls = SPARSIFIERS[name]
        recorded = []
        original = cls.draw

        def draw(self, worker_rngs, shared_rng, n_rounds):
            u = original(self, worker_rngs, shared_rng, n_rounds)
            recorded.append(np.array(u, copy=True))
            return u

        cls.draw = draw
        try:
            est = _fit(X, y, name, "auto" if name == "none" else TAU)
        finally:
            cls.draw = original
        _FITS[key] = est, np.concatenate(recorded, axis=1)  # (n, rounds, tau)
    return _FITS[key]


def _replay_bytes(u, partition, n_outputs=1, name="independent"):
    """Uplink, downlink and per-round union sizes from the drawn uniforms, using
    the library's select_blocks and message_nbytes."""
    m = partition.n_blocks
    sparsifier = SPARSIFIERS[name](m, TAU)
    sizes = partition.sizes
    selected = np.zeros(m, dtype=np.bool_)
    block_list = np.empty(m, dtype=np.int64)
    uplink = downlink = 0
    unions = []
    for r in range(u.shape[1]):
        union = np.zeros(m, dtype=bool)
        for i in range(u.shape[0]):
            n_sel = select_blocks(u[i, r], m, sparsifier.selection, sparsifier.scale,
                                  selected, block_list)
            blocks = block_list[:n_sel].copy()
            selected[blocks] = False
            assert len(set(blocks.tolist())) == n_sel
            assert n_sel == TAU if sparsifier.selection == SAMPLE else n_sel in (0, m)
            uplink += message_nbytes(n_sel, int(sizes[blocks].sum()) * n_outputs, m, 8)
            union[blocks] = True
        nb = int(union.sum())
        unions.append(nb)
        downlink += u.shape[0] * message_nbytes(
            nb, int(sizes[union].sum()) * n_outputs, m, 8)
    return uplink, downlink, unions


def _check_common(est, n_features):
    comm = est.communication_
    assert set(comm) == {"rounds", "uplink_bytes", "downlink_bytes",
                         "dense_uplink_bytes", "blocks_sent", "uplink_ratio"}
    assert est.n_iter_ == MAX_ITER
    assert comm["rounds"] == MAX_ITER  # gd: one round per epoch
    rounds = comm["rounds"]
    assert comm["dense_uplink_bytes"] == rounds * N_WORKERS * (16 + 8 * n_features)
    assert comm["uplink_ratio"] == comm["uplink_bytes"] / comm["dense_uplink_bytes"]
    # history_ ends on the same totals
    assert est.history_["rounds"][-1] == rounds
    assert est.history_["uplink_bytes"][-1] == comm["uplink_bytes"]
    assert len(est.history_["rounds"]) == MAX_ITER + 1
    return comm, rounds


def test_fit_accounting_equal_blocks(data):
    # 320 features, 64 blocks of 5: every uplink message is 16 + 4*4 + 8*4*5 bytes.
    partition = BlockPartition(320, N_BLOCKS)
    assert np.all(partition.sizes == 5)
    est, u = _fitted(data, 320, "independent")
    comm, rounds = _check_common(est, 320)
    per_message = 16 + 4 * TAU + 8 * TAU * 5
    assert comm["uplink_bytes"] == rounds * N_WORKERS * per_message
    assert comm["blocks_sent"] == rounds * N_WORKERS * TAU
    assert comm["uplink_ratio"] == pytest.approx(per_message / (16 + 8 * 320),
                                                 rel=1e-15)

    # Downlink: per round, n_workers copies of the message of the union of the
    # blocks sent (k blocks: 16 + 4k + 40k bytes, or the dense size if k = 64).
    assert u.shape == (N_WORKERS, rounds, TAU)
    uplink, downlink, unions = _replay_bytes(u, partition)
    assert uplink == comm["uplink_bytes"]
    assert comm["downlink_bytes"] == downlink
    n_min = rounds * N_WORKERS * per_message  # a union has at least tau blocks
    k_max = min(N_BLOCKS - 1, N_WORKERS * TAU)  # the largest message with ids
    n_max = rounds * N_WORKERS * (16 + k_max * (4 + 8 * 5))
    assert n_min <= comm["downlink_bytes"] <= n_max
    # Here ~41 of 64 blocks are touched a round, so the broadcast stays below
    # the dense message (a union of 59+ blocks would not: its ids cost more).
    assert max(unions) < 59
    assert comm["downlink_bytes"] < comm["dense_uplink_bytes"]
    # The union sizes behave like independent masks (m(1 - (1 - tau/m)^n) ~ 41).
    assert abs(np.mean(unions) - Independent(64, 4).expected_blocks_touched(16)) < 8


def test_fit_accounting_unequal_blocks(data):
    # 300 features: 44 blocks of 5 and 20 of 4.
    partition = BlockPartition(300, N_BLOCKS)
    assert np.bincount(partition.sizes).tolist() == [0, 0, 0, 0, 20, 44]
    est, u = _fitted(data, 300, "independent")
    comm, rounds = _check_common(est, 300)
    assert comm["blocks_sent"] == rounds * N_WORKERS * TAU
    dense_msg = 16 + 8 * 300
    lo = (16 + 4 * TAU + 8 * TAU * 4) / dense_msg
    hi = (16 + 4 * TAU + 8 * TAU * 5) / dense_msg
    assert lo <= comm["uplink_ratio"] <= hi
    assert comm["uplink_ratio"] == pytest.approx(0.075, abs=0.005)
    assert rounds * N_WORKERS * (16 + 4 * TAU + 8 * TAU * 4) <= comm["uplink_bytes"] \
        <= rounds * N_WORKERS * (16 + 4 * TAU + 8 * TAU * 5)
    # Exact, from the blocks actually drawn.
    uplink, downlink, unions = _replay_bytes(u, partition)
    assert comm["uplink_bytes"] == uplink
    assert comm["downlink_bytes"] == downlink
    single = rounds * N_WORKERS * (16 + 4 * TAU + 8 * TAU * 4)
    assert single <= comm["downlink_bytes"] < comm["dense_uplink_bytes"]


def test_fit_accounting_dense(data):
    est, u = _fitted(data, 300, "none")
    assert u.shape == (N_WORKERS, MAX_ITER, 0)  # Dense draws nothing
    comm, rounds = _check_common(est, 300)
    assert comm["uplink_ratio"] == 1.0
    assert comm["uplink_bytes"] == comm["dense_uplink_bytes"] == \
        rounds * N_WORKERS * (16 + 8 * 300)
    # The broadcast of a dense round is a dense message to every worker.
    assert comm["downlink_bytes"] == comm["dense_uplink_bytes"]
    assert comm["blocks_sent"] == rounds * N_WORKERS * N_BLOCKS


def test_dense_fit_reports_all_blocks_per_worker(data):
    est, _ = _fitted(data, 300, "none")
    assert est.communication_["blocks_sent"] == MAX_ITER * N_WORKERS * N_BLOCKS
    assert est.blocks_per_worker_ == N_BLOCKS


def test_fit_accounting_shared(data):
    # Every worker sends the same tau blocks, so the broadcast is one of those
    # messages per worker: downlink == uplink, whatever the block sizes.
    est, u = _fitted(data, 300, "shared")
    comm, rounds = _check_common(est, 300)
    assert np.all(u == u[0])
    assert comm["blocks_sent"] == rounds * N_WORKERS * TAU
    assert comm["downlink_bytes"] == comm["uplink_bytes"]
    uplink, downlink, unions = _replay_bytes(u, BlockPartition(300, N_BLOCKS))
    assert unions == [TAU] * rounds
    assert comm["uplink_bytes"] == uplink and comm["downlink_bytes"] == downlink


def test_fit_accounting_bernoulli(data):
    # Each worker sends all 64 blocks (no ids) with probability p = tau / m,
    # else its 16-byte header: with S messages sent over the rounds,
    # uplink = S (16 + 8 P) + (rounds n - S) 16, exactly.
    est, u = _fitted(data, 300, "bernoulli")
    comm, rounds = _check_common(est, 300)
    assert u.shape == (N_WORKERS, rounds, 1)
    sends = u[:, :, 0] < TAU / N_BLOCKS
    S = int(sends.sum())
    dense_msg = HEADER_BYTES + 8 * 300
    assert comm["uplink_bytes"] == S * dense_msg + (rounds * N_WORKERS - S) * 16
    assert comm["blocks_sent"] == S * N_BLOCKS
    # The broadcast is every block when anyone sent, else a header.
    anyone = sends.any(axis=0)
    assert comm["downlink_bytes"] == N_WORKERS * int(
        np.sum(np.where(anyone, dense_msg, HEADER_BYTES)))
    assert _replay_bytes(u, BlockPartition(300, N_BLOCKS), name="bernoulli")[:2] == \
        (comm["uplink_bytes"], comm["downlink_bytes"])


def test_bernoulli_uplink_matches_its_expectation():
    # E[uplink per round] = n (16 + p 8 P): each of the n workers sends its
    # 8P bytes of values with probability p.  400 rounds of 16 workers: the
    # number of messages sent is Binomial(6400, 1/16), 5 sigma = 97 of 400.
    X, y = make_classification(n_samples=64, n_features=31, random_state=0)
    n_rounds, p = 400, TAU / N_BLOCKS
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = DistributedSparseLogisticRegression(
            solver="gd", n_workers=N_WORKERS, n_blocks=N_BLOCKS // 2,
            blocks_per_worker=TAU // 2, sparsifier="bernoulli", max_iter=n_rounds,
            tol=0, random_state=0).fit(X, y)
    comm = est.communication_
    P = 32  # 31 features and the intercept
    trials = n_rounds * N_WORKERS
    expected = trials * (HEADER_BYTES + p * 8 * P)
    sigma = 8 * P * np.sqrt(trials * p * (1 - p))
    assert abs(comm["uplink_bytes"] - expected) <= 5 * sigma
    assert comm["uplink_ratio"] == pytest.approx(
        (HEADER_BYTES + p * 8 * P) / (HEADER_BYTES + 8 * P),
        abs=5 * sigma / comm["dense_uplink_bytes"])
    # and the count itself is a whole number of full and empty messages
    senders = (comm["uplink_bytes"] - trials * HEADER_BYTES) // (8 * P)
    assert comm["uplink_bytes"] == trials * HEADER_BYTES + senders * 8 * P
    assert comm["blocks_sent"] == senders * N_BLOCKS // 2


# --------------------------------------------------------------------------
# The compiled codec the real engines send messages with
# --------------------------------------------------------------------------

def _encoded(partition, block_ids, n_outputs, offset):
    """A message of ``block_ids`` written at ``offset`` of a fresh buffer."""
    m = partition.n_blocks
    rng = np.random.default_rng(0)
    n_values = int(partition.sizes[block_ids].sum()) * n_outputs
    values = rng.normal(size=n_values)
    n_ids = 0 if len(block_ids) == m else len(block_ids)
    buffer = np.zeros(offset + message_nbytes(len(block_ids), n_values, m) + 8,
                      dtype=np.uint8)
    pos = offset + write_header(buffer[offset:], 3, 7,
                                np.asarray(block_ids, np.int64), n_ids)
    buffer[pos:pos + values.nbytes] = values.view(np.uint8)
    return buffer[offset:pos + values.nbytes], values


@pytest.mark.parametrize("offset", [0, 4])  # values 8-aligned, or not
@pytest.mark.parametrize("block_ids, n_outputs", [
    ([5, 0, 9], 1), ([2], 3), (list(range(10)), 1), (list(range(10)), 2)])
def test_write_then_read_message(block_ids, n_outputs, offset):
    partition = BlockPartition(47, 10)
    m = partition.n_blocks
    frame, values = _encoded(partition, block_ids, n_outputs, offset)
    all_ids = len(block_ids) == m
    assert frame.size == message_nbytes(len(block_ids), values.size, m)
    # the layout of the module docstring, byte for byte
    n_ids = 0 if all_ids else len(block_ids)
    assert frame[:16].tobytes() == struct.pack("<IIQ", 3, n_ids, 7)
    assert frame[16:16 + 4 * n_ids].tobytes() == \
        np.asarray(block_ids, "<i4")[:n_ids].tobytes()
    assert frame[16 + 4 * n_ids:].tobytes() == values.tobytes()
    assert read_header(frame) == (3, n_ids, 7)

    ids_scratch = np.empty(m, np.int32)
    values_scratch = np.empty(48 * n_outputs)
    all_blocks = np.arange(m, dtype=np.int32)
    got_ids, n_blocks, got_values = read_message(
        frame, partition.starts, n_outputs, all_blocks, ids_scratch, values_scratch)
    assert n_blocks == len(block_ids)
    assert_array_equal(got_ids[:n_blocks], block_ids)
    assert_array_equal(got_values, values)
    # aligned values are read in place; others are copied out first
    aligned = frame[16 + 4 * n_ids:].ctypes.data % 8 == 0
    assert np.shares_memory(got_values, frame) == aligned
    assert np.shares_memory(got_values, values_scratch) == (not aligned)


def test_the_empty_message_is_its_header():
    # A worker that sends nothing (sparsifier="bernoulli"), or a broadcast
    # nobody contributed to: no ids, no values, read as zero blocks, while
    # a message of every block has no ids either but all the values.
    partition = BlockPartition(47, 10)
    frame, values = _encoded(partition, [], 1, 0)
    assert values.size == 0 and frame.size == HEADER_BYTES == message_nbytes(0, 0, 10)
    assert frame.tobytes() == struct.pack("<IIQ", 3, 0, 7)
    scratch = (np.arange(10, dtype=np.int32), np.empty(10, np.int32), np.empty(48))
    ids, n_blocks, got = read_message(frame, partition.starts, 1, *scratch)
    assert n_blocks == 0 and got.size == 0
    full, values = _encoded(partition, list(range(10)), 1, 0)
    ids, n_blocks, got = read_message(full, partition.starts, 1, *scratch)
    assert n_blocks == 10
    assert_array_equal(got, values)


@pytest.mark.parametrize("damage", ["truncated", "longer", "unknown block",
                                    "too many ids"])
def test_read_message_rejects_a_frame_that_does_not_fit_the_blocks(damage):
    partition = BlockPartition(47, 10)
    frame, _ = _encoded(partition, [5, 0, 9], 1, 0)
    frame = frame.copy()
    if damage == "truncated":
        frame = frame[:-8]
    elif damage == "longer":
        frame = np.concatenate([frame, np.zeros(8, np.uint8)])
    elif damage == "unknown block":
        frame[16:20] = np.frombuffer(struct.pack("<i", 10), np.uint8)
    else:
        frame[4:8] = np.frombuffer(struct.pack("<I", 11), np.uint8)
    _, n_blocks, _ = read_message(frame, partition.starts, 1,
                                  np.arange(10, dtype=np.int32),
                                  np.empty(10, np.int32), np.empty(48))
    assert n_blocks == -1
