"""The cluster barrier: spherical k-means fitted on a seeded sample of every part's embeddings."""

from __future__ import annotations

import logging
import math

import numpy as np

from datapruner.cluster.faiss_backend import use_gpu
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


def fit_centroids(x: np.ndarray, k: int, cfg: Config) -> np.ndarray:
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=cfg.kmeans_iters, spherical=True, seed=cfg.seed,
                      gpu=use_gpu(cfg.device), max_points_per_centroid=max(256, len(x) // k + 1), verbose=False)
    km.train(x)
    return km.centroids.astype(np.float32)


def token(ctx, part: str) -> str:
    """What the centroids depend on: the embeddings and the k-means settings."""
    from datapruner.embed.inputs import token as embed_token
    from datapruner.steps import token_of

    cfg = ctx.cfg
    return token_of(embed_token(ctx), cfg.clusters, cfg.kmeans_sample, cfg.kmeans_iters, cfg.seed)


def outputs(run: RunDir, part: str) -> list:
    return [run.centroids]


def run(ctx, part: str) -> dict:
    rd, cfg = ctx.run, ctx.cfg
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
