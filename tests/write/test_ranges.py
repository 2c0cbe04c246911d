"""io.ranges: the bytes of a shard's ranges, by seeks on a plain file and by one pass over gzip or pipe: ."""

import gzip
import os

import pytest

from shardmaker import write_shards

from datapruner.errors import DataprunerError
from datapruner.io.ranges import merged, read_ranges
from datapruner.io.shards import open_shard
from datapruner.io.tar_samples import iter_samples
from datapruner.report.gallery import thumbnail_uri
from datapruner.write.shards import output_shards

DATA = os.urandom(5000)
RANGES = [(0, 512), (512, 1024), (2048, 100), (3000, 0), (4000, 1000)]


@pytest.fixture(params=["plain", "gzip named .tar", "pipe"])
def shard(request, tmp_path) -> str:
    path = tmp_path / "x.tar"
    path.write_bytes(gzip.compress(DATA) if request.param == "gzip named .tar" else DATA)
    return f"pipe:cat {path}" if request.param == "pipe" else str(path)


def test_each_range_reads_its_bytes(shard):
    assert list(read_ranges(shard, RANGES)) == [DATA[o:o + n] for o, n in RANGES]


def test_a_range_past_the_end_names_the_shard_and_offset(shard):
    with pytest.raises(DataprunerError, match=r"x\.tar.*offset 4900"):
        list(read_ranges(shard, [(0, 10), (4900, 200)]))


def test_adjacent_ranges_are_read_together_up_to_a_limit():
    assert merged(RANGES) == [(0, [512, 1024]), (2048, [100]), (3000, [0]), (4000, [1000])]
    assert merged([(0, 10), (10, 10), (20, 10)], limit=20) == [(0, [10, 10]), (20, [10])]


def test_output_shards_hold_at_most_shard_size_and_never_two_adjacent_equal_keys():
    assert output_shards(list("abcde"), 2) == [(0, 2), (2, 4), (4, 5)]
    assert output_shards(list("abbcd"), 10) == [(0, 2), (2, 5)]
    assert output_shards([], 3) == []


def test_thumbnails_read_plain_and_gzip_shards_and_skip_pipes(tmp_path):
    plain = write_shards(tmp_path, n_shards=1, per_shard=3)[0]
    zipped = tmp_path / "z.tar.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    with open_shard(str(zipped)) as stream:
        last = list(iter_samples(stream))[-1]
    uri = thumbnail_uri(str(plain), last.offset, last.length)
    assert uri.startswith("data:image/png;base64,") and thumbnail_uri(str(zipped), last.offset, last.length) == uri
    assert thumbnail_uri(f"pipe:cat {plain}", last.offset, last.length) is None
    assert thumbnail_uri(str(plain), 10**6, 512) is None  # past the end: no image, not an error
