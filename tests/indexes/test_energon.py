"""The Energon split of a finished run, read by Megatron-Energon over the prepared source shards: exactly
the kept samples, byte for byte."""

import shutil

import pytest
from test_dali_wids import pruned_samples

from datapruner import api

energon = pytest.importorskip("megatron.energon")


def prepared(shard_dir, tmp_path):
    """A copy of the source shards prepared as an Energon dataset (prepare writes DATASET/.nv-meta/)."""
    from megatron.energon.flavors.webdataset import BaseWebdatasetFactory

    dataset = shutil.copytree(shard_dir, tmp_path / "dataset")
    names = sorted(p.name for p in dataset.glob("*.tar"))
    BaseWebdatasetFactory.prepare_dataset(dataset, names, split_parts_ratio=[("train", 1.0)], workers=1)
    (dataset / ".nv-meta/dataset.yaml").write_text("__module__: megatron.energon\n__class__: CrudeWebdataset\n")
    return dataset


def energon_samples(dataset, split_config) -> list[tuple[str, dict]]:
    """Every sample Energon's dataset of the split yields in one pass (its crude samples: key and raw parts)."""
    from megatron.energon import WorkerConfig, get_loader
    from megatron.energon.dataset_config import get_dataset_from_config

    factory = get_dataset_from_config(dataset, split_part="train", split_config=str(split_config), training=False,
                                      decoder=None, worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0))
    return [(s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")}) for s in get_loader(factory.build())]


def test_energon_reads_only_the_kept_samples(scored_run, shard_dir, tmp_path):
    summary = api.index(scored_run, "energon", tmp_path / "energon")
    assert summary["dataset"] == str(shard_dir) and summary["not_excluded"] == 0
    read = energon_samples(prepared(shard_dir, tmp_path), tmp_path / "energon/split.yaml")
    kept = pruned_samples(scored_run)
    assert len(read) == summary["samples"] == len(kept) > 0
    assert sorted(read, key=lambda s: s[0]) == sorted(kept, key=lambda s: s[0])
