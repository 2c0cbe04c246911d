"""The finished selection an index is built from: per source shard, its kept and dropped keys."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.parquet as pq

from datapruner.errors import DataprunerError
from datapruner.io.identity import Sources
from datapruner.io.rundir import RunDir
from datapruner.io.tar_samples import SHARD_KEY


@dataclass
class ShardKeys:
    kept: set[str] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)


def selection(run: RunDir) -> dict[str, ShardKeys]:
    """{source shard: its kept and dropped keys}, for every shard of the run in its sorted order. A pipe:
    shard (no file to point at) or one changed since it was embedded is refused before any is read."""
    if not run.keep_parquet.exists():
        raise DataprunerError(f"{run.root} has no selection ({run.keep_parquet} is missing): run "
                              f"`datapruner select {run.root} --keep F` first")
    table = pq.read_table(run.keep_parquet, columns=["shard", "key", "kept"])
    keys = {shard: ShardKeys() for shard in run.shards()}
    for shard, key, kept in zip(*(table.column(c).to_pylist() for c in ("shard", "key", "kept"))):
        if key != SHARD_KEY:
            entry = keys.setdefault(shard, ShardKeys())
            (entry.kept if kept else entry.dropped).add(key)
    _refuse_pipes(keys)
    Sources(run).refuse_changed(keys)
    return keys


def with_kept(keys: dict[str, ShardKeys]) -> dict[str, ShardKeys]:
    return {shard: k for shard, k in keys.items() if k.kept}


def _refuse_pipes(keys: dict[str, ShardKeys]) -> None:
    for shard in keys:
        if shard.startswith("pipe:"):
            raise DataprunerError(f"{shard} is a pipe: source: a loader's index names a file to seek in, and a pipe "
                                  "has none; train on `datapruner write`'s shards instead")
