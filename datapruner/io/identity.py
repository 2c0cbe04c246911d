"""A source shard's identity: taken in the pass that reads it, checked before its bytes are read again.

Embed (and the join's scan) read every byte of a shard once. A `Fingerprint` given to `open_shard` hashes
those bytes as they stream past and takes the size and modification time of the file that was opened (for
object storage, the ETag, version id or generation the store gives). The identity is kept in the schema
metadata of the part's metadata parquet, written with it (`with_identity`).

Before a later step reads a shard's bytes again (plan, write, the report's thumbnails; a kept-sample reader
calls `Sources(run).refuse_changed(shards)` the same way), `Sources` compares: the same size and stamp are
trusted; another size, or a shard gone or unreadable, is a change; the same size with another stamp is
decided by hashing the shard again. Shards embedded before identities were recorded are not checked (a
warning says so). A pipe: has no identity.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO, Iterable

from datapruner.errors import DataprunerError
from datapruner.io.ownership import local_path
from datapruner.io.rundir import RunDir
from datapruner.io.shards import NotARegularFile, file_kind, open_raw

log = logging.getLogger(__name__)

IDENTITY_KEY = b"datapruner.source"  # the metadata parquet's schema metadata: the shard's identity, JSON
DIGEST = "sha256"
READ_CHUNK = 1 << 20
STORE_STAMPS = ("ETag", "etag", "VersionId", "version_id", "generation", "LastModified", "last_modified", "mtime",
                "created")  # what fsspec stores give in info(); any of them changing means a new object


class SourceChanged(DataprunerError):
    """A source shard is not the file that was embedded."""


# recording ----------------------------------------------------------------------------------------------

class Fingerprint:
    """Hand one to open_shard; once the shard is read through, `identity` is its size, stamp and digest
    (None when it could not be read to its end, or changed size while it was read)."""

    def __init__(self):
        self.identity: dict | None = None
        self._stat: dict | None = None
        self._hashing: _Hashing | None = None

    def reading(self, f: BinaryIO, url: str) -> BinaryIO:
        self._stat = _opened_stat(f, url)
        self._hashing = _Hashing(f)
        return io.BufferedReader(self._hashing, READ_CHUNK)

    def finish(self) -> None:
        """Hash what the reader stopped before (a cut or corrupt shard's rest, a gzip trailer)."""
        try:
            self._hashing.drain()
        except OSError:
            return
        if self._hashing.count == self._stat["size"]:
            self.identity = {**self._stat, DIGEST: self._hashing.hexdigest()}


class _Hashing(io.RawIOBase):
    """A file read front to back, every byte hashed as it passes (not seekable: one pass)."""

    def __init__(self, f: BinaryIO):
        self._f, self._hash, self.count = f, hashlib.new(DIGEST), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._f.readinto(buffer) or 0
        self._hash.update(memoryview(buffer)[:n])
        self.count += n
        return n

    def drain(self) -> None:
        buffer = bytearray(READ_CHUNK)
        while self.readinto(buffer):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _opened_stat(f: BinaryIO, url: str) -> dict:
    """Size and stamp of the file `f` is (a local file's own inode, whatever its path points at now)."""
    try:
        return _local_stat(os.fstat(f.fileno()))
    except (OSError, ValueError, AttributeError):  # a store's file has no descriptor
        details = getattr(f, "details", None)
        return _store_stat(details) if details else current_stat(url)


def _local_stat(st: os.stat_result) -> dict:
    return {"size": st.st_size, "stamp": {"mtime_ns": st.st_mtime_ns}}


def _store_stat(info: dict) -> dict:
    return {"size": int(info["size"]), "stamp": {k: str(info[k]) for k in STORE_STAMPS if info.get(k) is not None}}


def current_stat(url: str) -> dict:
    """The shard's size and stamp now (raises OSError: gone, a loop, not a regular file)."""
    path = local_path(url)
    if path is None:
        import fsspec

        fs, inner = fsspec.core.url_to_fs(url)
        fs.invalidate_cache(inner)
        return _store_stat(fs.info(inner))
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFile(f"{path} is {file_kind(st.st_mode)}, not a regular file")
    return _local_stat(st)


def digest_of(url: str) -> str:
    with open_raw(url) as f:
        hashing = _Hashing(f)
        hashing.drain()
    return hashing.hexdigest()


# where it is kept: the part's metadata parquet --------------------------------------------------------

def with_identity(table, identity: dict | None):
    """`table` (pyarrow) with the shard's identity in its schema metadata (unchanged when there is none)."""
    if identity is None:
        return table
    meta = {**(table.schema.metadata or {}), IDENTITY_KEY: json.dumps(identity, sort_keys=True).encode()}
    return table.replace_schema_metadata(meta)


def without_identity(table):
    """`table` without the identity: what reads a part's rows carries none of it on (to the manifest)."""
    meta = table.schema.metadata or {}
    if IDENTITY_KEY not in meta:
        return table
    return table.replace_schema_metadata({k: v for k, v in meta.items() if k != IDENTITY_KEY} or None)


def recorded_identity(metadata_path: Path) -> dict | None:
    """The identity a part's metadata parquet records (None: made before identities were recorded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(metadata_path).metadata or {}).get(IDENTITY_KEY)
    except (OSError, pa.ArrowInvalid):
        return None
    return json.loads(raw) if raw else None


# checking -----------------------------------------------------------------------------------------------

def change_of(url: str, recorded: dict) -> str | None:
    """How `url` differs from the file `recorded` describes ("it is gone", …), or None when it is that file."""
    try:
        now = current_stat(url)
    except FileNotFoundError:
        return "it is gone"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if now["size"] != recorded["size"]:
        return f"it is {now['size']} bytes, {recorded['size']} when it was embedded"
    if now["stamp"] == recorded["stamp"]:
        return None
    try:
        same = digest_of(url) == recorded[DIGEST]
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    return None if same else "its content is not what was embedded (same size, modified since)"


class Sources:
    """The run's source shards as embedded, each compared with its recorded identity at most once."""

    def __init__(self, run: RunDir):
        self.run = run
        self._part_of = dict(zip(run.shards(), run.part_ids()))
        self._changes: dict[str, str | None] = {}
        self.unrecorded: list[str] = []

    def change(self, shard: str) -> str | None:
        """How the shard changed since it was embedded, or None (also when nothing was recorded)."""
        if shard not in self._changes:
            self._changes[shard] = self._compare(shard)
        return self._changes[shard]

    def changed(self) -> dict[str, str]:
        """{shard: how it changed} for the shards found changed so far."""
        return {shard: change for shard, change in self._changes.items() if change}

    def _compare(self, shard: str) -> str | None:
        part = self._part_of.get(shard)
        if part is None or shard.startswith("pipe:"):
            return None
        recorded = recorded_identity(self.run.metadata(part))
        if recorded is None:
            self.unrecorded.append(shard)
            return None
        return change_of(shard, recorded)

    def refuse_changed(self, shards: Iterable[str]) -> None:
        """Raise SourceChanged, naming the first shard that changed and what to do, before any is read."""
        for shard in sorted(set(shards)):
            change = self.change(shard)
            if change:
                raise SourceChanged(f"source shard {shard} changed since it was embedded: {change}; "
                                    f"{remedy(self.run)}")
        self.warn_unrecorded()

    def warn_unrecorded(self) -> None:
        if self.unrecorded:
            more = len(self.unrecorded) - 3
            few = ", ".join(self.unrecorded[:3]) + (f" and {more} more" if more > 0 else "")
            log.warning("%d source shard(s) (%s) were embedded before datapruner recorded a shard's identity: "
                        "they are not checked against change (--re-embed records it)", len(self.unrecorded), few)
            self.unrecorded = []


def remedy(run: RunDir) -> str:
    src = run.read_run_json().get("source", "SRC")
    return f"restore it, or embed the new content with `datapruner embed {src} --out {run.root} --re-embed`"


def source_stamps(shards: Iterable[str]) -> str:
    """A digest of every shard's current size and stamp: what --re-embed adds to the embed token, so that a
    changed source is embedded again (and a second --re-embed over unchanged shards reuses the parts)."""
    h = hashlib.sha256()
    for shard in shards:
        try:
            now = current_stat(shard) if not shard.startswith("pipe:") else {}
        except OSError as exc:
            now = {"unreadable": type(exc).__name__}
        h.update(json.dumps([shard, now], sort_keys=True).encode())
    return h.hexdigest()[:16]
