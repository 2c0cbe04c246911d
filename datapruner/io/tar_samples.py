"""Stream WebDataset samples out of one tar, with the byte range each sample occupies."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from datapruner.reasons import reason

_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's rule: key up to the first dot
_DRIVE = re.compile(r"^[A-Za-z]:")
BLOCK = 512
SHARD_KEY = "__shard__"  # the key of a row about the shard itself, when no sample was in progress
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, ValueError)


@dataclass
class Sample:
    key: str
    offset: int  # byte offset of the sample's first tar header (in the decompressed tar)
    length: int = 0  # bytes through the end of its last data block
    members: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None  # set when the sample cannot be used as read


def split_name(name: str) -> tuple[str, str] | None:
    m = _KEY_EXT.match(name)
    return (m.group(1), m.group(2).lower()) if m else None


def storable_name(name: str) -> str:
    """`name` with the bytes tarfile surrogate-escaped (not UTF-8) written as \\xNN: Arrow takes it."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def iter_samples(stream: BinaryIO, allow_unsafe_names: bool = False) -> Iterator[Sample]:
    """Group adjacent members by key, as WebDataset does.

    A shard that ends early or holds garbage marks the sample in progress as an error ("truncated
    shard" / "corrupt shard"), or yields a row keyed `__shard__` when none was. A key seen twice marks
    the later sample, a member name that is not UTF-8 or would escape an extraction directory marks its
    sample: samples are identified by (shard, key), and keys go to Parquet and to file names.
    """
    failures: list[tuple[BaseException, int]] = []
    current: Sample | None = None
    member: tarfile.TarInfo | None = None  # the member being read
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_watching(failures),
                          encoding="utf-8", errors="surrogateescape") as tar:
            for member in tar:
                name = storable_name(member.name)
                parts = split_name(name) if member.isfile() else None
                if parts is None:
                    continue
                key, ext = parts
                if current is None or current.key != key or ext in current.members:
                    if current is not None:
                        yield _checked(current, seen)
                    current = Sample(key=key, offset=member.offset)
                current.error = current.error or _name_problem(member.name, name, allow_unsafe_names)
                current.members[ext] = tar.extractfile(member).read()
                current.length = member.offset_data + _padded(member.size) - current.offset
        problem = _ending(failures, None, member)
    except _READ_ERRORS as exc:
        problem = _ending(failures, exc, member)
    yield from _last(current, problem, seen)
    if problem is None and (after := _after_the_end(stream)):
        yield Sample(key=SHARD_KEY, offset=0, error=after)


def leading_key(data: bytes) -> str | None:
    """The key of the member whose tar header (pax or GNU long-name headers included) starts `data`, a
    sample's byte range; None when `data` does not start with the header of a file member."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
            member = tar.next()
    except _READ_ERRORS:
        return None
    parts = split_name(storable_name(member.name)) if member is not None and member.isfile() else None
    return parts[0] if parts else None


def _watching(failures: list) -> type[tarfile.TarInfo]:
    """A TarInfo that records why reading a header failed: tarfile's stream mode ends the archive
    silently on a missing, cut or garbage header after the first, and re-wraps zlib errors."""

    class Watched(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tar):
            try:
                return super().fromtarfile(tar)
            except Exception as exc:
                failures.append((exc, tar.offset))
                raise

    return Watched


def _ending(failures: list, exc: BaseException | None, member) -> str | None:
    """The reason the shard ended other than at its end-of-archive block; None when it ended there."""
    failure, at = failures[0] if failures else (exc, None)  # the first is the cause (pax headers nest)
    if failure is None or (isinstance(failure, tarfile.EOFHeaderError) and exc is None):
        return None
    if isinstance(failure, tarfile.EmptyHeaderError):
        return reason("truncated shard", f"the stream ends at byte {at} without an end-of-archive block")
    if isinstance(failure, tarfile.TruncatedHeaderError):
        return reason("truncated shard", f"the stream ends inside the tar header at byte {at}")
    if isinstance(failure, EOFError):
        return reason("truncated shard", f"the gzip stream ends early: {failure}")
    if isinstance(failure, tarfile.ReadError) and at is None:  # a data block (or its padding) is cut
        where = f"'{storable_name(member.name)}' (header at byte {member.offset})" if member else "a member"
        return reason("truncated shard", f"the stream ends inside the data of {where}")
    if isinstance(failure, tarfile.HeaderError):
        return reason("corrupt shard", f"invalid tar header at byte {at}: {failure}")
    if isinstance(failure, zlib.error):
        return reason("corrupt shard", f"the gzip data is corrupt: {failure}")
    if isinstance(failure, OSError) and not isinstance(failure, gzip.BadGzipFile):
        return reason("cannot open shard", f"reading failed: {type(failure).__name__}: {failure}")
    return reason("corrupt shard", f"{type(failure).__name__}: {failure}")


def _after_the_end(stream: BinaryIO) -> str | None:
    """Why reading on past the end-of-archive block fails, if it does: a gzip shard cut in its zero
    padding or trailer has whole samples, yet is cut (and a pipe's writer is not left blocked)."""
    try:
        while stream.read(1 << 20):
            pass
    except _READ_ERRORS as exc:
        return _ending([], exc, None)
    return None


def _last(current: Sample | None, problem: str | None, seen: set[str]) -> Iterator[Sample]:
    if current is not None and problem is not None and current.error is None:
        current.error, problem = problem, None
    if current is not None:
        yield _checked(current, seen)
    if problem is not None:
        yield Sample(key=SHARD_KEY, offset=0, error=problem)


def _name_problem(raw: str, name: str, allow_unsafe: bool) -> str | None:
    if raw != name:
        return reason("bad member name", f"'{name}' is not valid UTF-8")
    if not allow_unsafe and _escapes(name):
        return reason("unsafe member name",
                      f"'{name}' would be written outside an extraction directory "
                      "(set allow_unsafe_names to keep it)")
    return None


def _escapes(name: str) -> bool:
    """Absolute, drive-relative or `..` names, with either slash (extractors on Windows split on both)."""
    return name.startswith(("/", "\\")) or bool(_DRIVE.match(name)) or ".." in re.split(r"[/\\]", name)


def _checked(sample: Sample, seen: set[str]) -> Sample:
    if sample.key in seen and sample.error is None:
        sample.error = reason("duplicate key", f"'{sample.key}' appears again at byte {sample.offset}")
    seen.add(sample.key)
    return sample


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def member_bytes(name: str, data: bytes) -> bytes:
    """One regular tar member (header, data, padding) named `name`, with fixed times and owner so that a
    rerun writes the same bytes (pax headers where the name needs them)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + data + b"\0" * (_padded(len(data)) - len(data))
