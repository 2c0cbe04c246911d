"""A wids dataset description (`wids.ShardListDataset("dataset.json")`) and the kept samples' indices.

A wids description lists whole shards (url, nsamples): it has no way to name some samples of a shard, and
wids fetches a remote shard whole. So dataset.json lists the source shards that hold kept samples, each with
its full sample count as wids numbers them, and kept_indices.npy holds the kept samples' positions in that
numbering: `torch.utils.data.Subset(dataset, np.load("kept_indices.npy"))`, or a sampler over them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datapruner.errors import DataprunerError
from datapruner.indexes.manifest import ShardKeys, with_kept
from datapruner.indexes.samples import Group, check_found, kept_samples, shard_samples
from datapruner.io.atomic import save_npy, write_json
from datapruner.io.identity import current_stat

USTAR_NAME = 100  # wids reads a member's name from the tar header's 100-byte name field only


def write_wids(keys: dict[str, ShardKeys], folder: Path, name: str) -> dict:
    shardlist, positions = [], []
    for shard, shard_keys in with_kept(keys).items():
        groups = shard_samples(shard)
        _refuse_unnumbered(shard, groups)
        kept = kept_samples(groups, shard_keys.kept)
        check_found(shard, kept, shard_keys.kept)
        start = sum(s["nsamples"] for s in shardlist)
        positions.extend(start + i for i, _ in kept)
        shardlist.append({"url": shard, "nsamples": len(groups), "filesize": current_stat(shard)["size"],
                          "kept": len(kept)})
    write_json(folder / "dataset.json", {"wids_version": 1, "name": name, "shardlist": shardlist})
    save_npy(folder / "kept_indices.npy", np.asarray(positions, dtype=np.int64))
    return {"samples": len(positions), "shards": len(shardlist)}


def _refuse_unnumbered(shard: str, groups: list[Group]) -> None:
    """wids indexes a shard's members by name (a repeated name is counted once) from the ustar name field:
    a shard with a repeated or a long member name would be numbered otherwise than here."""
    names = [m.name for g in groups for m in g.members]
    repeated = next((n for n in names if names.count(n) > 1), None) if len(set(names)) < len(names) else None
    long = next((n for n in names if len(n.encode()) > USTAR_NAME), None)
    if repeated or long:
        why = f"the member name {repeated!r} repeats" if repeated else f"the member name {long!r} is over 100 bytes"
        raise DataprunerError(f"{shard}: {why}, and wids would number its samples otherwise than its tar holds "
                              "them; train on `datapruner write`'s shards, or through DALI's index")
