"""``solver="newton"``: few rounds, by second-order information that stays on
the workers.

Each iteration takes two kinds of round (``OP_VALUE_GRADIENT`` and
``OP_DIRECTION``):

1. *value and gradient*: the master broadcasts W; worker i sends f_i(W)
   (float64) and the change of its gradient since its last message, in
   float16 codes (``quantization``: error feedback, so that the master's
   G = sum_i w_i h_i, h_i the sum of worker i's decoded changes, misses the
   gradient by the rounding of the last change only, which vanishes at the
   optimum); the master sums F exactly.
2. *direction*: the master runs the first loop of L-BFGS on G (with the
   pseudo-gradient of the L1 part, see below) and broadcasts the result q;
   worker i answers ``D_i (H_i + mu_i I)^{-1} q``, its local Newton direction
   (``local_newton``) weighted by the diagonal D_i of its local Hessian,
   in float16 codes, compressed by the sparsifier like every message of the
   library (``sparsifier="none"`` by default for this solver).  The master
   divides the weighted average of the answers by ``sum_i w_i D_i`` and runs
   the second loop of L-BFGS on the result.

A vector of float16 codes is a quarter of float64's bytes, and the rounds
to the optimum are the same (``benchmarks/study_quantized_messages.py``).
The master bounds G's rounding from the codes it received: a gradient
known to less than ``GRADIENT_ACCURACY`` of its norm (after a step that
gained almost everything, e.g. one worker on a quadratic) is asked again at
the same point, each worker sending what rounding kept back.

So the workers' inverse local Hessians, averaged, are the initial inverse
Hessian of an L-BFGS on the master: GIANT (Wang, Roosta-Khorasani, Xu &
Mahoney, "GIANT: Globally Improved Approximate Newton Method for Distributed
Optimization", NeurIPS 2018), with the master's memory correcting what local Hessians get
wrong.  Two changes to plain averaging, each chosen on
``benchmarks/study_few_rounds.py``'s figures:

- *Jacobi-balanced averaging* (the weights D_i): a shard that barely sees a
  feature (a rare one-hot value, a shard of one label) has almost no
  curvature along it and would answer a huge step there; weighting each
  coordinate by the shards' curvature lets the shards that see it decide.
  Exact when the local Hessians are diagonal.
- *adaptive damping* mu_i = damping x (mean of D_i), as a trust region
  adapts its radius: the master divides ``damping`` by 4 after a unit step
  that decreased F by at least 3/4 of the estimated suboptimality (what a
  Newton step gains), and multiplies it by 4 after a step that gained less
  than 1/4 of it or that the line search shortened.  It starts at 1: local
  Hessians are trusted once they have proved right.

A backtracking (Armijo) line search on F picks the step: each trial point is
the next value-and-gradient round, so an accepted step costs nothing extra.
The workers take the curvature of the current point (a new local Hessian,
factored when that is cheaper than conjugate gradients) at the 1st, 2nd,
4th, 8th... iteration only, as the master commands: the memory corrects the
difference (measured: the same rounds within 10% for 2 to 8 times fewer
factorisations).  With an L1 penalty the iteration is OWL-QN (Andrew & Gao,
"Scalable training of L1-regularized log-linear models", ICML 2007):
pseudo-gradient, direction and trial points kept in the orthant of the
current point, which gives the exact zeros of the optimum.

A unit step that gains more than 1.5 times what the quadratic model
predicts (F nearly linear along a direction too short for a flat valley) is
doubled while F keeps falling.

The iteration stops when the estimated suboptimality, half the Newton
decrement ``-slope / 2`` (the slope of F along the direction, about
``g^T H^{-1} g``), is at most ``tol^2 / 2`` times ``|F|``, provided the last
two steps went as the model predicted (a unit step gaining 1/4 to 1.5 times
the estimate), the slope is measured to ``GRADIENT_ACCURACY`` through G's
rounding, and the decreases of F, extrapolated geometrically from the last
two, add up to no more than that either: where the averaged local Hessians
miss a flat direction (small shards, nearly separable classes) the decrement
alone reads small long before the optimum.  A ``tol`` below what rounding
errors can measure (a decrement under ``ROUNDING`` of ``|F|``, about 2e-14)
stops there.  Both kinds of
round are counted as rounds; F comes from the workers' own values, so the
objective history costs the driver no pass over the data.
"""

