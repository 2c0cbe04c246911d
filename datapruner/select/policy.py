"""Selection (a barrier): filters → budget → order, over the scores table alone.

K = round(keep · N_valid) rows are kept exactly. Ties in the order are broken by (shard, key).
Every row leaves with `kept` and a `reason`.
"""

from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.plugins import BUDGETS, FILTERS

ORDERS = ("hard", "easy", "random")


def order_values(table: pa.Table, cfg: Config) -> np.ndarray:
    """Smaller sorts first: -score for hard, score for easy, the seeded hash for random."""
    if cfg.order not in ORDERS:
        raise DataprunerError(f"unknown order {cfg.order!r}: use one of {', '.join(ORDERS)}")
    if cfg.order == "random":
        return table.column("score_random").to_numpy().astype(np.float64)
    column = f"score_{cfg.metric}"
    if column not in table.column_names:
        raise DataprunerError(f"the scores have no {column!r}: rerun `datapruner score` with --metric {cfg.metric}")
    score = table.column(column).to_numpy().astype(np.float64)
    return -score if cfg.order == "hard" else score


def tiebreak_position(table: pa.Table) -> np.ndarray:
    """Each row's rank in (shard, key) order: the deterministic tie-break of every ordering."""
    tiebreak = pc.sort_indices(table.select(["shard", "key"]),
                               sort_keys=[("shard", "ascending"), ("key", "ascending")]).to_numpy()
    position = np.empty(len(tiebreak), np.int64)
    position[tiebreak] = np.arange(len(tiebreak))
    return position


def ranking(table: pa.Table, cfg: Config) -> np.ndarray:
    """Row indices, best first, with deterministic (shard, key) tie-breaks."""
    return np.lexsort((tiebreak_position(table), order_values(table, cfg)))


def budget_name(cfg: Config) -> str:
    """cfg.budget, except that a metric named like a budget (`--metric dbp`) implies it over the default global."""
    return cfg.metric if cfg.budget == "global" and cfg.metric in BUDGETS.names() else cfg.budget


KEPT, LEFT_GLOBAL, LEFT_QUOTA = "kept", "below the global budget", "below its cluster's quota"


def removed_by(name: str) -> str:
    return f"removed by filter {name}"


class Reasons:
    """One small code per row and the texts they stand for: the reason column without a string per row."""

    def __init__(self, n: int, filters: list[str]):
        self.texts = [KEPT, LEFT_GLOBAL, LEFT_QUOTA, *(removed_by(f) for f in filters)]
        self.codes = np.full(n, -1, np.int16)  # -1 only until every row has one

    def set(self, mask: np.ndarray, text: str) -> None:
        self.codes[mask] = self.texts.index(text)

    def column(self) -> pa.Array:
        return pc.take(pa.array(self.texts, pa.string()), pa.array(self.codes))


def apply_filters(table: pa.Table, cfg: Config, reasons: Reasons) -> np.ndarray:
    alive = np.ones(table.num_rows, bool)
    for spec in cfg.filters:
        name = spec["name"]
        removed = FILTERS.get(name)(table, alive.copy(), {k: v for k, v in spec.items() if k != "name"}, cfg) & alive
        reasons.set(removed, removed_by(name))
        alive &= ~removed
    return alive


def select_table(table: pa.Table, keep: float, cfg: Config, notes: dict | None = None) -> pa.Table:
    """The manifest rows for `table` (one row per valid sample): the input columns + kept + reason.

    When the budget explains itself with a per-cluster table, it is put in `notes["budget_clusters"]`.
    """
    k = kept_count(keep, table.num_rows)
    reasons = Reasons(table.num_rows, [f["name"] for f in cfg.filters])
    alive = apply_filters(table, cfg, reasons)
    enough_alive(int(alive.sum()), k, keep)
    budget = budget_name(cfg)
    quotas = BUDGETS.get(budget)(table, alive, k, cfg)
    if isinstance(quotas, pa.Table):
        if notes is not None:
            notes["budget_clusters"] = quotas
        quotas = quotas.column("quota").to_numpy()
    kept = take_in_order(table, alive, ranking(table, cfg), k, quotas)
    reasons.set(kept, KEPT)
    reasons.set(alive & ~kept, LEFT_GLOBAL if quotas is None else LEFT_QUOTA)
    return table.append_column("kept", pa.array(kept)).append_column("reason", reasons.column())


def kept_count(keep: float, valid: int) -> int:
    """K = round(keep · N_valid)."""
    if not 0.0 <= keep <= 1.0:
        raise DataprunerError(f"--keep must be a fraction in [0, 1], got {keep}")
    return round(keep * valid)


def enough_alive(alive: int, k: int, keep: float) -> None:
    if alive < k:
        raise DataprunerError(f"the filters left {alive} samples but keep={keep} asks for {k}: loosen the filters or keep less")


def take_in_order(table: pa.Table, alive: np.ndarray, order: np.ndarray, k: int, quotas: np.ndarray | None) -> np.ndarray:
    kept = np.zeros(len(alive), bool)
    order = order[alive[order]]
    if quotas is None:
        kept[order[:k]] = True
        return kept
    clusters = table.column("cluster").to_numpy()[order]
    rank_in_cluster = _rank_within_groups(clusters)
    kept[order[rank_in_cluster < quotas[clusters]]] = True
    return kept


def _rank_within_groups(groups: np.ndarray) -> np.ndarray:
    """For a sequence of group ids, how many earlier items share each item's group."""
    idx = np.argsort(groups, kind="stable")
    sorted_groups = groups[idx]
    starts = np.r_[0, np.flatnonzero(sorted_groups[1:] != sorted_groups[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    rank = np.empty(len(groups), np.int64)
    rank[idx] = np.arange(len(groups)) - run_start
    return rank

