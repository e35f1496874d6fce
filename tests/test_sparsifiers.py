"""Monte-Carlo checks that the aggregated estimate is what docs/method.md says.

One trial is one synchronous round built from the library's own parts:

- ``SPARSIFIERS[name](m, tau).draw(worker_rngs, shared_rng, n_rounds)`` draws the
  uniforms of every worker for all the rounds at once;
- ``sparsifiers.select_blocks`` turns a worker's uniforms of a round into its
  block set U_i (tau sampled blocks; for "bernoulli" all m or none);
- ``worker.emit_message`` packs (m / tau) (g_i - h_i) on U_i;
- ``master.aggregate_message`` adds w_i M_i into A.

The estimate is ghat = hbar + A with hbar = sum_i w_i h_i (ghat = A without
control variates), and the target is gbar = sum_i w_i g_i.  Facts checked
(docs/method.md, "Why it works"), with omega = m / tau - 1 and
d_i = g_i - h_i (d_i = g_i without control variates):

- E[ghat] = gbar;
- E||ghat - gbar||^2 = omega sum_i w_i^2 ||d_i||^2 (independent masks),
  omega ||sum_i w_i d_i||^2 (shared masks);
- shared masks touch tau blocks a round, independent ones (sampled or
  Bernoulli) m (1 - (1 - tau/m)^n) in expectation;
- every worker sends every block with probability tau / m.

"bernoulli" (IBGD) has the independent formulas: a block reaches the master
with probability tau / m independently across workers, and the squared error
is a sum over coordinates, blind to how one message's blocks are correlated.

Every tolerance is a 5-sigma bound computed from a known (or, for the squared
error, measured) variance, so a correct library fails with probability of order
1e-6 per check; all seeds are fixed, so the outcome is deterministic anyway.
The rounds are driven by a small compiled loop (``_run_trials``) that only
calls the library's functions, in the order the in-process engine does.
"""

import functools
import itertools

import numpy as np
import pytest
from numba import njit
from scipy import stats

from sklearn_dsparse.blocks import BlockPartition
from sklearn_dsparse.master import aggregate_message
from sklearn_dsparse.sparsifiers import (ALL, SAMPLE, SPARSIFIERS, Bernoulli, Dense,
                                         Independent, Shared, floyd_sample,
                                         select_blocks)
from sklearn_dsparse.worker import emit_message

N_SIGMA = 5.0
N_TRIALS = 40_000


# --------------------------------------------------------------------------
# The round loop: library calls only.
# --------------------------------------------------------------------------

@njit(cache=False)
def _run_trials(u, g, h, w, use_cv, selection, starts, scale, gbar, hbar):
    """Run u.shape[1] independent rounds from the same (g_i, h_i).

    Returns the sum over rounds of ghat - gbar, the squared error of every
    round, the number of touched blocks of every round (from the master's
    ``touched``), the bitmask of the blocks each worker sent each round (m <= 62)
    and the number of values of every message.
    """
    n_workers, n_rounds = u.shape[0], u.shape[1]
    n_blocks = starts.shape[0] - 1
    n_columns, K = g.shape[1], g.shape[2]
    selected = np.zeros(n_blocks, dtype=np.bool_)
    touched = np.zeros(n_blocks, dtype=np.bool_)
    block_list = np.empty(n_blocks, dtype=np.int64)
    values = np.empty(n_columns * K)
    A = np.zeros((n_columns, K))
    h_i = np.empty((n_columns, K))
    err_sum = np.zeros((n_columns, K))
    sq_err = np.empty(n_rounds)
    n_touched = np.empty(n_rounds, dtype=np.int64)
    masks = np.zeros((n_workers, n_rounds), dtype=np.int64)
    n_values = np.empty((n_workers, n_rounds), dtype=np.int64)
    for r in range(n_rounds):
        A[:] = 0.0
        for i in range(n_workers):
            n_sel = select_blocks(u[i, r], n_blocks, selection, scale, selected,
                                  block_list)
            h_i[:] = h[i]  # emit_message overwrites h_i with control variates
            n_values[i, r] = emit_message(g[i], h_i, use_cv, block_list, n_sel,
                                          starts, scale, values)
            aggregate_message(A, touched, block_list, n_sel, starts, values, w[i])
            for j in range(n_sel):
                b = block_list[j]
                masks[i, r] |= np.int64(1) << b
                selected[b] = False
        count = 0
        for b in range(n_blocks):
            if touched[b]:
                count += 1
                touched[b] = False
        n_touched[r] = count
        z = 0.0
        for col in range(n_columns):
            for k in range(K):
                ghat = A[col, k] + (hbar[col, k] if use_cv else 0.0)
                e = ghat - gbar[col, k]
                err_sum[col, k] += e
                z += e * e
        sq_err[r] = z
    return err_sum, sq_err, n_touched, masks, n_values


