"""The figure of docs/newton.md: suboptimality against rounds and against
uplink bytes, a9a, logistic regression at C = 1, 16 workers.

    pip install ".[plot]" && python benchmarks/figure_few_rounds.py   # ~30 s

Lines: the default (``solver="newton"``), the same with independent block
sparsification of its directions (1 of 16 blocks), the paper's ``saga`` and
``gd`` with IBS (300 epochs / 3000 rounds), and dense distributed L-BFGS
(every evaluation a round of 16 dense gradients), all on the same shards;
suboptimality is relative to scikit-learn's optimum (``bench_few_rounds``),
the best point so far.
Writes docs/figures/few_rounds_a9a.png.
"""

import warnings
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench_few_rounds import (estimator, lbfgs_history, materialise,  # noqa: E402
                              optimum, problems)

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "few_rounds_a9a.png"
N_WORKERS = 16


def main():
    X, y, kind, C = materialise(problems()["a9a-C1"])
    F_star = optimum(kind, C, X, y)
    runs = {
        "default (newton)": estimator(kind, C, n_workers=N_WORKERS, tol=1e-6,
                                      random_state=0),
        "newton, 1 of 16 blocks": estimator(kind, C, n_workers=N_WORKERS, tol=1e-6,
                                            sparsifier="independent",
                                            random_state=0),
        "saga, IBS (the paper's)": estimator(kind, C, n_workers=N_WORKERS,
                                             solver="saga", max_iter=300, tol=0,
                                             random_state=0),
        "gd, IBS (the paper's)": estimator(kind, C, n_workers=N_WORKERS, solver="gd",
                                           max_iter=3000, tol=0, random_state=0),
    }
    histories = {"dense L-BFGS": lbfgs_history(kind, C, X, y, N_WORKERS)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the paper's solvers stop at max_iter
        for name, est in runs.items():
            histories[name] = est.fit(X, y).history_
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for name, h in histories.items():
        # the best point so far (a line search's rejected trials are rounds too)
        gap = np.minimum.accumulate((h["objective"] - F_star) / F_star)
        keep = (gap > 0) & (h["uplink_bytes"] > 0)
        for ax, key in zip(axes, ("rounds", "uplink_bytes")):
            ax.loglog(h[key][keep], gap[keep], label=name, lw=1.6)
    axes[0].set_xlabel("rounds")
    axes[1].set_xlabel("uplink bytes, all workers")
    axes[0].set_ylabel("relative suboptimality")
    for ax in axes:
        ax.axhline(1e-6, color="grey", lw=0.8, ls=":")
        ax.grid(True, which="major", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"a9a, logistic regression C=1, {N_WORKERS} workers")
    fig.tight_layout()
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
