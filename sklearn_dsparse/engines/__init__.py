"""Where workers run and how their messages move."""

from .base import Engine
from .inprocess import InProcessEngine
from .joblib import JoblibEngine, WorkerProcessError

__all__ = ["Engine", "InProcessEngine", "JoblibEngine", "WorkerProcessError"]


def engine_for(n_jobs):
    """The in-process engine for n_jobs None or 1, else worker tasks on joblib."""
    return InProcessEngine() if n_jobs in (None, 1) else JoblibEngine(n_jobs)
