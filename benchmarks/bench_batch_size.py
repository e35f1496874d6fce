"""Compute per epoch against scikit-learn's SAGA on news20, n_workers=16, as the
batch size grows: with compression every round moves O(d) block values, so an
epoch costs O(N d / (n b)) beside the rows' O(nnz), and on a model as wide and
data as sparse as news20 the batch sets the ratio.

    python benchmarks/bench_batch_size.py
"""

import os
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_svmlight_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from sklearn_dsparse import DistributedSparseLogisticRegression

DATA = Path(os.environ.get("DSPARSE_DATASETS",
                           Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def main():
    X, y = load_svmlight_file(str(DATA / "news20.bz2"), n_features=62061,
                              zero_based=False)
    X.indices = X.indices.astype(np.int32)  # scikit-learn's saga needs int32
    X.indptr = X.indptr.astype(np.int32)
    warnings.simplefilter("ignore", ConvergenceWarning)
    print("news20, n_workers=16, in-process; s/epoch (median of epochs 2..6) and "
          "ratio to scikit-learn's saga s/epoch (5 epochs)")
    for name, target in [("class 1 vs rest", y == 1), ("20 classes", y)]:
        start = time.perf_counter()
        LogisticRegression(solver="saga", max_iter=5, tol=0).fit(X, target)
        reference = (time.perf_counter() - start) / 5
        for batch in [16, 32, 64]:
            params = dict(n_workers=16, batch_size=batch, tol=0, random_state=0)
            DistributedSparseLogisticRegression(max_iter=1, **params).fit(X, target)
            est = DistributedSparseLogisticRegression(max_iter=6, **params).fit(X, target)
            per_epoch = np.median(np.diff(est.history_["seconds"])[1:])
            print(f"{name:<16} batch {batch:>3}: {per_epoch:.4f} s/epoch, "
                  f"scikit-learn {reference:.4f}, ratio {per_epoch / reference:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
