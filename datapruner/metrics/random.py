"""The seeded random baseline: a uniform value per sample from a hash of (seed, shard's file name, key)."""

from __future__ import annotations

import hashlib
import posixpath

import numpy as np

from datapruner.metrics.base import Metric, PartData


def hashed_uniform(seed: int, shards, keys) -> np.ndarray:
    """Independent of how the data is split into parts or processes, and of where the shards live: the
    shard is named by its file name, so the same data copied elsewhere gets the same baseline."""
    out = np.empty(len(keys), np.float64)
    for i, (shard, key) in enumerate(zip(shards, keys)):
        digest = hashlib.blake2b(f"{seed}\0{posixpath.basename(shard)}\0{key}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") / 2.0**64
    return out


class Random(Metric):
    name = "random"

    def score(self, part: PartData, cfg) -> np.ndarray:
        meta = part.meta
        return hashed_uniform(cfg.seed, meta.column("shard").to_pylist(), meta.column("key").to_pylist()).astype(np.float32)
