from ._elastic_net import DistributedSparseElasticNet, DistributedSparseLasso
from ._logistic import DistributedSparseLogisticRegression
from ._ridge import DistributedSparseRidge

__all__ = ["DistributedSparseElasticNet", "DistributedSparseLasso",
           "DistributedSparseLogisticRegression", "DistributedSparseRidge"]
