"""Each row's nearest centroid (largest inner product), exactly: a bf16 pass proposes, float64 decides.

The answer is argmax_j pair_similarity(x, c_j), ties to the lowest j (datapruner/cluster/gemm.py has
the bound that makes this exact): rows whose bf16 top-1 is certain (no other centroid's upper bound
reaches its lower bound) take it; the others compare their candidates exactly. The similarity
returned with it is the float32 dot product with the chosen centroid (`chosen_similarity`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from datapruner.cluster import bounded
from datapruner.cluster.bounded import BoundedSearch
from datapruner.cluster.gemm import (Operand, bound_rows, candidates, entry_bound, exact_rowwise_max, floor_of,
                                     gemm_precision, one_pass_precision, pair_similarity, prepare, raw_products,
                                     row_bound, rows_of, top_two, torch_device)

log = logging.getLogger(__name__)

CHUNK = 16384  # rows per product: CHUNK × k float32 scores and bounds in memory


@dataclass
class NearestStats:
    rows: int = 0
    rechecked: int = 0  # rows the fast pass could not certify (checked again in float32, then exactly)


class CentroidIndex:
    """The centroids, ready for exact nearest-centroid queries on `device` in the run's GEMM precision."""

    def __init__(self, centroids: np.ndarray, device: str = "auto", one_pass: bool = False):
        """`one_pass`: each query row is multiplied once (see gemm.one_pass_precision)."""
        self.device = torch_device(device)
        self.precision = (one_pass_precision if one_pass else gemm_precision)(self.device.type)
        self.centroids = prepare(np.asarray(centroids, np.float32), self.device, self.precision)
        self._fp32 = None
        self._bounded = None  # BoundedSearch once built, False once it stopped paying
        self.stats = NearestStats()

    @property
    def chunk_rows(self) -> int:
        """Rows per query that keep memory bounded (more where the bounded search needs rows to share proposals)."""
        return bounded.CHUNK if self.device.type == "cpu" and self.k >= bounded.MIN_CLUSTERS else 65536

    @property
    def k(self) -> int:
        return self.centroids.exact.shape[0]

    def prepare(self, x: np.ndarray, measure_residual: bool = True) -> Operand:
        return prepare(x, self.device, self.precision, measure_residual)

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(centroid id int64, float32 similarity to it) for each float32 row of x."""
        x = np.ascontiguousarray(x, np.float32)
        ids = self.nearest_ids(self.prepare(x))
        return ids, chosen_similarity(x, self.centroids.exact, ids)

    def nearest_ids(self, a: Operand) -> np.ndarray:
        """The exact nearest centroid of each prepared row."""
        n = len(a.exact)
        ids, lo = np.empty(n, np.int64), 0
        while lo < n:
            search = self.bounded_search()
            hi = min(n, lo + (bounded.CHUNK if search else CHUNK))
            ids[lo:hi] = search.nearest(a.exact[lo:hi]) if search else self.nearest_chunk(rows_of(a, lo, hi))
            lo = hi
        return ids

    def bounded_search(self) -> BoundedSearch | None:
        """The triangle-inequality search (datapruner/cluster/bounded.py) on the CPU at large k, while it compares
        rows with few enough centroids to pay; None: one product with every centroid."""
        if self.device.type != "cpu" or self.k < bounded.MIN_CLUSTERS or self._bounded is False:
            return None
        if self._bounded is None:
            self._bounded = BoundedSearch(self.centroids.exact)
        if not self._bounded.worthwhile():
            log.info("nearest centroid: rows are compared with %.0f of %d centroids on average; every centroid from "
                     "here on", self._bounded.compared / self._bounded.rows, self.k)
            self._bounded = False
            return None
        return self._bounded

    def nearest_chunk(self, a: Operand) -> np.ndarray:
        if self.k == 1:
            return np.zeros(len(a.exact), np.int64)
        ids, unsure = self.certified(a, self.centroids)
        self.stats.rows += len(ids)
        self.stats.rechecked += len(unsure)
        if len(unsure) and self.precision == "bf16":  # a float32 pass first: its bound is ~100× tighter
            rows = prepare(a.exact[unsure], torch.device("cpu"), "fp32")
            ids[unsure], still = self.certified(rows, self.centroids_fp32)
            unsure = unsure[still]
        if len(unsure):
            rows = prepare(a.exact[unsure], torch.device("cpu"), "fp32")
            s_hat = raw_products(rows, self.centroids_fp32).numpy()
            top = s_hat.max(axis=1)
            bound = entry_bound(top, row_bound(rows, self.centroids_fp32), "fp32")
            r, cols = candidates(s_hat, floor_of(top, bound))
            ids[unsure], _ = exact_rowwise_max(r, cols, rows.exact, self.centroids.exact, len(unsure))
        return ids

    def certified(self, a: Operand, c: Operand) -> tuple[np.ndarray, np.ndarray]:
        """(the fast pass's nearest centroid, the rows where another centroid may be nearer)."""
        s_hat = raw_products(a, c)
        if s_hat.dtype == torch.float32:  # numpy's two passes beat torch.topk on the CPU
            arg, top, second = top_two(s_hat.numpy())
            index = torch.from_numpy(arg)
        else:
            values, index = torch.topk(s_hat, 2, dim=1)
            top, second = values[:, 0].float().numpy(), values[:, 1].float().numpy()
            index = index[:, 0]
        bound = bound_rows(lambda rows: s_hat[rows].float().numpy(), top, row_bound(a, c), a.precision)
        return index.numpy().astype(np.int64), np.flatnonzero(second >= floor_of(top, bound))

    @property
    def centroids_fp32(self) -> Operand:
        if self._fp32 is None:
            self._fp32 = prepare(self.centroids.exact, torch.device("cpu"), "fp32")
        return self._fp32


def chosen_similarity(x: np.ndarray, centroids: np.ndarray, ids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """x_i·c_{ids_i} in float32: elementwise products summed along the row (numpy's pairwise sum, the same for a
    row whatever batch it is in)."""
    out = np.empty(len(x), np.float32)
    for lo in range(0, len(x), chunk):
        out[lo:lo + chunk] = (x[lo:lo + chunk] * centroids[ids[lo:lo + chunk]]).sum(axis=1)
    return out


def brute_force_nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference: every pair evaluated with pair_similarity, ties to the lowest id (for tests; O(n·k·d) float64)."""
    k = len(centroids)
    x = np.ascontiguousarray(x, np.float32)
    ids = np.empty(len(x), np.int64)
    for i, row in enumerate(x):
        ids[i] = int(np.argmax(pair_similarity(np.broadcast_to(row, (k, row.shape[0])), centroids)))  # first maximum
    return ids, chosen_similarity(x, np.asarray(centroids, np.float32), ids)
