"""What a metric is: an optional barrier fit over the run, then a per-part score (higher = harder)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from datapruner.config import Config
from datapruner.io.rundir import RunDir


@dataclass
class PartData:
    """Everything the score map step knows about one part; rows are in metadata order."""

    run: RunDir
    part: str
    img_emb: np.ndarray  # (n, d) float16, L2-normalised (memory-mapped)
    text_emb: np.ndarray | None
    meta: pa.Table  # shard, key, offset, length, [uid, caption, label]
    cluster: np.ndarray  # (n,) int32
    dist: np.ndarray  # (n,) float32, cosine distance to the nearest centroid
    centroids: np.ndarray  # (k, d) float32


class Metric:
    """Subclass, set `name`, implement `score`; override `fit` when the metric needs global state.

    `fit` runs once on the driver after clustering (a barrier) and stores what it learns under
    `RUN/metrics/<name>/`; `score` runs per part, possibly in another process, and must be a pure
    function of the part and that stored state.
    """

    name: str = ""

    def fit(self, run: RunDir, cfg: Config) -> None:
        return None

    def score(self, part: PartData, cfg: Config) -> np.ndarray:
        raise NotImplementedError

    def state_token(self, run: RunDir) -> str:
        """Changes whenever the fitted state changes, so stale score parts are recomputed."""
        return ""
