"""Real WebDataset tar shards for the tests: coloured shapes as JPEG/PNG, captions, labels, uids."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = [(220, 40, 40), (40, 180, 60), (40, 60, 220), (230, 200, 40)]
NAMES = ["red", "green", "blue", "yellow"]


def image_bytes(label: int, seed: int, fmt: str = "JPEG", size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 60, 3)))
    draw = ImageDraw.Draw(img)
    x0, y0 = rng.integers(0, size // 2, 2)
    draw.ellipse([int(x0), int(y0), int(x0) + size // 2, int(y0) + size // 2], fill=COLOURS[label % 4])
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def sample_members(index: int, label: int, fmt: str = "jpg") -> dict[str, bytes]:
    pil_fmt = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt]
    uid = f"{index:032x}"
    return {
        fmt: image_bytes(label, index, pil_fmt),
        "txt": f"a {NAMES[label % 4]} disc number {index}".encode(),
        "cls": str(label).encode(),
        "json": json.dumps({"uid": uid, "label": label}).encode(),
    }


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mtime = 1700000000
                tar.addfile(info, io.BytesIO(data))
    return path


def write_shards(root: Path, n_shards: int = 3, per_shard: int = 20, n_labels: int = 4, start: int = 0) -> list[Path]:
    paths = []
    for s in range(n_shards):
        samples = []
        for j in range(per_shard):
            idx = start + s * per_shard + j
            fmt = ["jpg", "png", "webp"][idx % 3]
            samples.append((f"{idx:06d}", sample_members(idx, idx % n_labels, fmt)))
        paths.append(write_tar(root / f"shard-{s:05d}.tar", samples))
    return paths
