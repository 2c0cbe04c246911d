"""A Megatron-Energon split config whose `exclude:` entries drop the samples the selection dropped.

Energon reads a prepared dataset (`energon prepare DATASET` writes DATASET/.nv-meta/). Its split config maps
split parts to shard names relative to DATASET, and `exclude` names a whole shard (`part.tar`) or a sample
(`part.tar/KEY`). Given as an absolute path (`split_config="/…/split.yaml"`), it may live outside DATASET.
Energon has no include list: a sample is excluded by key, so a key that a shard holds twice, once kept and once
dropped (a duplicate, invalid), cannot be told apart: it stays in, and is counted in `not_excluded`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from datapruner.errors import DataprunerError
from datapruner.indexes.manifest import ShardKeys
from datapruner.io.atomic import write_text
from datapruner.io.ownership import local_path

log = logging.getLogger(__name__)


def write_energon(keys: dict[str, ShardKeys], folder: Path, split: str = "train") -> dict:
    root = dataset_root(list(keys))
    names = {shard: os.path.relpath(local_path(shard), root) for shard in keys}
    excludes, unsplit = [], []
    for shard, k in keys.items():
        dropped = [f"{names[shard]}/{key}" for key in sorted(k.dropped - k.kept)]
        excludes.extend(dropped if k.kept else [names[shard]])  # a shard with nothing kept goes whole
        unsplit.extend(sorted(k.dropped & k.kept))
    if unsplit:
        log.warning("%d dropped sample(s) share a key with a kept sample of their shard (e.g. %r): Energon "
                    "excludes by key, so they stay in the split", len(unsplit), unsplit[0])
    config = {"split_parts": {split: sorted(names.values())}, "exclude": excludes}
    write_text(folder / "split.yaml", yaml.safe_dump(config, sort_keys=False))
    return {"samples": sum(len(k.kept) for k in keys.values()), "dataset": str(root), "split": split,
            "excluded": len(excludes), "not_excluded": len(unsplit)}


def dataset_root(shards: list[str]) -> Path:
    """The folder holding every source shard: the dataset `energon prepare` is run on."""
    paths = [local_path(s) for s in shards]
    if any(p is None for p in paths):
        remote = next(s for s, p in zip(shards, paths) if p is None)
        raise DataprunerError(f"{remote} is not a local file: datapruner writes an Energon split for local shards")
    return Path(os.path.commonpath([os.path.abspath(p.parent) for p in paths]))
