"""solver="newton": the workers' local problems and solvers, the block draws,
the master's sums, and the iteration's guarantees (exact optimum, counted
rounds, the meaning of tol).  Exactness against scikit-learn for every
estimator is in test_exactness.py, engine invariance in test_engines.py."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import approx_fprime

from sklearn_dsparse import DistributedSparseLogisticRegression, DistributedSparseRidge
from sklearn_dsparse.accounting import new_counters
from sklearn_dsparse.local_newton import (LocalProblem, LocalSolver,
                                          add_transposed_product, row_range,
                                          weighted_gram)
from sklearn_dsparse.losses import LOGISTIC, MULTINOMIAL, SQUARED
from sklearn_dsparse.messages import HEADER_BYTES
from sklearn_dsparse.quantization import FLOAT16
from sklearn_dsparse.newton import (OP_DIRECTION, OP_VALUE_GRADIENT, NewtonMaster,
                                    NewtonWorkers, direction_payload, draw_blocks,
                                    pseudo_gradient, worker_spec)
from sklearn_dsparse.sparsifiers import SPARSIFIERS, Dense, Independent

from conftest import load


def local_problem(loss, fit_intercept, seed=0, n_rows=40, n_features=6):
    rng = np.random.default_rng(seed)
    X = sp.random(n_rows, n_features, density=0.5, format="csr", random_state=seed)
    K = 3 if loss is MULTINOMIAL else 1
    if loss is LOGISTIC:
        Y = rng.integers(0, 2, (n_rows, 1)).astype(float)
    elif loss is MULTINOMIAL:
        Y = np.eye(K)[rng.integers(0, K, n_rows)]
    else:
        Y = rng.normal(size=(n_rows, K))
    c = rng.uniform(0.5, 2.0, n_rows)
    pb = LocalProblem(X, Y, c, loss, 0.3, fit_intercept)
    W = rng.normal(scale=0.5, size=pb.shape)
    return pb, W, (X, Y, c)


def plain_objective(X, Y, c, loss, l2, fit_intercept, W):
    """f_i written out row by row from the compiled per-row loss."""
    from sklearn_dsparse.losses import loss_value
    Xd = X.toarray()
    coef = W[:-1] if fit_intercept else W
    total = 0.0
    for r in range(Xd.shape[0]):
        z = Xd[r] @ coef + (W[-1] if fit_intercept else 0.0)
        total += c[r] * loss_value(loss.id, np.ascontiguousarray(z), Y, r)
    return total / Xd.shape[0] + 0.5 * l2 * float(np.sum(coef * coef))


LOSSES = [LOGISTIC, MULTINOMIAL, SQUARED]


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_value_and_gradient_of_a_shard(loss, fit_intercept):
    pb, W, (X, Y, c) = local_problem(loss, fit_intercept)
    value, grad = pb.value_gradient(W)

    def f(w):
        return plain_objective(X, Y, c, loss, 0.3, fit_intercept, w.reshape(W.shape))

    assert value == pytest.approx(f(W.ravel()), rel=1e-12)
    assert_allclose(grad.ravel(), approx_fprime(W.ravel(), f, 1e-7), atol=1e-5)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_local_hessian_its_products_and_diagonal(loss, fit_intercept):
    pb, W, _ = local_problem(loss, fit_intercept)
    pb.value_gradient(W)
    pb.update_curvature()
    mu = 0.01
    H = np.tril(pb.hessian(mu))
    H = H + np.tril(H, -1).T
    # The Hessian of the gradient, by finite differences (plus mu I).
    size = W.size
    eps = 1e-6
    numeric = np.empty((size, size))
    for j in range(size):
        step = np.zeros(size)
        step[j] = eps
        up = pb.value_gradient((W.ravel() + step).reshape(W.shape))[1].ravel()
        down = pb.value_gradient((W.ravel() - step).reshape(W.shape))[1].ravel()
        numeric[:, j] = (up - down) / (2 * eps)
    pb.value_gradient(W)
    assert_allclose(H, numeric + mu * np.eye(size), atol=1e-6)
    V = np.random.default_rng(1).normal(size=W.shape)
    assert_allclose(pb.hessian_vector(V, mu).ravel(), H @ V.ravel(), rtol=1e-12,
                    atol=1e-12)
    assert_allclose(pb.diagonal(mu).ravel(), np.diag(H), rtol=1e-12)


def test_weighted_gram_is_the_lower_triangle_of_the_weighted_product():
    X = sp.random(30, 7, density=0.4, format="csr", random_state=3)
    X.sort_indices()
    w = np.random.default_rng(0).uniform(size=30)
    out = np.zeros((7, 7))
    weighted_gram(X.data, X.indices, X.indptr, w, out)
    expected = (X.T @ sp.diags(w) @ X).toarray()
    assert_allclose(np.tril(out), np.tril(expected), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_transposed_products_are_scipys_of_the_transposed_rows(n_outputs):
    """The kernel sums as SciPy's product of a transposed copy does: the same
    result, bit for bit, without the copy."""
    X = sp.random(300, 40, density=0.1, format="csr", random_state=4)
    U = np.random.default_rng(0).normal(size=(300, n_outputs))
    out = np.zeros((40, n_outputs))
    add_transposed_product(X.data, X.indices, X.indptr, U, False, out)
    assert_array_equal(out, X.T.tocsr() @ U)
    squares = np.zeros((40, n_outputs))
    add_transposed_product(X.data, X.indices, X.indptr, U, True, squares)
    assert_array_equal(squares, X.multiply(X).T.tocsr() @ U)
    assert_allclose(squares, (X.toarray() ** 2).T @ U, rtol=1e-13, atol=1e-15)
    # It adds to ``out``: a second call doubles it.
    add_transposed_product(X.data, X.indices, X.indptr, U, False, out)
    assert_allclose(out, 2 * (X.T.tocsr() @ U), rtol=1e-14, atol=1e-14)


def array_bytes(obj):
    """The bytes of the NumPy arrays an object holds (as attributes, or in
    lists or sparse matrices it holds), each counted once."""
    seen, total, stack = set(), 0, [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            base = item if item.base is None else item.base
            if id(base) not in seen:
                seen.add(id(base))
                total += base.nbytes
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif sp.issparse(item) or isinstance(item, LocalProblem):
            stack.extend(vars(item).values())
    return total


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_local_problem_holds_its_rows_once(fit_intercept):
    """No transposed copy of the rows, no squares: besides the rows it is
    given (which it shares), a local problem holds per-row and per-parameter
    arrays only."""
    X = sp.random(2000, 50, density=0.2, format="csr", random_state=0)
    Y = np.random.default_rng(0).integers(0, 2, (2000, 1)).astype(float)
    pb = LocalProblem(X, Y, np.ones(2000), LOGISTIC, 0.1, fit_intercept)
    pb.value_gradient(np.zeros(pb.shape))
    pb.update_curvature()
    assert np.shares_memory(pb.pieces[0].data, X.data)
    assert np.shares_memory(pb.pieces[0].indices, X.indices)
    rows_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    per_row = 4 * 8 * X.shape[0]  # Y, a, Z, D
    state = per_row + pb.penalised.nbytes + pb.piece_starts.nbytes
    assert array_bytes(pb) == rows_bytes + state
    # The squares' values alone would be more than all of that state.
    assert state < X.data.nbytes


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_rows_in_pieces_are_the_rows_stacked(loss, fit_intercept):
    """A shard given in pieces (a worker's Dask partitions), not stacked,
    gives what the stacked rows give, bit for bit, and is not copied."""
    whole, W, (X, Y, c) = local_problem(loss, fit_intercept, n_rows=60)
    pieces = [X[:25], X[25:26], X[26:]]
    pb = LocalProblem(pieces, Y, c, loss, 0.3, fit_intercept)
    assert all(np.shares_memory(mine.data, given.data)
               for mine, given in zip(pb.pieces, pieces))
    value, grad = pb.value_gradient(W)
    whole_value, whole_grad = whole.value_gradient(W)
    assert value == whole_value
    assert_array_equal(grad, whole_grad)
    for problem in (pb, whole):
        problem.update_curvature()
    V = np.random.default_rng(1).normal(size=W.shape)
    assert_array_equal(pb.hessian_vector(V, 0.01), whole.hessian_vector(V, 0.01))
    assert_array_equal(pb.diagonal(0.01), whole.diagonal(0.01))
    assert_array_equal(np.tril(pb.hessian(0.01)), np.tril(whole.hessian(0.01)))
    if loss is LOGISTIC:  # the diagonal, written out densely
        Xd = np.hstack([X.toarray(), np.ones((60, 1))]) if fit_intercept else X.toarray()
        expected = (Xd ** 2).T @ (c / 60 * pb.D[:, 0]) + 0.3 * pb.penalised[:, 0] + 0.01
        assert_allclose(pb.diagonal(0.01)[:, 0], expected, rtol=1e-13)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_a_row_range_shares_the_rows(index_dtype):
    X = sp.random(50, 8, density=0.3, format="csr", random_state=1)
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    part = row_range(X, 10, 20)  # a fifth of the rows: SciPy would copy it
    assert_array_equal(part.toarray(), X[10:20].toarray())
    assert np.shares_memory(part.data, X.data)
    assert np.shares_memory(part.indices, X.indices)
    assert part.has_sorted_indices


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_local_solver_answers_the_damped_local_newton_system(loss, monkeypatch):
    pb, W, _ = local_problem(loss, True, n_rows=200)
    pb.value_gradient(W)
    q = np.random.default_rng(2).normal(size=W.shape)
    answers = {}
    for direct in (True, False):
        solver = LocalSolver(pb, cg_max_iter=500, cg_rtol=1e-12)
        solver.direct = direct
        solver.refresh()
        solver.set_damping(1e-3)
        answers[direct] = solver.solve(q)
        H = np.tril(pb.hessian(solver.mu))
        H = H + np.tril(H, -1).T
        assert_allclose(answers[direct].ravel(), np.linalg.solve(H, q.ravel()),
                        rtol=1e-8, atol=1e-10)


def test_direct_or_iterative_by_their_cost():
    pb, _, _ = local_problem(LOGISTIC, True)
    assert LocalSolver(pb).direct  # 7 parameters
    wide = sp.random(20, 5000, density=0.001, format="csr", random_state=0)
    pb = LocalProblem(wide, np.zeros((20, 1)), np.ones(20), LOGISTIC, 0.1, True)
    assert not LocalSolver(pb).direct  # a 5001^2 Hessian is never formed


@pytest.mark.parametrize("name", ["independent", "bernoulli"])
def test_block_draws_are_uniform_distinct_and_sorted(name):
    rng = np.random.default_rng(0)
    counts = np.zeros(7)
    n_draws = 20000
    sizes = set()
    for _ in range(n_draws):
        ids = draw_blocks(rng, SPARSIFIERS[name](7, 3))
        sizes.add(len(ids))
        assert np.all(np.diff(ids) > 0)
        counts[ids] += 1
    # 3 blocks each time, or (bernoulli) all 7 or none
    assert sizes == ({3} if name == "independent" else {0, 7})
    # each block is sent with probability 3/7 (5 sigma: 0.0175)
    assert_allclose(counts / n_draws, 3 / 7, atol=0.0175)


def test_pseudo_gradient_is_the_minimum_norm_subgradient():
    G = np.array([0.5, -2.0, 0.3, -0.3, 3.0])
    w = np.array([1.0, 0.0, 0.0, 0.0, -1.0])
    penalised = np.array([True, True, True, True, False])
    # w > 0: G + l1; w = 0: shrunk towards 0 by l1; unpenalised: G
    assert_allclose(pseudo_gradient(G, w, 1.0, penalised), [1.5, -1.0, 0.0, 0.0, 3.0])
    assert pseudo_gradient(G, w, 0.0, penalised) is G


def newton_problem(sparsifier, n_workers=5, use_control_variates=False):
    """A Problem as _fit builds it, on 100 rows of a1a."""
    from sklearn_dsparse._fit import Problem, split_rows
    from sklearn_dsparse.blocks import BlockPartition
    from sklearn_dsparse.penalties import ElasticNetPenalty
    X, y = load("a1a")
    X, y = X[:100], y[:100]
    starts = split_rows(100, n_workers)
    partition = BlockPartition(X.shape[1] + 1, 6)
    return Problem(X=X, Y=(y > 0).astype(float)[:, None], c=np.ones(100),
                   shard_starts=starts, weights=np.diff(starts) / 100, loss=LOGISTIC,
                   penalty=ElasticNetPenalty(l2=0.1), fit_intercept=True,
                   partition=partition, sparsifier=sparsifier, solver_name="newton",
                   batch_size=16, use_control_variates=use_control_variates)


def run_round(problem, workers, master, op, payload):
    master.begin(op, payload)
    for i, message in enumerate(workers.respond(op, payload)):
        master.receive(i, *message)
    return master.finish()


def test_rounds_sum_in_worker_order_and_count_the_bytes():
    problem = newton_problem(Dense(6))
    seeds = np.random.SeedSequence(0).spawn(6)
    workers = NewtonWorkers(worker_spec(problem, np.arange(5), seeds))
    counters = new_counters()
    master = NewtonMaster(problem, counters)
    size = problem.partition.n_columns
    W = np.random.default_rng(0).normal(scale=0.1, size=size)
    F, G, error = run_round(problem, workers, master, OP_VALUE_GRADIENT, W)
    # against the whole data as one worker: F exact, G within the bound the
    # master derives from the codes (float16: about 2**-11 relative)
    whole = LocalProblem(problem.X, problem.Y, problem.c, LOGISTIC, 0.1, True)
    value, grad = whole.value_gradient(W.reshape(-1, 1))
    assert F == pytest.approx(value, rel=1e-13)
    assert 0 < np.linalg.norm(G - grad.ravel()) <= error <= 2e-3 * np.linalg.norm(grad)
    # every worker sent its value (float64) and its gradient's change: an
    # int16 exponent and 2-byte codes
    gradients = 5 * (HEADER_BYTES + 2 + 2 * size + 8)
    assert counters[1] == gradients
    assert counters[0] == 1
    # The same point again: each worker sends what rounding left out of its
    # last message (error feedback), and the master's gradient closes in.
    _, G2, error2 = run_round(problem, workers, master, OP_VALUE_GRADIENT, W)
    assert np.linalg.norm(G2 - grad.ravel()) <= error2 <= 1e-3 * error
    assert counters[1] == 2 * gradients
    direction = run_round(problem, workers, master, OP_DIRECTION,
                          direction_payload(G2, 1e-3, True))
    # the Jacobi-balanced average of the local answers, which travel as
    # float16 codes (the weights D_i, at a refresh, in float32)
    weights = [s.weights.ravel() for s in workers.solvers]
    answers = [s.solve(G2.reshape(-1, 1)).ravel() for s in workers.solvers]
    sent = [FLOAT16.decode(FLOAT16.encode(d * a)) for d, a in zip(weights, answers)]
    balance = sum(w * d.astype(np.float32) for w, d in zip(problem.weights, weights))
    expected = sum(w * s for w, s in zip(problem.weights, sent))
    assert_allclose(direction, expected / balance, rtol=1e-12)
    unrounded = sum(w * d * a for w, d, a in zip(problem.weights, weights, answers)) / \
        sum(w * d for w, d in zip(problem.weights, weights))
    assert_allclose(direction, unrounded, rtol=1e-6,
                    atol=2e-3 * np.max(np.abs(unrounded)))
    assert counters[0] == 3
    answers_bytes = 5 * (HEADER_BYTES + 2 + 2 * size)
    assert counters[1] == 2 * gradients + answers_bytes + 5 * 4 * size
    run_round(problem, workers, master, OP_DIRECTION, direction_payload(G2, 1e-3, False))
    assert counters[1] == 2 * gradients + 2 * answers_bytes + 5 * 4 * size
    assert counters[3] == counters[1]  # nothing compressed


@pytest.mark.parametrize("use_control_variates", [False, True])
def test_compressed_directions_are_unbiased(use_control_variates):
    # The master's average of independently sparsified answers, over many
    # draws, is the dense average (docs/method.md, "Why it works":
    # unbiased for any answers).
    problem = newton_problem(Independent(6, 2), use_control_variates=use_control_variates)
    dense = newton_problem(Dense(6))
    seeds = np.random.SeedSequence(1).spawn(6)
    size = problem.partition.n_columns
    q = np.random.default_rng(0).normal(size=size)
    W = np.zeros(size)
    exact_workers = NewtonWorkers(worker_spec(dense, np.arange(5), seeds))
    exact_master = NewtonMaster(dense, new_counters())
    run_round(dense, exact_workers, exact_master, OP_VALUE_GRADIENT, W)
    exact = run_round(dense, exact_workers, exact_master, OP_DIRECTION,
                      direction_payload(q, 1e-2, True))
    workers = NewtonWorkers(worker_spec(problem, np.arange(5), seeds))
    master = NewtonMaster(problem, new_counters())
    run_round(problem, workers, master, OP_VALUE_GRADIENT, W)
    draws = np.array([run_round(problem, workers, master, OP_DIRECTION,
                                direction_payload(q, 1e-2, k == 0))
                      for k in range(4000)])
    spread = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - exact) <= 5 * spread + 1e-12)
    if use_control_variates:
        # The same q every round: the memory converges, the noise vanishes,
        # and so does the answers' rounding (the dense round sends them
        # rounded to float16 once): the unrounded average remains.
        weights = [s.weights.ravel() for s in exact_workers.solvers]
        answers = [s.solve(q.reshape(-1, 1)).ravel() for s in exact_workers.solvers]
        unrounded = sum(w * d * a for w, d, a in zip(dense.weights, weights, answers)) \
            / sum(w * d.astype(np.float32) for w, d in zip(dense.weights, weights))
        assert_allclose(draws[-1], unrounded, rtol=1e-6, atol=1e-12)
        assert_allclose(exact, unrounded, rtol=0, atol=2e-3 * np.max(np.abs(exact)))
        assert np.max(np.abs(draws[-1] - draws[-2])) <= 1e-12 * np.max(np.abs(exact))
    else:
        assert np.all(draws.std(axis=0) > 0)


def test_tol_bounds_the_suboptimality_it_promises():
    # tol^2 / 2 of the objective, estimated by the Newton decrement: the
    # gaps reached are below it (a9a at C = 1, ill-conditioned).
    from sklearn.linear_model import LogisticRegression
    X, y = load("a9a")
    ref = LogisticRegression(C=1.0, tol=1e-12, solver="newton-cholesky",
                             max_iter=1000).fit(X, y)
    best = DistributedSparseLogisticRegression(n_workers=4, tol=1e-10).fit(X, y)
    F_star = best.history_["objective"][-1]
    assert F_star == pytest.approx(_objective(X, y, ref), rel=1e-12)
    for tol in (1e-2, 1e-3, 1e-4):
        est = DistributedSparseLogisticRegression(n_workers=4, tol=tol).fit(X, y)
        gap = (est.history_["objective"][-1] - F_star) / F_star
        assert gap <= tol * tol / 2


def _objective(X, y, clf):
    z = X @ clf.coef_.ravel() + clf.intercept_[0]
    yy = (y == clf.classes_[1])
    return np.sum(np.logaddexp(0, z) - yy * z) + 0.5 * clf.coef_.ravel() @ clf.coef_.ravel()


def test_history_records_every_iterate_without_a_pass_of_the_driver():
    X, y = load("a5a")
    est = DistributedSparseLogisticRegression(n_workers=8, random_state=0).fit(X, y)
    h = est.history_
    assert len(h["objective"]) == est.n_iter_ + 1
    # the objective decreases at every accepted step (a line search)
    assert np.all(np.diff(h["objective"]) < 0)
    assert h["rounds"][-1] <= est.communication_["rounds"]
    assert np.all(np.diff(h["uplink_bytes"]) > 0)


def test_step_size_and_batch_size_are_refused_with_newton():
    X, y = load("a1a")
    for params in ({"step_size": 0.1}, {"batch_size": 8}):
        with pytest.raises(ValueError, match="solver='newton' uses every row"):
            DistributedSparseLogisticRegression(**params).fit(X, y)


def test_auto_sparsifier_compresses_exactly_when_blocks_are_asked_for():
    X, y = load("a1a")
    plain = DistributedSparseLogisticRegression(n_workers=8, random_state=0).fit(X, y)
    assert plain.sparsifier_ == "none"
    assert plain.communication_["uplink_ratio"] == 1.0
    asked = DistributedSparseLogisticRegression(n_workers=8, blocks_per_worker=1,
                                                random_state=0).fit(X, y)
    assert asked.sparsifier_ == "independent"
    assert asked.communication_["uplink_ratio"] < 1.0
    saga = DistributedSparseLogisticRegression(solver="saga", n_workers=8, max_iter=3,
                                               random_state=0)
    with pytest.warns(Warning):
        saga.fit(X, y)
    assert saga.sparsifier_ == "independent"


def test_ridge_with_one_worker_takes_newton_steps_on_the_rounded_gradient():
    # One worker's local Hessian is the Hessian: each step is Newton's on the
    # gradient as the master knows it (float16 codes: 2**-11 relative, with
    # the rest sent the next round), so each leaves at most a rounding's
    # worth of the gap, until the gap itself is rounding.
    from sklearn.linear_model import Ridge
    X, y = load("abalone_scale")
    ref = Ridge(alpha=1.0, solver="cholesky").fit(X.toarray(), y)
    F_star = float(np.sum((y - X @ ref.coef_ - ref.intercept_) ** 2)
                   + np.sum(ref.coef_ ** 2))
    est = DistributedSparseRidge(n_workers=1, tol=1e-8).fit(X, y)
    gaps = (est.history_["objective"] - F_star) / F_star
    assert gaps[-1] <= 1e-14
    shrinking = gaps[:-1] > 1e-12
    assert np.all(gaps[1:][shrinking] <= 1e-2 * gaps[:-1][shrinking])
    assert est.n_iter_ <= 6


def test_tiny_shards_of_nearly_separable_classes_do_not_stop_early():
    # 16 workers of 9 rows, 15 parameters, almost no penalty: the averaged
    # local Hessians miss a flat direction and the decrement alone read
    # small at a gap of 1.3e-4; tol's promise must still hold.
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn_dsparse.model_selection import objective

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    reference = LogisticRegression(C=1e4, solver="newton-cholesky", tol=1e-12,
                                   max_iter=1000).fit(X, y)
    for n_workers in (4, 16):
        est = DistributedSparseLogisticRegression(C=1e4, n_workers=n_workers,
                                                  random_state=0).fit(X, y)
        F_star = objective(est, X, y, coef=reference.coef_,
                           intercept=reference.intercept_)
        assert (objective(est, X, y) - F_star) / F_star <= 1e-6


def test_no_penalty_on_multinomial_data_factors_the_singular_hessians():
    # C=inf: the multinomial Hessian is singular along the class sums, and
    # part of iris is separable; the local Cholesky needs more damping.
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    est = DistributedSparseLogisticRegression(C=np.inf, random_state=0).fit(X, y)
    assert est.score(X, y) >= 0.98
    assert np.all(np.isfinite(est.coef_))