def _popcount(x):
    return np.bitwise_count(np.asarray(x, dtype=np.int64).view(np.uint64)).astype(
        np.int64)


def _streams(seed, n_workers):
    """One stream per worker plus the shared one, as the engine makes them."""
    seqs = np.random.SeedSequence(seed).spawn(n_workers + 1)
    return [np.random.default_rng(s) for s in seqs[:n_workers]], \
        np.random.default_rng(seqs[n_workers])


# --------------------------------------------------------------------------
# Problems: unequal block sizes, unequal weights, correlated g_i.
# --------------------------------------------------------------------------

def _starts_1_to_100():
    # BlockPartition makes sizes that differ by at most one, so a partition with
    # sizes from 1 to 100 is given by its starts (all the round functions see).
    sizes = np.array([1, 100, 7, 2, 64, 33, 1, 90, 18, 50])
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


PARTITIONS = {
    # 41 = 12 * 3 + 5: five blocks of 4 and seven of 3; two outputs.
    "uneven": dict(starts=BlockPartition(41, 12).starts, K=2, n_workers=6, tau=3),
    # sizes 1..100 over 10 blocks, one output.
    "sizes_1_to_100": dict(starts=_starts_1_to_100(), K=1, n_workers=6, tau=2),
}


@functools.lru_cache(maxsize=None)
def _problem(partition):
    cfg = PARTITIONS[partition]
    n, K = cfg["n_workers"], cfg["K"]
    n_columns = int(cfg["starts"][-1])
    rng = np.random.default_rng(12345)
    # A common component makes the g_i - h_i correlated across workers, so the
    # shared-mask variance (||sum w_i d_i||^2) is far from the independent one
    # (sum w_i^2 ||d_i||^2): the test can tell the two apart.
    scales = rng.uniform(0.2, 3.0, size=(n_columns, K))
    common = rng.normal(size=(n_columns, K)) * scales
    g = common + 0.5 * rng.normal(size=(n, n_columns, K)) * scales
    h = 0.3 * rng.normal(size=(n, n_columns, K)) * scales
    w = rng.dirichlet(np.full(n, 2.0))
    assert np.isclose(w.sum(), 1.0) and np.ptp(w) > 0.05  # unequal weights
    return g, h, w


def _expected_moments(sparsifier, g, h, w, use_cv):
    """Per-coordinate variance of ghat and E||ghat - gbar||^2 (docs/method.md)."""
    omega = sparsifier.omega
    d = g - h if use_cv else g
    if isinstance(sparsifier, Shared):
        var = omega * np.einsum("i,ick->ck", w, d) ** 2
    else:
        var = omega * np.einsum("i,ick->ck", w ** 2, d ** 2)
    return var, float(var.sum())


@functools.lru_cache(maxsize=None)
def _monte_carlo(name, partition, use_cv, n_trials=N_TRIALS, seed=2024):
    cfg = PARTITIONS[partition]
    starts = cfg["starts"]
    n_blocks = len(starts) - 1
    g, h, w = _problem(partition)
    sparsifier = SPARSIFIERS[name](n_blocks, cfg["tau"])
    worker_rngs, shared_rng = _streams(seed, cfg["n_workers"])
    u = sparsifier.draw(worker_rngs, shared_rng, n_trials)
    assert u.shape == (cfg["n_workers"], n_trials, sparsifier.uniforms_per_round)
    gbar = np.einsum("i,ick->ck", w, g)
    hbar = np.einsum("i,ick->ck", w, h)
    out = _run_trials(u, g, h, w, use_cv, sparsifier.selection, starts,
                      sparsifier.scale, gbar, hbar)
    return sparsifier, out


