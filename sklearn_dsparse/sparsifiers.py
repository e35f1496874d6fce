"""Which blocks each worker sends in a round, and by how much they are rescaled.

Four sparsifiers share one interface (docs/method.md, "Baselines"):

- ``Independent``: every worker draws its own tau of the m blocks, uniformly
  without replacement, independently of the other workers and of past rounds.
  The method of the library.
- ``Bernoulli``: every worker sends all m blocks with probability p = tau / m,
  independently of the other workers and of past rounds, else nothing (the
  paper's independent Bernoulli compressor, IBGD).  Each block reaches the
  master with the same probability as with ``Independent``, so the variance
  and the step rule are the same; the blocks of a message come all or none.
- ``Shared``: one draw per round that every worker replays (classic parallel
  block coordinate descent): only tau blocks are touched per round.
- ``Dense``: every worker sends every block (``sparsifier="none"``), i.e.
  plain dense averaging; the do-nothing baseline the others are measured by.

Messages are rescaled by ``scale = m / tau`` so that the average stays
unbiased.  Randomness is drawn in NumPy from explicit generators (one stream
per worker, plus one shared stream) as uniforms; ``select_blocks`` turns a
round's uniforms into a block set, by the sparsifier's ``selection`` rule
(``SAMPLE``: Floyd's algorithm; ``ALL``; ``ALL_OR_NONE``: all blocks when the
uniform is below p).  Drawing uniforms
per epoch in NumPy and selecting in compiled code keeps the result independent
of the engine that runs the workers.
"""

import numpy as np
from numba import njit

#: How ``select_blocks`` turns a worker's uniforms of a round into its blocks.
SAMPLE, ALL, ALL_OR_NONE = 0, 1, 2


class Sparsifier:
    """Base contract: ``draw`` the uniforms of ``n_rounds`` rounds."""

    name = None
    #: True when every worker sends all m blocks (no uniforms are drawn).
    sends_all = False
    #: The rule of ``select_blocks``.
    selection = SAMPLE

    def __init__(self, n_blocks, blocks_per_worker):
        if not 1 <= blocks_per_worker <= n_blocks:
            raise ValueError(
                f"blocks_per_worker={blocks_per_worker} must be between 1 and "
                f"n_blocks={n_blocks}"
            )
        self.n_blocks = int(n_blocks)
        self.blocks_per_worker = int(blocks_per_worker)

    @property
    def scale(self):
        """The unbiasing factor m / tau applied to every message."""
        return self.n_blocks / self.blocks_per_worker

    @property
    def omega(self):
        """Variance factor of the compressor: m / tau - 1."""
        return self.scale - 1.0

    @property
    def uniforms_per_round(self):
        """Uniforms a worker draws per round (the last axis of ``draw``)."""
        return self.blocks_per_worker

    @property
    def max_blocks_sent(self):
        """The most blocks one message carries."""
        return self.blocks_per_worker

    def step_smoothness(self, L_F, s2, L_b):
        """The smoothness the step rule divides by (``step_size.py``): dense
        averaging's ``L_F + s2 L_b``, as this compression inflates it."""
        raise NotImplementedError

    def draw(self, worker_rngs, shared_rng, n_rounds):
        """Uniforms of shape (n_workers, n_rounds, uniforms_per_round) for
        the next rounds."""
        raise NotImplementedError

    def expected_blocks_touched(self, n_workers):
        """Expected number of distinct blocks sent in one round."""
        raise NotImplementedError

    def __repr__(self):
        return (f"{type(self).__name__}(n_blocks={self.n_blocks}, "
                f"blocks_per_worker={self.blocks_per_worker})")


