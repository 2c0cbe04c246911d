"""What the report reads, bounded: the manifest's columns, and the embeddings of a few rows only.

The manifest's valid rows are the score parts concatenated in part order (each in its metadata's row
order), then the invalid rows from errors/. So valid row r is row r − start[p] of part p, and the
embeddings of a sample of rows are read from the memory-mapped parts without loading any part whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapruner.embed.outputs import as_float32, read_img_emb, unit_rows
from datapruner.io.rundir import RunDir

FILTERED = "removed by filter "


@dataclass
class Manifest:
    table: pa.Table  # the valid rows (cluster not null), in manifest order
    summary: dict
    kept: np.ndarray  # bool per valid row
    cluster: np.ndarray  # int per valid row
    reason: list[str]  # per valid row
    starts: np.ndarray | None  # first valid row of each part (+ the total), None when rows cannot be mapped

    @property
    def n(self) -> int:
        return self.table.num_rows

    def column(self, name: str) -> np.ndarray | None:
        if name not in self.table.column_names:
            return None
        return self.table.column(name).to_numpy(zero_copy_only=False)

    def score_columns(self) -> list[str]:
        return [c for c in self.table.column_names if c.startswith("score_")]


def load_manifest(run: RunDir) -> Manifest:
    table = pq.read_table(run.keep_parquet, read_dictionary=["shard", "reason"])
    summary = json.loads(run.summary_json.read_text())
    valid = table.filter(pc.is_valid(table.column("cluster")))
    reason = pc.cast(valid.column("reason"), pa.string()).to_pylist()
    kept = valid.column("kept").to_numpy(zero_copy_only=False).astype(bool)
    cluster = valid.column("cluster").to_numpy(zero_copy_only=False).astype(np.int64)
    return Manifest(valid, summary, kept, cluster, reason, _part_starts(run, valid))


def _part_starts(run: RunDir, valid: pa.Table) -> np.ndarray | None:
    """Cumulative row counts of the score parts, when they account for the valid rows in order."""
    try:
        counts = [pq.ParquetFile(run.scores(p)).metadata.num_rows for p in run.part_ids()]
    except (OSError, KeyError):
        return None
    starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
    if starts[-1] != valid.num_rows:
        return None
    shards = run.shards()
    probe = np.unique(np.r_[starts[:-1][np.array(counts) > 0], np.maximum(starts[1:] - 1, 0)])
    probe = probe[probe < valid.num_rows]
    got = pc.cast(valid.column("shard").take(pa.array(probe)), pa.string()).to_pylist()
    parts = np.searchsorted(starts, probe, side="right") - 1
    if any(g != shards[p] for g, p in zip(got, parts)):
        return None
    return starts


def embeddings(run: RunDir, manifest: Manifest, rows: np.ndarray) -> np.ndarray:
    """float32 unit image embeddings of the given valid rows (any order), read part by part."""
    rows = np.asarray(rows, np.int64)
    if manifest.starts is None:
        raise LookupError("the manifest's rows cannot be matched to the embeddings")
    parts = np.searchsorted(manifest.starts, rows, side="right") - 1
    ids = run.part_ids()
    out: np.ndarray | None = None
    for p in np.unique(parts):
        mine = np.flatnonzero(parts == p)
        local = rows[mine] - manifest.starts[p]
        order = np.argsort(local)
        emb = read_img_emb(run, ids[p])
        block = as_float32(emb[local[order]])
        if out is None:
            out = np.zeros((len(rows), emb.shape[1]), np.float32)
        out[mine[order]] = block
    if out is None:
        return np.zeros((0, 0), np.float32)
    return unit_rows(out)


def seeded_sample(n: int, size: int, seed: int, salt: int = 0) -> np.ndarray:
    """At most `size` of range(n), sorted, the same for the same seed."""
    if n <= size:
        return np.arange(n)
    rng = np.random.default_rng([seed, salt])
    return np.sort(rng.choice(n, size, replace=False))


def rows_of(manifest: Manifest, idx) -> list[dict]:
    """The given valid rows as dicts (shard, key, caption, offset, length, scores, kept, reason)."""
    idx = list(int(i) for i in idx)
    if not idx:
        return []
    taken = manifest.table.take(pa.array(idx, pa.int64()))
    rows = taken.to_pylist()
    for row, i in zip(rows, idx):
        row["row"] = i
    return rows
