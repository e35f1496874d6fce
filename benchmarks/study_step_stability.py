"""Where the compressed round with control variates stops being stable, and
the margin ``step_size="auto"`` keeps to it (the premise of the independent
rule in ``sklearn_dsparse/step_size.py``).

    python benchmarks/study_step_stability.py      # about a minute

The model: every worker holds the same quadratic of curvature L = 1 along each
of its blocks (blocks decouple, so one scalar block suffices), gradient
descent estimates, control variates starting at zero, independent masks (each
worker sends the block with probability p = tau / m, rescaled by 1 / p), n
workers of equal weight.  It is the round of docs/method.md ("One round")
written in NumPy over many independent trials.  For each (n, p) the script
finds, on a grid of 0.025 / L, the smallest step at which some of 100 trials

- diverges: is further from the optimum after 4000 rounds than at the start
  ("limit"; the fit is ``1 / (0.44 L + omega s2 L)``, omega = 1/p - 1,
  s2 = 1/n);
- overshoots: is, after some round, further from the optimum than at the start
  (a transient: the control variates start at zero, so the first messages are
  whole rescaled gradients);

and prints them next to the auto rule's step, its margins to both, and dense
averaging's auto step.
"""

import numpy as np


def run(gamma, n, p, rounds=4000, trials=100, seed=0):
    """(diverged, overshot) for the round at step ``gamma`` (L = 1)."""
    rng = np.random.default_rng(seed)
    largest = 0.0
    x = np.ones(trials)
    h = np.zeros((trials, n))
    hbar = np.zeros(trials)
    for _ in range(rounds):
        sent = rng.random((trials, n)) < p
        g = x[:, None]  # every worker's gradient of x^2 / 2
        A = np.where(sent, (g - h) / p, 0.0).mean(axis=1)
        x = x - gamma * (hbar + A)
        hbar = hbar + p * A
        h = np.where(sent, g, h)
        largest = max(largest, float(np.max(np.abs(x))))
        if not np.isfinite(largest) or largest > 1e6:
            return True, True
    return bool(np.max(np.abs(x)) > 1.0), largest > 1.0


def main():
    print(f"{'n':>4} {'tau/m':>7} {'omega s2':>9} {'limit':>7} {'fit':>7} "
          f"{'overshoot':>9} {'auto':>7} {'margin':>7} {'to overshoot':>12} "
          f"{'dense auto':>10}")
    for n, p in [(2, 1 / 2), (4, 1 / 4), (16, 1 / 4), (16, 1 / 16), (16, 1 / 64),
                 (64, 1 / 64)]:
        omega, s2 = 1 / p - 1, 1 / n
        grid = np.arange(0.05, 3.0, 0.025)
        overshoot = next(g for g in grid if run(g, n, p)[1])
        limit = next(g for g in grid if g >= overshoot and run(g, n, p)[0])
        fit = 1 / (0.44 + omega * s2)
        auto = 1 / (2 * max(1 + s2, 0.5 + omega * s2))
        dense = 1 / (2 * (1 + s2))
        print(f"{n:>4} {p:>7.4f} {omega * s2:>9.3f} {limit:>7.3f} {fit:>7.3f} "
              f"{overshoot:>9.3f} {auto:>7.3f} {limit / auto:>7.2f} "
              f"{overshoot / auto:>12.2f} {dense:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
