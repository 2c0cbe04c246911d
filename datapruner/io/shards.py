"""Listing and opening input shards: local dirs, brace patterns, fsspec URLs, and (opt-in) pipe:."""

from __future__ import annotations

import gzip
import io
import logging
import subprocess
from contextlib import contextmanager
from typing import BinaryIO, Iterable, Iterator

import fsspec
from braceexpand import braceexpand

from datapruner.errors import DataprunerError

log = logging.getLogger(__name__)

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")  # what webdataset reads; gzip is found by its magic bytes
GZIP_MAGIC = b"\x1f\x8b"


class SourceError(DataprunerError):
    """A shard source the user gave cannot be used."""


def list_shards(src: str, allow_pipe: bool = False) -> list[str]:
    """Every shard of `src` (dir, brace pattern, single tar, fsspec URL, allowed pipe:), sorted."""
    return list_source(src, allow_pipe)[0]


def list_source(src: str, allow_pipe: bool = False) -> tuple[list[str], list[str]]:
    """(shards, skipped): the shards of `src`, sorted, and the other files its directories hold."""
    pieces = list(braceexpand(src))
    refuse_pipe(pieces, allow_pipe, f"source {src!r}")
    urls, skipped = [], []
    for piece in pieces:
        if piece.startswith("pipe:"):
            urls.append(piece)
            continue
        found, other = _expand_one(piece)
        urls.extend(found)
        skipped.extend(other)
    skipped = sorted(set(skipped))
    if skipped:
        log.info("skipped %d files in %s that are not %s shards: %s", len(skipped), src,
                 "/".join(SHARD_SUFFIXES), _few(skipped))
    if not urls:
        also = f" (skipped {len(skipped)} other files: {_few(skipped)})" if skipped else ""
        raise SourceError(f"no {'/'.join(SHARD_SUFFIXES)} shards found at {src!r}{also}")
    return sorted(set(urls)), skipped


def refuse_pipe(urls: Iterable[str], allow_pipe: bool, where: str) -> None:
    """Raise unless every pipe: url in `urls` (from `where`, named in the message) was allowed."""
    if allow_pipe:
        return
    for url in urls:
        if url.startswith("pipe:"):
            raise SourceError(
                f"refusing pipe: shard {url!r} in {where}: it runs a shell command. "
                "Pass --allow-pipe (or allow_pipe: true in the config) if you trust it."
            )


def _expand_one(url: str) -> tuple[list[str], list[str]]:
    fs, path = fsspec.core.url_to_fs(url)
    if fs.isdir(path):
        files = fs.find(path, maxdepth=1)  # the files right inside it, no folders
        shards = [p for p in files if p.lower().endswith(SHARD_SUFFIXES)]
        return [_full_url(fs, url, p) for p in shards], [_full_url(fs, url, p) for p in files if p not in shards]
    if any(ch in path for ch in "*?["):
        return [_full_url(fs, url, p) for p in fs.glob(path)], []
    if not fs.exists(path):
        raise SourceError(f"shard {url!r} does not exist")
    return [url], []


def _full_url(fs, original: str, path: str) -> str:
    return fs.unstrip_protocol(path) if "://" in original else path


def _few(names: list[str], n: int = 3) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


@contextmanager
def open_shard(url: str) -> Iterator[BinaryIO]:
    """A readable binary stream of one shard's tar, decompressed when it is gzip (whatever its name);
    byte offsets of samples refer to this stream. pipe: only reaches here when it was allowed."""
    if url.startswith("pipe:"):
        proc = subprocess.Popen(url[len("pipe:"):], shell=True, stdout=subprocess.PIPE)
        try:
            with _decompressed(proc.stdout) as stream:
                yield stream
        finally:
            proc.stdout.close()
            proc.wait()
        return
    with fsspec.open(url, "rb") as f, _decompressed(f) as stream:
        yield stream


@contextmanager
def _decompressed(f: BinaryIO) -> Iterator[BinaryIO]:
    if f.seekable():
        head = f.read(2)
        f.seek(0)
    else:
        f = f if hasattr(f, "peek") else io.BufferedReader(f)
        head = f.peek(2)[:2]  # a pipe's first write holds more than 2 bytes
    if head != GZIP_MAGIC:
        yield f
        return
    with gzip.GzipFile(fileobj=f, mode="rb") as unzipped:
        yield unzipped
