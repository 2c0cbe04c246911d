"""Abbas et al. 2023 (SemDeDup): semantic near-duplicates inside each k-means cluster.

Definition used here (the authors' code): inside a cluster, samples are put in order — by
distance to the centroid, farthest first for order "hard" (the default; nearest first for "easy"),
ties by (part, row) — and a sample's duplicate score is its maximum cosine similarity to any
*earlier* sample of its cluster (−1 for the first). The score does not depend on ε: the filter
`semdedup:eps=E` removes samples scoring above 1 − E, and `semdedup:fraction=F` removes the F share
with the highest scores (a quantile, i.e. the ε that removes F). The first sample of each cluster,
and of each group of near-duplicates, is never removed by ε. Scores are over all valid samples, so
put semdedup first among the filters (the paper deduplicates before anything else).

The scores are a map step of their own, `dedup`, whose parts are ranges of cluster ids expected to hold
about `max_rows` rows (N/k a cluster): a task reads its clusters' rows from every part (the assign step's
by-cluster files: datapruner/metrics/cluster_groups.py, each row copied once, in batches of whole clusters of
at most max_rows rows), scores each cluster in blocks of `block` rows (memory block² floats), and writes
RUN/metrics/semdedup/groups/{lo}-{hi}.npy: (part, row, score) sorted by part and row. The measure step
reads a part's scores from each group file by binary search. Scores are exact whatever the GEMM
precision: a bf16 (or float32) pass with a proven error bound keeps the earlier rows that can be a
row's maximum, and those pairs are evaluated in float64 (datapruner/cluster/gemm.py).
Options (metric_options.semdedup): order (hard|easy), max_rows (1_000_000), block (1024: on one core of a Zen 3 CPU, 1024-row blocks scored a 1M-row run in 0.83 of the time 4096-row ones took).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

from datapruner.cluster.gemm import (Operand, bound_rows, candidates, exact_rowwise_max, floor_of, gemm_precision,
                                     prepare, products, row_bound, rows_of, top_two, torch_device)
from datapruner.embed.outputs import unit_rows
from datapruner.errors import DataprunerError
from datapruner.io.atomic import save_npy
from datapruner.io.rundir import RunDir
from datapruner.metrics.base import Metric, PartData
from datapruner.metrics.cluster_groups import ClusterBatch, range_batches

DEFAULTS = {"order": "hard", "max_rows": 1_000_000, "block": 1024}
# below this many rows a cluster's float32 pass is faster than bf16 plus its wider exact check, even on AMX
# (docs/metrics.md); the answer is the same either way
BF16_MIN_ROWS = 8192
SAME_DIRECTION = 2e-6  # x·x of a renormalised float32 unit row lands within ~1e-7 of 1


def max_similarity_to_earlier(x: np.ndarray, block: int = 1024, device: str = "cpu") -> np.ndarray:
    """For unit rows in order: each row's max cosine similarity (x·x') to any earlier row; −1 for the first.

    Exact (datapruner/cluster/gemm.py): a bf16 (or float32) pass keeps, per row, the earlier rows whose
    upper bound reaches the row's best lower bound, and those pairs are evaluated in float64."""
    x = np.ascontiguousarray(x, np.float32)
    n = len(x)
    out = np.full(n, -1.0, np.float32)
    if n > 1:
        where = torch_device(device)
        precision = gemm_precision(where.type) if n >= BF16_MIN_ROWS or where.type == "cuda" else "fp32"
        rows = prepare(x, where, precision)
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            pair_rows, pair_cols = earlier_candidates(rows, lo, hi, block)
            _, best = exact_rowwise_max(pair_rows, pair_cols, x[lo:hi], x, hi - lo)
            out[lo:hi] = np.where(np.isfinite(best), best, -1.0)
    # a row with the same direction as an earlier one has x·x' within rounding of 1: it scores exactly 1
    # and is a duplicate at every eps > 0
    out[out >= 1.0 - SAME_DIRECTION] = 1.0
    return out


