from datapruner.metrics.base import Metric, PartData
from datapruner.metrics.registry import available, get_metric, register

__all__ = ["Metric", "PartData", "available", "get_metric", "register"]
