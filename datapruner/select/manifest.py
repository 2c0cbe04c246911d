"""The manifest (the select step's room): keep.parquet (every sample, kept or not, and why), keep_uids.npy, summary.json."""

from __future__ import annotations

import collections
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapruner.config import Config
from datapruner.io.atomic import atomic_path, save_npy, save_parquet, write_json
from datapruner.io.rundir import RunDir
from datapruner.reasons import counted_as, invalid
from datapruner.select.policy import budget_name, select_table
from datapruner.select.scores import conform, load_errors, load_scores, part_schema, part_table, parts_schema
from datapruner.select.streamed import ScoreParts, decide, part_verdict, streamable

log = logging.getLogger(__name__)


def outputs(run: RunDir) -> list:
    """What build_manifest writes (the per-cluster budget tables as well)."""
    budgets = sorted(run.manifest_dir.glob("*_clusters.parquet")) if run.manifest_dir.is_dir() else []
    return [run.keep_parquet, run.keep_uids, run.summary_json, *budgets]


MANIFEST_ROW_GROUP = 1 << 16  # rows per row group of keep.parquet (what the part-by-part writer buffers)


def build_manifest(run: RunDir, keep: float, cfg: Config) -> dict:
    """Part by part (select/streamed.py) when the policy uses only built-in filters and budgets; else the
    whole table in memory (a plug-in's function is given the whole table). Both write the same files."""
    if streamable(cfg):
        return build_manifest_by_parts(run, keep, cfg)
    log.info("select: a plug-in filter or budget sees the whole table: selecting in memory")
    return build_manifest_in_memory(run, keep, cfg)


def build_manifest_in_memory(run: RunDir, keep: float, cfg: Config) -> dict:
    """The reference: every row loaded, select_table over the whole table."""
    scores = load_scores(run)
    notes: dict = {}
    selected = select_table(scores, keep, cfg, notes)
    manifest = _with_error_rows(selected, load_errors(run))
    with atomic_path(run.keep_parquet) as tmp:
        pq.write_table(manifest, tmp, row_group_size=MANIFEST_ROW_GROUP)
    tally, uids = Tally(), UidTally(selected.schema)
    tally.add(manifest)
    uids.add(selected)
    return _finish(run, keep, cfg, tally, uids, notes.get("budget_clusters"))


def build_manifest_by_parts(run: RunDir, keep: float, cfg: Config) -> dict:
    """The same files with O(clusters + ties) rows in memory besides one part (and keep_uids' kept uids)."""
    selection = decide(ScoreParts(run), keep, cfg)
    schema, clashing = parts_schema([part_schema(run, p) for p in run.part_ids()])
    selected_schema = schema.append(pa.field("kept", pa.bool_())).append(pa.field("reason", pa.string()))
    tally, uids = Tally(), UidTally(selected_schema)
    start = 0
    with atomic_path(run.keep_parquet) as tmp, RowGroupWriter(tmp, selected_schema) as writer:
        for part, shard in zip(run.part_ids(), run.shards()):
            table = conform(part_table(run, part, shard), schema, clashing)
            kept, reason = part_verdict(selection, table, start, cfg)
            table = table.append_column("kept", pa.array(kept)).append_column("reason", reason)
            start += table.num_rows
            writer.write(table)
            tally.add(table)
            uids.add(table)
        errors = load_errors(run)
        if errors is not None:
            rows = _with_error_rows(selected_schema.empty_table(), errors)
            writer.write(rows)
            tally.add(rows)
    return _finish(run, keep, cfg, tally, uids, selection.clusters_table)


def _finish(run: RunDir, keep: float, cfg: Config, tally: "Tally", uids: "UidTally", clusters: pa.Table | None) -> dict:
    uid_counts = uids.save(run)
    summary = tally.summary(keep, cfg)
    if uid_counts is not None:
        summary["keep_uids"] = uid_counts
    if clusters is not None:
        summary["budget"] = budget_report(run, clusters, budget_name(cfg))
    write_json(run.summary_json, summary)
    return summary


