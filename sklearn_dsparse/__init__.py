"""scikit-learn linear models trained by many workers that send sparse messages."""

from .linear_model import (DistributedSparseElasticNet, DistributedSparseLasso,
                           DistributedSparseLogisticRegression, DistributedSparseRidge)

__version__ = "0.1.0"

__all__ = ["DistributedSparseElasticNet", "DistributedSparseLasso",
           "DistributedSparseLogisticRegression", "DistributedSparseRidge",
           "__version__"]
