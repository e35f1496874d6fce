"""Which method reaches a given accuracy in the fewest rounds and uplink bytes?

    python benchmarks/study_few_rounds.py            # a9a-C1, phishing-C1 at n = 16
    python benchmarks/study_few_rounds.py --full     # every problem, n in {4, 16, 64}
    python benchmarks/study_few_rounds.py --problems news20-binary --n-workers 16
    options: --out results.json (every run, every configuration), --jobs 2,
             --seed 0, --methods L-BFGS,DANE,... (L-BFGS always runs),
             --max-seconds S (the time cap of each run)

The quick mode takes about 7 minutes on 2 cores (57 runs per problem, most
of the first-order ones stopped by the time cap).  ``--full`` (33 problem x n
cases, 60 s caps, 120 s on news20) takes about half a day: narrow it with
--problems, --n-workers, --methods and --max-seconds.  news20-binary at n = 16
with 40 s caps takes 12 minutes.  The optimum of each problem is cached in
``benchmarks/.cache/`` (computed once: seconds for the small problems, 20 s
for news20-binary, 4 minutes for news20-multinomial).  Time-capped runs
depend on the machine's speed and load: read their "not reached" rows as
"needs more than this much computing", not as a round count.

What it measures
----------------
Every candidate runs on the same shards: n workers, each holding a contiguous
near-equal block of rows in file order (``np.linspace`` bounds), the mean-form
objective F(x) = sum_i w_i f_i(x), w_i = N_i / N, f_i = mean loss over shard
i + lam/2 ||coef||^2 (intercept unpenalised).  For each problem and n it
prints a markdown table: per method, the configuration of its grid that
reached relative suboptimality (F(x) - F*) / F* <= 1e-6 with the fewest
uplink bytes (else 1e-4, else the smallest final gap), and at 1e-4 and 1e-6
its rounds, uplink bytes, downlink bytes and passes, and its rounds and uplink
bytes relative to dense L-BFGS (at 1e-6 when both reach it, else at 1e-4).
A second table gives each method's runner-up configuration.

Counting:
- a round is one exchange: every worker sends one message up and the master
  broadcasts one message down;
- a message is 16 header bytes + 4 bytes per block id (none when every block
  is sent) + 8 bytes per value; a dense message of the parameters is
  16 + 8 n_params; a worker's function value is one more value;
- uplink bytes add every worker's message; downlink bytes count the
  master's broadcast (always dense here) once per worker;
- a pass is every worker touching every row of its shard once: a gradient,
  a function value, a Hessian-vector product, forming a dense local Hessian
  and a SAGA epoch are one pass each.  Passes = rows touched / N.
F* and the relative suboptimality at each recorded point are measurements and
cost nothing.  A run stops at 1e-7, or at the round cap, or the time cap (per
run: 10 s in the quick mode, 60 s with --full, 120 s on news20).

Problems (LIBSVM files from ``sklearn_dsparse._testing.datasets_dir``):
a9a, a5a, phishing, mushrooms: binary logistic (y = label == max label),
LogisticRegression's objective at C in {0.01, 1}, i.e. lam = 1 / (C N);
abalone: ridge, Ridge(alpha=1), i.e. squared loss / 2 and lam = alpha / N;
news20 (rows scaled to unit L2 norm), C = 1: class 1 against the rest, and the
20-class multinomial (softmax cross-entropy, 62062 x 20 parameters).

Candidates and their grids (the algorithms are in ``_few_rounds_methods.py``;
"ibs" is independent block sparsification: m = min(d, n) row blocks, each
worker sends tau = max(1, round(m / n)) of them, uniformly at random and
independently, rescaled by m / tau)
1. L-BFGS: scipy L-BFGS-B, memory 10, from 0; every f+g evaluation is one
   dense round.  The reference of the ratios.
2. library: ``DistributedSparseLogisticRegression`` / ``DistributedSparseRidge``
   (``max_iter`` epochs, ``tol=0``, ``random_state=0``), read from
   ``history_`` once per epoch (per iteration for "newton", the chosen
   default: candidate 5 below as the library implements it); grid solver in
   {newton, saga, gd} x sparsifier in {independent, none}.  Their downlink
   per epoch is not in ``history_``: the table prorates the fit's total by
   rounds (marked ~).  Passes = epochs (iterations for "newton", which makes
   one to three passes each).
3. DANE (Shamir, Srebro & Zhang, 2014): a gradient round (ghat), then each
   worker solves min_y f_i(y) - <grad f_i(x) - ghat, y> + mu/2 ||y - x||^2
   (damped Newton from x to 1e-8 relative gradient; Newton-CG, i.e. Hessian-
   vector products, for news20) and sends y_i - x; x += eta sum_i w_i (y_i - x).
   Grid mu in {0, 1e-4, 1e-3} x eta in {1, 0.5} x compressors (gradient,
   step) in {(none, none), (none, ibs), (ibs with DIANA control variates, ibs)}.
   At most 10 Newton steps; Newton-CG stops CG at 1e-3 relative residual.
4. DANE-SAGA: the same local problem, solved inexactly by E SAGA epochs from
   y = x (step 1 / (3 L_max), the table started at x from the gradient pass).
   Grid E in {1, 3} x mu in {0, 1e-3} x step compressor in {none, ibs}, eta 1.
5. GIANT-L-BFGS: L-BFGS whose initial inverse Hessian is
   sum_i w_i (H_i(x) + mu I)^-1 (applied by the workers: one round), Armijo
   backtracking from step 1 (one dense round per trial).  Memory 0 is GIANT
   (Wang, Roosta, Xu & Mahoney, 2018) with a line search.  Grid memory in
   {0, 10} x mu in {0, 1e-4} x direction compressor in {none, ibs}.  news20
   solves (H_i + mu I) r_i = q by CG (at most 50 Hessian-vector products,
   1e-2 relative residual).
6. Scaffnew / ProxSkip (Mishchenko, Malinovsky, Stich & Richtarik, 2022):
   local steps x_i <- x_i - gamma (c_i grad f_i(x_i) - h_i) (c_i = n w_i);
   with probability p a dense round: xbar = mean_i x_i,
   h_i <- h_i + p/gamma (xbar - x_i), x_i <- xbar.  gamma = 1/L,
   p = p_factor sqrt(gamma mu) (theory: 1), grid p_factor in {1, 3, 10}.
7. LoCoDL (Condat, Maranjyan & Richtarik, 2024) with ibs on x_i - y (update
   equations in ``locodl``'s docstring); grid p_factor in {1, 3, 10} x
   chi_factor in {1, 4} (chi = rho = chi_factor / (1 + omega)), and the dense
   variant (omega = 0, chi = rho = 1) at the same p_factors.
8. ADIANA (Li, Kovalev, Qian & Richtarik, 2020) with ibs, both compressed
   messages in one message per round (shared block ids); equations and the
   theory parameters in ``adiana``'s docstring.  Grid eta in {theory, 1/(8L),
   1/(2L)}, and dense (omega = 0) at 1/(2L).
9. Hybrid (Agarwal, Chapelle, Dudik & Langford, 2014): one online AdaGrad
   pass per worker, averaged with weights w_i in one dense round, then dense
   L-BFGS from that average.  Grid AdaGrad rate in {0.1, 1}.

Caveats: the parameter rules of LoCoDL (chi = rho, the scale of p) and of
ADIANA (p, eta_theory, theta1, gamma) are as recalled from the papers and not
re-derived here; the update equations in the docstrings are what runs.  The
L2 term of the hybrid's online pass is applied lazily (see
``_adagrad_pass``); it only shapes the warm start.  Methods 6-8 need of the
order of kappa = L / lam (Scaffnew, LoCoDL: local steps) or sqrt(kappa)
(ADIANA: rounds) gradient evaluations, kappa ~ 1e5 on a9a at C = 1, so the
time cap, not the round cap, ends them.
"""

