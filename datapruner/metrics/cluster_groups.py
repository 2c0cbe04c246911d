"""The rows of a run grouped by k-means cluster, a batch of whole clusters at a time (bounded memory).

`assign_parts` writes each part's (cluster, distance) once to a scratch folder; `cluster_batches`
then yields, for consecutive cluster ids holding at most `max_rows` rows together (a larger cluster
comes alone), those rows' embeddings and where they came from. Memory is about
max(max_rows, largest cluster) × d × 2 bytes; each batch is one pass over the (memory-mapped) parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from datapruner.cluster.assign import assign
from datapruner.cluster.faiss_backend import inner_product_index
from datapruner.embed.outputs import read_img_emb, save_npy
from datapruner.io.rundir import RunDir


@dataclass
class ClusterBatch:
    emb: np.ndarray  # (n, d) float16 rows of the batch's clusters
    cluster: np.ndarray  # (n,) int32
    dist: np.ndarray  # (n,) float32 cosine distance to the centroid
    part: np.ndarray  # (n,) int32 index into run.part_ids()
    row: np.ndarray  # (n,) int64 row within its part


def assign_parts(run: RunDir, scratch: Path, device: str = "auto") -> np.ndarray:
    """Write scratch/{cluster,dist}_{part}.npy for every part; return the cluster sizes."""
    centroids = np.load(run / "clusters/centroids.npy")
    index = inner_product_index(centroids, device)
    sizes = np.zeros(len(centroids), np.int64)
    for part in run.part_ids():
        clusters, dist = assign(read_img_emb(run, part), index)
        save_npy(scratch / f"cluster_{part}.npy", clusters)
        save_npy(scratch / f"dist_{part}.npy", dist)
        sizes += np.bincount(clusters, minlength=len(sizes))
    return sizes


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


def cluster_batches(run: RunDir, scratch: Path, sizes: np.ndarray, max_rows: int) -> Iterator[ClusterBatch]:
    parts = run.part_ids()
    for lo, hi in batch_bounds(sizes, max_rows):
        pieces = []
        for p, part in enumerate(parts):
            clusters = np.load(scratch / f"cluster_{part}.npy", mmap_mode="r")
            rows = np.flatnonzero((clusters >= lo) & (clusters < hi))
            if len(rows):
                dist = np.load(scratch / f"dist_{part}.npy", mmap_mode="r")
                pieces.append(ClusterBatch(np.asarray(read_img_emb(run, part)[rows]), clusters[rows], dist[rows],
                                           np.full(len(rows), p, np.int32), rows))
        if pieces:
            yield ClusterBatch(*(np.concatenate([getattr(b, f) for b in pieces]) for f in
                                 ("emb", "cluster", "dist", "part", "row")))
