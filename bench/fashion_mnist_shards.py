"""Write Fashion-MNIST (idx .gz files) as WebDataset shards: members png, cls, txt; keys like "000123".

    python bench/fashion_mnist_shards.py OUT [--src /usr/share/datasets/fashion-mnist] [--shard-size 10000]

writes OUT/train/{000000..}.tar and OUT/test/{000000..}.tar (train keys 000000-059999, test keys
060000-069999, so every key is unique across both splits).
"""

from __future__ import annotations

import argparse
import gzip
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_SRC = "/usr/share/datasets/fashion-mnist"
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (gzipped or not) as a numpy uint8 array of its declared shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(src: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = SPLITS[split]
    return read_idx(Path(src) / images), read_idx(Path(src) / labels)


def sample_members(image: np.ndarray, label: int) -> dict[str, bytes]:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return {"png": buf.getvalue(), "cls": str(int(label)).encode(), "txt": f"a photo of a {CLASSES[label]}".encode()}


def write_tar(path: Path, samples) -> None:
    """A deterministic tar (fixed mtime, no owner names) written to a temporary name, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime = len(data), 1700000000
                tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)


def write_split(out: Path, images: np.ndarray, labels: np.ndarray, first_key: int, shard_size: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, start in enumerate(range(0, len(images), shard_size)):
        path = out / f"{s:06d}.tar"
        stop = min(start + shard_size, len(images))
        if not path.exists():
            write_tar(path, ((f"{first_key + i:06d}", sample_members(images[i], labels[i])) for i in range(start, stop)))
        paths.append(path)
    return paths


def write_fashion_mnist(out: str | Path, src: str | Path = DEFAULT_SRC, shard_size: int = 10000,
                        limit: int | None = None) -> dict[str, Path]:
    """Write train and test shards under OUT (existing shards are kept); returns {split: dir}."""
    out, dirs, first_key = Path(out), {}, 0
    for split in ("train", "test"):
        images, labels = load_split(src, split)
        write_split(out / split, images[:limit], labels[:limit], first_key, shard_size)
        dirs[split] = out / split
        first_key += len(labels)
    return dirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--src", default=DEFAULT_SRC)
    parser.add_argument("--shard-size", type=int, default=10000)
    args = parser.parse_args()
    dirs = write_fashion_mnist(args.out, args.src, args.shard_size)
    for split, path in dirs.items():
        print(f"{split}: {len(list(path.glob('*.tar')))} shards in {path}")


if __name__ == "__main__":
    main()
