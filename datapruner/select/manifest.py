"""The manifest barrier: keep.parquet (every sample, kept or not, and why), keep_uids.npy, summary.json."""

from __future__ import annotations

import collections
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapruner.config import Config
from datapruner.io.atomic import save_npy, save_parquet, write_json
from datapruner.io.rundir import RunDir
from datapruner.reasons import counted_as, invalid
from datapruner.select.policy import budget_name, select_table
from datapruner.select.scores import load_errors, load_scores

log = logging.getLogger(__name__)


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
    uid_counts = save_keep_uids(run, selected)
    summary = summarise(manifest, keep, cfg)
    if uid_counts is not None:
        summary["keep_uids"] = uid_counts
    if "budget_clusters" in notes:
        summary["budget"] = budget_report(run, notes["budget_clusters"], budget_name(cfg))
    write_json(run.summary_json, summary)
    return summary


def save_keep_uids(run: RunDir, selected: pa.Table) -> dict | None:
    """keep_uids.npy for the kept samples whose uid DataComp can read; None when the data has no uids.

    Returns {"written", "missing", "not_hex"}: kept samples with no uid, or one that is not a 128-bit hex
    number, are left out of the file (and logged once); the file exists when it lists any uid."""
    if "uid" not in selected.column_names or selected.column("uid").null_count == selected.num_rows:
        return None
    kept = selected.filter(selected.column("kept")).column("uid")
    uids, skipped = datacomp_uids(kept)
    if len(uids):
        save_npy(run.keep_uids, uids)
    counts = {"written": len(uids), "missing": skipped["missing"], "not_hex": skipped["not hex"]}
    if counts["missing"] or counts["not_hex"]:
        log.warning("%s lists %d kept uid(s); %d kept sample(s) left out: %d without a uid, %d not 128-bit hex",
                    run.keep_uids, counts["written"], counts["missing"] + counts["not_hex"], counts["missing"],
                    counts["not_hex"])
    return counts


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


U16 = np.dtype("u8,u8")  # DataComp's subset dtype (resharder.py `u16`)
_HEX_32 = "^[0-9a-fA-F]{1,32}$"


def datacomp_uids(uids: pa.Array | pa.ChunkedArray | list) -> tuple[np.ndarray, collections.Counter]:
    """DataComp's subset format, by value as its resharder computes it: each uid is
    `divmod(int(uid, 16), 2**64)` → (high, low) as np.dtype("u8,u8"), and the array is sorted (the
    resharder binary-searches it). So a uid whose leading zeros were dropped is the same number.

    Returns the array and the uids left out by why: "missing" (null) or "not hex" (what int(uid, 16)
    refuses, or a number outside [0, 2**128), which DataComp could not store either)."""
    column = uids if isinstance(uids, (pa.Array, pa.ChunkedArray)) else pa.array(uids, pa.string())
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    skipped = collections.Counter(missing=column.null_count)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        skipped["not hex"] = len(column) - column.null_count
        return np.zeros(0, U16), skipped
    plain = pc.fill_null(pc.match_substring_regex(column, _HEX_32), False)
    fast = _hex_pairs(column.filter(plain))
    others = column.filter(pc.and_(pc.invert(plain), pc.is_valid(column))).to_pylist()
    slow = []
    for uid in others:  # what int() also takes: "0x" prefixes, "_" separators, surrounding blanks
        try:
            value = int(uid, 16)
        except ValueError:
            value = -1
        if 0 <= value < 2**128:
            slow.append(divmod(value, 2**64))
        else:
            skipped["not hex"] += 1
    out = np.concatenate([fast, np.array(slow, U16)]) if slow else fast
    out.sort()
    return out, skipped


def _hex_pairs(column: pa.Array) -> np.ndarray:
    """(high, low) of hex strings of 1 to 32 digits, vectorised: left-padded to 32 digits, as numbers."""
    out = np.zeros(len(column), U16)
    if not len(column):
        return out
    padded = pc.cast(pc.utf8_lpad(column, 32, "0"), pa.binary(32))
    chars = np.frombuffer(padded.buffers()[1], np.uint8, count=32 * (padded.offset + len(padded)))
    chars = chars.reshape(-1, 32)[padded.offset:].astype(np.uint64)
    digits = np.where(chars <= ord("9"), chars - ord("0"), (chars | 0x20) - (ord("a") - 10))
    for field, cols in (("f0", range(0, 16)), ("f1", range(16, 32))):
        value = np.zeros(len(column), np.uint64)
        for c in cols:
            value = (value << np.uint64(4)) | digits[:, c]
        out[field] = value
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
