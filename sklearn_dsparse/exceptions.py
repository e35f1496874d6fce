"""Errors of sklearn-dsparse that scikit-learn does not define.

Non-convergence is scikit-learn's ``sklearn.exceptions.ConvergenceWarning``;
data that overflow the loss raise ``FloatingPointError``; bad parameters
raise ``ValueError`` or ``sklearn.utils._param_validation``'s
``InvalidParameterError``, as in scikit-learn.
"""

__all__ = ["WorkerProcessError"]


class WorkerProcessError(RuntimeError):
    """A worker task died, could not be started, or broke the protocol.

    Raised by ``fit`` when ``n_jobs`` runs the workers as tasks of a joblib
    backend (loky, Dask): a task that ends (killed, out of memory), tasks that
    have not all connected within ``SKLEARN_DSPARSE_CONNECT_TIMEOUT`` seconds
    (the backend has fewer free slots than tasks), or a message the master
    does not expect.  Every task of the fit has been told to end when it is
    raised.
    """
