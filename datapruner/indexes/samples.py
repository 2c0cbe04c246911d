"""A source shard's samples as the loaders group them, from its tar headers alone, and the kept ones.

DALI, wids and Energon read an uncompressed tar by byte offset and group adjacent members by key (the name
up to the first dot of its last path component), as webdataset does. Only headers are read: tarfile seeks
over each member's data."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from itertools import groupby

from datapruner.errors import DataprunerError
from datapruner.io.shards import GZIP_MAGIC, open_raw
from datapruner.io.tar_samples import split_name


@dataclass(frozen=True)
class Member:
    name: str
    ext: str  # the name after its key's dot, as the loaders name a sample's component
    header: int  # offset of its tar header
    data: int  # offset of its data
    size: int


@dataclass
class Group:
    key: str
    members: list[Member] = field(default_factory=list)


def shard_samples(shard: str) -> list[Group]:
    """Every sample of the shard, in tar order, as adjacent members sharing a key."""
    members = _members(shard)
    return [Group(key, list(run)) for key, run in groupby(members, key=lambda m: m.name[: -len(m.ext) - 1])]


def kept_samples(groups: list[Group], kept_keys: set[str]) -> list[tuple[int, Group]]:
    """(position, sample) of the kept samples: the first sample of each kept key (datapruner marks a key's
    later samples invalid, so only a first one can be kept)."""
    seen, out = set(), []
    for i, group in enumerate(groups):
        if group.key in kept_keys and group.key not in seen:
            out.append((i, group))
        seen.add(group.key)
    return out


def check_found(shard: str, kept: list[tuple[int, Group]], kept_keys: set[str]) -> None:
    missing = sorted(kept_keys - {g.key for _, g in kept})
    if missing:
        raise DataprunerError(f"kept sample {missing[0]!r} is not in {shard} ({len(missing)} kept keys are not): "
                              "the manifest does not match the shard")


def _members(shard: str) -> list[Member]:
    with open_raw(shard) as f:
        if f.read(2) == GZIP_MAGIC:
            raise DataprunerError(f"{shard} is gzip-compressed: DALI, wids and Energon read members by byte offset "
                                  "in an uncompressed tar; decompress it, or train on `datapruner write`'s shards")
        f.seek(0)
        try:
            with tarfile.open(fileobj=f, mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
                return [_member(m) for m in tar if m.isfile() and split_name(m.name)]
        except (tarfile.TarError, EOFError) as exc:
            raise DataprunerError(f"{shard} cannot be read as a tar ({exc}): no index can point into it") from None


def _member(m: tarfile.TarInfo) -> Member:
    base = m.name.rsplit("/", 1)[-1]
    return Member(m.name, base.split(".", 1)[1], m.offset, m.offset_data, m.size)
