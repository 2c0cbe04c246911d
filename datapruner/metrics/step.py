"""The score map step: assign each part's embeddings to centroids and score them with every metric."""

from __future__ import annotations

from functools import partial

import numpy as np
import pyarrow as pa

from datapruner.cluster.assign import centroids_token, part_assignment
from datapruner.config import Config
from datapruner.embed.outputs import read_img_emb, read_metadata, read_text_emb, save_parquet
from datapruner.io.rundir import RunDir
from datapruner.metrics.base import PartData
from datapruner.metrics.registry import get_metric

STEP = "score"


def metrics_needed(cfg: Config) -> list[str]:
    """Always prototypicality and random (free, and the baselines); then the policy's metric and filters,
    the budget when a metric shares its name (the dbp budget reads score_dbp), and cfg.metrics."""
    from datapruner.metrics.registry import available

    budget = [cfg.budget] if cfg.budget in available() else []
    names = ["prototypicality", "random", cfg.metric, *(f["name"] for f in cfg.filters), *budget, *cfg.metrics]
    return list(dict.fromkeys(names))


def scores_path(run: RunDir, part: str):
    return run / f"scores/part-{part}.parquet"


def scores_cover(run: RunDir, cfg: Config) -> bool:
    """Whether every score part exists and holds each column this policy needs."""
    import pyarrow.parquet as pq

    paths = [scores_path(run, part) for part in run.part_ids()]
    if not all(p.exists() for p in paths):
        return False
    have = set(pq.read_schema(paths[0]).names)
    return all(f"score_{m}" in have for m in metrics_needed(cfg))


def fit_metrics(run: RunDir, cfg: Config) -> str:
    """The barrier half of scoring; returns the token that score parts are checked against."""
    tokens = [centroids_token(run), str(cfg.seed)]
    for name in metrics_needed(cfg):
        metric = get_metric(name)
        metric.fit(run, cfg)
        tokens.append(f"{name}:{metric.state_token(run)}")
    return "|".join(tokens)


def score_part(item: tuple[str, str], run_root: str, cfg: Config, token: str) -> int:
    """Map step for one part: writes scores/part-{i}.parquet; returns its row count."""
    part, shard = item
    run = RunDir(run_root)
    if run.is_done(STEP, part, token):
        return -1
    data = load_part(run, part, shard, cfg)
    columns = {
        "shard": data.meta.column("shard"), "key": data.meta.column("key"),
        "cluster": pa.array(data.cluster), "dist_to_centroid": pa.array(data.dist),
    }
    for name in metrics_needed(cfg):
        columns[f"score_{name}"] = pa.array(np.asarray(get_metric(name).score(data, cfg), np.float32))
    save_parquet(scores_path(run, part), pa.table(columns))
    run.mark_done(STEP, part, token)
    return data.meta.num_rows


def load_part(run: RunDir, part: str, shard: str, cfg: Config) -> PartData:
    centroids = np.load(run / "clusters/centroids.npy")
    emb = read_img_emb(run, part)
    clusters, dist = part_assignment(run, part, cfg.device)
    return PartData(run, part, emb, read_text_emb(run, part), read_metadata(run, part, shard), clusters, dist, centroids)


def score_all(run: RunDir, cfg: Config, runner, progress: bool = True, parts: list[int] | None = None) -> dict:
    """Fit (a no-op when already fitted), then score every part, or only the parts with these indices."""
    token = fit_metrics(run, cfg)
    items = list(zip(run.part_ids(), run.shards()))
    if parts is not None:
        items = [items[i] for i in sorted(set(parts))]
    done = runner.map(partial(score_part, run_root=str(run.root), cfg=cfg, token=token), items, "score", progress)
    return {"parts": len(items), "parts_reused": sum(1 for n in done if n < 0), "metrics": metrics_needed(cfg)}
