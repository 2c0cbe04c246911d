"""The kept samples a reader yields: shard, key and byte range of each, in pruned-shard order."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir
from datapruner.write.shards import write_plan

log = logging.getLogger(__name__)


@dataclass
class Kept:
    """Kept sample i is keys[i] of shards[shard[i]], bytes [offset[i], offset[i] + length[i]); rows sorted
    by shard, then offset: the order of the pruned shards."""

    shards: list[str]
    shard: np.ndarray
    keys: pa.Array  # Arrow strings: a pool's keys as Python strings would take ~60 bytes each
    offset: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


def load_kept(source: str | Path, allow_pipe: bool = False) -> tuple[Kept, RunDir | None]:
    """The kept samples of `source`: a run directory, or a keep.parquet (its run, when it lies in one,
    checks that no source shard changed since embed; a keep.parquet alone is read as it is)."""
    path = Path(source)
    run = RunDir(path) if path.is_dir() else RunDir(path.parent.parent)
    if run.exists() and (path.is_dir() or path.resolve() == run.keep_parquet.resolve()):
        return _from_table(write_plan(run, allow_pipe)), run
    if path.is_dir():
        raise DataprunerError(f"{path} is not a run directory (it has no run.json)")
    log.warning("%s is read without its run: source shards are not checked against change since embed", path)
    return _from_table(_manifest_alone(path)), None


def _manifest_alone(path: Path):
    kept = pq.read_table(path, columns=["shard", "key", "offset", "length"], filters=[("kept", "==", True)])
    if pc.any(pc.is_null(kept.column("offset"))).as_py():
        raise DataprunerError(f"{path} lacks the byte ranges of some kept samples: read its run directory instead")
    return kept.sort_by([("shard", "ascending"), ("offset", "ascending")])


def _from_table(table) -> Kept:
    shards = table.column("shard").unique().to_pylist()
    index = pc.index_in(table.column("shard"), value_set=table.column("shard").unique())
    return Kept(shards=shards, shard=index.to_numpy().astype(np.int32), keys=table.column("key").combine_chunks(),
                offset=table.column("offset").to_numpy().astype(np.int64),
                length=table.column("length").to_numpy().astype(np.int64))
