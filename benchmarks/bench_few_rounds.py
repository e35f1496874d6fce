"""The default estimators against dense distributed L-BFGS and scikit-learn:
rounds, uplink bytes and seconds to the optimum (the targets of "Few rounds").

    python benchmarks/bench_few_rounds.py                 # a9a and phishing at C=1, n=16
    python benchmarks/bench_few_rounds.py --full          # every problem, n in 4/16/64
    python benchmarks/bench_few_rounds.py --problems a9a-C1 --n-workers 16,64

For each problem and number of workers n, on the same contiguous shards:

- **default**: the estimator at its defaults (``solver="newton"``), read from
  its ``history_`` (objective, rounds and uplink bytes after every accepted
  step) with ``tol`` small enough to pass 1e-6.
- **independent**: the same with ``blocks_per_worker = n_blocks / n_workers``
  (independent block sparsification of the direction messages), and
  **none** with ``sparsifier="none"`` explicitly: the paper's claim, for the
  new method, is the ratio of their rounds.
- **L-BFGS**: scipy's L-BFGS-B on the same objective, every function and
  gradient evaluation one round in which each of the n workers sends its
  dense gradient and value (16-byte header + 8 bytes per value, as the
  library counts messages).

A gap is the relative suboptimality (F - F*) / F* of the estimator's own
objective, F* from scikit-learn at tol 1e-12 (newton-cholesky for logistic
regression, a Cholesky solve for ridge, lbfgs for the wide news20 problems).
Ratios are to L-BFGS on the same problem; "next goal" is 0.25x bytes and 2x
rounds.  Seconds, once per problem: the estimator at its defaults
(``n_workers=4``, in process) to its own stopping rule, against
scikit-learn's default estimator (``LogisticRegression()``, ``Ridge()``),
median of ``--repeats`` interleaved runs, the same fit with ``n_jobs=2``
(after one warm-up fit that starts the processes), and the fixed cost: a fit
of one iteration against scikit-learn's saga fit of one epoch; with
``--full``, also
``ElasticNet()`` against ``DistributedSparseElasticNet()`` on abalone.
"""

import argparse
import time
import warnings

import numpy as np
import scipy.optimize as so
import scipy.sparse as sp
from sklearn.datasets import load_svmlight_file
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import normalize

from sklearn_dsparse import DistributedSparseLogisticRegression, DistributedSparseRidge
from sklearn_dsparse._testing import datasets_dir
from sklearn_dsparse.messages import message_nbytes

N_FEATURES = {"a9a": 123, "a5a": 123, "mushrooms": 112, "phishing": 68,
              "abalone_scale": 8, "news20": 62061}
TARGETS = (1e-4, 1e-6)


def load(name):
    X, y = load_svmlight_file(str(datasets_dir(__file__ + "/../..") / f"{name}.bz2"),
                              n_features=N_FEATURES[name], zero_based=False)
    X.eliminate_zeros()
    # 32-bit indices, as scikit-learn's saga and ElasticNet require
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    return X, y


def problems():
    """name -> (X, y, estimator factory, scikit-learn default, exact reference)."""
    out = {}
    for name in ("a9a", "a5a", "phishing", "mushrooms"):
        for C in (1.0, 0.01):
            out[f"{name}-C{C:g}"] = (name, "logistic", C, False)
    out["abalone-ridge"] = ("abalone_scale", "ridge", 1.0, False)
    out["news20-binary"] = ("news20", "logistic", 1.0, "binary")
    out["news20-20class"] = ("news20", "logistic", 1.0, "multiclass")
    return out


def materialise(spec):
    name, kind, C, news = spec
    X, y = load(name)
    if news:
        X = normalize(X)
        if news == "binary":
            y = (y == 1).astype(int)
    elif kind == "logistic":
        y = (y == y.max()).astype(int)
    return X, y, kind, C


def estimator(kind, C, **params):
    if kind == "ridge":
        return DistributedSparseRidge(alpha=C, **params)
    return DistributedSparseLogisticRegression(C=C, **params)


def sklearn_default(kind, C):
    return Ridge(alpha=C) if kind == "ridge" else LogisticRegression(C=C)


def sklearn_objective(kind, C, X, y, coef, intercept):
    """The scikit-learn objective of the estimator (the one history_ records)."""
    Z = X @ coef.T + intercept
    if kind == "ridge":
        return float(np.sum((y - Z.ravel()) ** 2) + C * np.sum(coef ** 2))
    if Z.shape[1] == 1:
        z = Z.ravel()
        return float(C * np.sum(np.logaddexp(0, z) - y * z) + 0.5 * np.sum(coef ** 2))
    Zmax = Z.max(axis=1, keepdims=True)
    lse = Zmax.ravel() + np.log(np.exp(Z - Zmax).sum(axis=1))
    classes = np.unique(y)
    Zy = Z[np.arange(len(y)), np.searchsorted(classes, y)]
    return float(C * np.sum(lse - Zy) + 0.5 * np.sum(coef ** 2))


