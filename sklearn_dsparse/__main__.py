"""``python -m sklearn_dsparse demo``: the saving on data that ships with scikit-learn."""

import argparse
import time
import warnings

from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from . import DistributedSparseLogisticRegression


def demo(n_workers=8, random_state=0):
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=random_state, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    print(f"breast cancer: {X_train.shape[0]} training rows, {X.shape[1]} features, "
          f"{n_workers} workers, each sending 1 of {n_workers} parameter blocks "
          "per round\n")
    print(f"{'sparsifier':<12} {'accuracy':>8} {'epochs':>7} {'rounds':>7} "
          f"{'uplink bytes':>13} {'vs dense':>9} {'seconds':>8}")
    uplink = {}
    for sparsifier in ["none", "independent"]:
        est = DistributedSparseLogisticRegression(
            C=0.1, n_workers=n_workers, sparsifier=sparsifier, batch_size=8,
            random_state=random_state)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        comm = est.communication_
        uplink[sparsifier] = comm["uplink_bytes"]
        print(f"{sparsifier:<12} {est.score(X_test, y_test):>8.3f} {est.n_iter_:>7} "
              f"{comm['rounds']:>7} {comm['uplink_bytes']:>13,} "
              f"{comm['uplink_ratio']:>9.3f} {seconds:>8.2f}")
    saved = 1 - uplink["independent"] / uplink["none"]
    print(f"\nIndependent block sparsification sent {saved:.0%} less uplink than "
          "dense averaging for the whole fit.")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sklearn_dsparse")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("demo", help="fit on breast cancer, print the saving")
    run.add_argument("--n-workers", type=int, default=8)
    run.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    demo(n_workers=args.n_workers, random_state=args.random_state)


if __name__ == "__main__":
    main()