import argparse
import json
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.optimize
from sklearn.datasets import load_svmlight_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

import _few_rounds_methods as methods  # the script's folder is on the path

CHECKOUT = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).resolve().parent / ".cache"
TARGETS = (1e-4, 1e-6)
STOP_AT = 1e-7
N_FEATURES = {"a9a": 123, "a5a": 123, "mushrooms": 112, "phishing": 68,
              "abalone_scale": 8, "news20": 62061}


@dataclass(frozen=True)
class Spec:
    dataset: str
    loss: str              # "logistic", "squared" or "multinomial"
    C: float = 1.0         # logistic: LogisticRegression's C
    alpha: float = 1.0     # squared: Ridge's alpha
    positive: float | str = "max"  # binary: label == max label, or == this value
    unit_rows: bool = False


PROBLEMS = {
    **{f"{name}-C{c:g}": Spec(name, "logistic", C=c)
       for name in ("a9a", "a5a", "phishing", "mushrooms") for c in (0.01, 1.0)},
    "abalone-ridge": Spec("abalone_scale", "squared", alpha=1.0),
    "news20-binary": Spec("news20", "logistic", positive=1.0, unit_rows=True),
    "news20-multinomial": Spec("news20", "multinomial", unit_rows=True),
}
QUICK_PROBLEMS = ("a9a-C1", "phishing-C1")

