"""Regenerate the sample dataset that ships in datapruner/data/sample: 1,000 Fashion-MNIST test
images in 4 WebDataset shards (png, txt caption, cls label, json with a DataComp-style uid).

    apt-get install -y dataset-fashion-mnist && python scripts/make_sample_dataset.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from fashion_mnist_shards import DEFAULT_SRC, load_split, sample_members, write_tar  # noqa: E402

OUT = ROOT / "datapruner/data/sample"
SHARDS, PER_SHARD = 4, 250


def main() -> None:
    images, labels = load_split(DEFAULT_SRC, "test")
    OUT.mkdir(parents=True, exist_ok=True)
    for s in range(SHARDS):
        samples = []
        for i in range(s * PER_SHARD, (s + 1) * PER_SHARD):
            key = f"{i:06d}"
            members = sample_members(images[i], int(labels[i]))
            members["json"] = json.dumps({"uid": hashlib.md5(key.encode()).hexdigest(), "label": int(labels[i])}).encode()
            samples.append((key, members))
        write_tar(OUT / f"{s:06d}.tar", samples)
    print(f"wrote {SHARDS} shards of {PER_SHARD} samples to {OUT}")


if __name__ == "__main__":
    main()
