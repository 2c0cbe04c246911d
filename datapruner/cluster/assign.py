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
