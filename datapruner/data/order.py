"""Which kept samples a rank and a DataLoader worker read in an epoch, and in what order.

The epoch's order is the pruned-shard order with the shards permuted (seeded by seed and epoch). Rank r of R
takes the r-th of R contiguous, equal slices of it (sizes differ by at most one). Its slice is cut into
buffers of `buffer` samples, each permuted (seeded by seed, epoch and rank): the rank's order. The rank's
order is dealt to its W workers in blocks of `block` samples, round robin, as an in-order DataLoader takes
them back, so the first n samples a rank consumes are the first n of its order, whatever W is."""

from __future__ import annotations

import numpy as np


def epoch_order(shard: np.ndarray, n_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Rows of the kept table (sorted by shard, then offset) in the epoch's order."""
    if not shuffle:
        return np.arange(len(shard))
    place = np.empty(n_shards, np.int64)
    place[np.random.default_rng([seed, epoch]).permutation(n_shards)] = np.arange(n_shards)
    return np.argsort(place[shard], kind="stable")


def rank_order(order: np.ndarray, rank: int, world: int, buffer: int, rng_seed: list[int] | None) -> np.ndarray:
    """Rank `rank`'s slice of the epoch's order, each buffer of it permuted (not when rng_seed is None)."""
    lo, hi = len(order) * rank // world, len(order) * (rank + 1) // world
    mine = order[lo:hi].copy()
    if rng_seed is not None:
        rng = np.random.default_rng(rng_seed)
        for start in range(0, len(mine), buffer):
            mine[start:start + buffer] = rng.permutation(mine[start:start + buffer])
    return mine


def worker_positions(n: int, worker: int, workers: int, block: int, start: int = 0) -> np.ndarray:
    """The places in a rank's order of n samples that `worker` of `workers` reads, from place `start` on."""
    places = np.arange(start, n)
    return places[((places - start) // block) % workers == worker]  # dealt afresh from `start` on resume
