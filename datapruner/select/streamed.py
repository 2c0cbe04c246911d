"""The selection of policy.select_table, decided from per-part summaries: exact filter fractions, budget
and order cuts (select/cut.py) and per-cluster sums, so that no step holds more than one part's rows.

A `Selection` is what the decision leaves: the filters' stages and the budget's cut. `part_verdict` then
gives any one part its rows' kept and reasons, equal row for row to what select_table gives them in the
whole table. Only the built-in filters and budgets are known here (`streamable` says whether a policy
uses only those); a plug-in's function sees the whole table, so those policies run in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir
from datapruner.plugins import BUDGETS, FILTERS
from datapruner.select import budgets, dbp, filters
from datapruner.select.cut import Cut, Rows, first_in_order, order_keys
from datapruner.select.policy import (KEPT, LEFT_GLOBAL, LEFT_QUOTA, Reasons, budget_name, enough_alive, kept_count,
                                      order_values, removed_by)

BUILTIN_FILTERS = {"semdedup": filters.semdedup_filter, "clip_score": filters.clip_score_filter,
                   "el2n_probe": filters.el2n_offset_filter}
BUILTIN_BUDGETS = {"global": budgets.global_budget, "cluster": budgets.uniform_cluster_budget,
                   "dbp": dbp.dbp_budget}


def streamable(cfg: Config) -> bool:
    """Whether every filter and the budget are the built-ins this module reproduces."""
    named = all(BUILTIN_FILTERS.get(f["name"]) is FILTERS.get(f["name"]) for f in cfg.filters)
    budget = budget_name(cfg)
    return named and BUILTIN_BUDGETS.get(budget) is BUDGETS.get(budget)


class ScoreParts:
    """The scores parts, read a few columns at a time."""

    def __init__(self, run: RunDir):
        self.paths = [run.scores(p) for p in run.part_ids()]
        for path in self.paths:
            if not path.exists():
                raise DataprunerError(f"{path} is missing: run `datapruner select` (which scores) first")
        counts = [pq.ParquetFile(p).metadata.num_rows for p in self.paths]
        self.starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
        self.columns = pq.read_schema(self.paths[0]).names if self.paths else []

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    def read(self, i: int, columns: list[str]) -> pa.Table:
        return pq.read_table(self.paths[i], columns=sorted(set(columns)))

    def names(self, i: int):
        return lambda positions: self.read(i, ["shard", "key"]).take(pa.array(positions))


@dataclass
class Stage:
    """One filter: row by row (a threshold), or a cut of the alive rows' highest values (a fraction)."""

    name: str
    column: str
    mode: str
    value: float
    cut: Cut | None = None

    def removed(self, table: pa.Table, start: int, alive: np.ndarray) -> np.ndarray:
        values = filters.score_column(table, self.column)
        if self.mode == "eps":
            return alive & (values > 1.0 - self.value)
        if self.mode == "threshold":
            return alive & (values < self.value)
        return self.cut.member(self.rows(table, start, alive, None)) & alive

    def rows(self, table: pa.Table, start: int, alive: np.ndarray, names) -> Rows:
        values = filters.score_column(table, self.column)
        highest_first = -(-values) if self.column == "clip_score" else -values  # as highest_alive is given them
        return Rows(start, np.zeros(len(values), np.int64), order_keys(highest_first), alive, names)


@dataclass
class Selection:
    stages: list[Stage]
    budget: str
    groups_by_cluster: bool
    cut: Cut
    clusters_table: pa.Table | None = None  # a budget's per-cluster table (dbp)


def alive_after(stages: list[Stage], table: pa.Table, start: int, reasons: Reasons | None = None) -> np.ndarray:
    alive = np.ones(table.num_rows, bool)
    for stage in stages:
        removed = stage.removed(table, start, alive)
        if reasons is not None:
            reasons.set(removed, removed_by(stage.name))
        alive &= ~removed
    return alive


def part_verdict(selection: Selection, table: pa.Table, start: int, cfg: Config) -> tuple[np.ndarray, pa.Array]:
    """(kept, reason) for one part's rows; `start` is its first row's place among all parts."""
    reasons = Reasons(table.num_rows, [s.name for s in selection.stages])
    alive = alive_after(selection.stages, table, start, reasons)
    kept = selection.cut.member(_order_rows(selection.groups_by_cluster, table, start, alive, None, cfg))
    reasons.set(kept, KEPT)
    reasons.set(alive & ~kept, LEFT_QUOTA if selection.groups_by_cluster else LEFT_GLOBAL)
    return kept, reasons.column()


def _order_rows(by_cluster: bool, table: pa.Table, start: int, alive, names, cfg: Config) -> Rows:
    group = table.column("cluster").to_numpy().astype(np.int64) if by_cluster \
        else np.zeros(table.num_rows, np.int64)
    return Rows(start, group, order_keys(order_values(table, cfg)), alive, names)


