"""Thumbnails of kept and dropped samples, read straight from their byte ranges in the source shards."""

from __future__ import annotations

import base64
import io
import logging

from datapruner.config import Config
from datapruner.embed.decode import UnusableSample, decode_image, image_bytes
from datapruner.errors import DataprunerError
from datapruner.io.identity import Sources
from datapruner.io.ranges import read_ranges
from datapruner.io.tar_samples import iter_samples

END_OF_ARCHIVE = b"\0" * 1024
log = logging.getLogger(__name__)


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
        # only samples embed found valid are shown: its max_full_decode_pixels has been applied already
        img = decode_image(image_bytes(samples[0].members), min_size=size, max_pixels=max_pixels,
                           full_decode_pixels=max_pixels or Config.max_image_pixels)
    except (UnusableSample, IndexError):
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()



def figure(row: dict, metric: str | None, size: int = 96, max_pixels: int | None = None,
           sources: Sources | None = None) -> dict:
    """What the template shows of one sample: its thumbnail (or None: also when `sources` says its shard
    changed since it was embedded), caption, key, score and status."""
    uri = None
    unchanged = sources is None or not sources.change(row.get("shard", ""))
    if unchanged and row.get("offset") is not None and row.get("length") is not None:
        try:
            uri = thumbnail_uri(row["shard"], row["offset"], row["length"], size, max_pixels)
        except OSError:
            uri = None
    score = row.get(f"score_{metric}") if metric else None
    caption = row.get("caption") or ""
    return {"uri": uri, "key": row.get("key", ""), "shard": row.get("shard", ""),
            "caption": caption if len(caption) <= 120 else caption[:117] + "…",
            "score": None if score is None else f"{score:.4g}", "kept": bool(row.get("kept")),
            "reason": row.get("reason", ""), "cluster": row.get("cluster"), "label": row.get("label"),
            "similarity": None if row.get("similarity") is None else f"{row['similarity']:.4f}"}


def warn_hidden(sources: Sources) -> None:
    """One warning per source shard whose thumbnails were not shown because it changed."""
    for shard, change in sources.changed().items():
        log.warning("the report shows no thumbnails of %s: it changed since it was embedded (%s)", shard, change)
