"""Assignment (the assign step's room): each part's nearest centroid and cosine distance, computed once per set of centroids.

Metric fits (EL2N's cluster labels, SemDeDup's grouping) and the score step all read these files,
so the embeddings are assigned once, not once per user. Chunks bound the memory. The nearest centroid
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
        yield part, {"rows": len(clusters)}


def part_assignment(run: RunDir, part: str) -> tuple[np.ndarray, np.ndarray]:
    """A part's (cluster, distance), as the assign step wrote them."""
    return np.load(run.assigned_cluster(part)), np.load(run.assigned_dist(part))