import numpy as np

from .accounting import COUNTERS, add_message, add_round
from .local_newton import LocalProblem, LocalSolver, row_range
from .quantization import FLOAT16
from .sparsifiers import select_blocks

OP_STOP, OP_VALUE_GRADIENT, OP_DIRECTION = 0, 1, 2
BLOCKS_SENT = COUNTERS.index("blocks_sent")
#: Pairs (s, y) the master's L-BFGS remembers.
MEMORY = 10
#: The damping of the local Hessians, relative to their mean diagonal: where
#: it starts (with one worker, whose local Hessian is the Hessian, at the
#: lower bound), its bounds, and its factor up or down after a step.
INITIAL_DAMPING = 1.0
MIN_DAMPING, MAX_DAMPING = 1e-8, 100.0
DAMPING_FACTOR = 4.0
#: A step whose decrease is at least this fraction of the estimated
#: suboptimality -slope / 2 (a Newton step's) lowers the damping, one below
#: ``POOR_STEP`` (or shortened by the line search) raises it.
GOOD_STEP, POOR_STEP = 0.75, 0.25
#: How the gradients (their changes since the worker's last message, with
#: error feedback) and the direction answers travel (``quantization``):
#: float16 codes and a power of two, a quarter of float64's bytes at the
#: same rounds to the optimum (``benchmarks/study_quantized_messages.py``;
#: int8 codes cost rounds, on news20 5 to 18 times as many).
GRADIENT_FORMAT = FLOAT16
ANSWER_FORMAT = FLOAT16
#: The type of the values after the vectors: f_i (exact: the line search
#: compares them), and the weights D_i, whose floor of ``LocalSolver.FLOOR``
#: of their mean must not round to zero (the master divides by their sum).
VALUE_DTYPE = np.dtype(np.float64)
WEIGHTS_DTYPE = np.dtype(np.float32)
#: The master's gradient must be known to this fraction of its norm before
#: a direction is asked for; it is asked again at the same point (each
#: worker sending what rounding kept back) at most ``MAX_REFINEMENTS`` times.
GRADIENT_ACCURACY = 0.1
MAX_REFINEMENTS = 3
#: The stop needs this many steps in a row that went as the quadratic model
#: said.
HELD_STEPS = 2
#: A unit step gaining more than ``EXPAND`` times the model's estimate is
#: doubled while the objective falls, up to ``MAX_STEP``.
EXPAND, MAX_STEP = 1.5, 2.0 ** 20
#: Relative to |F|, what rounding errors leave unmeasurable.
ROUNDING = 100 * np.finfo(np.float64).eps
#: Armijo's sufficient decrease, and the most halvings of a step.
ARMIJO = 1e-4
MAX_BACKTRACKS = 40


def draw_blocks(rng, sparsifier):
    """The blocks a worker sends in a round, in increasing order:
    ``sparsifiers.select_blocks`` on a round's uniforms of the worker's own
    stream, run as Python (a few blocks: nothing to compile)."""
    m = sparsifier.n_blocks
    chosen = np.empty(m, dtype=np.int64)
    n_sel = select_blocks.py_func(rng.random(sparsifier.uniforms_per_round), m,
                                  sparsifier.selection, sparsifier.scale,
                                  np.zeros(m, dtype=bool), chosen)
    return np.sort(chosen[:n_sel]).astype(np.int32)


def direction_payload(q, damping, refresh):
    """What a direction round broadcasts: q, the relative damping, and
    whether to take the curvature of the current point."""
    return np.concatenate([q, [damping, float(refresh)]])


