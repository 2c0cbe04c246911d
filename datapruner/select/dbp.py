"""The `dbp` budget (Abbas et al. 2024): per-cluster keep counts from cluster complexity.

Per cluster j, over the samples still alive after the filters: d_intra = mean distance to the
centroid, C_j = mean score_dbp = d_intra · d_inter (see datapruner/metrics/dbp.py),
P = softmax(C / τ) over the non-empty clusters, and the keep counts N_j solve

    min Σ (N_j − P_j·K)²   s.t.  Σ N_j = K,  lb_j ≤ N_j ≤ |cluster j|,  lb_j = min(⌊β·K/k⌋, |cluster j|)

exactly (water-filling, datapruner/select/quotas.py), then are rounded keeping Σ N_j = K.
The budget returns its per-cluster table (size, d_intra, d_inter, C, P, lower, target, quota); the
manifest step saves it as RUN/manifest/dbp_clusters.parquet and reports the spread of P.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.metrics.dbp import DBP
from datapruner.select.budgets import alive_cluster_sizes
from datapruner.select.quotas import cluster_quotas, waterfill

log = logging.getLogger(__name__)


def cluster_means(table: pa.Table, alive: np.ndarray, column: str, sizes: np.ndarray) -> np.ndarray:
    clusters = table.column("cluster").to_numpy()[alive]
    values = table.column(column).to_numpy().astype(np.float64)[alive]
    return means(np.bincount(clusters, weights=values, minlength=len(sizes)), sizes)


def means(sums: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    return np.divide(sums, sizes, out=np.zeros(len(sizes)), where=sizes > 0)


def concept_probabilities(complexity: np.ndarray, nonempty: np.ndarray, tau: float) -> np.ndarray:
    """softmax(C/τ) over the non-empty clusters; 0 for empty ones."""
    logits = np.where(nonempty, complexity / tau, -np.inf)
    logits -= logits[nonempty].max()
    weights = np.exp(logits)
    return weights / weights.sum()


def balance_floor(sizes: np.ndarray, k: int, beta: float) -> np.ndarray:
    nonempty = int((sizes > 0).sum())
    return np.minimum(int(np.floor(beta * k / max(1, nonempty))), sizes) * (sizes > 0)


def dbp_quotas(p: np.ndarray, sizes: np.ndarray, k: int, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(continuous optimum, integer quotas summing to k) of the constrained least squares above."""
    return waterfill(p * k, sizes, k, lower), cluster_quotas(p * k, sizes, k, lower)


def p_spread(p: np.ndarray, nonempty: np.ndarray, tau: float) -> dict:
    """How far P is from uniform: min/max, their ratio, and the effective number of clusters exp(H(P))."""
    q = p[nonempty]
    entropy = float(-(q * np.log(q, where=q > 0, out=np.zeros_like(q))).sum())
    return {"tau": tau, "clusters": int(nonempty.sum()), "p_min": float(q.min()), "p_max": float(q.max()),
            "p_max_over_min": float(q.max() / q.min()) if q.min() > 0 else float("inf"),
            "effective_clusters": float(np.exp(entropy))}


def dbp_clusters(table: pa.Table, alive: np.ndarray, k: int, cfg: Config) -> pa.Table:
    """The per-cluster DBP table for keeping k of the alive rows (schema metadata: the spread of P)."""
    require_dbp_scores(table.column_names)
    sizes = alive_cluster_sizes(table, alive)
    d_intra = cluster_means(table, alive, "dist_to_centroid", sizes)
    return dbp_table(sizes, d_intra, cluster_means(table, alive, "score_dbp", sizes), k, cfg)


def require_dbp_scores(columns: list[str]) -> None:
    if "score_dbp" not in columns:
        raise DataprunerError("the scores have no 'score_dbp' column: rerun `datapruner score` with --budget dbp")


def dbp_table(sizes: np.ndarray, d_intra: np.ndarray, complexity: np.ndarray, k: int, cfg: Config) -> pa.Table:
    """The per-cluster table from the alive rows' cluster sizes and mean distance and score_dbp."""
    options = DBP().options(cfg)
    tau, beta = float(options["tau"]), float(options["beta"])
    nonempty = sizes > 0
    p = concept_probabilities(complexity, nonempty, tau)
    lower = balance_floor(sizes, k, beta)
    _, quotas = dbp_quotas(p, sizes, k, lower)
    d_inter = np.divide(complexity, d_intra, out=np.full(len(sizes), np.nan), where=d_intra > 0)
    spread = p_spread(p, nonempty, tau)
    log.info("dbp: P over %d clusters spans [%.3g, %.3g] (max/min %.3g, effective clusters %.1f); tau=%g",
             spread["clusters"], spread["p_min"], spread["p_max"], spread["p_max_over_min"],
             spread["effective_clusters"], tau)
    columns = {"cluster": np.arange(len(sizes)), "size": sizes, "d_intra": d_intra, "d_inter": d_inter,
               "complexity": complexity, "p": p, "lower": lower, "target": p * k, "quota": quotas}
    return pa.table(columns).replace_schema_metadata({"summary": _json(spread)})


def _json(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def dbp_budget(table: pa.Table, alive: np.ndarray, k: int, cfg: Config) -> pa.Table:
    return dbp_clusters(table, alive, k, cfg)
