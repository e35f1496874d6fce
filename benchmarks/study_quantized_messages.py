"""How ``solver="newton"``'s vectors should travel: the study behind
``newton.GRADIENT_FORMAT`` and ``newton.ANSWER_FORMAT``.

    python benchmarks/study_quantized_messages.py
    python benchmarks/study_quantized_messages.py --problems mushrooms-C1 --n-workers 16,64
    python benchmarks/study_quantized_messages.py --formats 64/32,16/16,8/16,8/8

For each problem of ``bench_few_rounds`` and number of workers, the default
estimator is fitted with each pair of formats (gradient changes / direction
answers; 64, 32, 16: float codes, 8: int8 codes, each with one power-of-two
exponent per message, ``sklearn_dsparse.quantization``), on the same shards.
"64/32" is what the library sent before (float64 gradients, float32
answers).  Printed: rounds and uplink bytes (``history_``, counted as the
library counts them) to a relative suboptimality of 1e-6, their ratios to
dense L-BFGS (``bench_few_rounds.lbfgs_history``), and the gap where the fit
stopped at ``tol=1e-6``: a format that makes the stopping rule stop early
shows there.
"""

import argparse
import warnings

import bench_few_rounds as bench
from sklearn_dsparse import newton, quantization

FORMATS = {"64": quantization.FLOAT64, "32": quantization.FLOAT32,
           "16": quantization.FLOAT16, "8": quantization.INT8}
DEFAULT_PROBLEMS = ("a9a-C0.01", "a5a-C1", "phishing-C1", "phishing-C0.01",
                    "mushrooms-C1", "mushrooms-C0.01", "abalone-ridge", "news20-binary")


def fit_with(formats, kind, C, X, y, n_workers):
    gradient, answer = formats.split("/")
    saved = newton.GRADIENT_FORMAT, newton.ANSWER_FORMAT
    newton.GRADIENT_FORMAT, newton.ANSWER_FORMAT = FORMATS[gradient], FORMATS[answer]
    try:
        est = bench.estimator(kind, C, n_workers=n_workers, tol=1e-6, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    finally:
        newton.GRADIENT_FORMAT, newton.ANSWER_FORMAT = saved
    return est


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default=",".join(DEFAULT_PROBLEMS))
    parser.add_argument("--n-workers", default="16,64")
    parser.add_argument("--formats", default="64/32,32/32,16/16,8/16,8/8")
    args = parser.parse_args(argv)
    problems = bench.problems()
    print("| problem | n | L-BFGS to 1e-6 | formats | rounds to 1e-6 | bytes to 1e-6 "
          "| rounds vs L-BFGS | bytes vs L-BFGS | gap at the stop |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.problems.split(","):
        X, y, kind, C = bench.materialise(problems[name])
        F_star = bench.optimum(kind, C, X, y)
        for n_workers in (int(n) for n in args.n_workers.split(",")):
            base = bench.first_reaching(bench.lbfgs_history(kind, C, X, y, n_workers),
                                        F_star, 1e-6)
            for formats in args.formats.split(","):
                est = fit_with(formats, kind, C, X, y, n_workers)
                hit = bench.first_reaching(est.history_, F_star, 1e-6)
                stop = (est.history_["objective"][-1] - F_star) / abs(F_star)
                print(f"| {name} | {n_workers} | {bench.fmt(base)} | {formats} | "
                      f"{hit[0] if hit else 'not reached'} | "
                      f"{f'{hit[1] / 1e6:.3g} MB' if hit else '-'} | "
                      f"{bench.ratio(hit, base, 0)} | {bench.ratio(hit, base, 1)} | "
                      f"{stop:.1e} |", flush=True)


if __name__ == "__main__":
    main()
