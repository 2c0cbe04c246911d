"""Thumbnails of kept and dropped samples, read straight from their byte ranges in the source shards."""

from __future__ import annotations

import base64
import io

import fsspec

from datapruner.embed.decode import UnusableSample, decode_image, image_bytes
from datapruner.io.tar_samples import iter_samples


def thumbnail_uri(shard: str, offset: int, length: int, size: int = 96) -> str | None:
    """A data: URI of the sample's image, or None when it cannot be shown."""
    with fsspec.open(shard, "rb") as f:
        f.seek(offset)
        piece = f.read(length) + b"\0" * 1024
    samples = list(iter_samples(io.BytesIO(piece)))
    try:
        img = decode_image(image_bytes(samples[0].members))
    except (UnusableSample, IndexError):
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