COMPRESSOR_PAIRS = (("none", "none"), ("none", "ibs"), ("ibs", "ibs"))
GRIDS = {
    "L-BFGS": [dict()],
    "library": [dict(solver=s, sparsifier=k)
                for s in ("newton", "saga", "gd") for k in ("independent", "none")],
    "DANE": [dict(mu=mu, eta=eta, gradient=g, step=s)
             for mu in (0.0, 1e-4, 1e-3) for eta in (1.0, 0.5)
             for g, s in COMPRESSOR_PAIRS],
    "DANE-SAGA": [dict(local_solver="saga", epochs=e, mu=mu, eta=1.0, step=s)
                  for e in (1, 3) for mu in (0.0, 1e-3) for s in ("none", "ibs")],
    "GIANT-L-BFGS": [dict(memory=m, mu=mu, direction=c)
                     for m in (0, 10) for mu in (0.0, 1e-4) for c in ("none", "ibs")],
    "Scaffnew": [dict(gamma_L=1.0, p_factor=f) for f in (1.0, 3.0, 10.0)],
    "LoCoDL": ([dict(gamma_L=1.0, p_factor=f, chi_factor=x, compressor="ibs")
                for f in (1.0, 3.0, 10.0) for x in (1.0, 4.0)]
               + [dict(gamma_L=1.0, p_factor=f, chi_factor=1.0, compressor="none")
                  for f in (1.0, 3.0, 10.0)]),
    "ADIANA": ([dict(eta_rule=e, compressor="ibs") for e in ("theory", 0.125, 0.5)]
               + [dict(eta_rule=0.5, compressor="none")]),
    "hybrid": [dict(rate=r) for r in (0.1, 1.0)],
}
FUNCTIONS = {"L-BFGS": methods.lbfgs, "DANE": methods.dane,
             "DANE-SAGA": methods.dane, "GIANT-L-BFGS": methods.giant_lbfgs,
             "Scaffnew": methods.scaffnew, "LoCoDL": methods.locodl,
             "ADIANA": methods.adiana, "hybrid": methods.hybrid}


# ------------------------------------------------------------- loading

def load(spec):
    """(X, y, lam, objective scale of the library's estimator)."""
    from sklearn_dsparse._testing import datasets_dir

    path = Path(datasets_dir(CHECKOUT)) / f"{spec.dataset}.bz2"
    X, y = load_svmlight_file(str(path), n_features=N_FEATURES[spec.dataset],
                              zero_based=False)
    X.eliminate_zeros()
    if spec.unit_rows:
        X = normalize(X)
    n_samples = X.shape[0]
    if spec.loss == "squared":
        # ||y - Xw - b||^2 + alpha ||w||^2 = 2N (mean of r^2 / 2 + alpha/(2N) ||w||^2)
        return X, y, spec.alpha / n_samples, 2.0 * n_samples
    if spec.loss == "logistic":
        positive = y.max() if spec.positive == "max" else spec.positive
        y = (y == positive).astype(np.float64)
    # C sum loss + ||w||^2 / 2 = C N (mean loss + 1/(2 C N) ||w||^2)
    return X, y, 1.0 / (spec.C * n_samples), spec.C * n_samples


