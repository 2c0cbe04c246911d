"""Nearest-centroid assignment in fixed-size chunks, so memory does not grow with the part size."""

from __future__ import annotations

import numpy as np

CHUNK = 65536


def assign(emb: np.ndarray, index, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(cluster id int32, cosine distance to that centroid float32) for each row of `emb`."""
    n = emb.shape[0]
    clusters = np.empty(n, np.int32)
    dist = np.empty(n, np.float32)
    for lo in range(0, n, chunk):
        x = np.ascontiguousarray(emb[lo:lo + chunk], dtype=np.float32)
        sim, ids = index.search(x, 1)
        clusters[lo:lo + chunk] = ids[:, 0]
        dist[lo:lo + chunk] = 1.0 - sim[:, 0]
    return clusters, dist


def centroids_token(run) -> str:
    """A hash of the run's centroids: what every assignment depends on."""
    import hashlib

    return hashlib.sha256(np.load(run / "clusters/centroids.npy").tobytes()).hexdigest()[:16]


def part_assignment(run, part: str, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """A part's (cluster, distance), computed once per set of centroids and kept in RUN/clusters/assign/.

    Metric fits (EL2N's cluster labels, SemDeDup's grouping) and the score step all read it, so the
    embeddings are assigned once, not once per user.
    """
    from datapruner.cluster.faiss_backend import inner_product_index
    from datapruner.embed.outputs import read_img_emb, save_npy

    token = centroids_token(run)
    cluster_path, dist_path = run / f"clusters/assign/cluster_{part}.npy", run / f"clusters/assign/dist_{part}.npy"
    if run.is_done("assign", part, token):
        return np.load(cluster_path), np.load(dist_path)
    clusters, dist = assign(read_img_emb(run, part), inner_product_index(np.load(run / "clusters/centroids.npy"), device))
    save_npy(cluster_path, clusters)
    save_npy(dist_path, dist)
    run.mark_done("assign", part, token)
    return clusters, dist
