"""Each row's nearest centroid (largest inner product), exactly: faiss proposes, float64 decides.

The answer is argmax_j pair_similarity(x, c_j), ties to the lowest j, so it is the same on every machine,
BLAS and device. faiss's exact flat index gives each row its best two centroids in float32; a row takes
faiss's best when the runner-up cannot reach it within the error bound of a float32 product
(datapruner/cluster/gemm.py: any summation order, any BLAS); the others compare every centroid within that
bound exactly. The similarity returned with it is the float32 dot product with the chosen centroid
(`chosen_similarity`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from datapruner.cluster.gemm import (candidates, entry_bound, exact_rowwise_max, floor_of, pair_similarity, prepare,
                                     products, row_bound)

CHUNK = 65536  # rows per faiss query
CPU = torch.device("cpu")


@dataclass
class NearestStats:
    rows: int = 0
    rechecked: int = 0  # rows the fast pass could not certify (checked again in float32, then exactly)


class CentroidIndex:
    """The centroids in a faiss flat inner-product index (on `device` by the one rule), for exact
    nearest-centroid queries."""

    def __init__(self, centroids: np.ndarray, device: str = "auto"):
        from datapruner.cluster.faiss_backend import flat_ip_index

        self.exact = np.ascontiguousarray(centroids, np.float32)
        self.index, on_gpu = flat_ip_index(self.exact, device)
        # faiss's GPU products may round their inputs (TF32): bounded as bf16 inputs (2⁻⁸ ≥ TF32's 2⁻¹¹)
        self.inputs = "bf16" if on_gpu else "fp32"
        self.bounds = prepare(self.exact, CPU, self.inputs, measure_residual=False)
        self.fp32 = self.bounds if self.inputs == "fp32" else prepare(self.exact, CPU, "fp32")  # for the exact check
        self.stats = NearestStats()

    chunk_rows = CHUNK

    @property
    def k(self) -> int:
        return self.exact.shape[0]

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(centroid id int64, float32 similarity to it) for each float32 row of x."""
        x = np.ascontiguousarray(x, np.float32)
        ids = np.concatenate([self.nearest_chunk(x[lo:lo + CHUNK]) for lo in range(0, len(x), CHUNK)] or
                             [np.empty(0, np.int64)])
        return ids, chosen_similarity(x, self.exact, ids)

    def nearest_chunk(self, x: np.ndarray) -> np.ndarray:
        """faiss's best two centroids per row; the rows whose runner-up may be nearer, decided exactly."""
        if self.k == 1:
            return np.zeros(len(x), np.int64)
        scores, found = self.index.search(x, 2)
        ids = found[:, 0].astype(np.int64)
        a = prepare(x, CPU, self.inputs, measure_residual=False)
        bound = entry_bound(scores[:, 0], row_bound(a, self.bounds), "fp32")  # faiss's output is float32
        unsure = np.flatnonzero(scores[:, 1] >= floor_of(scores[:, 0], bound))
        self.stats.rows += len(ids)
        self.stats.rechecked += len(unsure)
        if len(unsure):
            ids[unsure] = self.exactly(x[unsure])
        return ids

    def exactly(self, x: np.ndarray) -> np.ndarray:
        """Every centroid within the float32 bound of a row's best, compared exactly (ties to the lowest id)."""
        rows = prepare(x, CPU, "fp32")
        s_hat = products(rows, self.fp32)
        top = s_hat.max(axis=1)
        r, cols = candidates(s_hat, floor_of(top, entry_bound(top, row_bound(rows, self.fp32), "fp32")))
        return exact_rowwise_max(r, cols, rows.exact, self.exact, len(x))[0]


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
