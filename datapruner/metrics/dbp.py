"""Abbas et al. 2024 (DBP), the per-sample half: d_inter of the sample's cluster × its distance to the centroid.

d_inter_j = mean cosine distance of centroid j to its l nearest other centroids (fitted once, from
the centroids alone, into RUN/metrics/dbp/d_inter.npy). score_dbp_i = d_inter_{c(i)} · dist_i, so

- the mean of score_dbp over a cluster's (surviving) members is its complexity C_j = d_intra · d_inter,
  which lets the `dbp` budget (datapruner/select/dbp.py) work from the scores table alone, and
- inside one cluster score_dbp orders samples exactly as prototypicality does.

`--metric dbp` therefore means DBP quotas with prototypicality order inside each cluster
(`--order hard` keeps the far-from-centroid samples, the paper's choice).
Options (metric_options.dbp): neighbours (l, default 20), tau (0.1), beta (balance floor, 0.5).
"""

from __future__ import annotations

import numpy as np

from datapruner.io.atomic import save_npy
from datapruner.io.rundir import RunDir
from datapruner.metrics.base import FittedMetric, PartData

DEFAULTS = {"neighbours": 20, "tau": 0.1, "beta": 0.5}


def inter_cluster_distance(centroids: np.ndarray, neighbours: int) -> np.ndarray:
    """Mean cosine distance of each centroid to its `neighbours` nearest other centroids (1.0 when k = 1)."""
    import faiss

    c = np.ascontiguousarray(centroids, np.float32)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    k = len(c)
    l = min(neighbours, k - 1)
    if l <= 0:
        return np.ones(k, np.float32)
    index = faiss.IndexFlatIP(c.shape[1])
    index.add(c)
    sim, ids = index.search(c, l + 1)
    others = ids != np.arange(k)[:, None]
    sim = np.where(others, sim, np.nan)
    nearest = np.sort(np.nan_to_num(sim, nan=-np.inf), axis=1)[:, ::-1][:, :l]
    return (1.0 - nearest).mean(axis=1).astype(np.float32)


class DBP(FittedMetric):
    name = "dbp"
    defaults = DEFAULTS
    rules = {"neighbours": ("int", 1, None), "tau": ("float>", 0, None), "beta": ("float", 0, 1)}
    fit_options = ("neighbours",)

    def fit(self, run: RunDir, cfg, options: dict) -> dict:
        centroids = np.load(run.centroids)
        save_npy(self.state_dir(run) / "d_inter.npy", inter_cluster_distance(centroids, int(options["neighbours"])))
        return {}

    def score(self, part: PartData, cfg) -> np.ndarray:
        d_inter = np.load(self.state_dir(part.run) / "d_inter.npy")
        return (d_inter[part.cluster] * part.dist).astype(np.float32)
