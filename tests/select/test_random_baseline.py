"""The random baseline depends on the data, not on where it lives."""

import shutil
from pathlib import Path

import pyarrow.parquet as pq
from conftest import TINY

from datapruner import api
from datapruner.config import Config


def kept(run: Path) -> set[tuple[str, str]]:
    rows = pq.read_table(run / "manifest/keep.parquet", columns=["shard", "key", "kept"]).to_pylist()
    return {(Path(r["shard"]).name, r["key"]) for r in rows if r["kept"]}


def test_the_random_subset_is_the_same_after_copying_the_shards_elsewhere(shard_dir, tmp_path):
    copy = shutil.copytree(shard_dir, tmp_path / "elsewhere/shards")
    cfg = Config(**TINY, clusters=3, metric="random", order="random")
    api.score(str(shard_dir), tmp_path / "a", 0.5, cfg, progress=False)
    api.score(str(copy), tmp_path / "b", 0.5, cfg, progress=False)
    assert kept(tmp_path / "a") == kept(tmp_path / "b")
    assert len(kept(tmp_path / "a")) == 30
    other_seed = cfg.replace(seed=1)
    api.select(tmp_path / "b", 0.5, other_seed)
    assert kept(tmp_path / "b") != kept(tmp_path / "a")  # the seed, not the path, decides