def optimum(kind, C, X, y):
    if kind == "ridge":
        ref = Ridge(alpha=C, solver="cholesky").fit(X.toarray(), y)
        return sklearn_objective(kind, C, X, y, ref.coef_[None], ref.intercept_)
    if X.shape[1] < 1000:
        ref = LogisticRegression(C=C, tol=1e-12, solver="newton-cholesky",
                                 max_iter=1000).fit(X, y)
    else:
        ref = LogisticRegression(C=C, tol=1e-12, max_iter=20000).fit(X, y)
    return sklearn_objective(kind, C, X, y, ref.coef_, ref.intercept_)


def first_reaching(history, F_star, gap):
    """(rounds, uplink bytes) when history's objective first gets within gap."""
    gaps = (history["objective"] - F_star) / abs(F_star)
    hit = np.nonzero(gaps <= gap)[0]
    if len(hit) == 0:
        return None
    return int(history["rounds"][hit[0]]), int(history["uplink_bytes"][hit[0]])


def lbfgs_history(kind, C, X, y, n_workers, max_rounds=5000):
    """Dense distributed L-BFGS: every evaluation is one round of n dense
    messages (the gradient and the value of each worker's shard)."""
    n_classes = 1 if kind == "ridge" or len(np.unique(y)) == 2 else len(np.unique(y))
    p = X.shape[1]
    Xa = sp.hstack([X, np.ones((X.shape[0], 1))], format="csr")
    Y = np.eye(n_classes)[np.searchsorted(np.unique(y), y)] if n_classes > 1 \
        else y.astype(float)[:, None]
    penalised = np.ones((p + 1, n_classes))
    penalised[-1] = 0.0
    message = message_nbytes.py_func(1, (p + 1) * n_classes + 1, 1)

    def f_grad(w):
        W = w.reshape(p + 1, n_classes)
        Z = Xa @ W
        if kind == "ridge":
            R = Z - Y
            f, dZ = float(np.sum(R * R)), 2 * R
            pen = C
        elif n_classes == 1:
            z = Z.ravel()
            f = float(C * np.sum(np.logaddexp(0, z) - Y.ravel() * z))
            dZ = C * (1 / (1 + np.exp(-Z)) - Y)
            pen = 1.0
        else:
            Zmax = Z.max(axis=1, keepdims=True)
            E = np.exp(Z - Zmax)
            S = E.sum(axis=1, keepdims=True)
            f = float(C * np.sum(Zmax.ravel() + np.log(S.ravel()) - np.sum(Y * Z, 1)))
            dZ = C * (E / S - Y)
            pen = 1.0
        if kind == "ridge":
            f += C * float(np.sum(penalised * W * W))
            G = Xa.T @ dZ + 2 * C * penalised * W
        else:
            f += 0.5 * float(np.sum(penalised * W * W))
            G = Xa.T @ dZ + pen * penalised * W
        rows.append((f, len(rows) + 1, (len(rows) + 1) * n_workers * message))
        return f, G.ravel()

    rows = []
    so.minimize(f_grad, np.zeros((p + 1) * n_classes), jac=True, method="L-BFGS-B",
                options=dict(maxfun=max_rounds, maxiter=max_rounds, ftol=0, gtol=0))
    rows = np.array(rows)
    return {"objective": rows[:, 0], "rounds": rows[:, 1], "uplink_bytes": rows[:, 2]}


