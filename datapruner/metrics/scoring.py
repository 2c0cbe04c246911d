"""Which metrics a policy needs, their fits, and each part's scores (the fit and measure steps' room)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from datapruner.cluster.assign import part_assignment
from datapruner.config import Config
from datapruner.embed.outputs import read_metadata
from datapruner.io.atomic import save_parquet
from datapruner.io.rundir import RunDir
from datapruner.metrics.base import PartData
from datapruner.metrics.registry import get_metric
from datapruner.plugins import METRICS


def metrics_needed(cfg: Config) -> list[str]:
    """Always prototypicality and random (free, and the baselines); then the policy's metric and filters,
    the budget when a metric shares its name (the dbp budget reads score_dbp), and cfg.metrics."""
    return list(dict.fromkeys([*policy_metrics(cfg), *cfg.metrics]))


def policy_metrics(cfg: Config) -> list[str]:
    budget = [cfg.budget] if cfg.budget in METRICS.names() else []
    return list(dict.fromkeys(["prototypicality", "random", cfg.metric, *(f["name"] for f in cfg.filters), *budget]))


def fitted_needed(cfg: Config) -> list[str]:
    """The metrics of this policy that fit a state first (their fit step's parts)."""
    return [m for m in metrics_needed(cfg) if get_metric(m).fitted]


def fit_metric(run: RunDir, name: str, cfg: Config) -> dict:
    metric = get_metric(name)
    return metric.fit(run, cfg, metric.options(cfg)) or {}


def score_part(run: RunDir, part: str, cfg: Config) -> int:
    data = load_part(run, part, cfg)
    columns = {
        "shard": data.meta.column("shard"), "key": data.meta.column("key"),
        "cluster": pa.array(data.cluster), "dist_to_centroid": pa.array(data.dist),
    }
    for name in metrics_needed(cfg):
        columns[f"score_{name}"] = pa.array(np.asarray(get_metric(name).score(data, cfg), np.float32))
    save_parquet(run.scores(part), pa.table(columns))
    return data.meta.num_rows


def load_part(run: RunDir, part: str, cfg: Config) -> PartData:
    clusters, dist = part_assignment(run, part)
    return PartData(run, part, read_metadata(run, part, run.shard_of(part)), clusters, dist, np.load(run.centroids))

