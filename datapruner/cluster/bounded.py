"""Nearest centroid without comparing every row with every centroid, and still exact.

A row x first finds a good centroid c* cheaply: the best member of the best of ~√k groups of
centroids. Then the triangle inequality bounds which centroids can beat it: with unit rows
(‖c‖² = 1 + ε, |ε| ≤ ε_max from float32 rounding), x·c ≥ x·c* implies ‖x − c‖² ≤ ‖x − c*‖² + 2ε_max,
so ‖c* − c‖ ≤ d* + √(d*² + 2ε_max) with d* = ‖x − c*‖ (Elkan 2003's lemma, with the slack). Every
centroid within that radius of c* is compared exactly (the float32 pass + float64 check of
datapruner/cluster/gemm.py, ties to the lowest id), so the answer is brute force's whatever c* was.

It pays when rows sit much nearer their centroid than centroids sit to each other: on Fashion-MNIST
embeddings (k = 245) the radius holds 3-13 % of the centroids on average; on noisy synthetic rows it
holds all of them, and the index then answers by brute force (`worthwhile` is measured on the first
queries).
"""

from __future__ import annotations

import numpy as np

from datapruner.cluster.gemm import (NORM_SLACK, ROUNDING_SLACK, TINY, accumulation_gammas, candidates,
                                     exact_rowwise_max, floor_of, row_norms)

MIN_CLUSTERS = 2048  # below this, one product with every centroid is as fast (measured: 200k × 512 rows, k = 1000)
PROBES = 3  # groups searched for the proposal
CHUNK = 262144  # rows per query: enough rows share each proposal for its products to be matrix products
WORTHWHILE_SHARE = 0.1  # the bounded search is kept while its rows compare with at most this share of centroids
DISTANCE_SLACK = 1e-12  # covers float64 rounding of squared distances between ≤ 4096-d unit rows (~1e-13)