class NewtonWorkers:
    """The logical workers one node hosts: their shards, random streams and
    local solvers.

    ``spec`` is what ``worker_spec`` builds.  ``respond(op, payload)`` runs a
    round: it returns, for each hosted worker in order, its message as
    ``(block_ids, n_blocks_sent, values, tail)``: ``values`` the blocks
    sent (``quantization.Quantized``: the gradient's change since the
    worker's last one, or the direction answer), ``tail`` values after them
    (a value-and-gradient message's f_i; the weights D_i, when they change).
    """

    def __init__(self, spec):
        spec = dict(spec)
        # The rows: one CSR matrix that shard_starts cuts (each local problem
        # holds a view of its range), or (data that lives on a cluster) the
        # pieces of each hosted worker's shard.  Not kept here: a task's
        # memory is mostly shards, held once, by the local problems.
        X = spec.pop("X", None)
        X_shards = spec.pop("X_shards", None)
        # The row weights too: each local problem keeps its own scaled copy.
        c = spec.pop("c")
        self.__dict__.update(spec)
        K = self.shape[1]
        self.problems = []
        for i, (s, e) in enumerate(zip(self.shard_starts[:-1], self.shard_starts[1:])):
            rows = row_range(X, s, e) if X_shards is None else X_shards[i]
            self.problems.append(LocalProblem(rows, self.Y[s:e], c[s:e],
                                              self.loss, self.l2, self.fit_intercept))
        self.solvers = [LocalSolver(pb) for pb in self.problems]
        self.rngs = [np.random.default_rng(s) for s in self.seeds]
        size = self.shape[0] * K
        self.h = np.zeros((len(self.problems), size)) \
            if self.use_control_variates else None
        # Each worker's gradient as the master knows it: the sum of the
        # changes it sent, decoded (error feedback, ``quantization``).
        self.sent_gradients = np.zeros((len(self.problems), size))
        self.n_blocks = len(self.starts) - 1
        self.all_blocks = np.arange(self.n_blocks, dtype=np.int32)
        # Flat (n_columns * K) range of each block.
        self.flat_starts = np.asarray(self.starts) * K

    def respond(self, op, payload):
        if op == OP_VALUE_GRADIENT:
            return self._value_gradient(payload.reshape(self.shape))
        if op == OP_DIRECTION:
            return self._directions(payload[:-2].reshape(self.shape), payload[-2],
                                    payload[-1] != 0.0)
        raise ValueError(f"unknown operation {op}")

    def _value_gradient(self, W):
        messages = []
        for pb, sent in zip(self.problems, self.sent_gradients):
            value, grad = pb.value_gradient(W)
            change = GRADIENT_FORMAT.encode(grad.ravel() - sent)
            sent += GRADIENT_FORMAT.decode(change)
            messages.append((self.all_blocks, self.n_blocks, change,
                             np.array([value], dtype=VALUE_DTYPE)))
        return messages

    def _directions(self, q, damping, refresh):
        sparsifier = self.sparsifier
        messages = []
        for i, solver in enumerate(self.solvers):
            # A loss whose curvature does not depend on W needs one refresh.
            if refresh and not (self.loss.constant_curvature and
                                solver.damping is not None):
                solver.refresh()
            if solver.damping != damping:
                solver.set_damping(damping)
            answer = solver.weights.ravel() * solver.solve(q).ravel()
            if sparsifier.sends_all:
                ids, n_sel, index = self.all_blocks, self.n_blocks, slice(None)
            else:
                ids = draw_blocks(self.rngs[i], sparsifier)
                n_sel = len(ids)
                index = np.concatenate([np.empty(0, dtype=np.int64)] + [
                    np.arange(self.flat_starts[b], self.flat_starts[b + 1])
                    for b in ids])
            values = answer[index]
            if self.h is not None:
                # Send the change since the last answer on these blocks.
                values = values - self.h[i, index]
            values = ANSWER_FORMAT.encode(sparsifier.scale * values)
            if self.h is not None:
                # Remember what the master adds (ISEGA's h_i; docs/method.md,
                # "One round", step 6): the answer, as rounded on the way.
                self.h[i, index] += ANSWER_FORMAT.decode(values) / sparsifier.scale
            tail = (solver.weights.ravel() if refresh else np.empty(0)).astype(
                WEIGHTS_DTYPE)
            messages.append((ids, n_sel, values, tail))
        return messages


