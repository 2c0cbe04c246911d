"""Thumbnails of kept and dropped samples, read straight from their byte ranges in the source shards."""

from __future__ import annotations

import base64
import io

from datapruner.embed.decode import UnusableSample, decode_image, image_bytes
from datapruner.errors import DataprunerError
from datapruner.io.ranges import read_ranges
from datapruner.io.tar_samples import iter_samples

END_OF_ARCHIVE = b"\0" * 1024


def thumbnail_uri(shard: str, offset: int, length: int, size: int = 96, max_pixels: int | None = None) -> str | None:
    """A data: URI of the sample's image, or None when it cannot be shown (decoded at a reduced scale whose
    sides stay ≥ `size`; an image over `max_pixels`, None: the config's default, is not decoded).

    A gzip shard is decompressed up to the sample. A pipe: shard gets None: each thumbnail would rerun its
    shell command and stream the shard up to the sample.
    """
    if shard.startswith("pipe:"):
        return None
    try:
        piece = b"".join(read_ranges(shard, [(offset, length)]))
    except DataprunerError:
        return None
    samples = list(iter_samples(io.BytesIO(piece + END_OF_ARCHIVE)))
    try:
        img = decode_image(image_bytes(samples[0].members), min_size=size, max_pixels=max_pixels)
    except (UnusableSample, IndexError):
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

