"""Where workers run and how their messages move."""

from ..exceptions import WorkerProcessError
from .base import Engine
from .inprocess import InProcessEngine
from .joblib import JoblibEngine
from .rounds import InProcessRoundEngine, JoblibRoundEngine

__all__ = ["Engine", "InProcessEngine", "InProcessRoundEngine", "JoblibEngine",
           "JoblibRoundEngine", "WorkerProcessError"]


def engine_for(n_jobs, master_address=None):
    """The in-process engine for n_jobs None or 1, else worker tasks on joblib
    connecting back to ``master_address``."""
    if n_jobs in (None, 1):
        return InProcessEngine()
    return JoblibEngine(n_jobs, master_address)


def round_engine_for(n_jobs, master_address=None):
    """``engine_for`` for the solvers whose master drives each round."""
    if n_jobs in (None, 1):
        return InProcessRoundEngine()
    return JoblibRoundEngine(n_jobs, master_address)
