"""What an index cannot express is refused or counted, never silently lost: gzip sources, Energon's
exclusions by key, wids' numbering of a shard with a repeated member name."""

import gzip
import logging

import pytest
import yaml
from shardmaker import sample_members, write_tar

from datapruner.errors import DataprunerError
from datapruner.indexes.energon import write_energon
from datapruner.indexes.manifest import ShardKeys
from datapruner.indexes.samples import shard_samples
from datapruner.indexes.wids import write_wids


def test_a_gzip_source_is_refused_with_what_to_do(tmp_path):
    plain = write_tar(tmp_path / "a.tar", [("k", sample_members(1, 0))])
    packed = tmp_path / "a.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(DataprunerError, match="gzip-compressed.*decompress it"):
        shard_samples(str(packed))


def test_energon_excludes_dropped_keys_and_counts_a_key_it_cannot_split(tmp_path, caplog):
    a = write_tar(tmp_path / "src/a.tar", [("k", sample_members(1, 0)), ("x", sample_members(2, 1))])
    b = write_tar(tmp_path / "src/sub/b.tar", [("y", sample_members(3, 2))])
    keys = {str(a): ShardKeys(kept={"k"}, dropped={"k", "x"}), str(b): ShardKeys(dropped={"y"})}
    with caplog.at_level(logging.WARNING):
        summary = write_energon(keys, tmp_path / "out")
    split = yaml.safe_load((tmp_path / "out/split.yaml").read_text())
    assert split == {"split_parts": {"train": ["a.tar", "sub/b.tar"]}, "exclude": ["a.tar/x", "sub/b.tar"]}
    assert summary["not_excluded"] == 1 and summary["dataset"] == str(tmp_path / "src")
    assert "share a key with a kept sample" in caplog.text


def test_wids_refuses_a_shard_it_would_number_otherwise(tmp_path):
    shard = write_tar(tmp_path / "a.tar", [("k", sample_members(1, 0)), ("x", sample_members(2, 1)),
                                           ("k", sample_members(3, 2))])
    with pytest.raises(DataprunerError, match="repeats"):
        write_wids({str(shard): ShardKeys(kept={"k", "x"})}, tmp_path / "out", "run")
    assert not (tmp_path / "out/dataset.json").exists()
