"""The rows of a range of k-means clusters, a batch of whole clusters at a time (bounded memory).

`range_batches(run, lo, hi, max_rows)` finds each part's rows of clusters [lo, hi) in the assign step's
by-cluster files (RUN/clusters/assign/bycluster_{i}.npy: a binary search, then only those rows), and yields,
for consecutive clusters holding at most `max_rows` rows together (a larger cluster comes alone), those rows'
embeddings as stored (float16) and where they came from. Memory is about max(max_rows, largest cluster) × d ×
2 bytes; each row is copied once, straight from its (memory-mapped) part into the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from datapruner.cluster.assign import rows_of_clusters
from datapruner.embed.outputs import read_img_emb
from datapruner.io.rundir import RunDir


@dataclass
class ClusterBatch:
    emb: np.ndarray  # (n, d) the batch's rows as stored (float16: renormalise before comparing)
    cluster: np.ndarray  # (n,) int32
    dist: np.ndarray  # (n,) float32 cosine distance to the centroid
    part: np.ndarray  # (n,) int32 index into run.part_ids()
    row: np.ndarray  # (n,) int64 row within its part


def range_sizes(where: list[tuple[np.ndarray, np.ndarray]], lo: int, hi: int) -> np.ndarray:
    sizes = np.zeros(hi - lo, np.int64)
    for clusters, _ in where:
        sizes += np.bincount(clusters - lo, minlength=hi - lo)
    return sizes


def batch_bounds(sizes: np.ndarray, max_rows: int) -> list[tuple[int, int]]:
    """[lo, hi) index ranges of at most max_rows rows each (one oversized cluster alone)."""
    bounds, lo, rows = [], 0, 0
    for c, size in enumerate(sizes):
        if c > lo and rows + size > max_rows:
            bounds.append((lo, c))
            lo, rows = c, 0
        rows += int(size)
    if len(sizes):
        bounds.append((lo, len(sizes)))
    return bounds


def range_batches(run: RunDir, lo: int, hi: int, max_rows: int) -> Iterator[ClusterBatch]:
    where = [rows_of_clusters(run, part, lo, hi) for part in run.part_ids()]
    sizes = range_sizes(where, lo, hi)
    for a, b in batch_bounds(sizes, max_rows):
        batch = gather_batch(run, where, lo + a, lo + b, int(sizes[a:b].sum()))
        if batch is not None:
            yield batch


def gather_batch(run: RunDir, where: list, lo: int, hi: int, n: int) -> ClusterBatch | None:
    """The rows of clusters [lo, hi), part by part, copied once into preallocated arrays."""
    if n == 0:
        return None
    emb = None
    cluster, dist = np.empty(n, np.int32), np.empty(n, np.float32)
    part_of, row = np.empty(n, np.int32), np.empty(n, np.int64)
    at = 0
    for p, (part, (clusters, rows)) in enumerate(zip(run.part_ids(), where)):
        a, b = np.searchsorted(clusters, [lo, hi])
        if a == b:
            continue
        mine = rows[a:b]
        stored = read_img_emb(run, part)
        if emb is None:
            emb = np.empty((n, stored.shape[1]), stored.dtype)
        end = at + len(mine)
        emb[at:end], cluster[at:end], row[at:end] = stored[mine], clusters[a:b], mine
        dist[at:end] = np.load(run.assigned_dist(part), mmap_mode="r")[mine]
        part_of[at:end] = p
        at = end
    return ClusterBatch(emb, cluster, dist, part_of, row)
