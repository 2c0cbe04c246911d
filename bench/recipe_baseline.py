"""The SemDeDup → DBP recipe done the plain way (faiss k-means and flat search, numpy blocks, fp32): the
baseline of bench/semdedup_dbp_recipe.py."""

from __future__ import annotations

import time

import numpy as np
from process_meter import now, peak_rss_mib

from datapruner.embed.outputs import read_img_emb, unit_rows
from datapruner.io.rundir import RunDir

EPS = 0.05
KEEP = 0.3
ITERATIONS = 100


def baseline_kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, float, int]:
    """faiss's spherical k-means, all 100 iterations (faiss ≥ 1.9 would stop early without early_stop_threshold)."""
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=ITERATIONS, spherical=True, seed=seed,
                      max_points_per_centroid=max(256, len(x) // k + 1), verbose=False, early_stop_threshold=-1.0)
    t = now()
    km.train(x)
    return km.centroids.copy(), now() - t, len(km.iteration_stats)


def objective(x: np.ndarray, centroids: np.ndarray) -> float:
    """Σ_i max_j x_i·c_j (what spherical k-means maximises), in float64 from faiss's exact fp32 search."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(centroids, np.float32))
    return float(index.search(x, 1)[0][:, 0].astype(np.float64).sum())


def baseline_assign(run: RunDir, centroids: np.ndarray):
    """faiss flat IP over every row; the distance 1 − x·c to the chosen centroid with x·c summed along the row in
    float32, as datapruner writes it (faiss's own value can differ in the last bit, which alone would reorder rows
    whose distances differ by 1e-7 at a quota boundary)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    embs, clusters, dists = [], [], []
    for part in run.part_ids():
        x = unit_rows(read_img_emb(run, part))
        _, ids = index.search(x, 1)
        ids = ids[:, 0].astype(np.int32)
        sim = (x * centroids[ids]).sum(axis=1)
        embs.append(x)
        clusters.append(ids)
        dists.append(1.0 - sim)
    return embs, clusters, dists


def baseline_semdedup(emb: np.ndarray, cluster: np.ndarray, dist: np.ndarray, part: np.ndarray, row: np.ndarray,
                      block: int = 4096) -> np.ndarray:
    """Hard order (farthest first, ties by part, row); max fp32 similarity to earlier rows of the cluster."""
    idx = np.lexsort((row, part, -dist, cluster))
    starts = np.r_[0, np.flatnonzero(np.diff(cluster[idx])) + 1, len(idx)]
    scores = np.empty(len(idx), np.float32)
    for lo, hi in zip(starts[:-1], starts[1:]):
        members = idx[lo:hi]
        x = emb[members]
        best = np.full(len(x), -1.0, np.float32)
        for r in range(0, len(x), block):
            sim = x[r:r + block] @ x[:r + block].T
            sim[np.arange(sim.shape[1])[None, :] >= np.arange(r, r + len(sim))[:, None]] = -np.inf
            best[r:r + block] = np.maximum(sim.max(axis=1), -1.0)
        scores[members] = best
    scores[scores >= 1.0 - 2e-6] = 1.0
    return scores


def baseline_inter_distance(centroids: np.ndarray, l: int = 20) -> np.ndarray:
    import faiss

    c = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(c.shape[1])
    index.add(c)
    sim, ids = index.search(c, l + 1)
    sim = np.where(ids != np.arange(len(c))[:, None], sim, np.nan)
    nearest = np.sort(np.nan_to_num(sim, nan=-np.inf), axis=1)[:, ::-1][:, :l]
    return (1.0 - nearest).mean(axis=1).astype(np.float32)


def baseline_dbp_keep(cluster, dist, part, row, alive, d_inter, k_clusters, keep, tau=0.1, beta=0.5) -> np.ndarray:
    from datapruner.select.quotas import cluster_quotas

    score = (d_inter[cluster] * dist).astype(np.float32)
    sizes = np.bincount(cluster[alive], minlength=k_clusters)
    nonempty = sizes > 0
    d_intra = np.bincount(cluster[alive], dist[alive].astype(np.float64), k_clusters)
    complexity = np.bincount(cluster[alive], score[alive].astype(np.float64), k_clusters)
    complexity = np.divide(complexity, sizes, out=np.zeros(k_clusters), where=nonempty)
    del d_intra  # the recipe's C = mean(d_inter · dist) already holds d_intra
    logits = np.where(nonempty, complexity / tau, -np.inf)
    p = np.exp(logits - logits[nonempty].max())
    p /= p.sum()
    total = round(keep * len(cluster))
    lower = np.minimum(int(np.floor(beta * total / nonempty.sum())), sizes) * nonempty
    quotas = cluster_quotas(p * total, sizes, total, lower)
    order = np.lexsort((row, part, -score.astype(np.float64), cluster))
    order = order[alive[order]]
    starts = np.searchsorted(cluster[order], np.arange(k_clusters))
    rank = np.arange(len(order)) - starts[cluster[order]]
    kept = np.zeros(len(cluster), bool)
    kept[order[rank < quotas[cluster[order]]]] = True
    return kept


def run_baseline(run: RunDir, centroids: np.ndarray) -> dict:
    seconds, wall = {}, time.perf_counter()
    t = now()
    embs, clusters, dists = baseline_assign(run, centroids)
    seconds["assign"] = now() - t
    t = now()
    emb, cluster, dist = np.concatenate(embs), np.concatenate(clusters), np.concatenate(dists)
    del embs
    part = np.concatenate([np.full(len(c), p, np.int32) for p, c in enumerate(clusters)])
    row = np.concatenate([np.arange(len(c)) for c in clusters])
    seconds["gather"] = now() - t
    t = now()
    scores = baseline_semdedup(emb, cluster, dist, part, row)
    seconds["semdedup_similarity"] = now() - t
    del emb
    t = now()
    alive = ~(scores.astype(np.float64) > 1.0 - EPS)
    kept = baseline_dbp_keep(cluster, dist, part, row, alive, baseline_inter_distance(centroids), len(centroids), KEEP)
    seconds["dbp"] = now() - t
    keys = {f"{p:05d}{r:07d}" for p, r in zip(part[kept], row[kept])}
    return {"seconds": seconds, "kept": keys, "removed_by_semdedup": int((~alive).sum()), "rss": peak_rss_mib(),
            "wall": time.perf_counter() - wall}
