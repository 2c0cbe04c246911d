"""The kept subsets of each pruning method, chosen by datapruner's own selection (select_table).

A method is a set of Config overrides, so verify prunes exactly as `datapruner score` would with
the same options. The random method reseeds its scores per student seed (the same hash the
`random` metric writes for `--seed s`), so each seed sees a different random subset.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from datapruner.errors import DataprunerError

METHODS: dict[str, dict] = {
    "random": {"metric": "random", "order": "random", "budget": "global"},
    "proto_hard": {"metric": "prototypicality", "order": "hard", "budget": "global"},
    "proto_easy": {"metric": "prototypicality", "order": "easy", "budget": "global"},
    "el2n": {"metric": "el2n", "order": "hard", "budget": "global"},
    "dbp": {"metric": "dbp", "order": "hard", "budget": "dbp"},  # = configs/dbp.yaml
}
# score columns a method reads beyond its own metric
EXTRA_METRICS: dict[str, tuple[str, ...]] = {}
BALANCES = ("none", "class")


def metrics_of(method: str) -> tuple[str, ...]:
    """Every metric whose score column the method's selection reads."""
    return (METHODS[method]["metric"], *EXTRA_METRICS.get(method, ()))


def method_config(cfg, method: str, seed: int):
    if method not in METHODS:
        raise DataprunerError(f"unknown verify method {method!r}: choose from {', '.join(METHODS)}")
    return cfg.replace(**METHODS[method], seed=seed)


def unavailable_reason(method: str) -> str | None:
    """Why a method cannot run with the installed metrics and budgets (None when it can)."""
    from datapruner.metrics.registry import available
    from datapruner.select.policy import BUDGETS

    spec = METHODS.get(method)
    if spec is None:
        return f"unknown method {method!r}"
    for metric in metrics_of(method):
        if metric not in available():
            return f"metric {metric!r} is not registered (available: {', '.join(available())})"
    if spec["budget"] not in BUDGETS:
        return f"budget {spec['budget']!r} is not registered (available: {', '.join(sorted(BUDGETS))})"
    return None


def reseeded_random(table: pa.Table, seed: int) -> pa.Table:
    """`table` with score_random as the random metric computes it for `seed`."""
    from datapruner.metrics.random import hashed_uniform

    values = hashed_uniform(seed, table.column("shard").to_pylist(), table.column("key").to_pylist())
    column = pa.array(values.astype(np.float32))
    if "score_random" in table.column_names:
        return table.set_column(table.column_names.index("score_random"), "score_random", column)
    return table.append_column("score_random", column)


def kept_mask(table: pa.Table, method: str, keep: float, cfg, seed: int, balance: str = "none") -> np.ndarray:
    """A bool mask over `table`'s rows: the samples `method` keeps at fraction `keep`.

    balance="class" applies the method's selection inside each class (round(keep·n_c) per class),
    so no class can vanish; balance="none" is exactly the method's own budget.
    """
    if balance not in BALANCES:
        raise DataprunerError(f"unknown balance {balance!r}: choose one of {', '.join(BALANCES)}")
    from datapruner.select.policy import select_table

    method_cfg = method_config(cfg, method, seed)
    if method == "random":
        table = reseeded_random(table, seed)
    if balance == "none":
        return select_table(table, keep, method_cfg).column("kept").to_numpy(zero_copy_only=False)
    labels = table.column("label").to_numpy()
    mask = np.zeros(table.num_rows, bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        chosen = select_table(table.take(rows), keep, method_cfg).column("kept").to_numpy(zero_copy_only=False)
        mask[rows[chosen]] = True
    return mask


def class_shares(labels_kept: np.ndarray, classes: np.ndarray) -> tuple[float, int]:
    """(smallest class share of the subset, number of classes present) over the dataset's classes."""
    if len(labels_kept) == 0:
        return 0.0, 0
    counts = np.array([(labels_kept == c).sum() for c in classes])
    return float(counts.min() / len(labels_kept)), int((counts > 0).sum())
