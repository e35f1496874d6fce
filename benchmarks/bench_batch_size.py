"""Batch size on news20 at n_workers=16: compute per epoch against scikit-learn's
SAGA, and what an epoch achieves.

With compression every round moves O(d) block values, so an epoch costs
O(N d / (n b)) beside the rows' O(nnz); on a model as wide and data as sparse
as news20 the batch sets the ratio.  ``batch_size="auto"`` (the default)
chooses the batch from the width of the data (``_fit.auto_batch_size``).  The
objective after a fixed number of epochs shows what the larger batch costs in
progress: on news20 the safe step grows like the batch, so nothing.

    python benchmarks/bench_batch_size.py              # about 2 minutes
    python benchmarks/bench_batch_size.py --epochs 12
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_svmlight_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from sklearn_dsparse import DistributedSparseLogisticRegression
from sklearn_dsparse._testing import datasets_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-workers", type=int, default=16)
    args = parser.parse_args(argv)
    path = datasets_dir(Path(__file__).resolve().parents[1]) / "news20.bz2"
    X, y = load_svmlight_file(str(path), n_features=62061, zero_based=False)
    X.indices = X.indices.astype(np.int32)  # scikit-learn's saga needs int32
    X.indptr = X.indptr.astype(np.int32)
    warnings.simplefilter("ignore", ConvergenceWarning)
    n, k = args.n_workers, args.epochs
    print(f"news20, n_workers={n}, in-process, C=1: s/epoch (median of epochs "
          f"2..{k}), its ratio to scikit-learn's saga s/epoch (median of 3 fits of 5 "
          f"epochs), the objective after {k} epochs, rounds and uplink MB of the fit")
    for name, target in [("class 1 vs rest", (y == 1).astype(int)), ("20 classes", y)]:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            LogisticRegression(solver="saga", max_iter=5, tol=0).fit(X, target)
            times.append((time.perf_counter() - start) / 5)
        reference = float(np.median(times))
        for batch in [16, 32, 64, "auto"]:
            params = dict(n_workers=n, batch_size=batch, tol=0, random_state=0)
            DistributedSparseLogisticRegression(max_iter=1, **params).fit(
                X[:2000], target[:2000])  # compile
            est = DistributedSparseLogisticRegression(max_iter=k, **params).fit(X, target)
            per_epoch = np.median(np.diff(est.history_["seconds"])[1:])
            comm = est.communication_
            print(f"{name:<16} batch {str(batch):>4} (batch_size_={est.batch_size_:>3}): "
                  f"{per_epoch:.4f} s/epoch, scikit-learn {reference:.4f}, ratio "
                  f"{per_epoch / reference:5.2f}; objective {est.history_['objective'][-1]:.6g}"
                  f", {comm['rounds']} rounds, {comm['uplink_bytes'] / 1e6:.1f} MB up",
                  flush=True)


if __name__ == "__main__":
    main()
