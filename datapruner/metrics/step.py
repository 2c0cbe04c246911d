"""The fit barrier and the score map step: each part's assignment and every metric's score.

A metric's token hashes the centroids' digest, its name, the options its state depends on and the
seed; the score step's token lists the token of every metric it scores ("name=token;…"), so a part
scored with more metrics than asked for still covers the request (verify scores extra columns).
"""

from __future__ import annotations

from typing import Iterator

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


def metric_token(ctx, name: str) -> str:
    from datapruner.steps import barrier_digest, token_of

    metric = get_metric(name)
    return token_of(barrier_digest(ctx, "cluster", "centroids"), name, metric.token_options(ctx.cfg), ctx.cfg.seed)


# fit (barrier: one part per fitted metric) ---------------------------------------------------------------

def fitted_needed(ctx) -> list[str]:
    return [m for m in metrics_needed(ctx.cfg) if get_metric(m).fitted]


def fit_token(ctx, name: str) -> str:
    return metric_token(ctx, name)


def fit_outputs(run: RunDir, name: str) -> list:
    return [run.metric_dir(name)]


def fit(ctx, name: str) -> dict:
    metric = get_metric(name)
    return metric.fit(ctx.run, ctx.cfg, metric.options(ctx.cfg)) or {}


# score (map: one part per input shard) -------------------------------------------------------------------

def score_token(ctx, part: str) -> str:
    from datapruner.steps import barrier_digest

    key = ("score_token", barrier_digest(ctx, "cluster", "centroids"))  # the same for every part
    if key not in ctx.memo:
        ctx.memo[key] = ";".join(f"{m}={metric_token(ctx, m)}" for m in metrics_needed(ctx.cfg))
    return ctx.memo[key]


def covers(marked: str, wanted: str) -> bool:
    """A part scored with these metrics (and maybe more) at the same tokens serves the request."""
    return set(wanted.split(";")) <= set(marked.split(";"))


def score_outputs(run: RunDir, part: str) -> list:
    return [run.scores(part)]


def score(ctx, part_ids: list[str], state=None) -> Iterator[tuple[str, dict]]:
    for part in part_ids:
        yield part, {"rows": score_part(ctx.run, part, ctx.cfg)}


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

