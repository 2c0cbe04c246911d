"""verify --task clip's pruning methods, scored on the run's stored image and text embeddings of one pool and
chosen by datapruner's own selection (select_table), as `datapruner select` would with the same options.

Each method is a set of Config overrides; `semdedup_dbp` is configs/semdedup-dbp.yaml's policy (a test keeps
them equal). Scores come from the pipeline's metric code: k-means, prototypicality, dbp and random as
verify/scoring.py computes them per pool and seed, SemDeDup's duplicate score (metrics/semdedup.py, in each
cluster) and clip_score's image-text cosine (metrics/clip_score.py).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from datapruner.errors import DataprunerError

SEMDEDUP_DBP = {"metric": "prototypicality", "order": "hard", "budget": "dbp",
                "filters": ({"name": "semdedup", "eps": 0.001}, {"name": "semdedup", "fraction": 0.1}),
                "metric_options": {"semdedup": {"order": "hard", "max_rows": 1000000, "block": 4096},
                                   "dbp": {"neighbours": 20, "tau": 0.1, "beta": 0.5}}}
CLIP_METHODS: dict[str, dict] = {
    "random": {"metric": "random", "order": "random", "budget": "global"},
    "semdedup_dbp": SEMDEDUP_DBP,  # the README's recipe
    "semdedup": {"metric": "semdedup", "order": "easy", "budget": "global"},  # the least duplicated kept
    "clip_score": {"metric": "clip_score", "order": "hard", "budget": "global"},  # the best-aligned pairs kept
    "dbp": {"metric": "dbp", "order": "hard", "budget": "dbp"},  # = configs/dbp.yaml
    "prototypicality": {"metric": "prototypicality", "order": "hard", "budget": "global"},
}
DEFAULT_METHODS = tuple(CLIP_METHODS)


def check_methods(methods) -> None:
    unknown = [m for m in methods if m not in CLIP_METHODS]
    if unknown or not methods:
        raise DataprunerError(f"unknown verify --task clip methods {unknown or '(none given)'}: choose from "
                              f"{', '.join(CLIP_METHODS)}")


def method_config(cfg, method: str, seed: int):
    overrides = {"filters": (), **CLIP_METHODS[method], "seed": seed}
    options = {**cfg.metric_options, **overrides.pop("metric_options", {})}
    return cfg.replace(**overrides, metric_options=options)


def pool_table(ids: pa.Table, img: np.ndarray, txt: np.ndarray, cfg, seed: int) -> pa.Table:
    """`ids` (shard, key, label) with cluster, dist_to_centroid and every method's score column."""
    from datapruner.embed.outputs import unit_rows
    from datapruner.metrics.clip_score import rowwise_cosine
    from datapruner.verify.scoring import PoolData, pool_scores

    unit = unit_rows(img)
    table = pool_scores(PoolData(ids.select(["shard", "key", "label"]), unit, None, None),
                        {"prototypicality", "dbp", "random"}, cfg, seed, el2n=None)
    table = table.append_column("score_semdedup", pa.array(_semdedup(unit, table, cfg)))
    return table.append_column("score_clip_score", pa.array(rowwise_cosine(unit, unit_rows(txt))))


def _semdedup(unit: np.ndarray, table: pa.Table, cfg) -> np.ndarray:
    from datapruner.metrics.cluster_groups import ClusterBatch
    from datapruner.metrics.semdedup import DEFAULTS, duplicate_scores

    options = {**DEFAULTS, **SEMDEDUP_DBP["metric_options"]["semdedup"], **cfg.options_for("semdedup")}
    n = len(unit)
    batch = ClusterBatch(unit, table.column("cluster").to_numpy().astype(np.int32),
                         table.column("dist_to_centroid").to_numpy().astype(np.float32),
                         np.zeros(n, np.int32), np.arange(n, dtype=np.int64))
    return duplicate_scores(batch, options["order"], int(options["block"]), cfg.device).astype(np.float32)


def kept_rows(table: pa.Table, method: str, keep: float, cfg, seed: int) -> np.ndarray:
    """Row indices of `table` that `method` keeps at fraction `keep` (all of them at 1.0)."""
    from datapruner.select.policy import select_table

    if keep >= 1.0:
        return np.arange(table.num_rows)
    kept = select_table(table, keep, method_config(cfg, method, seed)).column("kept").to_numpy(zero_copy_only=False)
    return np.flatnonzero(kept)
