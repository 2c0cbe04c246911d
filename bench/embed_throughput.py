"""`datapruner embed` against the plain way (one process: read, decode, preprocess, embed in turn) and
against the model alone (preprocessed tensors already in memory: the limit the decode must keep up with).

    python bench/embed_throughput.py [--src SHARDS] [--model datapruner-tiny] [--workers 2]

Without --src it writes 8 shards × 500 synthetic 256×256 JPEGs (decode costs like web images).

Prints samples/s for each and the ratios, all measured in this process on the same shards.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from datapruner import api
from datapruner.config import Config
from datapruner.embed.decode import decode_image, image_bytes
from datapruner.embed.model import load_clip
from datapruner.io.shards import list_shards, open_shard
from datapruner.io.tar_samples import iter_samples


def write_jpeg_shards(root: str, n_shards: int = 8, per_shard: int = 500) -> str:
    import io
    import tarfile

    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    for s in range(n_shards):
        with tarfile.open(f"{root}/{s:05d}.tar", "w") as tar:
            for j in range(per_shard):
                img = np.roll(base, (s * per_shard + j) % 256, axis=0)
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="JPEG", quality=90)
                for ext, data in (("jpg", buf.getvalue()), ("txt", f"image {j}".encode())):
                    info = tarfile.TarInfo(f"{s:05d}{j:05d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return root


def plain_loop(shards: list[str], clip, batch_size: int) -> int:
    """The obvious single-process loop, for comparison."""
    n, batch = 0, []
    for url in shards:
        with open_shard(url) as stream:
            for sample in iter_samples(stream):
                batch.append(clip.preprocess(decode_image(image_bytes(sample.members))))  # full-size decode
                if len(batch) == batch_size:
                    n += _forward(clip, batch)
                    batch = []
    return n + (_forward(clip, batch) if batch else 0)


def _forward(clip, images: list) -> int:
    with torch.inference_mode():
        clip.model.encode_image(torch.stack(images))
    return len(images)


def model_only(shards: list[str], clip, batch_size: int, n: int) -> float:
    """Seconds to embed n preprocessed images already in memory."""
    with open_shard(shards[0]) as stream:
        first = next(iter_samples(stream))
    image = clip.preprocess(decode_image(image_bytes(first.members)))
    batch = torch.stack([image] * batch_size)
    t = time.perf_counter()
    for _ in range(int(np.ceil(n / batch_size))):
        with torch.inference_mode():
            clip.model.encode_image(batch)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=None)
    ap.add_argument("--model", default="datapruner-tiny")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    src_dir = tempfile.TemporaryDirectory()
    src = args.src or write_jpeg_shards(src_dir.name)
    shards = list_shards(src)
    cfg = Config(model=args.model, pretrained=args.pretrained, batch_size=args.batch_size, num_workers=args.workers)
    clip = load_clip(args.model, args.pretrained, "auto")
    t = time.perf_counter()
    n = plain_loop(shards, clip, args.batch_size)
    t_plain = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        api.embed(src, f"{tmp}/run", cfg, progress=False)
        t_dp = time.perf_counter() - t
    t_model = model_only(shards, clip, args.batch_size, n)
    print(json.dumps({
        "samples": n, "model": args.model, "device": clip.device, "decode_workers": args.workers,
        "samples_per_s": {"plain_loop": round(n / t_plain, 1), "datapruner_embed": round(n / t_dp, 1),
                          "model_only": round(n / t_model, 1)},
        "datapruner_over_plain": round(t_plain / t_dp, 2),
        "datapruner_fraction_of_model_only": round(t_model / t_dp, 3),
        "note": "datapruner_embed includes model loading, writing the parts and the metadata",
    }, indent=2))


if __name__ == "__main__":
    main()