class Independent(Sparsifier):
    name = "independent"

    def step_smoothness(self, L_F, s2, L_b):
        # Independent masks add omega s2 L_b of per-worker variance; the round
        # with control variates is stable up to about 1 / (L_F / 2 + that),
        # so dense averaging's step stands until that limit is the tighter.
        return max(L_F + s2 * L_b, L_F / 2 + self.omega * s2 * L_b)

    def draw(self, worker_rngs, shared_rng, n_rounds):
        return np.stack(
            [rng.random((n_rounds, self.blocks_per_worker)) for rng in worker_rngs]
        )

    def expected_blocks_touched(self, n_workers):
        p = self.blocks_per_worker / self.n_blocks
        return self.n_blocks * (1.0 - (1.0 - p) ** n_workers)


class Bernoulli(Independent):
    """All m blocks with probability p = tau / m, else none (IBGD).

    A block is sent with probability p, independently across workers and
    rounds, as with ``Independent``: only the correlation of blocks within
    one message differs, and neither the variance omega sum_i w_i^2 ||d_i||^2
    (a sum of squares, coordinate by coordinate) nor the blocks touched
    depend on it.  The step rule is therefore ``Independent``'s, whose
    stability limit was measured on this very round (one block sent with
    probability p, ``benchmarks/study_step_stability.py``).  A worker that
    sends nothing still sends its header (16 bytes): the synchronous master
    waits for every worker.
    """

    name = "bernoulli"
    selection = ALL_OR_NONE

    @property
    def uniforms_per_round(self):
        return 1

    @property
    def max_blocks_sent(self):
        return self.n_blocks

    def draw(self, worker_rngs, shared_rng, n_rounds):
        return np.stack([rng.random((n_rounds, 1)) for rng in worker_rngs])


class Shared(Sparsifier):
    name = "shared"

    def step_smoothness(self, L_F, s2, L_b):
        # One mask for all: the whole update is a random block step.
        return self.scale * (L_F + s2 * L_b)

    def draw(self, worker_rngs, shared_rng, n_rounds):
        u = shared_rng.random((n_rounds, self.blocks_per_worker))
        return np.repeat(u[np.newaxis], len(worker_rngs), axis=0)

    def expected_blocks_touched(self, n_workers):
        return float(self.blocks_per_worker)


class Dense(Sparsifier):
    name = "none"
    sends_all = True
    selection = ALL

    def __init__(self, n_blocks, blocks_per_worker=None):
        super().__init__(n_blocks, n_blocks)

    @property
    def uniforms_per_round(self):
        return 0

    def step_smoothness(self, L_F, s2, L_b):
        return L_F + s2 * L_b

    def draw(self, worker_rngs, shared_rng, n_rounds):
        return np.empty((len(worker_rngs), n_rounds, 0))

    def expected_blocks_touched(self, n_workers):
        return float(self.n_blocks)


SPARSIFIERS = {cls.name: cls for cls in (Independent, Bernoulli, Shared, Dense)}


@njit(cache=True)
def floyd_sample(u, n_total, seen, out):
    """Write len(u) distinct integers of [0, n_total) into ``out``.

    Floyd's algorithm: uniform over subsets, one uniform per element.  ``seen``
    is a False-filled scratch of length n_total, restored before returning.
    """
    t = u.shape[0]
    for j in range(t):
        top = n_total - t + j
        r = int(u[j] * (top + 1))
        if r > top:
            r = top
        if seen[r]:
            r = top
        seen[r] = True
        out[j] = r
    for j in range(t):
        seen[out[j]] = False


@njit(cache=True)
def select_blocks(u, n_blocks, selection, scale, selected, block_list):
    """Fill ``block_list`` with the round's blocks (by the ``selection`` rule
    of the sparsifier, whose ``scale`` is m / tau), mark them in
    ``selected`` and return how many."""
    if selection == ALL_OR_NONE and u[0] * scale >= 1.0:  # P(u < tau / m) = p
        return 0
    if selection != SAMPLE:
        for b in range(n_blocks):
            block_list[b] = b
            selected[b] = True
        return n_blocks
    floyd_sample(u, n_blocks, selected, block_list)
    tau = u.shape[0]
    for j in range(tau):
        selected[block_list[j]] = True
    return tau
