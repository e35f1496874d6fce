"""Where workers run and how their messages move."""

from ..exceptions import WorkerProcessError
from .asynchronous import InProcessAsyncEngine, JoblibAsyncEngine
from .base import Engine
from .inprocess import InProcessEngine
from .joblib import JoblibEngine
from .rounds import InProcessRoundEngine, JoblibRoundEngine

__all__ = ["Engine", "InProcessAsyncEngine", "InProcessEngine", "InProcessRoundEngine",
           "JoblibAsyncEngine", "JoblibEngine", "JoblibRoundEngine",
           "WorkerProcessError"]


def engine_for(n_jobs, master_address=None, max_staleness=None):
    """The in-process engine for n_jobs None or 1, else worker tasks on joblib
    connecting back to ``master_address``; with a ``max_staleness``, their
    asynchronous versions."""
    if max_staleness is not None:
        if n_jobs in (None, 1):
            return InProcessAsyncEngine(max_staleness)
        return JoblibAsyncEngine(n_jobs, master_address, max_staleness)
    if n_jobs in (None, 1):
        return InProcessEngine()
    return JoblibEngine(n_jobs, master_address)


def round_engine_for(n_jobs, master_address=None):
    """``engine_for`` for the solvers whose master drives each round."""
    if n_jobs in (None, 1):
        return InProcessRoundEngine()
    return JoblibRoundEngine(n_jobs, master_address)
