"""Listing shards (suffixes, skipped files, the pipe: guard) and opening them (gzip found by its bytes)."""

import gzip
import logging

import pytest
from shardmaker import sample_members, write_tar

from datapruner.io.shards import SourceError, list_shards, list_source, open_shard, refuse_pipe
from datapruner.io.tar_samples import iter_samples


def _samples(url: str) -> list[tuple[str, int, int, dict]]:
    with open_shard(url) as stream:
        return [(s.key, s.offset, s.length, s.members) for s in iter_samples(stream) if s.error is None]


@pytest.fixture
def plain(tmp_path):
    return write_tar(tmp_path / "plain" / "a.tar", [(f"{i:04d}", sample_members(i, i % 4)) for i in range(3)])


def test_a_directory_lists_tar_tar_gz_and_tgz_and_counts_the_rest(tmp_path, plain, caplog):
    src = tmp_path / "src"
    src.mkdir()
    raw = plain.read_bytes()
    for name in ["a.tar", "b.tar.gz", "c.tgz", "d.TAR"]:
        (src / name).write_bytes(gzip.compress(raw, mtime=0) if "gz" in name else raw)
    for name in ["README.md", "a.parquet", "a_stats.json", "e.zip"]:
        (src / name).write_bytes(b"not a shard")
    (src / "sub").mkdir()
    (src / "sub" / "f.tar").write_bytes(raw)  # not a file of SRC itself: neither listed nor counted
    with caplog.at_level(logging.INFO, logger="datapruner.io.shards"):
        shards, skipped = list_source(str(src))
    assert shards == [str(src / n) for n in ["a.tar", "b.tar.gz", "c.tgz", "d.TAR"]]
    assert skipped == [str(src / n) for n in ["README.md", "a.parquet", "a_stats.json", "e.zip"]]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"skipped 4 files in {src} that are not .tar/.tar.gz/.tgz shards: ")
    assert line.endswith("and 1 more")
    assert list_shards(str(src)) == shards
    assert [_samples(s) for s in shards] == [_samples(str(plain))] * 4  # offsets are in the decompressed tar


def test_a_directory_without_shards_says_what_it_skipped(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match=r"no \.tar/\.tar\.gz/\.tgz shards found .*skipped 1 other files: .*notes\.txt"):
        list_shards(str(tmp_path))


def test_gzip_is_found_by_its_bytes_whatever_the_name(tmp_path, plain):
    named_tar = tmp_path / "zipped.tar"
    named_tar.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    named_gz = tmp_path / "plain.tar.gz"
    named_gz.write_bytes(plain.read_bytes())
    want = _samples(str(plain))
    assert len(want) == 3
    assert _samples(str(named_tar)) == want
    assert _samples(str(named_gz)) == want
    assert _samples(f"file://{named_tar}") == want
    assert _samples(f"pipe:cat {named_tar}") == want
    assert _samples(f"pipe:cat {plain}") == want


def test_a_pipe_hidden_in_a_brace_piece_is_refused(tmp_path, plain):
    for src in ["{pipe:cat a.tar,b.tar}", f"{{{plain},pipe:cat {plain}}}", "pipe:cat x{0..1}.tar"]:
        with pytest.raises(SourceError, match="--allow-pipe"):
            list_shards(src)
    assert list_shards(f"{{{plain},pipe:cat {plain}}}", allow_pipe=True) == [str(plain), f"pipe:cat {plain}"]


def test_refuse_pipe_names_where_the_url_came_from():
    refuse_pipe(["a.tar", "b.tar"], allow_pipe=False, where="run.json")
    refuse_pipe(["pipe:cat a.tar"], allow_pipe=True, where="run.json")
    with pytest.raises(SourceError, match=r"refusing pipe: shard 'pipe:cat a.tar' in run.json: .*--allow-pipe"):
        refuse_pipe(["a.tar", "pipe:cat a.tar"], allow_pipe=False, where="run.json")
