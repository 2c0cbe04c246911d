"""The manifest barrier: keep.parquet (every sample, kept or not, and why), keep_uids.npy, summary.json."""

from __future__ import annotations

import collections

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapruner.config import Config
from datapruner.io.atomic import save_npy, save_parquet, write_json
from datapruner.io.rundir import RunDir
from datapruner.reasons import counted_as, invalid
from datapruner.select.policy import budget_name, select_table
from datapruner.select.scores import load_errors, load_scores


def token(ctx, part: str) -> str:
    """The policy and the tokens of the metrics it reads (not of extra columns the scores may hold)."""
    from datapruner.metrics.step import metric_token, policy_metrics
    from datapruner.steps import token_of

    cfg = ctx.cfg
    metrics = {m: metric_token(ctx, m) for m in policy_metrics(cfg)}
    options = {m: cfg.options_for(m) for m in metrics}
    return token_of(cfg.keep, cfg.metric, cfg.order, cfg.budget, list(cfg.filters), options, cfg.seed, metrics)


def outputs(run: RunDir, part: str) -> list:
    budgets = sorted(run.manifest_dir.glob("*_clusters.parquet")) if run.manifest_dir.is_dir() else []
    return [run.keep_parquet, run.keep_uids, run.summary_json, *budgets]


def run(ctx, part: str) -> dict:
    return build_manifest(ctx.run, ctx.cfg.keep, ctx.cfg)


def build_manifest(run: RunDir, keep: float, cfg: Config) -> dict:
    scores = load_scores(run)
    notes: dict = {}
    selected = select_table(scores, keep, cfg, notes)
    manifest = _with_error_rows(selected, load_errors(run))
    save_parquet(run.keep_parquet, manifest)
    uids = datacomp_uids(selected.filter(selected.column("kept")))
    if uids is not None:
        save_npy(run.keep_uids, uids)
    summary = summarise(manifest, keep, cfg)
    if "budget_clusters" in notes:
        summary["budget"] = budget_report(run, notes["budget_clusters"], budget_name(cfg))
    write_json(run.summary_json, summary)
    return summary


def budget_report(run: RunDir, clusters: pa.Table, budget: str) -> dict:
    """Save a budget's per-cluster table as manifest/<budget>_clusters.parquet; return its summary."""
    import json

    path = run.budget_clusters(budget)
    save_parquet(path, clusters)
    summary = json.loads((clusters.schema.metadata or {}).get(b"summary", b"{}"))
    return {"name": budget, "clusters_file": str(path), **summary}


def _with_error_rows(selected: pa.Table, errors: pa.Table | None) -> pa.Table:
    if errors is None:
        return selected
    reasons = pa.array([invalid(stage, text) for stage, text in
                        zip(errors.column("stage").to_pylist(), errors.column("reason").to_pylist())], pa.string())
    rows = pa.table({"shard": errors.column("shard"), "key": errors.column("key"),
                     "kept": pa.array(np.zeros(errors.num_rows, bool)), "reason": reasons})
    return pa.concat_tables([selected, rows], promote_options="default")


def datacomp_uids(kept: pa.Table) -> np.ndarray | None:
    """DataComp's subset format: each 128-bit hex uid as two uint64 (high, low), sorted."""
    if "uid" not in kept.column_names or kept.column("uid").null_count == kept.num_rows:
        return None
    hexes = [u for u in kept.column("uid").to_pylist() if u is not None]
    try:
        pairs = [(int(u[:16], 16), int(u[16:32], 16)) for u in hexes]
    except ValueError:
        return None  # uids that are not DataComp hex strings: the parquet manifest still has them
    out = np.array(pairs, dtype=np.dtype("u8,u8"))
    out.sort()
    return out


def summarise(manifest: pa.Table, keep: float, cfg: Config) -> dict:
    kept = manifest.column("kept").to_numpy(zero_copy_only=False)
    reasons = collections.Counter(counted_as(r) for r in manifest.column("reason").to_pylist())
    valid = manifest.filter(pc.is_valid(manifest.column("cluster")))
    clusters = valid.column("cluster").to_numpy()
    valid_kept = valid.column("kept").to_numpy(zero_copy_only=False)
    sizes = np.bincount(clusters, minlength=int(clusters.max()) + 1 if len(clusters) else 0)
    kept_per = np.bincount(clusters[valid_kept], minlength=len(sizes))
    return {
        "keep_fraction": keep,
        "counts": {"samples": manifest.num_rows, "valid": valid.num_rows, "invalid": manifest.num_rows - valid.num_rows,
                   "kept": int(kept.sum())},
        "reasons": dict(sorted(reasons.items())),
        "clusters": {"size": sizes.tolist(), "kept": kept_per.tolist()},
        "policy": {"metric": cfg.metric, "order": cfg.order, "budget": budget_name(cfg), "filters": list(cfg.filters),
                   "seed": cfg.seed},
    }
