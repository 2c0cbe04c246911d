"""Pruned shards from gzip, pipe: and key-sharing sources read back with WebDataset, member for member."""

import gzip
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from conftest import TINY
from shardmaker import sample_members, write_shards, write_tar

from datapruner import api
from datapruner.config import Config
from datapruner.errors import DataprunerError

CFG = Config(**{**TINY, "batch_size": 16}, clusters=2, shard_size=16)


def wds_samples(urls: list[str]) -> list[tuple[str, dict]]:
    """(key, members) of every sample WebDataset reads, in order (it decompresses gzip by magic bytes)."""
    return [(s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")})
            for s in wds.WebDataset(urls, shardshuffle=False)]


def pruned(run: Path) -> list[tuple[str, dict]]:
    return wds_samples(sorted(str(p) for p in (run / "shards").glob("*.tar")))


def kept_count(run: Path) -> int:
    return sum(pq.read_table(run / "manifest/keep.parquet").column("kept").to_pylist())


def gzipped(path: Path, name: str) -> Path:
    out = path.with_name(name)
    out.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return out


def assert_byte_identical(run: Path, source: list[tuple[str, dict]]) -> None:
    """Every pruned sample is a source sample, unchanged, in source order; as many as the manifest kept."""
    out = pruned(run)
    assert len(out) == kept_count(run) > 0
    it = iter(source)
    assert all(any(sample == s for s in it) for sample in out)  # a subsequence of the source


def test_gzip_shards_are_pruned_byte_identical(tmp_path):
    plain = write_shards(tmp_path / "src", n_shards=2, per_shard=12)
    sources = [gzipped(plain[0], "a.tar.gz"), gzipped(plain[1], "b.tar")]  # the second is gzip named .tar
    source = wds_samples([str(p) for p in sources])
    run = tmp_path / "run"
    api.score(f"{tmp_path}/src/{{a.tar.gz,b.tar}}", run, 0.5, CFG, progress=False)
    assert kept_count(run) == 12
    assert_byte_identical(run, source)
    assert "data:image/png" in (run / "report/index.html").read_text()  # thumbnails read from the gzip too


@pytest.mark.parametrize("second_keys", [range(10), range(9, 19)], ids=["same keys", "last key is next first"])
def test_source_shards_sharing_keys_read_back_as_one_sample_each(tmp_path, second_keys):
    first = write_tar(tmp_path / "src/a.tar", [(f"{i:06d}", sample_members(i, i % 4)) for i in range(10)])
    second = write_tar(tmp_path / "src/b.tar", [(f"{i:06d}", sample_members(100 + i, i % 4)) for i in second_keys])
    source = wds_samples([str(first), str(second)])
    run = tmp_path / "run"
    api.score(str(tmp_path / "src"), run, 1.0, CFG.replace(shard_size=100), progress=False)
    assert kept_count(run) == 20
    assert pruned(run) == source


def test_a_pipe_source_is_pruned_end_to_end_when_allowed(tmp_path):
    write_shards(tmp_path / "src", n_shards=2, per_shard=12)
    src = f"pipe:cat {tmp_path}/src/shard-{{00000..00001}}.tar"
    run = tmp_path / "run"
    api.score(src, run, 0.5, CFG.replace(allow_pipe=True), progress=False)
    assert_byte_identical(run, wds_samples(sorted(str(p) for p in (tmp_path / "src").glob("*.tar"))))


def test_writing_a_pipe_run_is_refused_without_allow_pipe(tmp_path):
    write_shards(tmp_path / "src", n_shards=1, per_shard=12)
    run, allowed = tmp_path / "run", CFG.replace(allow_pipe=True)
    api.score(f"pipe:cat {tmp_path}/src/shard-00000.tar", run, 0.5, allowed, progress=False)
    with pytest.raises(DataprunerError) as by_plan:
        api.write(run, CFG.replace(shard_size=5), progress=False)  # a new plan: refused before it is made
    api.step("plan", run, allowed.replace(shard_size=5), progress=False)
    with pytest.raises(DataprunerError) as by_write:
        api.step("write", run, CFG.replace(shard_size=5), progress=False)  # planned with it, written without
    for err in (by_plan, by_write):
        assert "--allow-pipe" in str(err.value) and "\n" not in str(err.value)
    assert not list((run / "shards").glob("*.tar"))
