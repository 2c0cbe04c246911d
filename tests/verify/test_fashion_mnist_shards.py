"""bench/fashion_mnist_shards.py writes real WebDataset shards (png, cls, txt) that datapruner reads back."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from fashion_mnist_shards import CLASSES, write_split  # noqa: E402

from datapruner.io.tar_samples import iter_samples  # noqa: E402


def test_write_split_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (25, 28, 28), dtype=np.uint8)
    labels = np.arange(25) % 10
    paths = write_split(tmp_path, images, labels, first_key=60000, shard_size=10)
    assert [p.name for p in paths] == ["000000.tar", "000001.tar", "000002.tar"]
    with open(paths[1], "rb") as f:
        samples = list(iter_samples(f))
    assert [s.key for s in samples] == [f"{60010 + i:06d}" for i in range(10)]
    first = samples[0]
    assert sorted(first.members) == ["cls", "png", "txt"]
    assert int(first.members["cls"]) == labels[10]
    assert first.members["txt"].decode() == f"a photo of a {CLASSES[labels[10]]}"
