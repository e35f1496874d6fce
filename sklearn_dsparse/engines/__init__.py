"""Where workers run and how their messages move."""

from ._tasks import WorkerProcessError
from .base import Engine
from .inprocess import InProcessEngine
from .joblib import JoblibEngine
from .rounds import InProcessRoundEngine, JoblibRoundEngine

__all__ = ["Engine", "InProcessEngine", "InProcessRoundEngine", "JoblibEngine",
           "JoblibRoundEngine", "WorkerProcessError"]


def engine_for(n_jobs):
    """The in-process engine for n_jobs None or 1, else worker tasks on joblib."""
    return InProcessEngine() if n_jobs in (None, 1) else JoblibEngine(n_jobs)


def round_engine_for(n_jobs):
    """``engine_for`` for the solvers whose master drives each round."""
    return InProcessRoundEngine() if n_jobs in (None, 1) else JoblibRoundEngine(n_jobs)