def worker_spec(problem, worker_ids, seed_sequences):
    """What ``NewtonWorkers`` needs to host ``worker_ids`` (consecutive) of
    ``problem``: their rows (a view), targets, row weights and streams; for
    rows that live on a Dask cluster, what the task needs to build them
    from its partitions (``_dask_data.local_rows``)."""
    first, last = worker_ids[0], worker_ids[-1]
    spec = dict(
        worker_ids=[int(i) for i in worker_ids],
        seeds=[seed_sequences[i] for i in worker_ids],
        shape=(problem.partition.n_columns, problem.n_outputs),
        loss=problem.loss, l2=problem.penalty.l2, fit_intercept=problem.fit_intercept,
        starts=problem.partition.starts, sparsifier=problem.sparsifier,
        use_control_variates=problem.use_control_variates)
    if problem.data is not None:
        return dict(spec, targets=problem.data.targets,
                    row_scales=problem.row_scales[first:last + 1])
    s, e = problem.shard_starts[first], problem.shard_starts[last + 1]
    # A view: the in-process engine's workers share the caller's rows, and a
    # task's are pickled from it.
    return dict(spec, X=row_range(problem.X, s, e), Y=problem.Y[s:e], c=problem.c[s:e],
                shard_starts=problem.shard_starts[first:last + 2] - s)


class NewtonMaster:
    """Sums the messages of a round, in worker order, and counts them.

    ``begin(op, payload)`` starts a round; the engine hands it every message
    (``receive``) in worker order, decoded or as the worker made it, and
    ``finish`` returns the round's result: ``(F, G, error)`` for a
    value-and-gradient round (``error`` bounds the norm of G's rounding), the
    averaged direction for a direction round.  ``format``, ``tail_dtype``
    and ``tail_length`` describe this round's messages (what an engine needs
    to decode them).
    """

    def __init__(self, problem, counters):
        self.weights = problem.weights
        self.n_blocks = problem.partition.n_blocks
        self.size = problem.partition.n_columns * problem.n_outputs
        self.flat_starts = problem.partition.starts * problem.n_outputs
        self.sparsifier = problem.sparsifier
        self.use_control_variates = problem.use_control_variates
        self.counters = counters
        self.hbar = np.zeros(self.size)
        self.balance = None  # sum_i w_i D_i
        self.gradient = np.zeros(self.size)  # sum_i w_i (worker i's sent gradient)

    def begin(self, op, payload):
        self.op = op
        if op == OP_VALUE_GRADIENT:
            self.format, self.tail_dtype, self.tail_length = \
                GRADIENT_FORMAT, VALUE_DTYPE, 1
        else:
            self.format, self.tail_dtype = ANSWER_FORMAT, WEIGHTS_DTYPE
            self.tail_length = self.size if payload[-1] != 0.0 else 0
        self.total = np.zeros(self.size)
        self.tails = np.zeros(self.tail_length)
        self.error = 0.0
        self.n_received = 0

    def receive(self, worker, block_ids, n_sel, quantized, tail):
        if worker != self.n_received:
            raise RuntimeError(f"expected worker {self.n_received}'s message, got "
                               f"worker {worker}'s")
        weight = self.weights[worker]
        values = self.format.decode(quantized)
        if self.op == OP_VALUE_GRADIENT:  # only G's rounding matters (fit_newton)
            self.error += weight * self.format.error_bound(quantized, values)
        if n_sel == self.n_blocks:
            self.total += weight * values
        else:
            pos = 0
            for b in block_ids[:n_sel]:
                lo, hi = self.flat_starts[b], self.flat_starts[b + 1]
                self.total[lo:hi] += weight * values[pos:pos + hi - lo]
                pos += hi - lo
        self.tails += weight * tail
        add_message(self.counters, n_sel, self.n_blocks,
                    self.format.nbytes(values.shape[0]) + tail.nbytes)
        self.n_received += 1

    def finish(self):
        n = len(self.weights)
        m = self.n_blocks
        dense_payload = self.format.nbytes(self.size) + \
            self.tail_length * self.tail_dtype.itemsize
        if self.op == OP_VALUE_GRADIENT:
            add_round(self.counters, n, m, self.size, m, dense_payload)
            self.gradient += self.total
            return self.tails[0], self.gradient.copy(), self.error
        if self.tail_length:
            self.balance = self.tails
        weighted = self.hbar + self.total
        if self.use_control_variates:
            # hbar += (tau / m) A on the blocks sent (docs/method.md, "One
            # round", step 6).
            self.hbar += self.total / self.sparsifier.scale
        # The broadcast: q, the damping and the refresh flag.
        add_round(self.counters, n, m, self.size + 2, m, dense_payload)
        return weighted / self.balance