CASES = [(name, partition, use_cv)
         for name in ("independent", "bernoulli", "shared")
         for partition in PARTITIONS
         for use_cv in (False, True)]


# --------------------------------------------------------------------------
# 1. Unbiasedness
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name, partition, use_cv", CASES)
def test_unbiased(name, partition, use_cv):
    sparsifier, (err_sum, *_) = _monte_carlo(name, partition, use_cv)
    g, h, w = _problem(partition)
    var, _ = _expected_moments(sparsifier, g, h, w, use_cv)
    mean_err = err_sum / N_TRIALS
    # ghat - gbar has mean 0 and the known variance `var` per coordinate; its
    # mean over N_TRIALS rounds has standard error sqrt(var / N_TRIALS).
    bound = N_SIGMA * np.sqrt(var / N_TRIALS) + 1e-12 * np.abs(g).max()
    worst = np.max(np.abs(mean_err) / bound)
    assert worst <= 1.0, f"bias of {worst:.2f} x the {N_SIGMA}-sigma bound"


# --------------------------------------------------------------------------
# 2. Variance
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name, partition, use_cv", CASES)
def test_variance(name, partition, use_cv):
    sparsifier, (_, sq_err, *_) = _monte_carlo(name, partition, use_cv)
    g, h, w = _problem(partition)
    _, expected = _expected_moments(sparsifier, g, h, w, use_cv)
    mean = sq_err.mean()
    # Standard error of the mean of N_TRIALS i.i.d. squared errors, from their
    # sample standard deviation.
    se = sq_err.std(ddof=1) / np.sqrt(N_TRIALS)
    tol = N_SIGMA * se
    # The 5-sigma bound must be tight enough to mean something: below 5% of
    # the value (so a 5% error in the variance formula would be caught).
    assert tol <= 0.05 * expected, f"too few trials: 5 sigma = {tol / expected:.1%}"
    assert abs(mean - expected) <= tol, (
        f"E||ghat - gbar||^2: measured {mean:.6g}, docs/method.md {expected:.6g} "
        f"({(mean - expected) / expected:+.2%}, tolerance {tol / expected:.2%})")
    # The other mask's formula must be rejected by the same test.
    other = SPARSIFIERS["independent" if name == "shared" else "shared"](
        sparsifier.n_blocks, sparsifier.blocks_per_worker)
    _, wrong = _expected_moments(other, g, h, w, use_cv)
    assert abs(mean - wrong) > 10 * tol


# --------------------------------------------------------------------------
# 3. Blocks touched per round
# --------------------------------------------------------------------------

@pytest.mark.parametrize("partition", list(PARTITIONS))
def test_shared_masks_touch_tau_blocks(partition):
    sparsifier, (_, _, n_touched, masks, _) = _monte_carlo("shared", partition, True)
    tau = sparsifier.blocks_per_worker
    assert np.all(n_touched == tau)
    assert np.all(masks == masks[0])  # every worker sends the same blocks
    assert np.all(_popcount(masks[0]) == tau)
    assert sparsifier.expected_blocks_touched(masks.shape[0]) == tau
    # The mask changes from round to round.
    assert len(np.unique(masks[0])) > 1


def _touched_moments(n_blocks, tau, n_workers):
    """Exact mean and variance of the number of blocks touched by independent masks."""
    q = 1.0 - tau / n_blocks  # P(a worker misses block b)
    # P(a worker misses both b and b') = C(m-2, tau) / C(m, tau)
    q2 = (n_blocks - tau) * (n_blocks - tau - 1) / (n_blocks * (n_blocks - 1))
    p0 = q ** n_workers
    mean = n_blocks * (1.0 - p0)
    var = n_blocks * p0 * (1 - p0) + n_blocks * (n_blocks - 1) * (
        q2 ** n_workers - p0 ** 2)
    return mean, var