def decide(parts: ScoreParts, keep: float, cfg: Config) -> Selection:
    """The filters' cuts, one after another, then the budget's; each from passes over the parts."""
    k = kept_count(keep, parts.rows)
    stages: list[Stage] = []
    for spec in cfg.filters:
        options = {key: v for key, v in spec.items() if key != "name"}
        mode, value = filters.one_mode(spec["name"], options)
        filters.score_column(_schema_table(parts), spec["name"])
        stage = Stage(spec["name"], spec["name"], mode, value)
        if mode in ("fraction", "offset"):
            stage.cut = _filter_cut(parts, stages, stage)
        stages.append(stage)
    budget = budget_name(cfg)
    order_values(_schema_table(parts), cfg)  # the order's own errors (an unknown order, a missing column)
    sums = _alive_sums(parts, stages, budget)
    enough_alive(int(sums["alive"]), k, keep)
    clusters_table, quotas = _quotas(budget, sums, k, cfg)
    by_cluster = quotas is not None
    cut = first_in_order(lambda: _passes(parts, stages, by_cluster, cfg), quotas if by_cluster else np.array([k]))
    return Selection(stages, budget, by_cluster, cut, clusters_table)


def _schema_table(parts: ScoreParts) -> pa.Table:
    """An empty table with the scores' columns (for the checks that name a missing column)."""
    return pa.table({c: pa.array([], pa.float32()) for c in parts.columns})


def _stage_columns(stages: list[Stage]) -> list[str]:
    return [f"score_{s.column}" for s in stages]


def _filter_cut(parts: ScoreParts, before: list[Stage], stage: Stage) -> Cut:
    alive = sum(int(alive_after(before, parts.read(i, _stage_columns(before)), int(parts.starts[i])).sum())
                for i in range(len(parts.paths)))

    def passes():
        for i in range(len(parts.paths)):
            table = parts.read(i, _stage_columns([*before, stage]))
            start = int(parts.starts[i])
            yield stage.rows(table, start, alive_after(before, table, start), parts.names(i))

    return first_in_order(passes, np.array([round(stage.value * alive)]))


def _passes(parts: ScoreParts, stages: list[Stage], by_cluster: bool, cfg: Config):
    order = ["score_random"] if cfg.order == "random" else [f"score_{cfg.metric}"]
    for i in range(len(parts.paths)):
        table = parts.read(i, ["cluster", *order, *_stage_columns(stages)])
        start = int(parts.starts[i])
        yield _order_rows(by_cluster, table, start, alive_after(stages, table, start), parts.names(i), cfg)


def _alive_sums(parts: ScoreParts, stages: list[Stage], budget: str) -> dict:
    """The alive count and, per cluster, the alive sizes (and for dbp the sums of distance and score_dbp,
    added in row order as np.bincount adds them over the whole table)."""
    if budget == "dbp":
        dbp.require_dbp_scores(parts.columns)
    extra = ["dist_to_centroid", "score_dbp"] if budget == "dbp" else []
    out = {"alive": 0, "top": -1, "sizes": np.zeros(0, np.int64), "dist": np.zeros(0), "dbp": np.zeros(0)}
    for i in range(len(parts.paths)):
        table = parts.read(i, ["cluster", *extra, *_stage_columns(stages)])
        alive = alive_after(stages, table, int(parts.starts[i]))
        clusters = table.column("cluster").to_numpy()
        out["alive"] += int(alive.sum())
        if len(clusters):
            out["top"] = max(out["top"], int(clusters.max()))
        _grow(out, out["top"] + 1)
        out["sizes"] += np.bincount(clusters[alive], minlength=len(out["sizes"]))
        if extra:
            np.add.at(out["dist"], clusters[alive], table.column("dist_to_centroid").to_numpy().astype(np.float64)[alive])
            np.add.at(out["dbp"], clusters[alive], table.column("score_dbp").to_numpy().astype(np.float64)[alive])
    return out


def _grow(sums: dict, n: int) -> None:
    for name in ("sizes", "dist", "dbp"):
        if len(sums[name]) < n:
            sums[name] = np.r_[sums[name], np.zeros(n - len(sums[name]), sums[name].dtype)]


def _quotas(budget: str, sums: dict, k: int, cfg: Config) -> tuple[pa.Table | None, np.ndarray | None]:
    if budget == "global":
        return None, None
    sizes = sums["sizes"]
    if budget == "cluster":
        return None, budgets.uniform_quotas(sizes, k)
    table = dbp.dbp_table(sizes, dbp.means(sums["dist"], sizes), dbp.means(sums["dbp"], sizes), k, cfg)
    return table, table.column("quota").to_numpy()