def _tail(before_last, last):
    """What the coming steps would still gain if the decreases of F kept
    shrinking at the rate of the last two: the sum of the geometric series.
    The decrement ``-slope / 2`` estimates the suboptimality only where the
    direction is about Newton's; a direction too short for a flat valley
    (small shards, nearly separable classes) makes it small while F still
    falls slowly, step after step: this catches it."""
    if not last < before_last:
        return np.inf
    rate = last / before_last
    return last * rate / (1.0 - rate)


def _next_damping(damping, ratio, step):
    """Trust-region style: less damping after a unit step that gained what a
    Newton step would (``ratio``: the decrease over -slope / 2), more after a
    poor or shortened one."""
    if ratio >= GOOD_STEP and step == 1.0:
        return max(MIN_DAMPING, damping / DAMPING_FACTOR)
    if ratio < POOR_STEP or step < 1.0:
        return min(MAX_DAMPING, damping * DAMPING_FACTOR)
    return damping


class _Memory:
    """The L-BFGS pairs (s, y) and the two loops around the workers'
    preconditioner (Nocedal & Wright, "Numerical Optimization", Alg. 7.4)."""

    def __init__(self, size):
        self.size = size
        self.pairs = []

    def add(self, s, y):
        sy = float(s @ y)
        # Only pairs with positive curvature keep the inverse Hessian
        # estimate positive definite.
        if sy > 1e-10 * np.linalg.norm(s) * np.linalg.norm(y):
            self.pairs.append((s, y, 1.0 / sy))
            if len(self.pairs) > self.size:
                self.pairs.pop(0)

    def first_loop(self, g):
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * float(s @ q)
            q -= alpha * y
            alphas.append(alpha)
        return q, alphas[::-1]

    def second_loop(self, r, alphas):
        for (s, y, rho), alpha in zip(self.pairs, alphas):
            r += (alpha - rho * float(y @ r)) * s
        return r


def _norm(v):
    """The Euclidean norm; inf, without a warning, where data overflow the
    loss (the line search then says so)."""
    with np.errstate(over="ignore"):
        return float(np.linalg.norm(v))


def pseudo_gradient(G, w, l1, penalised):
    """The minimum-norm subgradient of F + l1 ||w||_1 (OWL-QN); G when l1 = 0."""
    if l1 == 0.0:
        return G
    pg = G.copy()
    g, x = G[penalised], w[penalised]
    right, left = g + l1, g - l1
    pg[penalised] = np.where(x > 0, right, np.where(
        x < 0, left, np.where(right < 0, right, np.where(left > 0, left, 0.0))))
    return pg