def earlier_candidates(rows: Operand, lo: int, hi: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(row − lo, column) pairs, sorted, holding every earlier column that can be the maximum of rows lo..hi."""
    a = rows_of(rows, lo, hi)
    best_lower = np.full(hi - lo, -np.inf)
    kept = []  # per column block: (rows, columns, upper bounds)
    for clo in range(0, hi, block):
        chi = min(hi, clo + block)
        b = rows_of(rows, clo, chi)
        s_hat = products(a, b) if chi <= lo else strictly_earlier_products(a)
        two = top_two(s_hat)
        top = two[1]
        bound = bound_rows(lambda i: s_hat[i], top, row_bound(a, b), rows.precision)
        best_lower = np.maximum(best_lower, np.where(np.isfinite(top), top - bound, -np.inf))
        r, c = candidates(s_hat, floor_of(best_lower + bound, bound), two)  # Ŝ + E ≥ the best lower bound so far
        kept.append((r, c + clo, s_hat[r, c] + bound[r]))
    r, c, upper = (np.concatenate(v) for v in zip(*kept))
    final = upper >= best_lower[r]
    r, c = r[final], c[final]
    order = np.lexsort((c, r))
    return r[order], c[order]


def strictly_earlier_products(a: Operand) -> np.ndarray:
    """Ŝ of a block of rows with itself, −inf on and above the diagonal (only strictly earlier rows count).
    On the CPU in float32, BLAS's symmetric rank-k update computes only the triangle that is needed."""
    n = len(a.exact)
    if a.precision == "fp32" and not a.low.is_cuda:
        # x·xᵀ's upper triangle in column-major order is the lower one of the row-major result; BLAS leaves the
        # other triangle as given (−inf)
        upper = blas.ssyrk(1.0, a.exact.T, beta=0.0, c=np.full((n, n), -np.inf, np.float32, order="F"),
                           trans=1, lower=0, overwrite_c=1)
        s_hat = np.ascontiguousarray(upper.T)
        np.fill_diagonal(s_hat, -np.inf)
        return s_hat
    return np.where(np.tri(n, k=-1, dtype=bool), products(a, a), np.float32(-np.inf))


def within_cluster_order(batch: ClusterBatch, order: str) -> np.ndarray:
    """Row indices of the batch sorted by cluster, then by the dedup order, then (part, row)."""
    if order not in ("hard", "easy"):
        raise DataprunerError(f"semdedup order must be hard or easy, got {order!r}")
    key = -batch.dist if order == "hard" else batch.dist
    return np.lexsort((batch.row, batch.part, key, batch.cluster))


def duplicate_scores(batch: ClusterBatch, order: str, block: int, device: str = "cpu") -> np.ndarray:
    """The duplicate score of every row of the batch, in the batch's row order."""
    idx = within_cluster_order(batch, order)
    clusters = batch.cluster[idx]
    starts = np.r_[0, np.flatnonzero(clusters[1:] != clusters[:-1]) + 1, len(idx)]
    scores = np.empty(len(idx), np.float32)
    for lo, hi in zip(starts[:-1], starts[1:]):
        rows = idx[lo:hi]
        scores[rows] = max_similarity_to_earlier(unit_rows(batch.emb[rows]), block, device)
    return scores


GROUP_ROW = np.dtype([("part", "<i4"), ("row", "<i8"), ("score", "<f4")])


def group_ranges(k: int, n: int, max_rows: int) -> list[tuple[int, int]]:
    """The dedup step's ranges of cluster ids: consecutive clusters expected to hold max_rows of the n rows
    together (n / k a cluster)."""
    width = max(1, max_rows * k // max(n, 1))
    return [(lo, min(k, lo + width)) for lo in range(0, k, width)]


def groups(run: RunDir, max_rows: int) -> list[str]:
    """The dedup step's parts, lo-hi, from the centroid count and the parts' row counts (file headers only)."""
    k = np.load(run.centroids, mmap_mode="r").shape[0]
    n = sum(np.load(run.img_emb(part), mmap_mode="r").shape[0] for part in run.part_ids())
    return [group_name(lo, hi) for lo, hi in group_ranges(k, n, max_rows)]


def group_name(lo: int, hi: int) -> str:
    return f"{lo:07d}-{hi:07d}"


def group_path(run: RunDir, group: str):
    return run.metric_dir("semdedup") / f"groups/{group}.npy"


def score_group(run: RunDir, group: str, options: dict, device: str) -> int:
    """Score clusters [lo, hi) of the group named lo-hi, write its (part, row, score) rows; their count."""
    lo, hi = (int(x) for x in group.split("-"))
    pieces = []
    for batch in range_batches(run, lo, hi, int(options["max_rows"])):
        scores = duplicate_scores(batch, options["order"], int(options["block"]), device)
        piece = np.empty(len(scores), GROUP_ROW)
        piece["part"], piece["row"], piece["score"] = batch.part, batch.row, scores
        pieces.append(piece)
    rows = np.concatenate(pieces) if pieces else np.empty(0, GROUP_ROW)
    rows = rows[np.lexsort((rows["row"], rows["part"]))]
    save_npy(group_path(run, group), rows)
    return len(rows)


def part_scores(run: RunDir, part: str, n: int) -> np.ndarray:
    """A part's duplicate scores, gathered from every group file (the dedup step has swept the stale ones;
    the scores do not depend on how clusters are grouped, and every row must have one)."""
    out = np.full(n, np.nan, np.float32)
    index = int(part)  # part ids are the shards' zero-padded indices
    for path in sorted(group_path(run, "*").parent.glob("[0-9]*-[0-9]*.npy")):
        rows = np.load(path, mmap_mode="r")
        a, b = np.searchsorted(rows["part"], [index, index + 1])
        out[rows["row"][a:b]] = rows["score"][a:b]
    if np.isnan(out).any():
        raise RuntimeError(f"semdedup groups hold no score for {int(np.isnan(out).sum())} rows of part {part}")
    return out


class SemDeDup(Metric):
    """Scored by the dedup map step (score_group); `score` reads a part's scores back."""

    name = "semdedup"
    defaults = DEFAULTS
    rules = {"order": ("hard", "easy"), "max_rows": ("int", 1, None), "block": ("int", 1, None)}
    fit_options = ("order",)

    def score(self, part: PartData, cfg) -> np.ndarray:
        return part_scores(part.run, part.part, part.meta.num_rows)
