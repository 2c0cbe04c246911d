"""Spherical k-means (the cluster step's room), fitted on a seeded sample of every part's embeddings.

Lloyd iterations with exact assignments (datapruner/cluster/nearest.py: a bf16 pass plus an exact check,
so the centroids do not depend on the GEMM precision or the device), started from k sample rows
chosen by greedy k-means++ on a subsample, stopped when an iteration improves the objective (the
sum of each row's similarity to its centroid) by less than KMEANS_TOL of it, or after
cfg.kmeans_iters iterations. An emptied cluster restarts at the row farthest from its centroid.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from datapruner.cluster.nearest import CentroidIndex
from datapruner.config import Config
from datapruner.embed.outputs import read_img_emb, unit_rows
from datapruner.errors import DataprunerError
from datapruner.io.atomic import save_npy
from datapruner.io.rundir import RunDir

log = logging.getLogger(__name__)


def default_clusters(n: int) -> int:
    return max(1, min(n, 50_000, round(math.sqrt(n))))


def sample_size(n: int, k: int, requested: int | None) -> int:
    return min(n, requested if requested else 256 * k)


def sample_rows(counts: list[int], size: int, seed: int) -> list[np.ndarray]:
    """Sorted row indices, per part, of a uniform sample of `size` rows out of sum(counts)."""
    total = sum(counts)
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False))
    bounds = np.cumsum([0, *counts])
    return [chosen[(chosen >= lo) & (chosen < hi)] - lo for lo, hi in zip(bounds[:-1], bounds[1:])]


def load_sample(run: RunDir, parts: list[str], rows: list[np.ndarray]) -> np.ndarray:
    blocks = [unit_rows(read_img_emb(run, p)[r]) for p, r in zip(parts, rows) if len(r)]
    return np.ascontiguousarray(np.concatenate(blocks))


KMEANS_TOL = 1e-4  # relative objective gain below which the iterations stop
INIT_SAMPLE_PER_CENTROID = 16  # k-means++ runs on 16·k sample rows


def fit_centroids(x: np.ndarray, k: int, cfg: Config) -> np.ndarray:
    """(k, d) float32 unit centroids of spherical k-means on the float32 unit rows x, seeded by cfg.seed."""
    x = np.ascontiguousarray(x, np.float32)
    centroids = initial_centroids(x, k, np.random.default_rng(cfg.seed))
    rows, previous = None, -np.inf
    for iteration in range(1, cfg.kmeans_iters + 1):
        index = CentroidIndex(centroids, cfg.device)
        rows = rows if rows is not None else index.prepare(x)
        ids = index.nearest_ids(rows)
        sums = cluster_sums(x, ids, k)
        objective = float(np.einsum("ij,ij->", sums, centroids.astype(np.float64)))  # Σ_i x_i·c(i)
        centroids = updated_centroids(x, ids, sums, centroids)
        if objective - previous <= KMEANS_TOL * abs(objective):
            break
        previous = objective
    log.info("k-means: %d iterations (%s on %s), objective %.6g", iteration, index.precision, index.device.type,
             objective)
    return centroids


def initial_centroids(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ (D² sampling on the cosine distance) over a seeded subsample of 16·k rows."""
    pool = x[np.sort(rng.choice(len(x), size=min(len(x), INIT_SAMPLE_PER_CENTROID * k), replace=False))]
    chosen = [int(rng.integers(len(pool)))]
    dist = np.maximum(1.0 - pool @ pool[chosen[0]], 0.0).astype(np.float64)
    for _ in range(1, k):
        total = dist.sum()
        pick = int(rng.choice(len(pool), p=dist / total)) if total > 0 else int(rng.integers(len(pool)))
        chosen.append(pick)
        np.minimum(dist, np.maximum(1.0 - pool @ pool[pick], 0.0), out=dist)
    return np.ascontiguousarray(pool[chosen])


def cluster_sums(x: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """(k, d) float64 sums of each cluster's rows (accumulated in row order: the same on every run)."""
    import torch

    sums = torch.zeros(k, x.shape[1], dtype=torch.float32)
    sums.index_add_(0, torch.from_numpy(ids), torch.from_numpy(x))
    return sums.numpy().astype(np.float64)


def updated_centroids(x: np.ndarray, ids: np.ndarray, sums: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Normalised member sums; an empty cluster takes the row farthest from its centroid (distinct rows)."""
    from datapruner.cluster.nearest import chosen_similarity

    c = sums.copy()
    empty = np.flatnonzero(np.bincount(ids, minlength=len(c)) == 0)
    if len(empty):
        c[empty] = x[np.argsort(chosen_similarity(x, centroids, ids), kind="stable")[:len(empty)]]
    norms = np.linalg.norm(c, axis=1, keepdims=True)
    return np.ascontiguousarray(c / np.where(norms > 0, norms, 1.0), np.float32)


def fit_run_centroids(rd: RunDir, cfg: Config) -> dict:
    """RUN/clusters/centroids.npy: k-means on a seeded sample of every part's embeddings."""
    parts = rd.part_ids()
    counts = [read_img_emb(rd, p).shape[0] for p in parts]
    n = sum(counts)
    if n == 0:
        raise DataprunerError(f"{rd.root} holds no valid embeddings to cluster (see errors/)")
    k = min(cfg.clusters or default_clusters(n), n)
    size = sample_size(n, k, cfg.kmeans_sample)
    x = load_sample(rd, parts, sample_rows(counts, size, cfg.seed))
    log.info("k-means: k=%d on a sample of %d of %d embeddings (d=%d)", k, size, n, x.shape[1])
    save_npy(rd.centroids, fit_centroids(x, k, cfg))
    return {"clusters": k, "sample": size}