@pytest.mark.parametrize("partition", list(PARTITIONS))
def test_independent_masks_touch_expected_blocks(partition):
    sparsifier, (_, _, n_touched, masks, _) = _monte_carlo(
        "independent", partition, True)
    m, tau = sparsifier.n_blocks, sparsifier.blocks_per_worker
    n_workers = masks.shape[0]
    mean, var = _touched_moments(m, tau, n_workers)
    assert sparsifier.expected_blocks_touched(n_workers) == pytest.approx(
        m * (1 - (1 - tau / m) ** n_workers), rel=1e-12)
    assert sparsifier.expected_blocks_touched(n_workers) == pytest.approx(mean,
                                                                          rel=1e-12)
    # The master's `touched` agrees with the union of the workers' sets.
    union = np.bitwise_or.reduce(masks, axis=0)
    np.testing.assert_array_equal(n_touched, _popcount(union))
    bound = N_SIGMA * np.sqrt(var / len(n_touched))
    assert abs(n_touched.mean() - mean) <= bound
    # The exact variance, too: the sample variance has standard error
    # sqrt((mu4 - var^2) / T), mu4 the fourth central moment (measured).
    centred = n_touched - n_touched.mean()
    se_var = np.sqrt((np.mean(centred ** 4) - centred.var() ** 2) / len(n_touched))
    assert abs(centred.var() - var) <= N_SIGMA * se_var
    assert n_touched.min() >= tau and n_touched.max() <= min(m, n_workers * tau)


def test_expected_blocks_touched_of_every_sparsifier():
    assert Independent(64, 4).expected_blocks_touched(16) == pytest.approx(
        64 * (1 - (60 / 64) ** 16))
    assert Independent(64, 4).expected_blocks_touched(1) == pytest.approx(4)
    assert Independent(10, 10).expected_blocks_touched(3) == pytest.approx(10)
    assert Bernoulli(64, 4).expected_blocks_touched(16) == pytest.approx(
        64 * (1 - (60 / 64) ** 16))
    assert Bernoulli(10, 10).expected_blocks_touched(3) == pytest.approx(10)
    assert Shared(64, 4).expected_blocks_touched(16) == 4
    assert Dense(64).expected_blocks_touched(16) == 64


# --------------------------------------------------------------------------
# 4. Uniform marginals, independence across workers, Floyd's sampling
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name, partition", [(n, p) for n in ("independent", "shared")
                                             for p in PARTITIONS])
def test_each_block_sent_with_probability_tau_over_m(name, partition):
    sparsifier, (_, _, _, masks, n_values) = _monte_carlo(name, partition, True)
    m, tau = sparsifier.n_blocks, sparsifier.blocks_per_worker
    p = tau / m
    n_workers, T = masks.shape
    assert np.all(_popcount(masks) == tau)  # tau distinct blocks per message
    counts = np.stack([(masks >> b) & 1 for b in range(m)], axis=-1).sum(axis=1)
    # counts[i, b] ~ Binomial(T, tau/m)
    bound = N_SIGMA * np.sqrt(T * p * (1 - p))
    assert np.max(np.abs(counts - T * p)) <= bound
    # The message carries the values of exactly its blocks.
    starts = PARTITIONS[partition]["starts"]
    sizes = np.diff(starts) * PARTITIONS[partition]["K"]
    bits = np.stack([(masks >> b) & 1 for b in range(m)], axis=-1)
    np.testing.assert_array_equal(n_values, bits @ sizes)