class RowGroupWriter:
    """keep.parquet written as pq.write_table(whole, row_group_size=MANIFEST_ROW_GROUP) writes it, from
    tables given one after another: full row groups are written as they fill."""

    def __init__(self, path, schema: pa.Schema):
        self.writer = pq.ParquetWriter(path, schema)
        self.pending: list[pa.Table] = []
        self.rows = 0

    def __enter__(self):
        return self

    def write(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows >= MANIFEST_ROW_GROUP:
            whole = pa.concat_tables(self.pending)
            full = (self.rows // MANIFEST_ROW_GROUP) * MANIFEST_ROW_GROUP
            self.writer.write_table(whole.slice(0, full), row_group_size=MANIFEST_ROW_GROUP)
            rest = whole.slice(full)
            self.pending, self.rows = [rest], rest.num_rows

    def __exit__(self, kind, value, trace):
        if kind is None and self.rows:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=MANIFEST_ROW_GROUP)
        self.writer.close()


class UidTally:
    """keep_uids.npy for the kept samples whose uid DataComp can read; nothing when the data has no uids.

    Kept samples with no uid, or one that is not a 128-bit hex number, are left out of the file (and
    logged once); the file exists when it lists any uid."""

    def __init__(self, schema: pa.Schema):
        self.has_column = "uid" in schema.names
        self.rows = self.nulls = 0
        self.pieces: list[np.ndarray] = []
        self.skipped: collections.Counter = collections.Counter()

    def add(self, selected: pa.Table) -> None:
        if not self.has_column:
            return
        self.rows += selected.num_rows
        self.nulls += selected.column("uid").null_count
        uids, skipped = datacomp_uids(selected.filter(selected.column("kept")).column("uid"))
        self.pieces.append(uids)
        self.skipped.update(skipped)

    def save(self, run: RunDir) -> dict | None:
        """Returns {"written", "missing", "not_hex"}, or None without uids."""
        if not self.has_column or self.nulls == self.rows:
            return None
        uids = np.sort(np.concatenate(self.pieces)) if self.pieces else np.zeros(0, U16)
        if len(uids):
            save_npy(run.keep_uids, uids)
        counts = {"written": len(uids), "missing": self.skipped["missing"], "not_hex": self.skipped["not hex"]}
        if counts["missing"] or counts["not_hex"]:
            log.warning("%s lists %d kept uid(s); %d kept sample(s) left out: %d without a uid, %d not 128-bit hex",
                        run.keep_uids, counts["written"], counts["missing"] + counts["not_hex"], counts["missing"],
                        counts["not_hex"])
        return counts


def save_keep_uids(run: RunDir, selected: pa.Table) -> dict | None:
    tally = UidTally(selected.schema)
    tally.add(selected)
    return tally.save(run)


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
    tally = Tally()
    tally.add(manifest)
    return tally.summary(keep, cfg)


class Tally:
    """summary.json's counts, added up from the manifest's rows a table at a time."""

    def __init__(self):
        self.samples = self.valid = self.kept = 0
        self.reasons: collections.Counter = collections.Counter()
        self.sizes = np.zeros(0, np.int64)
        self.kept_per = np.zeros(0, np.int64)

    def add(self, rows: pa.Table) -> None:
        kept = rows.column("kept").to_numpy(zero_copy_only=False)
        self.samples += rows.num_rows
        self.kept += int(kept.sum())
        for item in pc.value_counts(rows.column("reason")).to_pylist():
            self.reasons[counted_as(item["values"])] += item["counts"]
        if "cluster" not in rows.column_names:
            return
        valid = pc.is_valid(rows.column("cluster")).to_numpy(zero_copy_only=False)
        clusters = rows.column("cluster").to_numpy(zero_copy_only=False)[valid].astype(np.int64)
        self.valid += len(clusters)
        self.sizes = _added(self.sizes, np.bincount(clusters))
        self.kept_per = _added(self.kept_per, np.bincount(clusters[kept[valid]]))

    def summary(self, keep: float, cfg: Config) -> dict:
        kept_per = np.r_[self.kept_per, np.zeros(len(self.sizes) - len(self.kept_per), np.int64)]
        return {
            "keep_fraction": keep,
            "counts": {"samples": self.samples, "valid": self.valid, "invalid": self.samples - self.valid,
                       "kept": self.kept},
            "reasons": dict(sorted(self.reasons.items())),
            "clusters": {"size": self.sizes.tolist(), "kept": kept_per.tolist()},
            "policy": {"metric": cfg.metric, "order": cfg.order, "budget": budget_name(cfg),
                       "filters": list(cfg.filters), "seed": cfg.seed},
        }


def _added(total: np.ndarray, more: np.ndarray) -> np.ndarray:
    n = max(len(total), len(more))
    return np.r_[total, np.zeros(n - len(total), np.int64)] + np.r_[more, np.zeros(n - len(more), np.int64)]
