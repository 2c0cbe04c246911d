"""The rows of a run grouped by k-means cluster, a batch of whole clusters at a time (bounded memory).

`assigned_sizes` reads the assign step's files (RUN/clusters/assign);
`cluster_batches` then yields, for consecutive cluster ids holding at most `max_rows` rows together (a larger cluster
comes alone), those rows' embeddings as stored (float16) and where they came from. Memory is about
max(max_rows, largest cluster) × d × 2 bytes; each row is copied once, straight from its (memory-mapped) part
into the batch, and never assigned again (the assign step's files say where it goes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from datapruner.cluster.assign import part_assignment
from datapruner.embed.outputs import read_img_emb
from datapruner.io.rundir import RunDir


@dataclass
class ClusterBatch:
    emb: np.ndarray  # (n, d) the batch's rows as stored (float16: renormalise before comparing)
    cluster: np.ndarray  # (n,) int32
    dist: np.ndarray  # (n,) float32 cosine distance to the centroid
    part: np.ndarray  # (n,) int32 index into run.part_ids()
    row: np.ndarray  # (n,) int64 row within its part


def assigned_sizes(run: RunDir) -> tuple[np.ndarray, list[int]]:
    """The cluster sizes and each part's row count, from the assign step's files."""
    sizes = np.zeros(len(np.load(run.centroids)), np.int64)
    rows = []
    for part in run.part_ids():
        clusters, _ = part_assignment(run, part)
        sizes += np.bincount(clusters, minlength=len(sizes))
        rows.append(len(clusters))
    return sizes, rows


def batch_bounds(sizes: np.ndarray, max_rows: int) -> list[tuple[int, int]]:
    """[lo, hi) cluster id ranges of at most max_rows rows each (one oversized cluster alone)."""
    bounds, lo, rows = [], 0, 0
    for c, size in enumerate(sizes):
        if c > lo and rows + size > max_rows:
            bounds.append((lo, c))
            lo, rows = c, 0
        rows += int(size)
    if len(sizes):
        bounds.append((lo, len(sizes)))
    return bounds


def cluster_batches(run: RunDir, sizes: np.ndarray, max_rows: int) -> Iterator[ClusterBatch]:
    for lo, hi in batch_bounds(sizes, max_rows):
        batch = gather_batch(run, lo, hi, int(sizes[lo:hi].sum()))
        if batch is not None:
            yield batch


def gather_batch(run: RunDir, lo: int, hi: int, n: int) -> ClusterBatch | None:
    """The rows of clusters [lo, hi), in (part, row) order, copied once into preallocated arrays."""
    if n == 0:
        return None
    emb = None
    cluster, dist = np.empty(n, np.int32), np.empty(n, np.float32)
    part_of, row = np.empty(n, np.int32), np.empty(n, np.int64)
    at = 0
    for p, part in enumerate(run.part_ids()):
        clusters, distances = part_assignment(run, part)
        rows = np.flatnonzero((clusters >= lo) & (clusters < hi))
        if not len(rows):
            continue
        stored = read_img_emb(run, part)
        if emb is None:
            emb = np.empty((n, stored.shape[1]), stored.dtype)
        end = at + len(rows)
        emb[at:end], cluster[at:end], dist[at:end] = stored[rows], clusters[rows], distances[rows]
        part_of[at:end], row[at:end] = p, rows
        at = end
    return ClusterBatch(emb, cluster, dist, part_of, row)