@pytest.mark.parametrize("partition", list(PARTITIONS))
def test_independent_workers_overlap_like_independent_draws(partition):
    sparsifier, (_, _, _, masks, _) = _monte_carlo("independent", partition, True)
    m, tau = sparsifier.n_blocks, sparsifier.blocks_per_worker
    T = masks.shape[1]
    # |U_0 ∩ U_1| is hypergeometric for independent workers.
    overlap = _popcount(masks[0] & masks[1])
    mean = tau * tau / m
    var = tau * (tau / m) * (1 - tau / m) * (m - tau) / (m - 1)
    assert abs(overlap.mean() - mean) <= N_SIGMA * np.sqrt(var / T)
    # and a worker's consecutive rounds are independent too
    lag = _popcount(masks[0, 1:] & masks[0, :-1])
    assert abs(lag.mean() - mean) <= N_SIGMA * np.sqrt(var / (T - 1))


@pytest.mark.parametrize("partition", list(PARTITIONS))
def test_bernoulli_sends_all_or_nothing_independently(partition):
    sparsifier, (_, _, n_touched, masks, n_values) = _monte_carlo(
        "bernoulli", partition, True)
    m, tau = sparsifier.n_blocks, sparsifier.blocks_per_worker
    p = tau / m
    n_workers, T = masks.shape
    every = (np.int64(1) << m) - 1
    sends = masks == every
    assert np.all(sends | (masks == 0))  # a whole message or nothing
    sizes = np.diff(PARTITIONS[partition]["starts"]) * PARTITIONS[partition]["K"]
    np.testing.assert_array_equal(n_values, np.where(sends, sizes.sum(), 0))
    # each worker sends in Binomial(T, p) of the rounds ...
    assert np.max(np.abs(sends.sum(axis=1) - T * p)) <= N_SIGMA * np.sqrt(
        T * p * (1 - p))
    # ... independently of the others (both send with probability p^2) and of
    # its own last round
    for both in (sends[0] & sends[1], sends[0, 1:] & sends[0, :-1]):
        assert abs(both.mean() - p * p) <= N_SIGMA * np.sqrt(p * p * (1 - p * p)
                                                             / both.size)
    # The round touches every block when anyone sends, else none.
    anyone = sends.any(axis=0)
    np.testing.assert_array_equal(n_touched, np.where(anyone, m, 0))
    q = 1 - (1 - p) ** n_workers
    assert sparsifier.expected_blocks_touched(n_workers) == pytest.approx(m * q,
                                                                          rel=1e-12)
    assert abs(anyone.mean() - q) <= N_SIGMA * np.sqrt(q * (1 - q) / T)


def test_bernoulli_second_moment_of_one_message():
    # One worker, h = 0: C(x) = x / p or 0, so E||C(x)||^2 = (1 + omega) ||x||^2
    # with omega = 1 / p - 1 (the compressor's variance factor).
    starts = PARTITIONS["uneven"]["starts"]
    m = len(starts) - 1
    g, _, _ = _problem("uneven")
    x = g[:1]
    sparsifier = Bernoulli(m, 3)
    p = 3 / m
    assert sparsifier.omega == pytest.approx(1 / p - 1, rel=1e-15)
    u = sparsifier.draw(*_streams(8, 1), N_TRIALS)
    zero = np.zeros_like(x[0])
    err_sum, sq_err, *_ = _run_trials(u, x, np.zeros_like(x), np.ones(1), False,
                                      sparsifier.selection, starts,
                                      sparsifier.scale, zero, zero)
    norm2 = float(np.sum(x ** 2))
    # ||C(x)||^2 is norm2 / p^2 with probability p, else 0: its variance is
    # norm2^2 (1 / p^3 - 1 / p^2) ...
    bound = N_SIGMA * norm2 * np.sqrt((1 / p ** 3 - 1 / p ** 2) / N_TRIALS)
    assert abs(sq_err.mean() - (1 + sparsifier.omega) * norm2) <= bound
    # ... and each coordinate of C(x) has variance omega x^2 around x.
    mean_err = err_sum / N_TRIALS - x[0]  # err_sum sums C(x) - 0
    coord_bound = N_SIGMA * np.sqrt(sparsifier.omega * x[0] ** 2 / N_TRIALS)
    assert np.all(np.abs(mean_err) <= coord_bound + 1e-12 * np.abs(x).max())


