"""Stream WebDataset samples out of one tar, with the byte range each sample occupies."""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's rule: key up to the first dot
BLOCK = 512


@dataclass
class Sample:
    key: str
    offset: int  # byte offset of the sample's first tar header
    length: int = 0  # bytes through the end of its last data block
    members: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None  # set when the sample cannot be used as read


def split_name(name: str) -> tuple[str, str] | None:
    m = _KEY_EXT.match(name)
    return (m.group(1), m.group(2).lower()) if m else None


def iter_samples(stream: BinaryIO) -> Iterator[Sample]:
    """Group adjacent members by key, as WebDataset does.

    A truncated or corrupt tar ends the stream with the sample in progress marked as an error;
    a key seen twice in one shard marks the later sample as an error (samples are identified by
    (shard, key)).
    """
    current: Sample | None = None
    reading: tuple[str, int] | None = None  # (key, header offset) of the member being read
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                parts = split_name(info.name) if info.isfile() else None
                if parts is None:
                    continue
                key, ext = parts
                reading = (key, info.offset)
                data = tar.extractfile(info).read()
                reading = None
                end = info.offset_data + _padded(info.size)
                if current is not None and current.key == key and ext not in current.members:
                    current.members[ext] = data
                    current.length = end - current.offset
                    continue
                if current is not None:
                    yield _checked(current, seen)
                current = Sample(key=key, offset=info.offset, length=end - info.offset, members={ext: data})
    except (tarfile.TarError, EOFError, OSError) as exc:
        if reading is not None and (current is None or current.key != reading[0]):
            if current is not None:
                yield _checked(current, seen)
            current = Sample(key=reading[0], offset=reading[1])
        if current is None:
            current = Sample(key="__shard__", offset=0)
        current.error = f"truncated or corrupt shard: {exc}"
    if current is not None:
        yield _checked(current, seen)


def _checked(sample: Sample, seen: set[str]) -> Sample:
    if sample.key in seen and sample.error is None:
        sample.error = "duplicate key in shard"
    seen.add(sample.key)
    return sample


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK
