"""The seeded random baseline: a uniform value per sample from a hash of (seed, shard's file name, key).

Vectorised: each distinct shard name is hashed once (BLAKE2b), each key by 64-bit FNV-1a over its UTF-8
bytes (a numpy pass per byte position, not per row), and the three are mixed by murmur3's finaliser;
the top 53 bits give a float in [0, 1).
"""

from __future__ import annotations

import hashlib
import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapruner.metrics.base import Metric, PartData

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def hashed_uniform(seed: int, shards, keys) -> np.ndarray:
    """Independent of how the data is split into parts or processes, and of where the shards live: the
    shard is named by its file name, so the same data copied elsewhere gets the same baseline.
    `shards` and `keys`: sequences of str or Arrow string arrays."""
    shard_codes, shard_names = _distinct(shards)
    per_shard = np.array([_blake(f"{seed}\0{posixpath.basename(s)}") for s in shard_names], np.uint64)
    h = _fmix(per_shard[shard_codes] ^ _fmix(fnv1a(_strings(keys))))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _strings(values) -> pa.StringArray:
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(list(values), pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return pc.fill_null(array.cast(pa.large_string()), "")


def _distinct(values) -> tuple[np.ndarray, list[str]]:
    encoded = _strings(values).dictionary_encode()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def _blake(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def fnv1a(strings: pa.LargeStringArray) -> np.ndarray:
    """64-bit FNV-1a of each string's UTF-8 bytes, one numpy step per byte position (rows sorted by length,
    so that the rows still going at position j are a prefix)."""
    n = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], np.int64)[strings.offset:strings.offset + n + 1]
    data = np.frombuffer(strings.buffers()[2], np.uint8) if n and offsets[-1] > offsets[0] else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    by_length = np.argsort(-lengths, kind="stable")
    starts, sorted_lengths = offsets[:-1][by_length], lengths[by_length]
    h = np.full(n, FNV_OFFSET, np.uint64)
    going = n
    for j in range(int(lengths.max()) if n else 0):
        going = int(np.searchsorted(-sorted_lengths, -j, side="left"))  # rows with length > j
        h[:going] = (h[:going] ^ data[starts[:going] + j]) * FNV_PRIME
    out = np.empty(n, np.uint64)
    out[by_length] = h
    return out


def _fmix(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser: every input bit reaches every output bit."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


HASH = "blake2b(shard)+fnv1a(key), murmur3 mix"  # in the token: parts scored by the earlier per-row hash are redone


class Random(Metric):
    name = "random"

    def token_options(self, cfg) -> dict:
        return {**super().token_options(cfg), "hash": HASH}

    def score(self, part: PartData, cfg) -> np.ndarray:
        meta = part.meta
        return hashed_uniform(cfg.seed, meta.column("shard"), meta.column("key")).astype(np.float32)
