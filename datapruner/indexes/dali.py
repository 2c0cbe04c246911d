"""DALI's webdataset reader index (`fn.readers.webdataset(paths=..., index_paths=...)`), kept samples only.

The format wds2idx writes (v1.2): a first line `v1.2 <samples>`, then one line per sample, each of its
components as `<ext> <data offset> <size> <member name>`, separated by spaces. DALI seeks to exactly the
samples listed, so an index that lists only the kept ones makes the reader yield only those."""

from __future__ import annotations

from pathlib import Path

from datapruner.errors import DataprunerError
from datapruner.indexes.manifest import ShardKeys, with_kept
from datapruner.indexes.samples import Group, check_found, kept_samples, shard_samples
from datapruner.io.atomic import write_json, write_text

VERSION = "v1.2"


def write_dali(keys: dict[str, ShardKeys], folder: Path) -> dict:
    """One `.idx` per source shard with kept samples, and shards.json pairing each shard with its index."""
    pairs, kept = [], 0
    for i, (shard, shard_keys) in enumerate(with_kept(keys).items()):
        samples = [g for _, g in _kept(shard, shard_keys)]
        index = folder / f"{i:06d}-{Path(shard).name.split('.')[0]}.idx"
        write_text(index, idx_text(shard, samples))
        pairs.append({"path": shard, "index": index.name, "samples": len(samples)})
        kept += len(samples)
    write_json(folder / "shards.json", pairs)
    return {"samples": kept, "shards": len(pairs)}


def _kept(shard: str, shard_keys: ShardKeys) -> list:
    kept = kept_samples(shard_samples(shard), shard_keys.kept)
    check_found(shard, kept, shard_keys.kept)
    return kept


def idx_text(shard: str, samples: list[Group]) -> str:
    lines = [f"{VERSION} {len(samples)}", *(" ".join(_component(shard, m) for m in g.members) for g in samples)]
    return "\n".join(lines) + "\n"


def _component(shard: str, member) -> str:
    if any(c.isspace() for c in member.name):
        raise DataprunerError(f"member {member.name!r} of {shard} has a space in its name: DALI's index separates "
                              "fields by spaces and cannot name it")
    return f"{member.ext} {member.data} {member.size} {member.name}"


def parse_idx(text: str) -> list[list[tuple[str, int, int, str]]]:
    """The samples of a v1.2 index: per sample, its (ext, data offset, size, name) components."""
    head, *lines = text.splitlines()
    version, count = head.split()
    if version != VERSION or int(count) != len(lines):
        raise DataprunerError(f"not a {VERSION} index of {len(lines)} samples: {head!r}")
    out = []
    for line in lines:
        f = line.split()
        out.append([(f[j], int(f[j + 1]), int(f[j + 2]), f[j + 3]) for j in range(0, len(f), 4)])
    return out
