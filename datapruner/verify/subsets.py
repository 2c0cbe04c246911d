"""The kept subsets of each pruning method, chosen by datapruner's own selection (select_table).

A method is a set of Config overrides, so verify prunes exactly as `datapruner select` would with the same
options, on a scores table that verify computes per pool and seed (verify/scoring.py).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from datapruner.errors import DataprunerError

EL2N_OFFSET = 0.1  # el2n_offset: the hardest share dropped first (Paul et al.'s offset)
METHODS: dict[str, dict] = {
    "random": {"metric": "random", "order": "random", "budget": "global"},
    "proto_hard": {"metric": "prototypicality", "order": "hard", "budget": "global"},
    "proto_easy": {"metric": "prototypicality", "order": "easy", "budget": "global"},
    "el2n": {"metric": "el2n_student", "order": "hard", "budget": "global"},  # the student's own EL2N (verify/el2n.py)
    "el2n_offset": {"metric": "el2n_student", "order": "hard", "budget": "global"},  # + filter el2n_student:offset
    "el2n_probe": {"metric": "el2n_probe", "order": "hard", "budget": "global"},  # the pipeline's el2n_probe metric
    "dbp": {"metric": "dbp", "order": "hard", "budget": "dbp"},  # = configs/dbp.yaml
}
BALANCES = ("none", "class")


def metric_of(method: str) -> str:
    return METHODS[method]["metric"]


def method_config(cfg, method: str, seed: int, fraction: float = 0.0):
    if method not in METHODS:
        raise DataprunerError(f"unknown verify method {method!r}: choose from {', '.join(METHODS)}")
    filters = ()
    if method == "el2n_offset":
        filters = ({"name": "el2n_student", "offset": min(EL2N_OFFSET, 1.0 - fraction)},)
    return cfg.replace(**METHODS[method], filters=filters, seed=seed)


def unavailable_reason(method: str) -> str | None:
    """Why a method cannot run with the installed budgets (None when it can)."""
    from datapruner.select.policy import BUDGETS

    spec = METHODS.get(method)
    if spec is None:
        return f"unknown method {method!r}"
    if spec["budget"] not in BUDGETS.names():
        return f"budget {spec['budget']!r} is not registered (available: {', '.join(BUDGETS.names())})"
    return None


def kept_mask(table: pa.Table, method: str, keep: float, cfg, seed: int, balance: str = "none") -> np.ndarray:
    """A bool mask over `table`'s rows: the samples `method` keeps at fraction `keep` (all of them at 1.0).

    balance="class" applies the method's selection inside each class (round(keep·n_c) per class),
    so no class can vanish; balance="none" is exactly the method's own budget.
    """
    if balance not in BALANCES:
        raise DataprunerError(f"unknown balance {balance!r}: choose one of {', '.join(BALANCES)}")
    from datapruner.select.policy import select_table

    if keep >= 1.0:
        return np.ones(table.num_rows, bool)
    method_cfg = method_config(cfg, method, seed, keep)
    if balance == "none":
        return select_table(table, keep, method_cfg).column("kept").to_numpy(zero_copy_only=False)
    labels = table.column("label").to_numpy()
    mask = np.zeros(table.num_rows, bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        chosen = select_table(table.take(rows), keep, method_cfg).column("kept").to_numpy(zero_copy_only=False)
        mask[rows[chosen]] = True
    return mask


def label_distance(labels_kept: np.ndarray, labels_pool: np.ndarray) -> tuple[float, int]:
    """(total-variation distance of the kept labels' distribution from the pool's, classes present)."""
    classes, pool_counts = np.unique(labels_pool, return_counts=True)
    if len(labels_kept) == 0:
        return 1.0, 0
    kept_counts = np.array([(labels_kept == c).sum() for c in classes])
    tv = 0.5 * np.abs(kept_counts / len(labels_kept) - pool_counts / len(labels_pool)).sum()
    return float(tv), int((kept_counts > 0).sum())