def fit_newton(engine, problem, W0, *, tol, max_iter, record, report):
    """Run the iteration of the module docstring from ``W0``.

    ``engine.round(op, payload)`` runs a round; ``record(F, W)`` is called at
    every accepted iterate and ``report(iteration, F, decrement, step)`` when
    verbose.  Returns ``(W, n_iter, converged, reason)``.
    """
    shape = W0.shape
    l1 = problem.penalty.l1
    penalised = np.ones(W0.size, dtype=bool)
    if problem.fit_intercept:
        penalised[-shape[1]:] = False

    def evaluate(w):
        F, G, error = engine.round(OP_VALUE_GRADIENT, w)
        return F + l1 * float(np.sum(np.abs(w[penalised]))), G, error

    # The multinomial loss does not change when every class's margin moves
    # by the same amount: along those directions of the parameter rows that
    # no penalty holds (the intercepts; every row without L2), the optimum
    # is the one with classes summing to zero, where the iterates start.
    # Local answers weighted per coordinate would drift along them.
    free_rows = np.zeros(shape[0], dtype=bool)
    if problem.loss.rank_one:
        free_rows[:] = problem.penalty.l2 == 0.0
        free_rows[-1] |= problem.fit_intercept

    def project(direction):
        if free_rows.any():
            rows = direction.reshape(shape)
            rows[free_rows] -= rows[free_rows].mean(axis=1, keepdims=True)
        return direction

    w = W0.ravel().copy()
    F, G, error = evaluate(w)
    record(F, w.reshape(shape))
    memory = _Memory(MEMORY)
    damping = INITIAL_DAMPING if problem.n_workers > 1 else MIN_DAMPING
    decreases = [np.inf, np.inf]  # of F by the last two accepted steps
    # How many of the last steps in a row went as the quadratic model said
    # (a unit step gaining about what it predicted): only then does the
    # decrement estimate the suboptimality.
    held = 0
    for iteration in range(1, max_iter + 1):
        pg = pseudo_gradient(G, w, l1, penalised)
        # A step that gained almost everything leaves a gradient below the
        # rounding of the change that carried it (one worker, a quadratic:
        # the master reads G = 0 exactly): ask again where the model is.
        for _ in range(MAX_REFINEMENTS):
            if error <= GRADIENT_ACCURACY * _norm(pg):
                break
            _, G, error = evaluate(w)
            pg = pseudo_gradient(G, w, l1, penalised)
        q, alphas = memory.first_loop(pg)
        refresh = iteration & (iteration - 1) == 0  # 1, 2, 4, 8, ...
        blocks_before = engine.counters[BLOCKS_SENT]
        answer = engine.round(OP_DIRECTION, direction_payload(q, damping, refresh))
        # Nobody answered (sparsifier="bernoulli": each worker is silent with
        # probability 1 - p) and no control variates stand in: the average is
        # zero, no direction.  Ask again, the curvature already taken.
        while engine.counters[BLOCKS_SENT] == blocks_before and q.any() and \
                not problem.use_control_variates:
            answer = engine.round(OP_DIRECTION, direction_payload(q, damping, False))
        direction = project(-memory.second_loop(answer, alphas))
        if l1 > 0.0:
            # Stay in the orthant the pseudo-gradient points into.
            direction[penalised & (direction * pg >= 0)] = 0.0
        slope = float(pg @ direction)
        if not slope < 0.0:
            # A compressed or inexact answer that is no descent direction: the
            # pseudo-gradient is, and the line search scales it.
            memory = _Memory(MEMORY)
            direction = -pg
            slope = -float(pg @ pg)
        # Below ROUNDING of |F| no decrease is measurable (nor the model's
        # fit): a tol that asks for less stops there.
        # The slope is known to error * |direction|: a decrement read
        # through a gradient that coarse is no reason to stop.
        measured = error * _norm(direction) <= \
            GRADIENT_ACCURACY * -slope
        if -slope / 2 <= ROUNDING * abs(F) or (
                held >= HELD_STEPS and measured and max(-slope / 2, _tail(*decreases))
                <= tol * tol / 2 * abs(F)):
            return w.reshape(shape), iteration - 1, True, None
        orthant = np.where(w != 0, np.sign(w), -np.sign(pg))
        step = 1.0
        for _ in range(MAX_BACKTRACKS):
            trial = w + step * direction
            if l1 > 0.0:
                trial[penalised & (np.sign(trial) != orthant)] = 0.0
            F_trial, G_trial, error_trial = evaluate(trial)
            if F_trial <= F + ARMIJO * float(pg @ (trial - w)):
                break
            step *= 0.5
        else:
            return w.reshape(shape), iteration, False, (
                "the line search found no decrease of the objective along the "
                f"direction (estimated suboptimality {-slope / 2:.3g}): rounding "
                "errors dominate, or the data overflow the loss")
        ratio = (F - F_trial) / (-slope / 2)
        # A unit step that gains far more than the quadratic model says: F is
        # nearly linear along the direction, which is too short (a flat
        # valley the averaged local Hessians do not see, e.g. nearly
        # separable classes): double the step while F keeps falling.
        expand = step == 1.0 and ratio > EXPAND
        while expand and step < MAX_STEP:
            longer = w + 2.0 * step * direction
            if l1 > 0.0:
                longer[penalised & (np.sign(longer) != orthant)] = 0.0
            F_longer, G_longer, error_longer = evaluate(longer)
            if not F_longer < F_trial:
                break
            step, trial, F_trial, G_trial, error_trial = \
                2.0 * step, longer, F_longer, G_longer, error_longer
        damping = _next_damping(damping, ratio, min(step, 1.0))
        decreases = [decreases[1], F - F_trial]
        held = held + 1 if step == 1.0 and POOR_STEP <= ratio <= EXPAND else 0
        memory.add(trial - w, G_trial - G)
        w, F, G, error = trial, F_trial, G_trial, error_trial
        record(F, w.reshape(shape))
        report(iteration, F, -slope, step)
    return w.reshape(shape), max_iter, False, None
