"""Each pool scored afresh for each study seed, with datapruner's own metric functions.

The k-means seed, the probe seeds and EL2N's initialisations all follow the study seed, so a verdict that
rests on one lucky clustering shows up as seed variance instead of hiding in a fixed score. A pool is scored
on its own rows only (a smaller pool gets its own clusters), and never on validation or test rows.
Metrics: random (the pipeline's hash), prototypicality (cosine distance to the nearest k-means centroid), dbp
(d_inter of the cluster × that distance, with the `dbp` budget), el2n_student (Paul et al.'s EL2N of the student
architecture, verify/el2n.py: verify's methods el2n and el2n_offset) and el2n_probe (the pipeline's el2n_probe
metric: linear probes on the frozen embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

CLUSTER_METRICS = ("prototypicality", "dbp")


@dataclass
class PoolData:
    """One pool: its rows' ids (shard, key, label), unit embeddings, and the student's input tensors."""

    ids: pa.Table
    emb: np.ndarray  # (n, d) float32 unit rows
    x: object  # student inputs (torch tensor)
    y: object  # class ids 0..C-1 (torch int64 tensor)


def pool_scores(pool: PoolData, metrics: set[str], cfg, seed: int, el2n) -> pa.Table:
    """pool.ids with cluster, dist and a score_<m> column for every metric in `metrics`.

    `el2n(x, y, seed) -> scores` computes the student EL2N (the study knows the student).
    """
    table = pool.ids
    if metrics & {*CLUSTER_METRICS}:
        cluster, dist, centroids = _clusters(pool.emb, cfg, seed)
        table = table.append_column("cluster", pa.array(cluster)).append_column("dist_to_centroid", pa.array(dist))
        if "prototypicality" in metrics:
            table = table.append_column("score_prototypicality", pa.array(dist))
        if "dbp" in metrics:
            table = table.append_column("score_dbp", pa.array(_dbp(centroids, cluster, dist, cfg)))
    if "random" in metrics:
        from datapruner.metrics.random import hashed_uniform

        values = hashed_uniform(seed, table.column("shard").to_pylist(), table.column("key").to_pylist())
        table = table.append_column("score_random", pa.array(values.astype(np.float32)))
    if "el2n_student" in metrics:
        table = table.append_column("score_el2n_student", pa.array(el2n(pool.x, pool.y, seed)))
    if "el2n_probe" in metrics:
        table = table.append_column("score_el2n_probe", pa.array(probe_el2n(pool.emb, pool.y.numpy(), cfg, seed)))
    return table


def _clusters(emb: np.ndarray, cfg, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from datapruner.cluster.assign import assign
    from datapruner.cluster.nearest import CentroidIndex
    from datapruner.cluster.kmeans import default_clusters, fit_centroids, sample_rows, sample_size

    n = len(emb)
    k = min(cfg.clusters or default_clusters(n), n)
    rows = sample_rows([n], sample_size(n, k, cfg.kmeans_sample), seed)[0]
    centroids = fit_centroids(np.ascontiguousarray(emb[rows]), k, cfg.replace(seed=seed))
    cluster, dist = assign(emb, CentroidIndex(centroids, cfg.device))
    return cluster, dist, centroids


def _dbp(centroids: np.ndarray, cluster: np.ndarray, dist: np.ndarray, cfg) -> np.ndarray:
    from datapruner.metrics.dbp import DEFAULTS, inter_cluster_distance

    neighbours = int({**DEFAULTS, **cfg.options_for("dbp")}["neighbours"])
    return (inter_cluster_distance(centroids, neighbours)[cluster] * dist).astype(np.float32)


def probe_el2n(emb: np.ndarray, labels: np.ndarray, cfg, seed: int) -> np.ndarray:
    """The pipeline's el2n_probe metric on in-memory rows: its options, its probes, its seeded chunk order."""
    import torch

    from datapruner.metrics.el2n import DEFAULTS, el2n_scores
    from datapruner.metrics.probes import init_probes, train_on_chunk

    options = {**DEFAULTS, **cfg.options_for("el2n_probe")}
    classes = int(labels.max()) + 1
    params = {k: v.requires_grad_() for k, v in
              init_probes(int(options["models"]), emb.shape[1], classes, int(options["hidden"]), seed).items()}
    optimizer = torch.optim.Adam(params.values(), lr=float(options["lr"]))
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    chunk = int(options["chunk_rows"])
    for _ in range(int(options["epochs"])):
        for lo in rng.permutation(np.arange(0, len(emb), chunk)):
            train_on_chunk(params, optimizer, torch.from_numpy(emb[lo:lo + chunk]),
                           torch.from_numpy(labels[lo:lo + chunk].astype(np.int64)), int(options["batch_size"]), gen)
    return el2n_scores({k: v.detach() for k, v in params.items()}, emb, labels)
