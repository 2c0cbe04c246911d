"""The bytes of a shard's kept samples by ranged reads: neighbouring ranges coalesced into one read while the
bytes between them stay within SLACK of the kept bytes; `pread` on a local file, fsspec's `cat_ranges` on
object storage; a gzip shard (or a pipe:) decompressed in one pass, as `write` reads it."""

from __future__ import annotations

import io
import os
import tarfile
from typing import Iterator

import numpy as np

from datapruner.errors import DataprunerError
from datapruner.io.identity import SourceChanged
from datapruner.io.ownership import local_path
from datapruner.io.ranges import MAX_READ, read_ranges
from datapruner.io.shards import GZIP_MAGIC
from datapruner.io.tar_samples import split_name, storable_name

SLACK = 0.05  # bytes read between kept ranges, at most this share of the kept bytes
Read = tuple[int, int, list[int]]  # (start, end, indices of the ranges it covers)


def coalesced(offsets: np.ndarray, lengths: np.ndarray, slack: float = SLACK, limit: int = MAX_READ) -> list[Read]:
    """Reads covering ascending, disjoint ranges: the smallest gaps are read through first, as long as the
    gaps read stay within `slack` of the ranges' bytes; no read grows past `limit` by joining."""
    gaps = offsets[1:] - (offsets[:-1] + lengths[:-1])
    by_size = np.argsort(gaps, kind="stable")
    joined = np.zeros(len(gaps), bool)
    joined[by_size[np.cumsum(gaps[by_size]) <= slack * lengths.sum()]] = True
    reads: list[Read] = []
    for i, (start, length) in enumerate(zip(offsets.tolist(), lengths.tolist())):
        if reads and joined[i - 1] and start + length - reads[-1][0] <= limit:
            reads[-1] = (reads[-1][0], start + length, reads[-1][2] + [i])
        else:
            reads.append((start, start + length, [i]))
    return reads


def is_gzip(url: str) -> bool:
    """Whether the shard is read in one decompressing pass (gzip by its magic bytes, or a pipe:)."""
    if url.startswith("pipe:"):
        return True
    path = local_path(url)
    if path is not None:
        with open(path, "rb") as f:
            return f.read(2) == GZIP_MAGIC
    fs, inner = _store(url)
    return fs.cat_file(inner, 0, 2) == GZIP_MAGIC


def stored_size(url: str) -> int:
    path = local_path(url)
    if path is not None:
        return path.stat().st_size
    return 0 if url.startswith("pipe:") else int(_store(url)[0].size(_store(url)[1]))


def read(url: str, reads: list[Read], gzip: bool) -> Iterator[bytes]:
    """The bytes of each read, in order."""
    if gzip:
        yield from read_ranges(url, [(start, end - start) for start, end, _ in reads])
        return
    path = local_path(url)
    if path is None:
        yield from _cat_ranges(url, reads)
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, end, _ in reads:
            yield _checked(os.pread(fd, end - start, start), url, start, end - start)
    finally:
        os.close(fd)


def _cat_ranges(url: str, reads: list[Read]) -> Iterator[bytes]:
    fs, inner = _store(url)
    batch: list[Read] = []
    for one in reads + [None]:
        if one is None or (batch and sum(e - s for s, e, _ in batch) + one[1] - one[0] > MAX_READ):
            got = fs.cat_ranges([inner] * len(batch), [s for s, _, _ in batch], [e for _, e, _ in batch])
            yield from (_checked(data, url, s, e - s) for data, (s, e, _) in zip(got, batch))
            batch = []
        if one is not None:
            batch.append(one)


def _store(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)


def _checked(data: bytes, url: str, start: int, length: int) -> bytes:
    if len(data) != length:
        raise DataprunerError(f"{url}: short read at offset {start}: expected {length} bytes, got {len(data)}; the "
                              "shard is not the one that was embedded (changed or truncated since)")
    return data


def members_of(data: bytes, key: str, url: str, offset: int) -> dict[str, bytes]:
    """{extension: bytes} of the members in one kept sample's byte range, which must all be of `key`."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
            for member in tar:
                parts = split_name(storable_name(member.name)) if member.isfile() else None
                if parts is None:
                    continue
                if parts[0] != key or (not found and member.offset != 0):
                    raise SourceChanged(f"the bytes at offset {offset} of {url} hold a member of {parts[0]!r}, not "
                                        f"of kept sample {key!r}: the shard changed since it was embedded")
                found[parts[1]] = data[member.offset_data:member.offset_data + member.size]
    except tarfile.TarError:
        found = {}
    if not found:
        raise SourceChanged(f"the bytes at offset {offset} of {url} hold no tar member of kept sample {key!r}: "
                            "the shard changed since it was embedded")
    return found
