from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_svmlight_file

from sklearn_dsparse._testing import datasets_dir

DATASETS = datasets_dir(Path(__file__).resolve().parents[1])

N_FEATURES = {"a1a": 123, "a5a": 123, "a9a": 123, "a9a.t": 123, "mushrooms": 112,
              "phishing": 68, "news20": 62061, "abalone_scale": 8}


@lru_cache(maxsize=None)
def load(name):
    """(X CSR float64, y) of a dataset in datasets/ (cached: tests must not modify it)."""
    path = DATASETS / f"{name}.bz2"
    if not path.exists():
        pytest.fail(f"dataset {path} not found: the test datasets ship in the "
                    "repository's datasets/ folder (DSPARSE_DATASETS, if set, "
                    "replaces it)")
    X, y = load_svmlight_file(str(path), n_features=N_FEATURES[name],
                              zero_based=False)
    X.eliminate_zeros()
    return X, y


def abalone_classes():
    """abalone as a 3-class problem: young (< 8 rings), adult, old (>= 11)."""
    X, y = load("abalone_scale")
    return X, np.digitize(y, [8, 11])


def relative_error(est, coef, intercept):
    a = np.r_[np.ravel(est.coef_), np.ravel(est.intercept_)]
    b = np.r_[np.ravel(coef), np.ravel(intercept)]
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.fixture(scope="module")
def dask_client():
    """A Dask cluster of two worker processes on this machine, and its client
    (the default one while the module's tests run)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                       processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
