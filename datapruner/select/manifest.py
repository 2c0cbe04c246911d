"""The manifest barrier: keep.parquet (every sample, kept or not, and why), keep_uids.npy, summary.json."""

from __future__ import annotations

import collections

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapruner.config import Config
from datapruner.embed.outputs import save_npy, save_parquet
from datapruner.io.rundir import RunDir, write_json
from datapruner.select.policy import budget_name, select_table
from datapruner.select.scores import load_errors, load_scores


def build_manifest(run: RunDir, keep: float, cfg: Config) -> dict:
    scores = load_scores(run)
    _remove_optional_outputs(run)
    notes: dict = {}
    selected = select_table(scores, keep, cfg, notes)
    manifest = _with_error_rows(selected, load_errors(run))
    save_parquet(run / "manifest/keep.parquet", manifest)
    uids = datacomp_uids(selected.filter(selected.column("kept")))
    if uids is not None:
        save_npy(run / "manifest/keep_uids.npy", uids)
    summary = summarise(manifest, keep, cfg)
    if "budget_clusters" in notes:
        summary["budget"] = budget_report(run, notes["budget_clusters"], budget_name(cfg))
    write_json(run / "manifest/summary.json", summary)
    return summary


def _remove_optional_outputs(run: RunDir) -> None:
    """Files only some policies or data write: a new selection must not leave an older one's behind."""
    for path in [run / "manifest/keep_uids.npy", *(run / "manifest").glob("*_clusters.parquet")]:
        path.unlink(missing_ok=True)


def budget_report(run: RunDir, clusters: pa.Table, budget: str) -> dict:
    """Save a budget's per-cluster table as manifest/<budget>_clusters.parquet; return its summary."""
    import json

    path = run / f"manifest/{budget}_clusters.parquet"
    save_parquet(path, clusters)
    summary = json.loads((clusters.schema.metadata or {}).get(b"summary", b"{}"))
    return {"name": budget, "clusters_file": str(path), **summary}


def _with_error_rows(selected: pa.Table, errors: pa.Table | None) -> pa.Table:
    if errors is None:
        return selected
    reasons = pc.binary_join_element_wise(pa.scalar("invalid at "), errors.column("stage"), pa.scalar(": "),
                                          errors.column("reason"), "")
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
    reasons = collections.Counter(manifest.column("reason").to_pylist())
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
