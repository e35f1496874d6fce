"""What ``verbose`` prints: a compact line every few seconds, not one per epoch.

``verbose=1``: a line when the fit starts (and, in a new process, one while
the compiled kernels load), then at most one line every ``INTERVAL`` seconds
and a last one when the fit ends.  ``verbose >= 2``: a line per iteration
(``"newton"``) or epoch (the other solvers).  Each line holds what a user
watches: the objective, the rounds and uplink bytes so far, the elapsed time
and the rate.
"""

import sys
import time

#: Seconds between two progress lines at ``verbose=1``.
INTERVAL = 2.0

_kernels_loaded = False


def _megabytes(n_bytes):
    return f"{n_bytes / 1e6:.3g} MB"


class Progress:
    """Progress lines of one fit; every method does nothing when not verbose.

    ``unit`` names a step of the loop ("iteration" or "epoch"); objectives
    are passed already in the estimator's own scale.
    """

    def __init__(self, verbose, solver, unit, max_iter, stream=None):
        self.verbose = int(verbose)
        self.solver = solver
        self.unit = unit
        self.max_iter = max_iter
        self.stream = stream
        self._started = self._last = time.perf_counter()

    def _print(self, text):
        print(f"[{self.solver}] {text}", file=self.stream or sys.stdout, flush=True)

    def start(self, n_workers, n_parameters):
        """The opening line; before a process's first fit, say that the
        compiled kernels load (the first fit after installing compiles
        them), so that a silent pause is explained."""
        if not self.verbose:
            return
        if not _kernels_loaded:
            self._print("loading the compiled kernels (first fit in this process; "
                        "the first fit after installing also compiles them)")
        self._print(f"fitting {n_parameters} parameters with {n_workers} workers, "
                    f"at most {self.max_iter} {self.unit}s")
        self._started = self._last = time.perf_counter()

    def update(self, step, objective, counters, detail=""):
        """After ``step`` (1-based) of the loop: a line when due."""
        _mark_kernels_loaded()
        now = time.perf_counter()
        if self.verbose >= 2 or (self.verbose and now - self._last >= INTERVAL):
            self._last = now
            self._print(self._status(step, objective, counters, now) + detail)

    def end(self, step, objective, counters, outcome):
        """The closing line: where the fit stopped, and why."""
        _mark_kernels_loaded()
        if self.verbose:
            now = time.perf_counter()
            self._print(f"{outcome}: " + self._status(step, objective, counters, now))

    def _status(self, step, objective, counters, now):
        elapsed = now - self._started
        rate = step / elapsed if elapsed > 0 else float("inf")
        return (f"{self.unit} {step}/{self.max_iter}, objective {objective:.10g}, "
                f"rounds {counters[0]}, uplink {_megabytes(counters[1])}, "
                f"{elapsed:.2f} s ({rate:.3g} {self.unit}s/s)")


def _mark_kernels_loaded():
    global _kernels_loaded
    _kernels_loaded = True