def median_seconds(fit, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fit()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def fmt(hit):
    return "not reached" if hit is None else f"{hit[0]} / {hit[1] / 1e6:.3g} MB"


def ratio(hit, base, index):
    if hit is None or base is None:
        return "-"
    return f"{hit[index] / base[index]:.2f}x"


def run(problem, X, y, kind, C, F_star, n_workers):
    base = lbfgs_history(kind, C, X, y, n_workers)
    fits = {
        "default": estimator(kind, C, n_workers=n_workers, tol=1e-6, random_state=0),
        "none": estimator(kind, C, n_workers=n_workers, tol=1e-6, sparsifier="none",
                          random_state=0),
        "independent": estimator(kind, C, n_workers=n_workers, tol=1e-6,
                                 sparsifier="independent", random_state=0),
    }
    histories = {"L-BFGS": base}
    for name, est in fits.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(X, y)
        histories[name] = dict(est.history_)
        if caught:
            histories[name]["warning"] = str(caught[0].message)[:80]
    print(f"\n### {problem}, n_workers={n_workers} (F* = {F_star:.10g})\n")
    print("| method | rounds / uplink to 1e-4 | to 1e-6 | rounds vs L-BFGS | "
          "bytes vs L-BFGS |")
    print("|---|---|---|---|---|")
    hits = {}
    for name, history in histories.items():
        hits[name] = [first_reaching(history, F_star, g) for g in TARGETS]
        b6 = first_reaching(base, F_star, 1e-6)
        print(f"| {name} | {fmt(hits[name][0])} | {fmt(hits[name][1])} | "
              f"{ratio(hits[name][1], b6, 0)} | {ratio(hits[name][1], b6, 1)} |")
        if "warning" in history:
            print(f"|   warning: {history['warning']} | | | | |")
    ind, none = hits["independent"][1], hits["none"][1]
    if ind and none:
        print(f"\nindependent / none rounds to 1e-6: {ind[0] / none[0]:.2f}x "
              "(the paper's claim: at most 1.25x)")


def interleaved_medians(fits, X, y, repeats):
    """The median seconds of each estimator's fit, the fits interleaved (the
    machine's speed drifts), scikit-learn's max_iter warnings ignored."""
    times = {name: [] for name in fits}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            for name, est in fits.items():
                start = time.perf_counter()
                est.fit(X, y)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def fit_warnings(est, X, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    return "no warning" if not caught else f"warned: {caught[0].message}"[:100]


def timings(problem, X, y, kind, C, F_star, repeats):
    default = estimator(kind, C, random_state=0)
    warned = fit_warnings(default, X, y)
    parallel = estimator(kind, C, random_state=0, n_jobs=2)
    parallel.fit(X, y)  # starts the worker processes
    t = interleaved_medians({"ours": default, "sklearn": sklearn_default(kind, C),
                             "n_jobs=2": parallel}, X, y, repeats)
    # Ridge's saga refuses an intercept on sparse data; sag's epoch costs the same.
    saga_epoch = (Ridge(alpha=C, solver="sag", max_iter=1) if kind == "ridge" else
                  LogisticRegression(C=C, solver="saga", max_iter=1))
    one = interleaved_medians({"ours": estimator(kind, C, random_state=0, max_iter=1),
                               "saga": saga_epoch}, X, y, repeats)
    gap = (sklearn_objective(kind, C, X, y, np.atleast_2d(default.coef_),
                             default.intercept_) - F_star) / abs(F_star)
    print(f"\n{problem} at the defaults (n_workers=4): {t['ours']:.3f} s to gap "
          f"{gap:.1e} ({default.n_iter_[0]} iterations, {warned}), scikit-learn's "
          f"default {t['sklearn']:.3f} s: {t['ours'] / t['sklearn']:.2f}x; n_jobs=2 "
          f"{t['n_jobs=2']:.3f} s: {t['n_jobs=2'] / t['ours']:.2f}x the in-process "
          f"fit; one iteration (max_iter=1) {one['ours']:.3f} s, scikit-learn's saga "
          f"one epoch {one['saga']:.3f} s: {one['ours'] / one['saga']:.2f}x")


def elastic_net_timings(repeats):
    """ElasticNet() against DistributedSparseElasticNet() on abalone (L1: no
    L-BFGS baseline, the default is OWL-QN there)."""
    from sklearn.linear_model import ElasticNet
    from sklearn_dsparse import DistributedSparseElasticNet
    X, y = load("abalone_scale")
    X = X.toarray()  # 8 features: dense, as ElasticNet() is used
    exact = ElasticNet(tol=1e-14, max_iter=100_000).fit(X, y)

    def objective(est):
        r = y - X @ est.coef_ - est.intercept_
        return float(r @ r / (2 * len(y)) + 0.5 * np.sum(np.abs(est.coef_))
                     + 0.25 * est.coef_ @ est.coef_)

    ours = DistributedSparseElasticNet(random_state=0)
    warned = fit_warnings(ours, X, y)
    t = interleaved_medians({"ours": ours, "sklearn": ElasticNet()}, X, y, repeats)
    F_star = objective(exact)
    print(f"\nabalone-elasticnet at the defaults (alpha=1, l1_ratio=0.5, "
          f"n_workers=4): {t['ours']:.3f} s to gap "
          f"{(objective(ours) - F_star) / F_star:.1e} ({np.max(ours.n_iter_)} iterations, "
          f"{warned}, {np.sum(ours.coef_ == 0)} zeros as scikit-learn's "
          f"{np.sum(exact.coef_ == 0)}), scikit-learn's default {t['sklearn']:.3f} s: "
          f"{t['ours'] / t['sklearn']:.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--problems", default="")
    parser.add_argument("--n-workers", default="")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    specs = problems()
    names = args.problems.split(",") if args.problems else (
        list(specs) if args.full else ["a9a-C1", "phishing-C1"])
    workers = [int(n) for n in args.n_workers.split(",")] if args.n_workers else (
        [4, 16, 64] if args.full else [16])
    for name in names:
        X, y, kind, C = materialise(specs[name])
        F_star = optimum(kind, C, X, y)
        for n in workers:
            run(name, X, y, kind, C, F_star, n)
        timings(name, X, y, kind, C, F_star, args.repeats)
    if args.full:
        elastic_net_timings(args.repeats)


if __name__ == "__main__":
    main()