@pytest.mark.parametrize("n_total, t", [(5, 2), (6, 3), (4, 1), (4, 4)])
def test_floyd_sample_uniform_over_subsets(n_total, t):
    n_draws = 60_000
    u = np.random.default_rng(7).random((n_draws, t))
    seen = np.zeros(n_total, dtype=np.bool_)
    out = np.empty(t, dtype=np.int64)
    subsets = {s: i for i, s in enumerate(itertools.combinations(range(n_total), t))}
    freq = np.zeros(len(subsets), dtype=np.int64)
    for row in u:
        floyd_sample(row, n_total, seen, out)
        assert not seen.any()  # scratch restored
        s = tuple(sorted(out))
        assert len(set(s)) == t and 0 <= s[0] and s[-1] < n_total
        freq[subsets[s]] += 1
    if len(subsets) == 1:
        assert freq[0] == n_draws
        return
    pvalue = stats.chisquare(freq).pvalue
    assert pvalue > 1e-6, f"chi-square p = {pvalue:.3g}, frequencies {freq}"


def test_floyd_sample_extreme_uniforms():
    # u close to 1 must stay in range, u = 0 must still give distinct values.
    seen = np.zeros(7, dtype=np.bool_)
    out = np.empty(7, dtype=np.int64)
    for value in (0.0, np.nextafter(1.0, 0.0)):
        floyd_sample(np.full(7, value), 7, seen, out)
        assert sorted(out) == list(range(7))
        assert not seen.any()


# --------------------------------------------------------------------------
# 5. Dense: every block, scale 1, the exact average
# --------------------------------------------------------------------------

@pytest.mark.parametrize("use_cv", [False, True])
@pytest.mark.parametrize("partition", list(PARTITIONS))
def test_dense_gives_the_exact_average(partition, use_cv):
    cfg = PARTITIONS[partition]
    starts = cfg["starts"]
    m = len(starts) - 1
    g, h, w = _problem(partition)
    n_workers = len(w)
    sparsifier = SPARSIFIERS["none"](m, cfg["tau"])
    assert isinstance(sparsifier, Dense) and sparsifier.sends_all
    assert sparsifier.blocks_per_worker == m
    assert sparsifier.scale == 1.0 and sparsifier.omega == 0.0
    worker_rngs, shared_rng = _streams(0, n_workers)
    u = sparsifier.draw(worker_rngs, shared_rng, 3)
    assert u.shape == (n_workers, 3, 0)

    selected = np.zeros(m, dtype=np.bool_)
    touched = np.zeros(m, dtype=np.bool_)
    block_list = np.empty(m, dtype=np.int64)
    values = np.empty(g[0].size)
    A = np.zeros_like(g[0])
    for i in range(n_workers):
        n_sel = select_blocks(u[i, 0], m, ALL, 1.0, selected, block_list)
        assert n_sel == m
        np.testing.assert_array_equal(block_list, np.arange(m))
        h_i = h[i].copy()
        n_val = emit_message(g[i], h_i, use_cv, block_list, n_sel, starts,
                             sparsifier.scale, values)
        assert n_val == g[i].size
        expected = (g[i] - h[i]) if use_cv else g[i]
        np.testing.assert_array_equal(values, expected.ravel())  # scale 1
        if use_cv:
            np.testing.assert_array_equal(h_i, g[i])  # h_i <- g_i everywhere
        aggregate_message(A, touched, block_list, n_sel, starts, values, w[i])
        selected[:] = False
    assert touched.all()
    ghat = A + (np.einsum("i,ick->ck", w, h) if use_cv else 0.0)
    np.testing.assert_allclose(ghat, np.einsum("i,ick->ck", w, g),
                               rtol=1e-12, atol=1e-12 * np.abs(g).max())


