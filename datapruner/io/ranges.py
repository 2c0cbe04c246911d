"""The bytes of some samples of one source shard, by their (offset, length) ranges.

Ranges refer to the tar stream that `open_shard` yields (for a gzip shard, its decompressed stream). A plain
file is read by seeks, adjacent ranges in one read; a gzip shard or a pipe: can only be read front to back,
so it is read once, skipping forward to each range.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator

from datapruner.errors import DataprunerError
from datapruner.io.shards import GZIP_MAGIC, open_raw, open_shard

MAX_READ = 64 << 20  # adjacent ranges are read together up to this many bytes
SKIP_CHUNK = 1 << 20


def read_ranges(shard: str, ranges: list[tuple[int, int]]) -> Iterator[bytes]:
    """The bytes of each range of `shard`, in order. Ranges ascend and do not overlap; a range past the
    shard's end raises DataprunerError naming the shard and offset. A gzip shard is found by its magic
    bytes, whatever its name."""
    if not shard.startswith("pipe:"):
        with open_raw(shard) as f:
            if f.read(2) != GZIP_MAGIC:
                yield from _read_seeked(f, shard, ranges)
                return
    yield from _read_streamed(shard, ranges)


def merged(ranges: list[tuple[int, int]], limit: int = MAX_READ) -> list[tuple[int, list[int]]]:
    """Runs of adjacent ranges, as (start, [length of each range]), each run at most `limit` bytes unless
    one range alone is larger."""
    runs: list[tuple[int, list[int]]] = []
    end = total = 0
    for start, length in ranges:
        if runs and start == end and total + length <= limit:
            runs[-1][1].append(length)
            total += length
        else:
            runs.append((start, [length]))
            total = length
        end = start + length
    return runs


def _read_seeked(f: BinaryIO, shard: str, ranges: list[tuple[int, int]]) -> Iterator[bytes]:
    for start, lengths in merged(ranges):
        f.seek(start)
        yield from _split(_read_exact(f, sum(lengths), shard, start), lengths)


def _split(data: bytes, lengths: list[int]) -> Iterator[bytes]:
    if len(lengths) == 1:
        yield data
        return
    view, pos = memoryview(data), 0
    for length in lengths:
        yield bytes(view[pos:pos + length])
        pos += length


def _read_streamed(shard: str, ranges: list[tuple[int, int]]) -> Iterator[bytes]:
    with open_shard(shard) as stream:
        pos = 0
        for start, length in ranges:
            if start < pos:
                raise DataprunerError(f"{shard}: byte ranges must ascend without overlap (offset {start} after {pos})")
            _skip(stream, start - pos, shard, start)
            yield _read_exact(stream, length, shard, start)
            pos = start + length


def _skip(stream: BinaryIO, count: int, shard: str, offset: int) -> None:
    while count > 0:
        got = len(stream.read(min(count, SKIP_CHUNK)))
        if got == 0:
            raise _short(shard, offset, f"the stream ended {count} bytes before it")
        count -= got


def _read_exact(stream: BinaryIO, length: int, shard: str, offset: int) -> bytes:
    chunks, got = [], 0
    while got < length:
        chunk = stream.read(length - got)
        if not chunk:
            raise _short(shard, offset, f"expected {length} bytes, got {got}")
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _short(shard: str, offset: int, what: str) -> DataprunerError:
    return DataprunerError(f"{shard}: short read at offset {offset}: {what}; the shard is not the one that was "
                           "embedded (changed or truncated since): re-embed it, or restore it")
