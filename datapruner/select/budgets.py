"""The built-in budgets that need no metric: one global ranking, or the same quota for every cluster."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from datapruner.config import Config
from datapruner.select.quotas import cluster_quotas


def global_budget(table: pa.Table, alive: np.ndarray, k: int, cfg: Config):
    return None


def uniform_cluster_budget(table: pa.Table, alive: np.ndarray, k: int, cfg: Config) -> np.ndarray:
    return uniform_quotas(alive_cluster_sizes(table, alive), k)


def uniform_quotas(sizes: np.ndarray, k: int) -> np.ndarray:
    """The same share of k for every non-empty cluster (capped by its size, the rest handed on)."""
    return cluster_quotas(np.full(len(sizes), k / max(1, (sizes > 0).sum())) * (sizes > 0), sizes, k)


def alive_cluster_sizes(table: pa.Table, alive: np.ndarray) -> np.ndarray:
    clusters = table.column("cluster").to_numpy()
    return np.bincount(clusters[alive], minlength=int(clusters.max()) + 1 if len(clusters) else 0)
