"""Listing and opening input shards: local dirs, brace patterns, fsspec URLs, and (opt-in) pipe:."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import stat
import subprocess
from contextlib import contextmanager
from typing import BinaryIO, Iterable, Iterator

import fsspec
from braceexpand import braceexpand

from datapruner.errors import DataprunerError
from datapruner.io.ownership import local_path

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
    refuse_undecodable(urls)
    return sorted(set(urls)), skipped


def refuse_undecodable(names: Iterable[str]) -> None:
    """A name that is not UTF-8 (its bytes come back as surrogates) cannot be recorded: run.json, the manifest
    and the errors name shards as UTF-8 text. Refused in one line, with the bytes as \\xNN escapes."""
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise SourceError(f"{shown}: its name is not valid UTF-8, and datapruner records shard names as UTF-8 "
                              "text (run.json, the manifest): rename it") from None


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
    fs, path = filesystem(url)
    if fs.isdir(path):
        files = fs.find(path, maxdepth=1)  # the files right inside it, no folders
        shards = [p for p in files if p.lower().endswith(SHARD_SUFFIXES)]
        return [_full_url(fs, url, p) for p in shards], [_full_url(fs, url, p) for p in files if p not in shards]
    if any(ch in path for ch in "*?[") and not fs.exists(path):  # a file named x[1].tar is that file
        return [_full_url(fs, url, p) for p in fs.glob(path)], []
    if not fs.exists(path):
        raise SourceError(f"shard {url!r} does not exist")
    return [url], []


def filesystem(url: str):
    """(fsspec filesystem, path) of `url`; a local path is the file it names (fsspec would read `::` in it as a
    chain of filesystems)."""
    if "://" not in url and local_path(url) is not None:
        return fsspec.filesystem("file"), url
    return fsspec.core.url_to_fs(url)


def _full_url(fs, original: str, path: str) -> str:
    return fs.unstrip_protocol(path) if "://" in original else path


def _few(names: list[str], n: int = 3) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


@contextmanager
def storage_options(options: dict | None, urls: Iterable[str]) -> Iterator[None]:
    """fsspec storage options (credentials, an endpoint...) for the filesystems of `urls` (their
    protocols: s3, gs, ...; local paths need none) while the block runs: every fsspec open and listing in this process (shards,
    byte ranges, precomputed embeddings) uses them, and so do the processes it starts (decode workers,
    Ray tasks: `storage_env()`), through fsspec's `FSSPEC_<PROTOCOL>` environment variables. Nothing
    is written to the run directory (they are credentials, not inputs: no token holds them)."""
    protocols = sorted({protocol_of(url) for url in urls if url and not url.startswith("pipe:")} - LOCAL)
    if not options or not protocols:
        yield
        return
    from fsspec.config import conf

    saved_conf = {p: conf.get(p) for p in protocols}
    saved_env = {p: os.environ.get(_env_name(p)) for p in protocols}
    for p in protocols:
        conf[p] = {**(conf.get(p) or {}), **options}
        if "_" not in p:  # fsspec reads FSSPEC_<PROTOCOL>_<KWARG> as one option
            os.environ[_env_name(p)] = json.dumps(conf[p])
            _ENV.add(_env_name(p))
    try:
        yield
    finally:
        for p in protocols:
            if saved_conf[p] is None:
                conf.pop(p, None)
            else:
                conf[p] = saved_conf[p]
            if saved_env[p] is None:
                os.environ.pop(_env_name(p), None)
                _ENV.discard(_env_name(p))
            else:
                os.environ[_env_name(p)] = saved_env[p]


LOCAL = {"file", "local"}  # local paths need no storage options
_ENV: set[str] = set()  # the FSSPEC_<PROTOCOL> variables storage_options set


def storage_env() -> dict[str, str]:
    """The environment variables that carry the active storage options to another process (a Ray task's
    runtime_env)."""
    return {name: os.environ[name] for name in sorted(_ENV) if name in os.environ}


def protocol_of(url: str) -> str:
    protocol, _ = fsspec.core.split_protocol(url)
    return (protocol or "file").split("::")[-1]


def _env_name(protocol: str) -> str:
    return "FSSPEC_" + protocol.upper().replace("-", "_")


@contextmanager
def open_shard(url: str, fingerprint=None) -> Iterator[BinaryIO]:
    """A readable binary stream of one shard's tar, decompressed when it is gzip (whatever its name);
    byte offsets of samples refer to this stream. pipe: only reaches here when it was allowed.
    A `fingerprint` (io/identity.Fingerprint) hashes the stored bytes as they are read and, once the block
    has read what it wants, the rest: its identity is the shard's."""
    if url.startswith("pipe:"):
        proc = subprocess.Popen(url[len("pipe:"):], shell=True, stdout=subprocess.PIPE)
        try:
            with _decompressed(proc.stdout) as stream:
                yield stream
        finally:
            proc.stdout.close()
            proc.wait()
        return
    with open_raw(url) as f, _decompressed(fingerprint.reading(f, url) if fingerprint else f) as stream:
        yield stream
        if fingerprint:
            fingerprint.finish()


class NotARegularFile(OSError):
    """A local shard that is a FIFO, a device, a socket or a folder: a FIFO opened for reading waits for a
    writer, and a device never ends."""


@contextmanager
def open_raw(url: str) -> Iterator[BinaryIO]:
    """The shard's bytes as stored (gzip stays compressed). A local path must be a regular file."""
    path = local_path(url)
    if path is None:
        with fsspec.open(url, "rb") as f:
            yield f
        return
    with _open_regular(path) as f:
        yield f


def _open_regular(path) -> BinaryIO:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO's open returns at once
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(f"{path} is {file_kind(mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_kind(mode: int) -> str:
    kinds = [(stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


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