def test_independent_with_all_blocks_is_exact_every_round():
    # tau = m: scale 1, omega 0, the estimate is exact in every round.
    partition = "uneven"
    starts = PARTITIONS[partition]["starts"]
    m = len(starts) - 1
    g, h, w = _problem(partition)
    sparsifier = Independent(m, m)
    assert sparsifier.scale == 1.0
    worker_rngs, shared_rng = _streams(3, len(w))
    u = sparsifier.draw(worker_rngs, shared_rng, 50)
    gbar = np.einsum("i,ick->ck", w, g)
    hbar = np.einsum("i,ick->ck", w, h)
    _, sq_err, n_touched, _, _ = _run_trials(u, g, h, w, True, SAMPLE, starts, 1.0,
                                             gbar, hbar)
    assert np.all(n_touched == m)
    assert np.all(sq_err <= 1e-24 * np.sum(gbar ** 2))


def test_control_variates_update_only_the_sent_blocks():
    # docs/method.md, "One round", step 6: h_i <- g_i on U_i, unchanged
    # elsewhere; values are (m / tau) (g_i - h_i) on U_i, in the order of the
    # block list.
    starts = PARTITIONS["uneven"]["starts"]
    m = len(starts) - 1
    g, h, _ = _problem("uneven")
    sparsifier = Independent(m, 3)
    u = sparsifier.draw(*_streams(5, 1), 1)
    selected = np.zeros(m, dtype=np.bool_)
    block_list = np.empty(m, dtype=np.int64)
    values = np.empty(g[0].size)
    n_sel = select_blocks(u[0, 0], m, SAMPLE, sparsifier.scale, selected, block_list)
    h_i = h[0].copy()
    n_val = emit_message(g[0], h_i, True, block_list, n_sel, starts,
                         sparsifier.scale, values)
    rows = np.concatenate([np.arange(starts[b], starts[b + 1])
                           for b in block_list[:n_sel]])
    assert n_val == rows.size * g.shape[2]
    np.testing.assert_allclose(values[:n_val],
                               (sparsifier.scale * (g[0] - h[0])[rows]).ravel(),
                               rtol=1e-15)
    sent = np.zeros(g.shape[1], dtype=bool)
    sent[rows] = True
    np.testing.assert_array_equal(h_i[sent], g[0][sent])
    np.testing.assert_array_equal(h_i[~sent], h[0][~sent])
    np.testing.assert_array_equal(np.flatnonzero(selected),
                                  np.sort(block_list[:n_sel]))


# --------------------------------------------------------------------------
# 6. Determinism
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["independent", "bernoulli", "shared", "none"])
def test_same_seed_same_draws(name):
    sparsifier = SPARSIFIERS[name](12, 3)
    a = sparsifier.draw(*_streams(11, 4), 25)
    b = sparsifier.draw(*_streams(11, 4), 25)
    np.testing.assert_array_equal(a, b)
    if name == "none":
        return
    c = sparsifier.draw(*_streams(12, 4), 25)
    assert not np.array_equal(a, c)


def test_worker_draws_do_not_depend_on_the_number_of_workers():
    # One stream per logical worker: worker i's blocks are the same whether
    # 4 or 7 workers are drawn (streams spawned from the same SeedSequence).
    seqs = np.random.SeedSequence(99).spawn(8)
    sparsifier = Independent(12, 3)
    few = sparsifier.draw([np.random.default_rng(s) for s in seqs[:4]],
                          np.random.default_rng(seqs[7]), 10)
    many = sparsifier.draw([np.random.default_rng(s) for s in seqs[:7]],
                           np.random.default_rng(seqs[7]), 10)
    np.testing.assert_array_equal(few, many[:4])


@pytest.mark.parametrize("name", ["independent", "bernoulli", "shared"])
def test_same_seed_same_estimates(name):
    partition = "uneven"
    cfg = PARTITIONS[partition]
    g, h, w = _problem(partition)
    starts = cfg["starts"]
    sparsifier = SPARSIFIERS[name](len(starts) - 1, cfg["tau"])
    gbar = np.einsum("i,ick->ck", w, g)
    hbar = np.einsum("i,ick->ck", w, h)
    runs = []
    for _ in range(2):
        u = sparsifier.draw(*_streams(31, len(w)), 200)
        runs.append(_run_trials(u, g, h, w, True, sparsifier.selection, starts,
                                sparsifier.scale, gbar, hbar))
    for x, y in zip(*runs):
        np.testing.assert_array_equal(x, y)
