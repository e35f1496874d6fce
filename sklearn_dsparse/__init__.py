"""scikit-learn linear models trained by many workers that send sparse messages."""

__version__ = "0.1.0"

__all__ = ["DistributedSparseElasticNet", "DistributedSparseLasso",
           "DistributedSparseLogisticRegression", "DistributedSparseRidge",
           "FileShards", "__version__"]


def __getattr__(name):
    # The estimators (and scikit-learn) load on first use, so that a worker
    # process, which needs only the engines and the mathematics, stays small.
    if name == "FileShards":
        from ._file_data import FileShards

        return FileShards
    if name in __all__:
        from . import linear_model

        return getattr(linear_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
