"""Assignment (the assign step's room): each part's nearest centroid and cosine distance, computed once per set of centroids.

Metric fits (EL2N's cluster labels), SemDeDup's groups and the measure step all read these files,
so the embeddings are assigned once, not once per user. Each part's rows are also stored in cluster order,
so a task that reads some clusters reads only their rows of each part. Chunks bound the memory. The nearest centroid
is exact (datapruner/cluster/nearest.py: largest float64 similarity, lowest id on ties) whatever the
GEMM precision; the distance is 1 − that similarity, as float32.
"""

from __future__ import annotations

import numpy as np

from datapruner.embed.outputs import unit_rows
from datapruner.io.atomic import save_npy
from datapruner.io.rundir import RunDir



def assign(emb: np.ndarray, index, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cluster id int32, cosine distance to that centroid float32) for each row of `emb`."""
    n = emb.shape[0]
    chunk = chunk or index.chunk_rows
    clusters = np.empty(n, np.int32)
    dist = np.empty(n, np.float32)
    for lo in range(0, n, chunk):
        ids, sims = index.nearest(np.ascontiguousarray(unit_rows(emb[lo:lo + chunk])))
        clusters[lo:lo + chunk] = ids
        dist[lo:lo + chunk] = 1.0 - sims
    return clusters, dist


def assign_parts(rd: RunDir, part_ids: list[str], device: str):
    """Each part's nearest centroid and distance to it, saved; yields (part, result) as each is written."""
    from datapruner.cluster.nearest import CentroidIndex
    from datapruner.embed.outputs import read_img_emb

    index = CentroidIndex(np.load(rd.centroids), device)
    for part in part_ids:
        clusters, dist = assign(read_img_emb(rd, part), index)
        save_npy(rd.assigned_cluster(part), clusters)
        save_npy(rd.assigned_dist(part), dist)
        save_npy(rd.assigned_by_cluster(part), by_cluster(clusters))
        yield part, {"rows": len(clusters)}


def by_cluster(clusters: np.ndarray) -> np.ndarray:
    """(2, n) int32: the cluster ids sorted, over the rows they belong to (ties in row order)."""
    order = np.argsort(clusters, kind="stable").astype(np.int32)
    return np.stack([clusters[order], order])


def rows_of_clusters(run: RunDir, part: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster ids, rows) of the part's rows assigned to clusters [lo, hi), in (cluster, row) order: a
    binary search of its by-cluster file (made from its cluster file for a run assigned before that existed)."""
    path = run.assigned_by_cluster(part)
    table = np.load(path, mmap_mode="r") if path.exists() else by_cluster(np.load(run.assigned_cluster(part)))
    a, b = np.searchsorted(table[0], [lo, hi])
    return np.array(table[0, a:b]), np.array(table[1, a:b])


def part_assignment(run: RunDir, part: str) -> tuple[np.ndarray, np.ndarray]:
    """A part's (cluster, distance), as the assign step wrote them."""
    return np.load(run.assigned_cluster(part)), np.load(run.assigned_dist(part))
