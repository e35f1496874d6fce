"""Data read by the worker tasks themselves (``FileShards``, ``_file_data``):
the fit equals the in-memory fit of the files' rows, bit for bit; the driver
reads no file when the tasks run elsewhere; bad files give the in-memory
errors, naming the file.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import dump_svmlight_file, load_svmlight_files
from sklearn.linear_model import Ridge

from sklearn_dsparse import (DistributedSparseLogisticRegression, DistributedSparseRidge,
                             FileShards)
from sklearn_dsparse import _file_data

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

ROWS = 100  # rows per file
N_FILES = 4


def make_data(task, seed=0, n=ROWS * N_FILES):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 7))
    X[rng.random(X.shape) < 0.4] = 0.0  # some zeros, as sparse data has
    score = X @ rng.standard_normal(7) + 0.5 * rng.standard_normal(n)
    if task == "binary":
        return X, (score > 0).astype(np.float64)
    if task == "multinomial":
        return X, np.digitize(score, np.quantile(score, [0.3, 0.7]))
    if task == "two targets":
        return X, np.column_stack([score, X[:, 0] - score])
    return X, score


def estimator(task, **params):
    params = {"n_workers": N_FILES, "random_state": 0, **params}
    if task in ("binary", "multinomial"):
        return DistributedSparseLogisticRegression(C=10.0, **params)
    return DistributedSparseRidge(alpha=1.0, **params)


def write_files(directory, X, y, format, kind="dense", bounds=None):
    """X and y in files of ``bounds`` rows (ROWS each by default); the paths,
    and X and y as the files give them back, concatenated."""
    bounds = np.arange(0, len(y) + 1, ROWS) if bounds is None else bounds
    paths = []
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        path = str(directory / f"part-{j}.{format}")
        Xj = sp.csr_matrix(X[a:b]) if kind == "sparse" else X[a:b]
        if format == "svmlight":
            dump_svmlight_file(Xj, y[a:b], path)
        elif format == "npz" and kind == "sparse":
            np.savez(path, y=y[a:b], format="csr", shape=Xj.shape, data=Xj.data,
                     indices=Xj.indices, indptr=Xj.indptr)
        elif format == "npz":
            np.savez(path, X=Xj, y=y[a:b])
        else:
            frame = pd.DataFrame(Xj, columns=[f"f{c}" for c in range(X.shape[1])])
            targets = ["t0", "t1"] if y.ndim == 2 else ["label"]
            frame[targets] = y[a:b].reshape(b - a, -1)
            frame.to_parquet(path)
        paths.append(path)
    if format == "svmlight":  # the text keeps 16 digits: the values read back
        loaded = load_svmlight_files(paths)
        return paths, sp.vstack(loaded[0::2], format="csr"), np.concatenate(loaded[1::2])
    if format == "parquet":
        frame = pd.concat([pd.read_parquet(path) for path in paths], ignore_index=True)
        targets = ["t0", "t1"] if y.ndim == 2 else ["label"]
        return paths, frame.drop(columns=targets), y
    return paths, X, y


def shards(paths, format, y):
    if format != "parquet":
        return FileShards(paths, format=format)
    return FileShards(paths, format="parquet",
                      target=["t0", "t1"] if y.ndim == 2 else "label")


def assert_same_fit(est, ref):
    assert_array_equal(est.coef_, ref.coef_)
    assert_array_equal(est.intercept_, ref.intercept_)
    assert_array_equal(est.n_iter_, ref.n_iter_)
    assert_array_equal(est.history_["objective"], ref.history_["objective"])
    for name in ("rounds", "uplink_bytes", "downlink_bytes"):
        assert est.communication_[name] == ref.communication_[name]
    assert np.linalg.norm(est.coef_) > 0.1  # not a trivial model


@pytest.mark.parametrize("format, kind, task", [
    ("svmlight", "sparse", "binary"), ("npz", "sparse", "two targets"),
    ("npz", "dense", "multinomial"), ("parquet", "dense", "regression")])
def test_fit_of_files_is_the_in_memory_fit(tmp_path, format, kind, task):
    X, y = make_data(task)
    if format == "svmlight":
        # The first file has no feature 0 and the last no feature 6: the
        # indices' base and the width are decided over all the files.
        X[:ROWS, 0] = 0.0
        X[-ROWS:, 6] = 0.0
    paths, Xm, ym = write_files(tmp_path, X, y, format, kind)
    est = estimator(task).fit(shards(paths, format, y))
    assert est.shard_partitions_ == [[j] for j in range(N_FILES)]
    ref = estimator(task).fit(Xm, ym)
    assert_same_fit(est, ref)
    # Two files a shard: a worker's rows in two pieces, where the in-memory
    # fit of two workers has them in one.
    est_halves = estimator(task, n_workers=2).fit(shards(paths, format, y))
    assert est_halves.shard_partitions_ == [[0, 1], [2, 3]]
    assert_same_fit(est_halves, estimator(task, n_workers=2).fit(Xm, ym))
    assert est.n_features_in_ == 7
    if format == "parquet":
        assert_array_equal(est.feature_names_in_, [f"f{c}" for c in range(7)])
    else:
        assert not hasattr(est, "feature_names_in_")


@pytest.mark.parametrize("format, kind, task", [("svmlight", "sparse", "binary"),
                                                ("npz", "dense", "regression")])
def test_the_tasks_read_their_own_files(tmp_path, monkeypatch, format, kind, task):
    """With n_jobs=2 on loky the survey and the fit read every file in the
    tasks' processes: the driver's reader refuses, and the model is the
    in-memory one, bit for bit (two tasks hosting two workers each)."""
    X, y = make_data(task, seed=1)
    paths, Xm, ym = write_files(tmp_path, X, y, format, kind)
    ref = estimator(task).fit(Xm, ym)

    def refuse(*args, **kwargs):
        raise AssertionError("the driver read a file")

    monkeypatch.setattr(_file_data, "read_file", refuse)
    est = estimator(task, n_jobs=2).fit(shards(paths, format, y))
    assert_same_fit(est, ref)
    with pytest.raises(FileNotFoundError, match="missing.npz'?: no such file where"):
        estimator(task, n_jobs=2).fit(
            FileShards(paths[:3] + [str(tmp_path / "missing.npz")], format=format))


def test_unequal_files_make_runs_of_whole_files(tmp_path):
    bounds = np.cumsum([0, 50, 190, 100, 140])
    X, y = make_data("regression", seed=2, n=bounds[-1])
    paths, _, _ = write_files(tmp_path, X, y, "npz", bounds=bounds)
    est = DistributedSparseRidge(alpha=1.0, n_workers=3, random_state=0, tol=1e-8)
    est.fit(FileShards(paths, format="npz"))
    # Each run ends at the file boundary nearest an equal share (160, 320 rows).
    assert est.shard_partitions_ == [[0, 1], [2], [3]]
    ref = Ridge(alpha=1.0).fit(X, y)
    assert_allclose(est.coef_, ref.coef_, rtol=1e-6)
    assert_allclose(est.intercept_, ref.intercept_, atol=1e-6 * np.linalg.norm(ref.coef_))
    # A fit of arrays afterwards has no files.
    assert not hasattr(est.fit(X, y), "shard_partitions_")


@pytest.mark.parametrize("bad", ["nan in X", "one class"])
def test_a_bad_file_gives_the_in_memory_error_and_is_named(tmp_path, bad):
    X, y = make_data("binary", seed=3)
    if bad == "nan in X":
        X[2 * ROWS + 5, 3] = np.nan  # in the file part-2
    else:
        y[:] = 1.0
    with pytest.raises(ValueError) as in_memory:
        estimator("binary").fit(X, y)
    paths, _, _ = write_files(tmp_path, X, y, "npz")
    with pytest.raises(ValueError) as from_files:
        estimator("binary").fit(FileShards(paths, format="npz"))
    if bad == "nan in X":
        assert str(from_files.value) == f"{in_memory.value} (in the file {paths[2]!r})"
    else:  # a property of all the files: no file to name
        assert str(from_files.value) == str(in_memory.value)


def test_files_of_other_widths_are_named(tmp_path):
    X, y = make_data("regression", seed=4)
    paths, _, _ = write_files(tmp_path, X, y, "npz")
    np.savez(paths[1], X=X[ROWS:2 * ROWS, :6], y=y[ROWS:2 * ROWS])
    with pytest.raises(ValueError, match=f"the file '{paths[1]}' has 6 columns where "
                                         f"'{paths[0]}' has 7 columns"):
        estimator("regression").fit(FileShards(paths, format="npz"))

    paths, _, _ = write_files(tmp_path, X, y, "svmlight")
    with pytest.raises(ValueError, match="has 7 features, more than n_features=5: "
                                         "set n_features >= 7"):
        estimator("regression").fit(FileShards(paths, n_features=5))

    paths, _, _ = write_files(tmp_path, X, y, "parquet")
    pd.read_parquet(paths[3]).rename(columns={"f2": "g2"}).to_parquet(paths[3])
    with pytest.raises(ValueError, match=f"the file '{paths[3]}' has the columns"):
        estimator("regression").fit(FileShards(paths, format="parquet", target="label"))


def test_what_cannot_apply_says_why(tmp_path):
    X, y = make_data("binary", seed=5)
    paths, _, _ = write_files(tmp_path, X, y, "npz")
    files = FileShards(paths, format="npz")
    # The message of Dask collections: both live elsewhere than the driver.
    with pytest.raises(ValueError, match="solver='saga' needs X in memory; data that "
                                         r"lives elsewhere \(Dask collections, FileShards\)"):
        estimator("binary", solver="saga").fit(files)
    with pytest.raises(ValueError, match="n_workers=5 is more than the 4 files"):
        estimator("binary", n_workers=5).fit(files)
    with pytest.raises(ValueError, match="its files hold y"):
        estimator("binary").fit(files, y)
    # y=None is for FileShards only: scikit-learn's own error otherwise.
    with pytest.raises(ValueError, match="requires y to be passed"):
        estimator("binary").fit(X)
    with pytest.raises(ValueError, match="has the keys"):
        np.savez(paths[0], X=X[:ROWS])
        estimator("binary").fit(files)
    with pytest.raises(TypeError, match="give a list of paths"):
        FileShards(paths[0])
    with pytest.raises(ValueError, match="target names y's column"):
        FileShards(paths, format="parquet")
    with pytest.raises(ValueError, match="n_features applies to format='svmlight'"):
        FileShards(paths, format="npz", n_features=7)