def optimum(name, spec, X, y, lam):
    """F* (mean form), from the cache or a tight solve."""
    path = CACHE / f"optimum-{name}.json"
    if path.exists():
        return json.loads(path.read_text())["f_star"]
    whole = methods.Problem(X, y, spec.loss, lam, 1)
    start = time.monotonic()
    if whole.n_params <= methods.DENSE_HESSIAN_MAX_PARAMS:
        x, how = _newton(whole), "Newton with backtracking"
    else:
        x, how = _long_lbfgs(whole), "L-BFGS-B, gtol 1e-12"
    record = dict(f_star=float(whole.F(x)),
                  grad_norm=float(np.linalg.norm(whole.grad(x))),
                  solver=how, seconds=round(time.monotonic() - start, 1))
    CACHE.mkdir(exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(f"optimum of {name}: {record}", flush=True)
    return record["f_star"]


def _newton(whole):
    x = whole.zeros()
    for _ in range(100):
        g = whole.grad(x)
        if np.abs(g).max() < 1e-14:
            break
        step = np.linalg.solve(whole.dense_hessian(0, x), g)
        f, t = whole.F(x), 1.0
        while whole.F(x - t * step) > f - 0.25 * t * np.vdot(g, step) and t > 1e-10:
            t *= 0.5
        x = x - t * step
    return x


def _long_lbfgs(whole):
    shape = (whole.d, whole.K)

    def value_grad(flat):
        x = flat.reshape(shape)
        return whole.F(x), whole.grad(x).ravel()

    result = scipy.optimize.minimize(
        value_grad, np.zeros(whole.n_params), jac=True, method="L-BFGS-B",
        options=dict(maxiter=20000, maxfun=40000, ftol=0.0, gtol=1e-12, maxcor=30))
    return result.x.reshape(shape)


# -------------------------------------------------------------- running

@dataclass
class Caps:
    max_rounds: int
    max_seconds: float


_SHARED = {}  # the problem of the pool's tasks, inherited through fork


def run_one(task):
    """One (method, configuration) run; returns its summary."""
    method, config, seed = task
    problem, f_star, library_inputs, caps = (
        _SHARED[k] for k in ("problem", "f_star", "library_inputs", "caps"))
    start = time.monotonic()
    with threadpool_limits(1):
        if method == "library":
            rows, note = run_library(library_inputs, problem, f_star, config, caps)
        else:
            meter = methods.Meter(problem, f_star, STOP_AT, caps.max_rounds,
                                  caps.max_seconds)
            note = ""
            # overflow in exp on a diverging run is expected; the gap shows it
            with np.errstate(all="ignore"):
                try:
                    rng = np.random.default_rng(seed)
                    FUNCTIONS[method](problem, meter, rng, **config)
                except methods.Finished:
                    pass
                except np.linalg.LinAlgError as error:  # a local Hessian went singular
                    note = f"stopped: {error}"
            reached = meter.rows[-1][4] <= STOP_AT
            rows = meter.rows
            note = note or meter.stop_reason or ("" if reached else "method stopped")
    return summarise(method, config, rows, time.monotonic() - start, note)


def run_library(inputs, problem, f_star, config, caps):
    """The library's estimator, its max_iter chosen to fit the time cap."""
    from sklearn_dsparse import (DistributedSparseLogisticRegression,
                                 DistributedSparseRidge)

    X, y, spec, scale = inputs
    if spec.loss == "squared":
        estimator, strength = DistributedSparseRidge, dict(alpha=spec.alpha)
    else:
        estimator, strength = DistributedSparseLogisticRegression, dict(C=spec.C)

    def make(epochs):
        return estimator(**strength, n_workers=problem.n_workers, random_state=0,
                         max_iter=epochs, tol=0, **config)

    labels = y if spec.loss != "logistic" else y.astype(int)

    def timed_fit(epochs):
        start = time.monotonic()
        fitted = make(epochs).fit(X, labels)
        return fitted, time.monotonic() - start

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # A fit cannot be stopped from outside: time ever longer fits (4x
        # epochs each) until one takes a tenth of the cap; the last two give
        # the time of an epoch without the fixed cost of a fit.
        timed_fit(1)  # compiles: its time would inflate the estimate
        previous = (0, 0.0)
        epochs = 2
        while True:
            est, seconds = timed_fit(epochs)
            rounds_per_epoch = max(int(est.history_["rounds"][1]), 1)
            round_limit = max(caps.max_rounds // rounds_per_epoch, 1)
            per_epoch = max((seconds - previous[1]) / (epochs - previous[0]), 1e-4)
            affordable = int(min(caps.max_seconds / per_epoch, round_limit))
            if seconds > caps.max_seconds / 10 or epochs >= round_limit:
                break
            previous = (epochs, seconds)
            epochs = min(4 * epochs, round_limit)
        if affordable > epochs:
            epochs = affordable
            est = make(epochs).fit(X, labels)
    history = est.history_
    total = est.communication_
    downlink = total["downlink_bytes"] * history["rounds"] / max(total["rounds"], 1)
    f_lib = scale * f_star
    gaps = (history["objective"] - f_lib) / abs(f_lib)
    rows = [(int(r), int(u), float(dl), float(e), float(g)) for e, (r, u, dl, g)
            in enumerate(zip(history["rounds"], history["uplink_bytes"], downlink, gaps))]
    return rows, f"{epochs} epochs"


def summarise(method, config, rows, seconds, note):
    """First crossing of each target, and where the run ended."""
    crossings = {}
    for target in TARGETS:
        hit = next((row for row in rows if row[4] <= target), None)
        crossings[str(target)] = None if hit is None else dict(
            rounds=hit[0], uplink=hit[1], downlink=hit[2], passes=hit[3])
    last = rows[-1]
    return dict(method=method, config=config, crossings=crossings,
                final=dict(rounds=last[0], gap=float(last[4]), passes=last[3]),
                seconds=round(seconds, 1), note=note)


def tasks_for(methods_wanted, seed):
    """(method, configuration, seed of its Generator): the seed names the
    configuration, so a run is the same whatever else runs."""
    return [(method, config, [seed, list(GRIDS).index(method), k])
            for method in methods_wanted for k, config in enumerate(GRIDS[method])]


def run_case(name, spec, n_workers, caps, methods_wanted, jobs, seed):
    X, y, lam, scale = load(spec)
    f_star = optimum(name, spec, X, y, lam)
    problem = methods.Problem(X, y, spec.loss, lam, n_workers)
    _SHARED.update(problem=problem, f_star=f_star, caps=caps,
                   library_inputs=(X, y, spec, scale))
    tasks = tasks_for(methods_wanted, seed)
    start = time.monotonic()
    if jobs == 1:
        results = [run_one(t) for t in tasks]
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            results = list(pool.map(run_one, tasks))
    return results, time.monotonic() - start


# ------------------------------------------------------------ reporting

def _key(result):
    """Best first: uplink to 1e-6, then uplink to 1e-4, then final gap."""
    deep, shallow = result["crossings"]["1e-06"], result["crossings"]["0.0001"]
    if deep:
        return (0, deep["uplink"], 0.0)
    if shallow:
        return (1, shallow["uplink"], result["final"]["gap"])
    return (2, 0, result["final"]["gap"])


def ranked(results):
    """{method: its runs, best first} in the order of GRIDS."""
    by_method = {m: [] for m in GRIDS}
    for result in results:
        by_method[result["method"]].append(result)
    return {m: sorted(rs, key=_key) for m, rs in by_method.items() if rs}


def _bytes(value, approximate=False):
    mark = "~" if approximate else ""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{mark}{value / size:.3g} {unit}"
    return f"{mark}{value:.0f} B"


def _config(result):
    text = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in result["config"].items())
    return text or "-"


def _cells(result, target):
    hit = result["crossings"][str(target)]
    if hit is None:
        final = result["final"]
        why = f" ({result['note']})" if result["note"] else ""
        return [f"not reached in {final['rounds']} rounds, gap {final['gap']:.2g}{why}",
                "", "", ""]
    approximate = result["method"] == "library"
    return [str(hit["rounds"]), _bytes(hit["uplink"]),
            _bytes(hit["downlink"], approximate), f"{hit['passes']:.3g}"]


def _ratios(result, reference):
    for target in reversed(TARGETS):
        mine, base = result["crossings"][str(target)], reference["crossings"][str(target)]
        if mine and base:
            return [f"{mine['rounds'] / base['rounds']:.2g} ({target:g})",
                    f"{mine['uplink'] / base['uplink']:.2g} ({target:g})"]
    return ["-", "-"]


HEADER = ("| method | configuration | rounds 1e-4 | uplink 1e-4 | downlink 1e-4 "
          "| passes 1e-4 | rounds 1e-6 | uplink 1e-6 | downlink 1e-6 | passes 1e-6 "
          "| rounds / L-BFGS | uplink / L-BFGS | seconds |\n"
          "|" + "---|" * 13)


def table(rows, reference):
    lines = [HEADER]
    for result in rows:
        cells = ([result["method"], _config(result)] + _cells(result, 1e-4)
                 + _cells(result, 1e-6) + _ratios(result, reference)
                 + [f"{result['seconds']:g}"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(name, n_workers, results, seconds):
    runs = ranked(results)
    reference = runs["L-BFGS"][0]
    print(f"\n### {name}, n = {n_workers} ({seconds:.0f} s, {len(results)} runs)\n")
    print("Best configuration of each method:\n")
    print(table([rs[0] for rs in runs.values()], reference))
    print("\nRunner-up configurations:\n")
    print(table([rs[1] for rs in runs.values() if len(rs) > 1], reference), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="every problem, n in {4, 16, 64}, longer caps")
    parser.add_argument("--problems",
                        help="comma-separated, from: " + ", ".join(PROBLEMS))
    parser.add_argument("--n-workers", help="comma-separated worker counts")
    parser.add_argument("--methods", help="comma-separated, from: " + ", ".join(GRIDS))
    parser.add_argument("--max-seconds", type=float,
                        help="time cap of each run (default 10, --full 60, news20 120)")
    parser.add_argument("--out", help="write every run as JSON here")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = (args.problems.split(",") if args.problems
             else list(PROBLEMS) if args.full else list(QUICK_PROBLEMS))
    unknown = [n for n in names if n not in PROBLEMS]
    if unknown:
        parser.error(f"unknown problems {unknown}; known: {', '.join(PROBLEMS)}")
    wanted = args.methods.split(",") if args.methods else list(GRIDS)
    if "L-BFGS" not in wanted:
        wanted.insert(0, "L-BFGS")  # the reference of the ratios
    unknown = [m for m in wanted if m not in GRIDS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(GRIDS)}")
    worker_counts = ([int(n) for n in args.n_workers.split(",")] if args.n_workers
                     else [4, 16, 64] if args.full else [16])
    everything = []
    for name in names:
        spec = PROBLEMS[name]
        long_run = args.full or spec.dataset == "news20"
        default_seconds = ((120 if spec.dataset == "news20" else 60) if long_run else 10)
        caps = Caps(max_rounds=20000 if long_run else 5000,
                    max_seconds=args.max_seconds or default_seconds)
        for n_workers in worker_counts:
            results, seconds = run_case(name, spec, n_workers, caps, wanted,
                                        args.jobs, args.seed)
            report(name, n_workers, results, seconds)
            everything.append(dict(problem=name, n_workers=n_workers, runs=results))
    if args.out:
        Path(args.out).write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
