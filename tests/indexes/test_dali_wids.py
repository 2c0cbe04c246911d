"""DALI and wids indexes of a finished run, read back: exactly the kept samples, byte for byte.

DALI is not on PyPI (its wheels come from NVIDIA's index): its index is checked against the documented
v1.2 format by reading each listed (offset, size) from the real tar. wids is read by wids itself."""

import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from shardmaker import sample_members, write_tar

from datapruner import api
from datapruner.errors import DataprunerError
from datapruner.indexes.dali import parse_idx
from datapruner.indexes.samples import kept_samples, shard_samples


def pruned_samples(run: Path) -> list[tuple[str, dict]]:
    """(key, {ext: bytes}) of every sample of RUN's pruned shards, as webdataset reads them."""
    urls = sorted(str(p) for p in (run / "shards").glob("*.tar"))
    return [(s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")})
            for s in wds.WebDataset(urls, shardshuffle=False)]


def test_dali_index_lists_exactly_the_kept_members(scored_run, tmp_path):
    summary = api.index(scored_run, "dali", tmp_path / "dali")
    pairs = json.loads((tmp_path / "dali/shards.json").read_text())
    read = []
    for pair in pairs:
        samples = parse_idx((tmp_path / "dali" / pair["index"]).read_text())
        with open(pair["path"], "rb") as tar:
            for components in samples:
                members = {}
                for ext, offset, size, name in components:
                    tar.seek(offset)
                    members[ext] = tar.read(size)
                read.append((components[0][3].split(".")[0], members))
    assert summary["samples"] == len(read) == len(pruned_samples(scored_run)) > 0
    assert read == pruned_samples(scored_run)  # the pruned shards hold the kept samples in source order


def test_wids_reads_the_kept_samples_through_the_description(scored_run, tmp_path):
    import torch.utils.data
    import wids

    api.index(scored_run, "wids", tmp_path / "wids")
    dataset = wids.ShardListDataset(str(tmp_path / "wids/dataset.json"), transformations=[],
                                    cache_dir=str(tmp_path / "cache"))
    kept = torch.utils.data.Subset(dataset, np.load(tmp_path / "wids/kept_indices.npy").tolist())
    read = [(s["__key__"], {k[1:]: v.read() for k, v in s.items() if not k.startswith("__")}) for s in kept]
    assert read == pruned_samples(scored_run)
    shardlist = json.loads((tmp_path / "wids/dataset.json").read_text())["shardlist"]
    assert len(dataset) == sum(s["nsamples"] for s in shardlist) == 60  # whole shards: 3 x 20


def test_the_first_of_a_repeated_key_is_the_kept_one(tmp_path):
    """A shard holding one key twice (datapruner marks the second invalid): the index points at the first."""
    first, second = sample_members(1, 0), sample_members(2, 1)
    shard = write_tar(tmp_path / "a.tar", [("k", first), ("x", sample_members(3, 2)), ("k", second)])
    kept = kept_samples(shard_samples(str(shard)), {"k"})
    assert [(i, g.key) for i, g in kept] == [(0, "k")]
    with open(shard, "rb") as f:
        for m in kept[0][1].members:
            f.seek(m.data)
            assert f.read(m.size) == first[m.ext]


def test_an_index_replaces_only_its_own_files(scored_run, tmp_path):
    folder = tmp_path / "idx"
    api.index(scored_run, "dali", folder)
    again = api.index(scored_run, "dali", folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*again["files"], "index.json"])
    (folder / "mine.txt").write_text("a user's file")
    with pytest.raises(DataprunerError, match="did not write"):
        api.index(scored_run, "dali", folder)
    assert (folder / "mine.txt").read_text() == "a user's file"


def test_no_index_is_written_among_the_source_shards(scored_run, shard_dir):
    with pytest.raises(DataprunerError, match="read-only"):
        api.index(scored_run, "dali", shard_dir / "idx")
    assert not (shard_dir / "idx").exists()


def test_uids_are_named_not_copied(scored_run):
    summary = api.index(scored_run, "uids")
    assert summary["folder"] == str(scored_run / "manifest") and summary["files"] == ["keep_uids.npy"]
    assert summary["samples"] == len(np.load(scored_run / "manifest/keep_uids.npy")) > 0
