"""Image-text agreement: cosine(image embedding, text embedding) per sample (both L2-normalised).

Higher means the caption matches the image better, so `--metric clip_score --order hard` keeps the
best-aligned pairs; as a filter (`clip_score:threshold=0.2` or `clip_score:fraction=0.1`, see
datapruner/select/filters.py) it removes the worst-aligned ones.
"""

from __future__ import annotations

import numpy as np

from datapruner.embed.outputs import as_float32
from datapruner.errors import DataprunerError
from datapruner.metrics.base import Metric, PartData

CHUNK = 65536


def rowwise_cosine(img: np.ndarray, txt: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    out = np.empty(len(img), np.float32)
    for lo in range(0, len(img), chunk):
        a, b = as_float32(img[lo:lo + chunk]), as_float32(txt[lo:lo + chunk])
        out[lo:lo + chunk] = np.einsum("ij,ij->i", a, b)
    return out


class ClipScore(Metric):
    name = "clip_score"

    def score(self, part: PartData, cfg) -> np.ndarray:
        if part.text_emb is None:
            raise DataprunerError(f"part {part.part} has no text embeddings (embeddings/text_emb): clip_score needs "
                             "captions (a txt member or a json caption field)")
        if len(part.text_emb) != len(part.img_emb):
            raise ValueError(f"part {part.part}: {len(part.text_emb)} text rows for {len(part.img_emb)} image rows")
        return rowwise_cosine(part.img_emb, part.text_emb)
