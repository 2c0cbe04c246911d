"""Abbas et al. 2023 (SemDeDup): semantic near-duplicates inside each k-means cluster.

Definition used here (the authors' code): inside a cluster, samples are put in order — by
distance to the centroid, farthest first for order "hard" (the default; nearest first for "easy"),
ties by (part, row) — and a sample's duplicate score is its maximum cosine similarity to any
*earlier* sample of its cluster (−1 for the first). The score does not depend on ε: the filter
`semdedup:eps=E` removes samples scoring above 1 − E, and `semdedup:fraction=F` removes the F share
with the highest scores (a quantile, i.e. the ε that removes F). The first sample of each cluster,
and of each group of near-duplicates, is never removed by ε. Scores are over all valid samples, so
put semdedup first among the filters (the paper deduplicates before anything else).

The fit is a barrier: it assigns every part, groups the rows by cluster in bounded batches
(datapruner/metrics/cluster_groups.py), scores each cluster in blocks of `block` rows (memory
block² floats), and writes one score file per part under RUN/metrics/semdedup/scores/ (the scores
are held in memory meanwhile: 4 bytes per row).
Options (metric_options.semdedup): order (hard|easy), max_rows (1_000_000), block (4096).
"""

from __future__ import annotations

import numpy as np

from datapruner.errors import DataprunerError
from datapruner.io.atomic import save_npy
from datapruner.io.rundir import RunDir
from datapruner.metrics.base import FittedMetric, PartData
from datapruner.metrics.cluster_groups import ClusterBatch, assigned_sizes, cluster_batches

DEFAULTS = {"order": "hard", "max_rows": 1_000_000, "block": 4096}
SAME_DIRECTION = 2e-6  # float32 x·x of a 1024-d unit row lands within ~1e-6 of 1


def max_similarity_to_earlier(x: np.ndarray, block: int = 4096) -> np.ndarray:
    """For unit rows in order: each row's max cosine similarity (x·x') to any earlier row; −1 for the first."""
    n = len(x)
    out = np.full(n, -1.0, np.float32)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        best = np.full(hi - lo, -1.0, np.float32)
        for clo in range(0, hi, block):
            chi = min(hi, clo + block)
            sim = x[lo:hi] @ x[clo:chi].T
            if chi > lo:  # the diagonal block: only strictly earlier columns count
                sim[np.arange(clo, chi)[None, :] >= np.arange(lo, hi)[:, None]] = -np.inf
            best = np.maximum(best, sim.max(axis=1))
        out[lo:hi] = best
    # float32 rounding leaves x·x of a unit row within a few ulps of 1: such a row has the same direction
    # as an earlier one, so it scores exactly 1 and is a duplicate at every eps > 0
    out[out >= 1.0 - SAME_DIRECTION] = 1.0
    return out


def within_cluster_order(batch: ClusterBatch, order: str) -> np.ndarray:
    """Row indices of the batch sorted by cluster, then by the dedup order, then (part, row)."""
    if order not in ("hard", "easy"):
        raise DataprunerError(f"semdedup order must be hard or easy, got {order!r}")
    key = -batch.dist if order == "hard" else batch.dist
    return np.lexsort((batch.row, batch.part, key, batch.cluster))


def duplicate_scores(batch: ClusterBatch, order: str, block: int) -> np.ndarray:
    """The duplicate score of every row of the batch, in the batch's row order."""
    idx = within_cluster_order(batch, order)
    clusters = batch.cluster[idx]
    starts = np.r_[0, np.flatnonzero(clusters[1:] != clusters[:-1]) + 1, len(idx)]
    scores = np.empty(len(idx), np.float32)
    for lo, hi in zip(starts[:-1], starts[1:]):
        rows = idx[lo:hi]
        scores[rows] = max_similarity_to_earlier(np.asarray(batch.emb[rows], np.float32), block)
    return scores


def scores_path(run: RunDir, part: str):
    return run.metric_dir("semdedup") / f"scores/part-{part}.npy"


class SemDeDup(FittedMetric):
    name = "semdedup"
    defaults = DEFAULTS
    rules = {"order": ("hard", "easy"), "max_rows": ("int", 1, None), "block": ("int", 1, None)}
    fit_options = ("order",)

    def fit(self, run: RunDir, cfg, options: dict) -> dict:
        sizes, rows = assigned_sizes(run)
        out = [np.full(n, -1.0, np.float32) for n in rows]
        for batch in cluster_batches(run, sizes, int(options["max_rows"])):
            scores = duplicate_scores(batch, options["order"], int(options["block"]))
            for p in np.unique(batch.part):
                mine = batch.part == p
                out[p][batch.row[mine]] = scores[mine]
        for part, scores in zip(run.part_ids(), out):
            save_npy(scores_path(run, part), scores)
        return {}

    def score(self, part: PartData, cfg) -> np.ndarray:
        scores = np.load(scores_path(part.run, part.part))
        if len(scores) != part.meta.num_rows:
            raise RuntimeError(f"{scores_path(part.run, part.part)} has {len(scores)} rows for "
                               f"{part.meta.num_rows} samples")
        return scores
