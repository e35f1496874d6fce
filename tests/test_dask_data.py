"""Data that lives on a Dask cluster (``_dask_data``): the fit of Dask
collections equals the in-memory fit of their partitions, bit for bit; the
partitions of X stay where they are; bad partitions give the in-memory errors.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal
from sklearn.linear_model import Ridge

from sklearn_dsparse import DistributedSparseLogisticRegression, DistributedSparseRidge
from sklearn_dsparse._dask_data import _allot, _split_runs

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

pytestmark = pytest.mark.filterwarnings(
    # Dask's own notices about its cluster (ports, sizes), not this library's.
    "ignore::UserWarning:distributed", "ignore::DeprecationWarning:distributed")

ROWS = 120  # rows per partition
N_PARTS = 4


@pytest.fixture(scope="module")
def client(dask_client):
    return dask_client


def make_data(task, seed=0):
    rng = np.random.default_rng(seed)
    n = ROWS * N_PARTS
    X = rng.standard_normal((n, 7))
    X[rng.random(X.shape) < 0.4] = 0.0  # some zeros, as sparse data has
    score = X @ rng.standard_normal(7) + 0.5 * rng.standard_normal(n)
    if task == "binary":
        return X, np.where(score > 0, "yes", "no")
    if task == "multinomial":
        return X, np.digitize(score, np.quantile(score, [0.3, 0.7]))
    if task == "two targets":
        return X, np.column_stack([score, X[:, 0] - score])
    return X, score


def estimator(task, **params):
    params = {"n_workers": 4, "random_state": 0, **params}
    if task in ("binary", "multinomial"):
        return DistributedSparseLogisticRegression(C=10.0, **params)
    return DistributedSparseRidge(alpha=1.0, **params)


def as_collection(X, y, kind):
    if kind == "dataframe":
        frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
        return (dd.from_pandas(frame, npartitions=N_PARTS, sort=False),
                dd.from_pandas(pd.DataFrame(y) if y.ndim == 2 else pd.Series(y),
                               npartitions=N_PARTS, sort=False))
    dX = da.from_array(X, chunks=(ROWS, X.shape[1]))
    if kind == "sparse":
        dX = dX.map_blocks(sp.csr_matrix, dtype=X.dtype,
                           meta=sp.csr_matrix((0, X.shape[1])))
    return dX.persist(), da.from_array(y, chunks=ROWS).persist()


def in_memory_order(X, y, shard_partitions):
    """The partitions concatenated in the order the fit laid them out."""
    rows = np.concatenate([np.arange(j * ROWS, (j + 1) * ROWS)
                           for parts in shard_partitions for j in parts])
    return X[rows], y[rows]


@pytest.mark.parametrize("task, kind", [("binary", "dense"), ("binary", "sparse"),
                                        ("multinomial", "dataframe"),
                                        ("regression", "sparse"),
                                        ("two targets", "dense")])
def test_fit_of_dask_collections_is_the_in_memory_fit(client, task, kind):
    X, y = make_data(task)
    dX, dy = as_collection(X, y, kind)
    est = estimator(task).fit(dX, dy)
    # Every partition is a shard of its own, and each holder hosts its own.
    assert sorted(j for parts in est.shard_partitions_ for j in parts) == \
        list(range(N_PARTS))
    Xm, ym = in_memory_order(X, y, est.shard_partitions_)
    ref = estimator(task).fit(Xm, ym)
    assert_array_equal(est.coef_, ref.coef_)
    assert_array_equal(est.intercept_, ref.intercept_)
    assert_array_equal(est.n_iter_, ref.n_iter_)
    assert_array_equal(est.history_["objective"], ref.history_["objective"])
    for name in ("rounds", "uplink_bytes", "downlink_bytes"):
        assert est.communication_[name] == ref.communication_[name]
    assert est.n_features_in_ == X.shape[1]
    if kind == "dataframe":
        assert_array_equal(est.feature_names_in_, [f"f{j}" for j in range(7)])
        assert_array_equal(est.classes_, ref.classes_)
    assert np.linalg.norm(est.coef_) > 0.1  # not a trivial model


def test_the_partitions_of_X_stay_where_they_are(client, monkeypatch):
    """Nothing is computed into the driver, and no partition of X moves
    between workers: what moves (y's chunks, to their X's worker) is smaller
    than one partition of X."""
    X, y = make_data("binary", seed=1)
    X = np.hstack([X] * 40)  # partitions of X far larger than y's
    dX, dy = as_collection(X, y, "dense")

    def refuse(*args, **kwargs):
        raise AssertionError("the driver computed a collection")

    monkeypatch.setattr(da.Array, "compute", refuse)
    monkeypatch.setattr(da.Array, "__array__", refuse)

    def sent(dask_worker):
        return dask_worker.transfer_outgoing_bytes_total

    before = client.run(sent)
    est = estimator("binary").fit(dX, dy)
    moved = sum(client.run(sent).values()) - sum(before.values())
    assert moved < X[:ROWS].nbytes
    assert est.coef_.shape == (1, X.shape[1])


def test_unequal_partitions_reach_the_in_memory_optimum(client):
    X, y = make_data("regression", seed=2)
    chunks = (50, 190, 100, 140)
    est = DistributedSparseRidge(alpha=1.0, n_workers=3, random_state=0, tol=1e-8)
    est.fit(da.from_array(X, chunks=(chunks, 7)).persist(),
            da.from_array(y, chunks=(chunks,)).persist())
    # Other shards than an even split of the rows, the same optimum.
    ref = Ridge(alpha=1.0).fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-6)
    np.testing.assert_allclose(est.intercept_, ref.intercept_,
                               atol=1e-6 * np.linalg.norm(ref.coef_))
    # Which worker holds which chunk is Dask's choice: whole partitions, each
    # once, in 3 shards whatever it was.
    assert len(est.shard_partitions_) == 3
    assert sorted(j for parts in est.shard_partitions_ for j in parts) == [0, 1, 2, 3]


def test_a_partition_with_one_class_is_fine_but_all_of_y_is_not(client):
    X, y = make_data("binary", seed=3)
    y[:ROWS] = "yes"  # partition 0 has one class
    dX, dy = as_collection(X, y, "dense")
    est = estimator("binary").fit(dX, dy)
    ref = estimator("binary").fit(*in_memory_order(X, y, est.shard_partitions_))
    assert_array_equal(est.coef_, ref.coef_)

    y[:] = "yes"
    with pytest.raises(ValueError) as in_memory:
        estimator("binary").fit(X, y)
    with pytest.raises(ValueError) as on_cluster:
        estimator("binary").fit(*as_collection(X, y, "dense"))
    assert str(on_cluster.value) == str(in_memory.value)


@pytest.mark.parametrize("bad", ["nan in X", "inf in y", "negative weight"])
def test_bad_values_in_one_partition_give_the_in_memory_error(client, bad):
    X, y = make_data("regression", seed=4)
    w = np.ones(len(y))
    row = 2 * ROWS + 5  # in partition 2
    if bad == "nan in X":
        X[row, 3] = np.nan
    elif bad == "inf in y":
        y[row] = np.inf
    else:
        w[row] = -1.0
    with pytest.raises(ValueError) as in_memory:
        estimator("regression").fit(X, y, sample_weight=w)
    dX, dy = as_collection(X, y, "dense")
    with pytest.raises(ValueError) as on_cluster:
        estimator("regression").fit(dX, dy, sample_weight=da.from_array(w, chunks=ROWS))
    assert str(on_cluster.value) == str(in_memory.value)


def test_a_partition_with_other_columns_is_named(client):
    import dask

    X, y = make_data("regression", seed=5)
    frames = [pd.DataFrame(X[j * ROWS:(j + 1) * ROWS],
                           columns=[f"f{c}" for c in range(7)]) for j in range(N_PARTS)]
    frames[1] = frames[1].rename(columns={"f3": "g3"})
    dX = dd.from_delayed([dask.delayed(f) for f in frames], meta=frames[0].iloc[:0],
                         verify_meta=False)
    dy = dd.from_pandas(pd.Series(y), npartitions=N_PARTS, sort=False)
    with pytest.raises(ValueError, match="partition 1 of X has the columns"):
        estimator("regression").fit(dX, dy)


def test_parameters_that_cannot_apply_say_why(client, monkeypatch):
    X, y = make_data("binary")
    dX, dy = as_collection(X, y, "dense")
    with pytest.raises(ValueError, match="n_workers=1 does not fit"):
        estimator("binary", n_workers=1).fit(dX, dy)  # 2 holders
    with pytest.raises(ValueError, match="n_workers=5 does not fit"):
        estimator("binary", n_workers=5).fit(dX, dy)  # 4 partitions
    with pytest.raises(ValueError, match="solver='saga' needs X in memory"):
        estimator("binary", solver="saga").fit(dX, dy)
    with pytest.raises(ValueError, match="n_jobs=2: with Dask collections"):
        estimator("binary", n_jobs=2).fit(dX, dy)
    with pytest.raises(ValueError, match="y has 3 row chunks where X has 4"):
        estimator("binary").fit(dX, da.from_array(y, chunks=2 * ROWS - 40))

    def no_client():
        raise ValueError("No clients found")

    monkeypatch.setattr(distributed, "default_client", no_client)
    with pytest.raises(ValueError, match="needs an active distributed.Client"):
        estimator("binary").fit(dX, dy)


def test_layout_of_logical_workers_over_partitions():
    # Holders of 600 and 200 rows: 3 workers go 2 and 1 (300, 300, 200 rows).
    assert list(_allot(np.array([600, 200]), np.array([5, 5]), 3)) == [2, 1]
    # ... but never more workers than a holder has partitions.
    assert list(_allot(np.array([600, 200]), np.array([1, 5]), 3)) == [1, 2]
    # Runs of whole partitions, each ending nearest an equal share of rows.
    assert _split_runs([4, 5, 6, 7], np.array([10, 30, 10, 10]), 2) == [[4, 5], [6, 7]]
    assert _split_runs([0, 1, 2], np.array([100, 1, 1]), 3) == [[0], [1], [2]]


@pytest.mark.parametrize("task, kind", [("binary", "dense"), ("multinomial", "dataframe"),
                                        ("two targets", "sparse")])
def test_predictions_of_dask_collections_are_computed_where_they_lie(client, task, kind):
    import dask

    X, y = make_data(task, seed=6)
    est = estimator(task).fit(X, y)
    dX, _ = as_collection(X, y, kind)
    methods = ["predict"] + (["decision_function", "predict_proba", "predict_log_proba"]
                             if task != "two targets" else [])
    for name in methods:
        lazy = getattr(est, name)(dX)
        assert dask.is_dask_collection(lazy)  # nothing computed yet
        computed = np.asarray(lazy.compute())
        # Row by row what the in-memory method gives on the same layout.
        assert_array_equal(computed, getattr(est, name)(
            sp.csr_matrix(X) if kind == "sparse" else X))
