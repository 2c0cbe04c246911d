"""Sorscher et al. 2022: cosine distance to the nearest k-means centroid (far = hard)."""

from __future__ import annotations

import numpy as np

from datapruner.metrics.base import Metric, PartData


class Prototypicality(Metric):
    name = "prototypicality"

    def score(self, part: PartData, cfg) -> np.ndarray:
        return part.dist.astype(np.float32)