class BoundedSearch:
    """The centroids' groups and sorted pairwise distances, for exact nearest-centroid queries."""

    def __init__(self, centroids: np.ndarray):
        self.c = np.ascontiguousarray(centroids, np.float32)
        c64 = self.c.astype(np.float64)
        self.sq = np.einsum("ij,ij->i", c64, c64)
        self.eps_max = float(np.abs(self.sq - 1.0).max())
        dist2 = np.maximum(self.sq[:, None] + self.sq[None, :] - 2.0 * (c64 @ c64.T), 0.0)
        self.order = np.argsort(dist2, axis=1, kind="stable").astype(np.int32)
        self.sorted_dist2 = np.take_along_axis(dist2, self.order, axis=1)
        group_of, self.heads = centroid_groups(self.c, max(1, int(round(np.sqrt(len(self.c))))))
        self.members = [np.flatnonzero(group_of == g) for g in range(len(self.heads))]
        self.compared = 0  # centroids compared exactly, summed over rows (the worthwhile test reads it)
        self.rows = 0

    @property
    def k(self) -> int:
        return len(self.c)

    def worthwhile(self) -> bool:
        return self.rows == 0 or self.compared / self.rows <= WORTHWHILE_SHARE * self.k

    def nearest(self, x: np.ndarray) -> np.ndarray:
        """The exact nearest centroid (largest float64 similarity, lowest id on ties) of each float32 unit row."""
        x = np.ascontiguousarray(x, np.float32)
        first, similarity = self.proposal(x)
        reach = self.reach(self.squared_radius(x, first, similarity), first)
        x_norm, c_norm = row_norms(x), np.sqrt(self.sq) * NORM_SLACK
        ids = np.empty(len(x), np.int64)
        # rows sharing a proposal and a reach within 2× of each other share one product
        key = np.lexsort((reach, first))
        bucket = np.ceil(np.log2(reach[key])).astype(np.int64)
        edges = np.r_[0, np.flatnonzero((np.diff(first[key]) != 0) | (np.diff(bucket) != 0)) + 1, len(key)]
        xs, x_norm, first, reach = x[key], x_norm[key], first[key], reach[key]  # one gather; blocks are slices
        for lo, hi in zip(edges[:-1], edges[1:]):
            cand = np.sort(self.order[first[lo], :reach[hi - 1]])
            ids[key[lo:hi]] = cand[exact_best(xs[lo:hi], self.c[cand], x_norm[lo:hi], c_norm[cand])]
            self.compared += (hi - lo) * len(cand)
        self.rows += len(x)
        return ids

    def proposal(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A near centroid for each row and the float32 similarity to it: the best member of its PROBES best groups
        (not necessarily the nearest, which only widens the exact comparison)."""
        best_groups = np.argsort(-(x @ self.heads.T), axis=1)[:, :PROBES]
        first, best = np.zeros(len(x), np.int64), np.full(len(x), -np.inf, np.float32)
        for probe in best_groups.T:
            for g in np.unique(probe):
                rows, members = np.flatnonzero(probe == g), self.members[g]
                sims = x[rows] @ self.c[members].T
                pick = sims.argmax(axis=1)
                value = sims[np.arange(len(rows)), pick]
                better = value > best[rows]
                first[rows[better]], best[rows[better]] = members[pick[better]], value[better]
        return first, best

    def reach(self, radius2: np.ndarray, first: np.ndarray) -> np.ndarray:
        """How many of the proposal's nearest centroids (itself included) lie within each row's radius."""
        reach = np.empty(len(first), np.int64)
        by_first = np.argsort(first, kind="stable")
        for rows in np.split(by_first, np.flatnonzero(np.diff(first[by_first])) + 1):
            reach[rows] = np.searchsorted(self.sorted_dist2[first[rows[0]]], radius2[rows], side="right")
        return np.maximum(reach, 1)

    def squared_radius(self, x: np.ndarray, first: np.ndarray, similarity: np.ndarray) -> np.ndarray:
        """(d* + √(d*² + 2ε_max))², with slack: no centroid farther than this from the proposal can be nearer.
        d*² is bounded above from the float32 similarity to the proposal (error ≤ γ_d·‖x‖·‖c‖) and norms."""
        gamma, _ = accumulation_gammas(x.shape[1])
        sq_x = np.einsum("ij,ij->i", x, x).astype(np.float64) / (1 - gamma)
        lowest = similarity.astype(np.float64) - gamma * np.sqrt(sq_x * self.sq[first])
        d2 = np.maximum(sq_x + self.sq[first] - 2.0 * lowest, 0.0) + DISTANCE_SLACK
        return (np.sqrt(d2) + np.sqrt(d2 + 2.0 * self.eps_max)) ** 2 + DISTANCE_SLACK


def exact_best(x: np.ndarray, c: np.ndarray, x_norm: np.ndarray, c_norm: np.ndarray) -> np.ndarray:
    """The column of c with the largest exact similarity to each row of x (lowest column on ties); the norms are
    upper bounds (float64) of the rows' and columns' norms."""
    if len(c) == 1:
        return np.zeros(len(x), np.int64)
    s_hat = x @ c.T
    top = s_hat.max(axis=1)
    gamma32, gamma64 = accumulation_gammas(x.shape[1])
    bound = (gamma32 + gamma64) * x_norm * c_norm.max() + TINY + ROUNDING_SLACK  # row_bound + entry_bound in fp32
    r, cols = candidates(s_hat, floor_of(top, bound))
    winner, _ = exact_rowwise_max(r, cols, x, c, len(x))
    return winner


def centroid_groups(c: np.ndarray, groups: int, iterations: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(group of each centroid, unit group heads): a few spherical Lloyd steps from evenly spaced centroids.
    Only the proposal's quality depends on them, never the answer."""
    heads = c[np.linspace(0, len(c) - 1, groups).astype(np.int64)]
    for _ in range(iterations):
        group = (c @ heads.T).argmax(axis=1)
        sums = np.zeros_like(heads)
        np.add.at(sums, group, c)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        heads = np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), heads)
    group = (c @ heads.T).argmax(axis=1)
    return group, np.ascontiguousarray(heads, np.float32)
