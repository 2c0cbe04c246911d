"""Spherical k-means (the cluster step's room), fitted on a seeded sample of every part's embeddings.

faiss's k-means (faiss.Clustering, spherical; its index on the GPUs with faiss-gpu) iterates from k sample
rows chosen by greedy k-means++ on a subsample, and stops when an iteration improves the objective (the
sum of each row's similarity to its centroid) by less than KMEANS_TOL of it, or after cfg.kmeans_iters
iterations. faiss splits a large cluster to refill an emptied one. The centroids are float32 products:
the same on the same machine and device, within float32 rounding of each other elsewhere; the
assignment that every later step reads is exact (datapruner/cluster/nearest.py).
"""

from __future__ import annotations

import logging
import math

import numpy as np

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
    """(k, d) float32 unit centroids of spherical k-means on the float32 unit rows x, seeded by cfg.seed:
    faiss's iterations from the project's k-means++ start, stopped by the relative objective gain."""
    x = np.ascontiguousarray(x, np.float32)
    start = initial_centroids(x, k, np.random.default_rng(cfg.seed))
    return faiss_kmeans(x, start, cfg.kmeans_iters, cfg.seed, cfg.device)[0]


def faiss_kmeans(x: np.ndarray, start: np.ndarray, iterations: int, seed: int, device: str) -> tuple[np.ndarray, int]:
    """faiss.Clustering from `start`: (the centroids, the iterations it ran)."""
    import faiss

    from datapruner.cluster.faiss_backend import on_device

    k, d = start.shape
    clustering = faiss.Clustering(d, k, kmeans_parameters(iterations, seed))
    faiss.copy_array_to_vector(np.ascontiguousarray(start, np.float32).ravel(), clustering.centroids)
    index, on_gpu = on_device(faiss.IndexFlatIP(d), device)
    clustering.train(x, index)
    stats = clustering.iteration_stats
    log.info("k-means: %d iterations (faiss on %s), objective %.6g", stats.size(), "GPU" if on_gpu else "CPU",
             stats.at(stats.size() - 1).obj)
    centroids = faiss.vector_to_array(clustering.centroids).reshape(k, d)
    return np.ascontiguousarray(centroids, np.float32), stats.size()


def kmeans_parameters(iterations: int, seed: int):
    """Spherical k-means on exactly the rows given (the sample is drawn here, not by faiss), stopped when an
    iteration gains less than KMEANS_TOL of the objective or after `iterations`."""
    import faiss

    params = faiss.ClusteringParameters()
    params.niter, params.seed, params.spherical = iterations, seed, True
    params.early_stop_threshold = KMEANS_TOL
    params.max_points_per_centroid = 1 << 30
    params.min_points_per_centroid = 1
    return params


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
