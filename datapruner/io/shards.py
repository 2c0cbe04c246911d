"""Listing and opening input shards: local dirs, brace patterns, fsspec URLs, and (opt-in) pipe:."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import fsspec
from braceexpand import braceexpand

from datapruner.errors import DataprunerError


class SourceError(DataprunerError):
    """A shard source the user gave cannot be used."""


def list_shards(src: str, allow_pipe: bool = False) -> list[str]:
    """Every shard of `src` (dir, brace pattern, single tar, fsspec URL), sorted."""
    if src.startswith("pipe:") and not allow_pipe:
        raise SourceError(
            f"refusing pipe: source {src!r}: it runs a shell command. "
            "Pass --allow-pipe (or allow_pipe: true in the config) if you trust it."
        )
    if src.startswith("pipe:"):
        return sorted(braceexpand(src))
    urls: list[str] = []
    for pattern in braceexpand(src):
        urls.extend(_expand_one(pattern))
    if not urls:
        raise SourceError(f"no .tar shards found at {src!r}")
    return sorted(set(urls))


def _expand_one(url: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(url)
    if fs.isdir(path):
        found = fs.glob(path.rstrip("/") + "/*.tar")
        return [_full_url(fs, url, p) for p in found]
    if any(ch in path for ch in "*?["):
        return [_full_url(fs, url, p) for p in fs.glob(path)]
    if not fs.exists(path):
        raise SourceError(f"shard {url!r} does not exist")
    return [url]


def _full_url(fs, original: str, path: str) -> str:
    return fs.unstrip_protocol(path) if "://" in original else path


@contextmanager
def open_shard(url: str) -> Iterator[BinaryIO]:
    """A readable binary stream of one shard (pipe: only reaches here when it was allowed)."""
    if url.startswith("pipe:"):
        proc = subprocess.Popen(url[len("pipe:"):], shell=True, stdout=subprocess.PIPE)
        try:
            yield proc.stdout
        finally:
            proc.stdout.close()
            proc.wait()
        return
    with fsspec.open(url, "rb") as f:
        yield f
