"""The rows of a run grouped by k-means cluster, a batch of whole clusters at a time (bounded memory).

`assigned_sizes` reads the assign step's files (RUN/clusters/assign);
`cluster_batches` then yields, for consecutive cluster ids holding at most `max_rows` rows together (a larger cluster
comes alone), those rows' embeddings and where they came from. Memory is about
max(max_rows, largest cluster) × d × 2 bytes; each batch is one pass over the (memory-mapped) parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from datapruner.cluster.assign import part_assignment
from datapruner.embed.outputs import read_img_emb, unit_rows
from datapruner.io.rundir import RunDir


@dataclass
class ClusterBatch:
    emb: np.ndarray  # (n, d) float32 unit rows of the batch's clusters
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
    parts = run.part_ids()
    for lo, hi in batch_bounds(sizes, max_rows):
        pieces = []
        for p, part in enumerate(parts):
            clusters, dist = part_assignment(run, part)
            rows = np.flatnonzero((clusters >= lo) & (clusters < hi))
            if len(rows):
                pieces.append(ClusterBatch(unit_rows(read_img_emb(run, part)[rows]), clusters[rows], dist[rows],
                                           np.full(len(rows), p, np.int32), rows))
        if pieces:
            yield ClusterBatch(*(np.concatenate([getattr(b, f) for b in pieces]) for f in
                                 ("emb", "cluster", "dist", "part", "row")))
